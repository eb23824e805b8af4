"""Indented JSON at the speed of the C encoder: the UTF-8 bytes of
``json.dumps(json_ready(obj), indent=2, ensure_ascii=False, allow_nan=False)``, byte for byte.

Python's json module encodes in C only without ``indent``; with it a pure-Python encoder runs
(summary.json of 30 000 rows in 1 000 classes: 8 MB, 0.35 s, and json_ready's walk 0.2 s more;
an audit writes it twice). Here the C encoder writes the compact text with the indented
separators ("," and ": "), and the line breaks and indents are inserted with array operations at
the brackets and commas that lie outside strings: JSON text has no bare newline and escapes
every quote inside a string, so a quote preceded by an even run of backslashes opens or closes
a string, and multi-byte UTF-8 never contains an ASCII byte. The encoder's ``default`` does
json_ready's conversions (numpy scalars to Python numbers, paths to text), and its non-finite
tokens (NaN, Infinity, -Infinity, only ever outside strings) become null. Where json_ready
would do more (a dict key that is not text, text that is not valid UTF-8) the exact slow path
runs.
"""

from __future__ import annotations

import json
import re
from contextlib import suppress
from pathlib import Path
from typing import Any

import numpy as np

from auditor.jsonsafe import json_ready, storable_text

INDENT = 2

_OPEN, _CLOSE, _COMMA = 1, 2, 3
_STRUCTURE = np.zeros(256, dtype=np.uint8)
_STRUCTURE[[ord("{"), ord("[")]] = _OPEN
_STRUCTURE[[ord("}"), ord("]")]] = _CLOSE
_STRUCTURE[ord(",")] = _COMMA
_NON_FINITE = re.compile(rb"-?Infinity|NaN")


def indented_json(obj: Any) -> bytes:
    """``json.dumps(json_ready(obj), indent=2, ensure_ascii=False, allow_nan=False)`` as UTF-8
    bytes (module docstring): NaN and infinities written as null; TypeError for an object JSON
    cannot hold, as json.dumps raises."""
    if _text_keys_only(obj):
        compact = json.dumps(obj, ensure_ascii=False, separators=(",", ": "), default=_plain)
        # Text that is not valid UTF-8 (json_ready escapes it, storable_text) takes the exact
        # path below.
        with suppress(UnicodeEncodeError):
            return _indent(compact.encode("utf-8"))
    text = json.dumps(json_ready(obj), indent=INDENT, ensure_ascii=False, allow_nan=False)
    return text.encode("utf-8")


def with_last_key(text: bytes, key: str, value: Any) -> bytes | None:
    """indented_json of the object whose indented_json is ``text``, with ``value`` for its last
    key ``key``: only ``value`` is encoded (summary.json is 8 MB at 30 000 rows in 1 000 classes,
    its last key the timings). None when ``key`` is not the object's last key.

    The object's own keys are the only lines indented by exactly INDENT spaces and starting
    with a quote (JSON text holds no raw line break inside a string), so the last such line
    starts the last key's entry, which runs to the object's closing line."""
    margin = b"\n" + b" " * INDENT
    marker = margin + indented_json(key) + b": "
    at = text.rfind(marker)
    if at < 0 or not text.endswith(b"\n}") or text.find(margin + b'"', at + 1) >= 0:
        return None
    return text[:at] + marker + indented_json(value).replace(b"\n", margin) + b"\n}"


def _text_keys_only(obj: Any) -> bool:
    """Whether every dict key inside obj is a plain str (json_ready would turn others into
    text; the C encoder writes True as true, and refuses numpy integers)."""
    stack = [obj]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if item and set(map(type, item)) != {str}:
                return False
            item = item.values()
        elif not isinstance(item, list | tuple):
            continue
        # The element types first (at C speed): most lists hold only numbers or text.
        if any(issubclass(t, dict | list | tuple) for t in set(map(type, item))):
            stack.extend([v for v in item if isinstance(v, dict | list | tuple)])
    return True


def _plain(obj: Any) -> Any:
    """json_ready's conversions of what the C encoder cannot write itself."""
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Path):
        return storable_text(str(obj))
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


def _in_string(a: np.ndarray) -> np.ndarray:
    """uint8 [n], 1 where the byte of the JSON text a lies inside a string (or is its closing
    quote), 0 elsewhere."""
    quotes = np.flatnonzero(a == ord('"'))
    slashes = np.flatnonzero(a == ord("\\"))
    if len(slashes) and len(quotes):
        # The first position of each run of backslashes, for every backslash in it.
        new_run = np.ones(len(slashes), dtype=bool)
        new_run[1:] = np.diff(slashes) != 1
        run_start = slashes[np.maximum.accumulate(np.where(new_run, np.arange(len(slashes)), 0))]
        # Length of the run that ends right before each quote (0: none).
        before = quotes - 1
        at = np.minimum(np.searchsorted(slashes, before), len(slashes) - 1)
        run = np.where(slashes[at] == before, before - run_start[at] + 1, 0)
        quotes = quotes[run % 2 == 0]
    toggles = np.zeros(len(a), dtype=np.uint8)
    toggles[quotes] = 1
    return np.bitwise_xor.accumulate(toggles)


def _null_non_finite(data: bytes, inside: np.ndarray) -> bytes:
    """data with each NaN / Infinity / -Infinity token outside strings written as null."""
    pieces, start = [], 0
    for match in _NON_FINITE.finditer(data):
        if not inside[match.start()]:
            pieces += [data[start : match.start()], b"null"]
            start = match.end()
    return b"".join([*pieces, data[start:]])


def _indent(data: bytes) -> bytes:
    """The compact text `data` (separators "," and ": ") indented as json.dumps(indent=2)."""
    a = np.frombuffer(data, dtype=np.uint8)
    inside = _in_string(a)
    if b"NaN" in data or b"Infinity" in data:
        replaced = _null_non_finite(data, inside)
        if replaced != data:
            data = replaced
            a = np.frombuffer(data, dtype=np.uint8)
            inside = _in_string(a)
    kind = _STRUCTURE[a]
    kind[inside.view(bool)] = 0
    pos = np.flatnonzero(kind)
    if len(pos) == 0:
        return data
    kind = kind[pos]
    depth = np.cumsum(np.select([kind == _OPEN, kind == _CLOSE], [1, -1], 0))
    # An empty container stays "{}" / "[]": no break after its opening nor before its close.
    empty = np.zeros(len(pos), dtype=bool)
    empty[:-1] = (kind[:-1] == _OPEN) & (kind[1:] == _CLOSE) & (pos[1:] == pos[:-1] + 1)
    empty[1:] |= empty[:-1]
    breaks = ~empty
    # A break goes after an opening or a comma, before a close: "\n" and the depth's indent.
    at = np.where(kind == _CLOSE, pos, pos + 1)[breaks]
    length = 1 + INDENT * depth[breaks]
    # Output position of each break: its place in data, shifted by the breaks before it.
    start = at + np.concatenate([[0], np.cumsum(length)[:-1]])
    total = len(a) + int(length.sum())
    # Breaks never touch (at least one byte of data lies between two), so +1/-1 marks suffice.
    edges = np.zeros(total + 1, dtype=np.int8)
    edges[start] = 1
    edges[start + length] -= 1
    inserted = np.cumsum(edges[:-1], dtype=np.int8).astype(bool)
    out = np.full(total, ord(" "), dtype=np.uint8)
    out[~inserted] = a
    out[start] = ord("\n")
    return out.tobytes()
