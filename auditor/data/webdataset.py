"""WebDataset tar shards -> DatasetIndex, read in place (nothing is extracted to disk).

DATA is a shard (``.tar``), a folder whose ``.tar`` files directly inside are the shards (in
name order), or a brace pattern such as ``shards-{000000..000099}.tar`` or ``{a,b}.tar``
(shards in pattern order). Shards must be uncompressed tar files, as WebDataset writes them:
indexing reads only the tar headers and the small label members, and loading a sample is one
seek and one read of its image member.

Members are grouped into samples by key, as WebDataset does: the key is the member's path up
to the first dot of its file name, the rest (lower case) its extension. A sample's image is
its first member with an image extension (``jpg``, ``jpeg``, ``png``, ``webp``, then the other
image extensions); its label the ``cls`` member (an integer), else ``txt`` (a name or an
integer), else ``json`` (its ``label``); its mask the ``mask.png`` member. A sample without an
image member is skipped with a warning. Each row's ``path`` is ``SHARD#KEY``.

A shard that ends early (truncated) keeps the samples whose members were complete and says so
in a warning; a member whose bytes are corrupt becomes an error row like any bad image.
"""

from __future__ import annotations

import json
import os
import re
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import BinaryIO

from auditor.data.labels import resolve_labels
from auditor.data.members import TarMember
from auditor.data.sources import IMAGE_EXTENSIONS, DatasetIndex, SampleRef
from auditor.errors import DataError

# Image members in order of preference; the first a sample has is its image.
IMAGE_MEMBERS: tuple[str, ...] = (
    "jpg", "jpeg", "png", "webp",
    *sorted(ext.lstrip(".") for ext in IMAGE_EXTENSIONS - {".jpg", ".jpeg", ".png", ".webp"}),
)
LABEL_MEMBERS: tuple[str, ...] = ("cls", "txt", "json")
MASK_MEMBER = "mask.png"
# Label members longer than this are not labels (a caption, a document): read as unknown.
_MAX_LABEL_BYTES = 4096
_BRACE = re.compile(r"\{([^{}]*)\}")
_RANGE = re.compile(r"^(\d+)\.\.(\d+)$")


def expand_braces(pattern: str) -> list[str]:
    """Every name a brace pattern stands for, in order: ``{000..002}`` (zero-padded to the
    width of the first bound) and ``{a,b}``; several braces multiply out."""
    match = _BRACE.search(pattern)
    if match is None:
        return [pattern]
    body = match.group(1)
    numbers = _RANGE.match(body)
    if numbers:
        first, last = numbers.groups()
        step = 1 if int(last) >= int(first) else -1
        choices = [str(n).zfill(len(first)) for n in range(int(first), int(last) + step, step)]
    else:
        choices = body.split(",")
    head, tail = pattern[: match.start()], pattern[match.end():]
    return [name for choice in choices for name in expand_braces(head + choice + tail)]


def shard_files(location: str) -> list[str]:
    """The shards of DATA: the file, a folder's ``*.tar`` by name, or a brace pattern's."""
    if os.path.isdir(location):
        return sorted(
            os.path.join(location, name) for name in os.listdir(location)
            if name.lower().endswith(".tar") and not name.startswith(".")
        )
    if "{" in location:
        return expand_braces(location)
    return [location] if location.lower().endswith(".tar") else []


def is_webdataset(location: str) -> bool:
    """Whether DATA names tar shards (a .tar file, a brace pattern, a folder of .tar)."""
    if "{" in location and not os.path.exists(location):
        return True
    return bool(shard_files(location)) and (
        os.path.isfile(location) or os.path.isdir(location))


@dataclass
class _Sample:
    key: str
    members: dict[str, tarfile.TarInfo] = field(default_factory=dict)


def _split_name(name: str) -> tuple[str, str]:
    """(key, extension) of a member name, WebDataset's rule (module docstring)."""
    folder, base = os.path.split(name)
    stem, dot, extension = base.partition(".")
    return os.path.join(folder, stem), extension.lower() if dot else ""


