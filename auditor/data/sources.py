"""Data sources -> DatasetIndex: a class-per-subfolder tree or a CSV manifest (and, through
``open_source``, the table and shard sources of ``auditor.data.tables`` and ``webdataset``).

Folder tree: ``DATA/<class>/<file>``, searched recursively inside each class folder, hidden
files and folders skipped, image files found by extension or, for DICOM files (often named
without one), by their ``DICM`` preamble; symlinks followed once (a visited set of folder
inodes stops loops).
Samples are sorted by (class index, relative path). Files at the top level are ignored.

CSV manifest: columns ``path,label``, optional ``mask`` and optional box ``x0,y0,x1,y1``
(all four or none; pixels of the upright original image). Rows keep the manifest's order.
A label is matched as a class NAME first; when ``classes`` is given and the label is not a
name but a decimal integer in range, it is read as a class INDEX (so class names "0", "1"
still work as names). An empty label gives label -1 (unknown). Without ``classes`` the
classes are the sorted unique labels (plain string order, like torchvision's ImageFolder).

Multi-label manifests (``multi_label=True``): a column ``labels`` holds each image's labels
separated by ``|`` (empty = no finding; names only). The index then holds one SampleRef per
(image, positive label), in the classes' order, and one with label -1 for an image with no
positive label; every ref of an image carries all its labels in ``labels``. Maps, measures and
every per-class detector then work per label unchanged.

Paths that leave the data root (``..`` or an absolute path elsewhere, checked lexically)
are refused unless ``allow_outside=True``. File names that are not valid UTF-8 work: they
travel as ``os.fsdecode`` strings (surrogateescape).
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from auditor.data.dicom import DICOM_EXTENSIONS, is_dicom_file
from auditor.data.members import Member
from auditor.errors import DataError

if TYPE_CHECKING:
    from auditor.data.annotations import Annotation

IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp", ".tif", ".tiff"}
) | DICOM_EXTENSIONS
BOX_COLUMNS: tuple[str, ...] = ("x0", "y0", "x1", "y1")
_SHOW = 5  # how many offending names an error message lists before "and N more"


@dataclass(frozen=True)
class SampleRef:
    """One input file of the data set (see docs/architecture.md, "Data items").

    ``member``: where the image's bytes are when they are inside a container file (a Parquet
    or Arrow cell, a tar member; ``path`` then reads ``CONTAINER#KEY``); None for a file at
    ``path``. ``mask_member`` likewise for the mask, or the COCO/VOC annotation it is drawn
    from (``auditor.data.annotations``).
    """

    index: int
    path: str
    rel_path: str
    label: int
    mask_path: str | None = None
    box: tuple[float, float, float, float] | None = None
    labels: tuple[int, ...] = ()  # multi-label: every positive label of the image
    member: Member | None = None
    mask_member: Member | Annotation | None = None


@dataclass
class DatasetIndex:
    """Every sample of a data set in a stable order, its classes and indexing warnings.

    ``multi_label``: samples are (image, positive label) pairs (see the module docstring).
    """

    root: str
    classes: list[str]
    samples: list[SampleRef]
    warnings: list[str] = field(default_factory=list)
    multi_label: bool = False
    #: what the data is: folder, manifest, parquet, arrow (a saved Hugging Face data set)
    #: or webdataset.
    source: str = "folder"


def is_image_name(name: str) -> bool:
    """True when a file name has one of the image extensions (any case)."""
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def _is_image_file(path: str, name: str) -> bool:
    """An image extension, or a DICOM file by its preamble (DICOM names often have none)."""
    return is_image_name(name) or is_dicom_file(path)


def _listing(names: Sequence[str]) -> str:
    shown = ", ".join(repr(name) for name in names[:_SHOW])
    more = len(names) - _SHOW
    return f"{shown} and {more} more" if more > 0 else shown


def _sorted_entries(folder: str) -> list[os.DirEntry[str]]:
    """Entries of a folder by name; [] when it cannot be listed."""
    try:
        with os.scandir(folder) as listing:
            return sorted(listing, key=lambda entry: entry.name)
    except OSError:
        return []


def _folder_id(folder: str) -> tuple[int, int] | None:
    """(device, inode) of a folder, following symlinks; None when it cannot be read."""
    try:
        info = os.stat(folder)
    except OSError:
        return None
    return info.st_dev, info.st_ino


def _walk_images(folder: str, visited: set[tuple[int, int]]) -> Iterator[str]:
    """Yield image files under ``folder`` (depth first, hidden entries skipped).

    ``visited`` holds the (device, inode) of folders already entered, so symlink loops end
    (one stat per folder, unlike realpath's per-component walk); an explicit stack (not
    recursion) copes with arbitrarily deep trees.
    """
    stack = [folder]
    while stack:
        current = stack.pop()
        identity = _folder_id(current)
        if identity is None or identity in visited:
            continue
        visited.add(identity)
        subfolders: list[str] = []
        for entry in _sorted_entries(current):
            if entry.name.startswith("."):
                continue
            try:
                is_dir = entry.is_dir()
                is_file = not is_dir and entry.is_file()
            except OSError:
                continue
            if is_dir:
                subfolders.append(entry.path)
            elif is_file and _is_image_file(entry.path, entry.name):
                yield entry.path
        stack.extend(reversed(subfolders))


def _check_classes(classes: Sequence[str] | None) -> list[str] | None:
    if classes is None:
        return None
    names = [str(name) for name in classes]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise DataError(f"classes contains duplicate names: {_listing(duplicates)}")
    if not names:
        raise DataError("classes is empty; give the model's class names in output order")
    return names


def _mask_lookup(masks_dir: str) -> dict[str, str]:
    """Map each mask's relative path without extension to its file."""
    if not os.path.isdir(masks_dir):
        raise DataError(f"masks folder {masks_dir!r} does not exist or is not a folder")
    root = os.path.abspath(masks_dir)
    lookup: dict[str, str] = {}
    for path in _walk_images(root, set()):
        key = os.path.splitext(os.path.relpath(path, root))[0]
        lookup.setdefault(key, path)
    return lookup


