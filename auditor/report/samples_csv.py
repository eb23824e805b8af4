"""samples.csv: the run's per-sample table for spreadsheets, written column by column.

The file is byte for byte what pandas' ``to_csv(index=False, encoding="utf-8-sig")`` writes for
samples.parquet after the formula guard (tests/test_samples_csv.py compares the two on hostile
text and every column type a run holds), but each column is turned into text by vectorised
Arrow string kernels a block of rows at a time, instead of one Python call per cell (a million
rows: 6 CPU s, was 43, besides 2 s reading the table). The rules reproduced:

| column (pandas dtype)       | cell text                                                      |
|-----------------------------|----------------------------------------------------------------|
| numpy float32 / float64     | numpy's ``astype(str)``: shortest round-trip digits, "32.0",   |
|                             | "1e-05"; NaN empty                                             |
| numpy int / uint, bool      | decimal; True / False                                          |
| text (str, or object of str)| the text, missing empty                                        |
| anything else (object: bool | per cell as pandas hands it to the csv module: missing (isna)  |
| with gaps, lists; EA types) | empty, float ``repr``, other ``str``                           |

(A date/time column, which a run does not have, is the one difference: ``str`` of each value,
where pandas picks one precision per chunk of rows.)

Formula guard (file names are user data): a text cell starting with = + - @ tab or CR gets a
leading apostrophe, so a spreadsheet shows it instead of running it. Then a cell holding a
character that makes the csv module quote (QUOTE_MINIMAL: delimiter, quote, line terminator;
probed from the running Python, whose set changed across versions) is quoted, quotes doubled.

Floats: Arrow's cast to string and numpy give the same shortest round-trip digits; both write
them positionally for 1e-4 <= |x| < 1e6 (float32) or 1e10 (float64) and for zero, where Arrow
leaves off numpy's ".0" of a whole number (added here). Other values (tiny, huge, infinite:
rare in a run) are formatted by numpy itself.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from auditor.errors import RunDirectoryError
from auditor.store import RunReader

#: Rows turned into text at a time (bounds the memory of the text to a block).
BLOCK_ROWS = 65_536
#: Columns of samples.parquet that only locate a sample's maps: not written.
INTERNAL_COLUMNS = ("map_part", "map_row")
#: First characters that make a spreadsheet read a cell as a formula (the hyphen last: it
#: also stands in a regular expression's character class).
FORMULA_CHARACTERS = "=+@\t\r-"
#: |x| ranges, by float dtype, where numpy and Arrow both write a float positionally.
POSITIONAL = {np.dtype(np.float32): (1e-4, 1e6), np.dtype(np.float64): (1e-4, 1e10)}


def write_samples_csv(run_dir: str | Path, reader: RunReader | None = None) -> Path:
    """Write RUN_DIR/samples.csv (UTF-8 with BOM, for spreadsheets) and return its path.

    Text cells that a spreadsheet would run as a formula (starting with = + - @, a tab or CR)
    are prefixed with an apostrophe: file names are user data. reader: a RunReader of RUN_DIR
    whose table another step reads too (the report; read once), None: its own."""
    run_dir = Path(run_dir)
    frame = (reader if reader is not None else RunReader(run_dir)).samples()
    columns = [c for c in frame.columns if c not in INTERNAL_COLUMNS]
    path = run_dir / "samples.csv"
    try:
        with open(path, "wb") as fh:
            fh.write(_csv_line(columns).encode("utf-8-sig"))
            for start in range(0, len(frame), BLOCK_ROWS):
                block = frame.iloc[start : start + BLOCK_ROWS]
                fh.write(_block_bytes([_column_text(block[c], len(columns) == 1)
                                       for c in columns]))
    except OSError as exc:
        raise RunDirectoryError(f"cannot write {path}: {exc.strerror or exc}") from exc
    return path


def _csv_line(row: list[Any]) -> str:
    """One row as the csv module writes it in pandas' dialect (the header)."""
    buf = io.StringIO()
    csv.writer(buf, lineterminator=os.linesep).writerow(row)
    return buf.getvalue()


def _quoting_characters() -> str:
    """The characters among delimiter, quote, CR and LF that make this Python's csv module
    quote a field (QUOTE_MINIMAL, pandas' line terminator)."""
    return "".join(c for c in ',"\r\n' if _csv_line([f"a{c}b", ""]).startswith('"'))


def _byte_set(characters: str) -> np.ndarray:
    """bool [256], True at the (ASCII) characters' bytes: UTF-8 holds an ASCII byte only as that
    character, so a value starts with or holds one of them where its bytes do."""
    table = np.zeros(256, dtype=bool)
    table[np.frombuffer(characters.encode("ascii"), dtype=np.uint8)] = True
    return table


QUOTE_CHARACTERS = _quoting_characters()
_QUOTE_BYTES = _byte_set(QUOTE_CHARACTERS)
_FORMULA_BYTES = _byte_set(FORMULA_CHARACTERS)