def _scan(shard: str, warnings: list[str]) -> list[_Sample]:
    """The samples of one shard, from its headers only."""
    samples: dict[str, _Sample] = {}
    try:
        with tarfile.open(shard, mode="r:") as archive:
            for info in archive:
                if not info.isfile() or os.path.basename(info.name).startswith("."):
                    continue
                key, extension = _split_name(info.name)
                samples.setdefault(key, _Sample(key)).members.setdefault(extension, info)
    except FileNotFoundError as exc:
        raise DataError(f"shard {shard!r} does not exist") from exc
    except tarfile.CompressionError as exc:
        raise DataError(f"shard {shard!r} is compressed: decompress it ({exc})") from exc
    except (tarfile.ReadError, EOFError, OSError) as exc:
        if not samples:
            raise DataError(
                f"shard {shard!r} is not a readable uncompressed tar file ({exc}); "
                "compressed shards (.tar.gz) must be decompressed first"
            ) from exc
        warnings.append(f"shard {shard!r} ends early ({exc}): the samples after member "
                        f"{len(samples)} were not indexed")
    # tarfile stops quietly at a header cut short; a member whose data is cut short is dropped.
    size = os.path.getsize(shard)
    cut = 0
    for sample in samples.values():
        complete = {ext: info for ext, info in sample.members.items()
                    if info.offset_data + info.size <= size}
        cut += len(sample.members) - len(complete)
        sample.members = complete
    if cut:
        warnings.append(f"shard {shard!r} is truncated: {cut} members cut short were dropped")
    return list(samples.values())


def _label_value(extension: str, data: bytes) -> int | str | None:
    text = data.decode("utf-8", errors="replace").strip()
    if extension == "json":
        try:
            value = json.loads(text).get("label") if text.startswith("{") else None
        except ValueError:
            return None
        return value if isinstance(value, int | str) else None
    if extension == "cls":
        return int(text) if text.lstrip("-").isdigit() else text or None
    return text or None


def _read_label(handle: BinaryIO, sample: _Sample) -> int | str | None:
    for extension in LABEL_MEMBERS:
        info = sample.members.get(extension)
        if info is not None and info.size <= _MAX_LABEL_BYTES:
            handle.seek(info.offset_data)
            return _label_value(extension, handle.read(info.size))
    return None


def _member(shard: str, info: tarfile.TarInfo) -> TarMember:
    return TarMember(shard, info.offset_data, info.size, os.path.basename(info.name))


def open_webdataset(location: str, classes: Sequence[str] | None) -> DatasetIndex:
    """Index tar shards (module docstring).

    Raises:
        DataError: no shard, an unreadable or compressed shard, labels outside the classes.
    """
    shards = [os.path.abspath(path) for path in shard_files(location)]
    if not shards:
        raise DataError(f"no .tar shards in {location!r}")
    root = os.path.commonpath([os.path.dirname(path) for path in shards])
    warnings: list[str] = []
    unlabelled: list[SampleRef] = []
    raw_labels: list[int | str | None] = []
    no_image = 0
    for shard in shards:
        samples = _scan(shard, warnings)
        with open(shard, "rb") as handle:
            for sample in samples:
                image = next((sample.members[ext] for ext in IMAGE_MEMBERS
                              if ext in sample.members), None)
                if image is None:
                    no_image += 1
                    continue
                raw_labels.append(_read_label(handle, sample))
                mask = sample.members.get(MASK_MEMBER)
                unlabelled.append(SampleRef(
                    index=len(unlabelled), path=f"{shard}#{sample.key}",
                    rel_path=f"{os.path.relpath(shard, root)}#{sample.key}", label=-1,
                    member=_member(shard, image),
                    mask_member=_member(shard, mask) if mask is not None else None,
                ))
    if no_image:
        warnings.append(f"{no_image} samples without an image member "
                        f"({', '.join(IMAGE_MEMBERS[:4])}, ...) were skipped")
    if not unlabelled:
        raise DataError(f"no samples with an image member in the shards of {location!r}")
    names, labels, label_warnings = resolve_labels(raw_labels, classes, None, location)
    samples_out = [replace(ref, label=label) for ref, label in zip(unlabelled, labels,
                                                                   strict=True)]
    return DatasetIndex(root=root, classes=names, samples=samples_out,
                        warnings=warnings + label_warnings, source="webdataset")