def _attach_masks(
    samples: list[SampleRef], masks_dir: str, warnings: list[str]
) -> list[SampleRef]:
    """Fill mask_path from ``masks_dir`` for samples that have no mask yet."""
    lookup = _mask_lookup(masks_dir)
    attached: list[SampleRef] = []
    missing = 0
    for sample in samples:
        if sample.mask_path is None and sample.mask_member is None:
            mask = lookup.get(os.path.splitext(sample.rel_path)[0])
            missing += mask is None
            sample = replace(sample, mask_path=mask)
        attached.append(sample)
    if missing:
        warnings.append(
            f"{missing} of {len(samples)} images have no mask in {masks_dir!r} "
            "(same relative path, any image extension); they are audited without one"
        )
    return attached


def _open_folder(root: str, classes: list[str] | None) -> DatasetIndex:
    warnings: list[str] = []
    visited: set[tuple[int, int]] = set()
    class_dirs: dict[str, str] = {}
    top_level_files = 0
    for entry in _sorted_entries(root):
        if entry.name.startswith("."):
            continue
        try:
            if entry.is_dir():
                class_dirs[entry.name] = entry.path
            elif entry.is_file() and _is_image_file(entry.path, entry.name):
                top_level_files += 1
        except OSError:
            continue
    if top_level_files:
        warnings.append(
            f"{top_level_files} image files directly in {root!r} were ignored: a folder "
            "data set needs DATA/<class>/<file>"
        )
    if classes is None:
        classes = sorted(class_dirs)
    else:
        unknown = sorted(set(class_dirs) - set(classes))
        if unknown:
            raise DataError(
                f"class folders not in the given classes: {_listing(unknown)} "
                f"({len(unknown)} in all); add them to classes or move them out of {root!r}"
            )
    root_id = _folder_id(root)
    if root_id is not None:
        visited.add(root_id)
    found: list[tuple[int, str, str]] = []
    for label, name in enumerate(classes):
        folder = class_dirs.get(name)
        if folder is None:
            continue
        for path in _walk_images(folder, visited):
            found.append((label, os.path.relpath(path, root), path))
    found.sort()
    samples = [
        SampleRef(index=i, path=path, rel_path=rel, label=label)
        for i, (label, rel, path) in enumerate(found)
    ]
    counts = [0] * len(classes)
    for sample in samples:
        counts[sample.label] += 1
    empty = [name for name, count in zip(classes, counts, strict=True) if count == 0]
    if empty:
        warnings.append(f"classes with no images: {_listing(empty)}")
    return DatasetIndex(root=root, classes=classes, samples=samples, warnings=warnings)