def _column_text(column: pd.Series, only_column: bool) -> pa.Array:
    """The cells of one column (a block of rows) as CSV fields: a string array without nulls,
    guarded and quoted (see the module's table)."""
    dtype = column.dtype
    if isinstance(dtype, np.dtype) and (dtype in POSITIONAL or dtype.kind in "iub"):
        values = column.to_numpy()
        if dtype.kind == "f":
            text = _float_text(values)
        elif dtype.kind == "b":
            text = pc.if_else(pa.array(values), "True", "False")
        else:
            text = pc.cast(pa.array(values), pa.string())
        # Numbers never hold a quoting character; only a lone empty field is quoted.
        return _quoted(text, only_column) if only_column else text
    if isinstance(dtype, pd.StringDtype):
        text = pa.array(column.array)
    else:
        values = column.to_numpy(dtype=object)
        missing = pd.isna(values)
        kind = pd.api.types.infer_dtype(values[~missing], skipna=False)
        if kind == "boolean":  # e.g. a file property some rows lack
            flags = pa.array(np.where(missing, None, values), type=pa.bool_())
            return _quoted(pc.fill_null(pc.if_else(flags, "True", "False"), ""), only_column)
        if kind not in ("string", "empty"):
            cells = [_cell(v, m) for v, m in zip(values.tolist(), missing.tolist(), strict=True)]
            return _quoted(pa.array(cells, type=pa.string()), only_column)
        text = pa.array(np.where(missing, None, values), type=pa.string())
    if isinstance(text, pa.ChunkedArray):
        text = text.combine_chunks()
    text = pc.fill_null(text.cast(pa.string()), "")
    data, offsets = _utf8(text)
    starts = offsets[:-1]
    filled = offsets[1:] > starts
    guarded = np.zeros(len(text), dtype=bool)
    guarded[filled] = _FORMULA_BYTES[data[starts[filled]]]
    if guarded.any():
        text = pc.if_else(pa.array(guarded), pc.binary_join_element_wise("'", text, ""), text)
    return _quoted(text, only_column)


def _cell(value: Any, missing: bool) -> str:
    """A cell of a mixed object column as pandas and the csv module write it: missing empty,
    text as is (guarded), a float by repr (the module's rule), anything else by str."""
    if missing:
        return ""
    if isinstance(value, str):
        return "'" + value if value and value[0] in FORMULA_CHARACTERS else value
    return repr(value) if isinstance(value, float) else str(value)


def _quoted(text: pa.Array, only_column: bool) -> pa.Array:
    """Fields with a quoting character wrapped in quotes, quotes doubled (QUOTE_MINIMAL)."""
    needs = _holding(text, _QUOTE_BYTES)
    if only_column:  # the csv module quotes a row that is one empty field
        needs |= pc.equal(text, "").to_numpy(zero_copy_only=False)
    if not needs.any():
        return text
    wrapped = pc.binary_join_element_wise('"', pc.replace_substring(text, '"', '""'), '"', "")
    return pc.if_else(pa.array(needs), wrapped, text)


def _holding(text: pa.Array, table: np.ndarray) -> np.ndarray:
    """bool [n]: whether each value of a string array without nulls holds a byte that `table`
    (_byte_set) marks."""
    data, offsets = _utf8(text)
    seen = np.zeros(len(data) + 1, dtype=np.int64)
    np.cumsum(table[data], out=seen[1:])
    return seen[offsets[1:]] > seen[offsets[:-1]]


def _utf8(text: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """The bytes of a string array without nulls, uint8 [bytes], and where each value starts
    and ends in them, int64 [n + 1] from 0.

    Only the array's own bytes: a slice (a block of a longer column) shares its parent's
    buffer, and scanning the whole buffer for every block made the file quadratic in rows."""
    _, positions, data = text.buffers()
    if positions is None or data is None:  # no values, or only empty ones
        return np.zeros(0, dtype=np.uint8), np.zeros(len(text) + 1, dtype=np.int64)
    width = np.int64 if pa.types.is_large_string(text.type) else np.int32
    offsets = np.frombuffer(positions, dtype=width)[
        text.offset : text.offset + len(text) + 1].astype(np.int64)
    first = offsets[0]
    return np.frombuffer(data, dtype=np.uint8)[first : offsets[-1]], offsets - first


def _float_text(values: np.ndarray) -> pa.Array:
    """float32/float64 [n] as numpy's astype(str) writes them, NaN as empty (module doc)."""
    low, high = POSITIONAL[values.dtype]
    with np.errstate(invalid="ignore"):  # a signalling NaN's payload
        size = np.abs(values.astype(np.float64))
    text = pc.cast(pa.array(values), pa.string())
    text = pc.if_else(pc.match_substring(text, "."), text,
                      pc.binary_join_element_wise(text, ".0", ""))
    nan = np.isnan(values)
    other = ~((size == 0) | ((size >= low) & (size < high))) & ~nan
    if other.any():
        numpy_text = pa.array(values[other].astype(str).tolist(), type=pa.string())
        text = pc.replace_with_mask(text, pa.array(other), numpy_text)
    return pc.if_else(pa.array(nan), "", text) if nan.any() else text


def _block_bytes(columns: list[pa.Array]) -> memoryview:
    """The rows of a block (one field per column, each row ended by os.linesep) as UTF-8."""
    ended = pc.binary_join_element_wise(columns[-1], "", os.linesep)
    lines = pc.binary_join_element_wise(*columns[:-1], ended, ",")
    return memoryview(_utf8(lines)[0])