def _resolve(root: str, value: str) -> str:
    """Absolute, lexically normalised path of a manifest cell (relative to the manifest)."""
    return os.path.normpath(os.path.join(root, os.path.expanduser(value)))


def _is_inside(root: str, path: str) -> bool:
    return os.path.commonpath([root, path]) == root


def _parse_box(cells: list[str]) -> tuple[float, float, float, float] | str | None:
    """A box from four cells: the box, None when all are blank, or the reason it is bad."""
    if not any(cells):
        return None
    try:
        x0, y0, x1, y1 = (float(cell) for cell in cells)
    except ValueError:
        return f"not numbers: {cells}"
    if not all(math.isfinite(value) for value in (x0, y0, x1, y1)):
        return f"not finite: {cells}"
    if x1 <= x0 or y1 <= y0:
        return f"empty box (need x1 > x0 and y1 > y0): {cells}"
    return (x0, y0, x1, y1)


def _label_of(label: str, classes: list[str], positions: dict[str, int]) -> int | None:
    """Class index of a manifest label: a name first, else an integer index; None if neither."""
    if label in positions:
        return positions[label]
    if label.lstrip("-").isdigit() and 0 <= int(label) < len(classes):
        return int(label)
    return None


def _open_manifest(
    manifest: str, classes: list[str] | None, allow_outside: bool, multi_label: bool = False
) -> DatasetIndex:
    root = os.path.dirname(os.path.abspath(manifest))
    warnings: list[str] = []
    try:
        # surrogateescape keeps non-UTF-8 path bytes intact, as os.fsdecode does.
        with open(manifest, encoding="utf-8-sig", errors="surrogateescape", newline="") as f:
            rows = list(csv.reader(f))
    except OSError as exc:
        raise DataError(f"cannot read manifest {manifest!r}: {exc.strerror or exc}") from exc
    except csv.Error as exc:
        raise DataError(f"manifest {manifest!r} is not valid CSV: {exc}") from exc
    rows_numbered = [(n, row) for n, row in enumerate(rows, start=1)
                     if any(cell.strip() for cell in row)]
    if not rows_numbered:
        raise DataError(f"manifest {manifest!r} is empty; it needs a header row path,label")
    header_line, header = rows_numbered[0]
    columns = [name.strip().lower() for name in header]
    label_column = "labels" if multi_label else "label"
    for required in ("path", label_column):
        if required not in columns:
            raise DataError(
                f"manifest {manifest!r} has no column {required!r}; columns found: "
                f"{[name for name in columns if name]} (the header needs path,{label_column}"
                f"{'; labels separated by |' if multi_label else ''})"
            )
    box_found = [name for name in BOX_COLUMNS if name in columns]
    if box_found and len(box_found) != len(BOX_COLUMNS):
        missing = [name for name in BOX_COLUMNS if name not in columns]
        raise DataError(
            f"manifest {manifest!r} has box columns {box_found} but not {missing}; "
            "give all of x0,y0,x1,y1 or none"
        )
    where = {name: columns.index(name) for name in ("path", label_column, "mask", *BOX_COLUMNS)
             if name in columns}

    def cell(row: list[str], name: str) -> str:
        position = where.get(name)
        return row[position].strip() if position is not None and position < len(row) else ""

    empty_rows = len(rows) - header_line - (len(rows_numbered) - 1)
    entries: list[tuple[str, str, str | None, tuple[float, float, float, float] | None]] = []
    seen: set[str] = set()
    duplicates: list[str] = []
    outside: list[str] = []
    no_path: list[int] = []
    bad_boxes: list[str] = []
    for line, row in rows_numbered[1:]:
        value = cell(row, "path")
        if not value:
            no_path.append(line)
            continue
        path = _resolve(root, value)
        mask_value = cell(row, "mask")
        mask = _resolve(root, mask_value) if mask_value else None
        for name, resolved in ((value, path), (mask_value, mask)):
            if resolved is not None and not _is_inside(root, resolved):
                outside.append(f"{name} (line {line})")
        if path in seen:
            duplicates.append(value)
            continue
        seen.add(path)
        box = _parse_box([cell(row, name) for name in BOX_COLUMNS]) if box_found else None
        if isinstance(box, str):
            bad_boxes.append(f"line {line}: {box}")
            box = None
        entries.append((path, cell(row, label_column), mask, box))
    if outside and not allow_outside:
        raise DataError(
            f"manifest paths outside its folder {root!r}: {_listing(outside)} "
            f"({len(outside)} in all); move the files under the manifest's folder or pass "
            "allow_outside=True (--allow-outside) if that is intended"
        )
    if empty_rows:
        warnings.append(f"{empty_rows} empty rows in the manifest were skipped")
    if no_path:
        warnings.append(f"{len(no_path)} manifest rows without a path were skipped "
                        f"(lines {_listing([str(n) for n in no_path])})")
    if duplicates:
        warnings.append(f"{len(duplicates)} duplicate manifest paths, the first row of each "
                        f"was kept: {_listing(duplicates)}")
    if bad_boxes:
        warnings.append(f"{len(bad_boxes)} boxes dropped: {'; '.join(bad_boxes[:_SHOW])}")
    if not entries:
        raise DataError(f"manifest {manifest!r} lists no images")
    if multi_label:
        return _multi_label_index(root, entries, classes, warnings)

    if classes is None:
        classes = sorted({label for _, label, _, _ in entries if label})
    positions = {name: i for i, name in enumerate(classes)}
    labels = [_label_of(label, classes, positions) if label else -1
              for _, label, _, _ in entries]
    unknown = sorted(
        {entry[1] for entry, label in zip(entries, labels, strict=True) if label is None}
    )
    if unknown:
        raise DataError(
            f"manifest labels not among the classes: {_listing(unknown)} ({len(unknown)} "
            f"distinct); classes are {_listing(classes)} ({len(classes)}); fix the labels or "
            "the classes list"
        )
    unlabelled = labels.count(-1)
    if unlabelled:
        warnings.append(f"{unlabelled} manifest rows have no label (label -1, unknown)")
    samples = [
        SampleRef(index=i, path=path, rel_path=os.path.relpath(path, root), label=int(label),
                  mask_path=mask, box=box)
        for i, ((path, _, mask, box), label) in enumerate(zip(entries, labels, strict=True))
    ]
    return DatasetIndex(root=root, classes=classes, samples=samples, warnings=warnings,
                        source="manifest")


def _split_labels(cell: str) -> list[str]:
    """The labels of a multi-label cell: ``|``-separated names, blanks dropped, order kept."""
    return list(dict.fromkeys(part.strip() for part in cell.split("|") if part.strip()))


def _multi_label_index(
    root: str,
    entries: list[tuple[str, str, str | None, tuple[float, float, float, float] | None]],
    classes: list[str] | None,
    warnings: list[str],
) -> DatasetIndex:
    """One SampleRef per (image, positive label), or one with label -1 for no finding."""
    names = [_split_labels(label) for _, label, _, _ in entries]
    if classes is None:
        classes = sorted({name for image in names for name in image})
    if not classes:
        raise DataError("the manifest's labels column is empty everywhere; give the labels, "
                        "or --classes in the model's output order")
    positions = {name: i for i, name in enumerate(classes)}
    unknown = sorted({name for image in names for name in image if name not in positions})
    if unknown:
        raise DataError(
            f"manifest labels not among the classes: {_listing(unknown)} ({len(unknown)} "
            f"distinct); classes are {_listing(classes)} ({len(classes)}); fix the labels or "
            "the classes list"
        )
    samples: list[SampleRef] = []
    for (path, _, mask, box), image in zip(entries, names, strict=True):
        labels = tuple(sorted(positions[name] for name in image))
        rel = os.path.relpath(path, root)
        for label in labels or (-1,):
            samples.append(SampleRef(len(samples), path, rel, label, mask, box, labels))
    no_finding = sum(1 for image in names if not image)
    if no_finding:
        warnings.append(f"{no_finding} of {len(entries)} images have no label (no finding)")
    return DatasetIndex(root=root, classes=classes, samples=samples, warnings=warnings,
                        multi_label=True, source="manifest")


def open_source(
    data: str | os.PathLike[str],
    classes: Sequence[str] | None = None,
    masks_dir: str | os.PathLike[str] | None = None,
    allow_outside: bool = False,
    multi_label: bool = False,
    image_column: str = "image",
    label_column: str = "label",
) -> DatasetIndex:
    """Index a data set: a folder tree or a CSV manifest (rules in the module docstring),
    Parquet or a saved Hugging Face data set (``auditor.data.tables``), or WebDataset tar
    shards (``auditor.data.webdataset``).

    Args:
        data: a folder ``DATA/<class>/<file>``, a ``.csv`` manifest, a ``.parquet`` file or a
            folder of them, a ``save_to_disk`` folder, a ``.tar`` shard, a folder of shards
            or a brace pattern of shards.
        classes: class names in the model's output order; default: from the data.
        masks_dir: folder of masks at the images' relative paths (any image extension), a
            COCO JSON file or a Pascal VOC folder (``auditor.data.annotations``); a
            manifest's ``mask`` column takes precedence.
        allow_outside: accept manifest paths outside the manifest's folder.
        multi_label: read the manifest's ``labels`` column (``|``-separated); one sample per
            (image, positive label). Needs a manifest.
        image_column, label_column: the columns of a table source.

    Returns:
        DatasetIndex with samples in a stable order.

    Raises:
        DataError: the data cannot be audited at all; the message names the problem.
    """
    from auditor.data.tables import is_saved_dataset, open_table_source, parquet_files
    from auditor.data.webdataset import is_webdataset, open_webdataset

    location = os.path.abspath(os.fspath(data))
    checked = _check_classes(classes)
    if multi_label and not (os.path.isfile(location) and location.lower().endswith(".csv")):
        raise DataError(
            f"--multi-label needs a CSV manifest with columns path,labels (labels separated "
            f"by |); {location!r} is not one (a folder, a table or shards hold one label per "
            "image)"
        )
    if is_webdataset(location):
        index = open_webdataset(location, checked)
    elif (os.path.isdir(location) and is_saved_dataset(location)) or parquet_files(location):
        index = open_table_source(location, checked, image_column, label_column, allow_outside)
    elif os.path.isdir(location):
        index = _open_folder(location, checked)
        if not index.samples:
            raise DataError(
                f"no image files under {location!r}; expected DATA/<class>/<file> with "
                f"extensions {', '.join(sorted(IMAGE_EXTENSIONS))}, Parquet files, a saved "
                "Hugging Face data set or .tar shards"
            )
    elif os.path.isfile(location) and location.lower().endswith(".csv"):
        index = _open_manifest(location, checked, allow_outside, multi_label)
    elif not os.path.exists(location):
        raise DataError(f"data {location!r} does not exist; give a folder, a .csv manifest, "
                        "Parquet, a saved Hugging Face data set or .tar shards")
    else:
        raise DataError(
            f"data {location!r} is neither a folder, a .csv manifest (path,label columns), "
            "a .parquet file nor a .tar shard"
        )
    if masks_dir is not None:
        from auditor.data.annotations import attach_annotations, is_annotation_source

        masks = os.fspath(masks_dir)
        attach = attach_annotations if is_annotation_source(masks) else _attach_masks
        index.samples = attach(index.samples, masks, index.warnings)
    return index
