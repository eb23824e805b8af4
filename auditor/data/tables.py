"""Table sources -> DatasetIndex: Parquet files and Hugging Face data sets saved to disk.

DATA is a ``.parquet`` file, a folder whose files directly inside are ``.parquet`` (read in
name order), or a folder written by ``datasets.Dataset.save_to_disk`` (``state.json`` and its
Arrow files, memory-mapped). One row is one sample, in table order.

Columns: the image column (``image`` unless ``image_column`` says otherwise) holds the encoded
image as bytes, a path (relative to the table's folder), or the Hugging Face ``Image`` struct
``{bytes, path}``; the label column (``label``) holds class indices or names (rules in
``auditor.data.labels``; a ``ClassLabel`` feature's names become the classes). Optional: a
``mask`` column in the same forms as the image, and a box ``x0, y0, x1, y1`` (pixels of the
upright original image, all four columns or none).

Each row's ``path`` is ``TABLE#ROW`` (ROW counted from 0 in that file); pixels are read
from the table only when the sample is loaded.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

import pyarrow as pa
import pyarrow.parquet as pq

from auditor.data.labels import resolve_labels
from auditor.data.members import TableCell, arrow_table
from auditor.data.sources import BOX_COLUMNS, DatasetIndex, SampleRef
from auditor.errors import DataError

MASK_COLUMN = "mask"


@dataclass(frozen=True)
class _Table:
    """One file of a table source and the row count of each of its row groups."""

    path: str
    kind: Literal["parquet", "arrow"]
    schema: pa.Schema
    group_rows: tuple[int, ...]
    features: dict[str, Any]


def is_saved_dataset(folder: str) -> bool:
    """Whether a folder was written by ``save_to_disk`` (a Dataset or a DatasetDict)."""
    return os.path.isfile(os.path.join(folder, "state.json")) or os.path.isfile(
        os.path.join(folder, "dataset_dict.json"))


def parquet_files(location: str) -> list[str]:
    """The Parquet files of DATA: the file itself, or a folder's ``*.parquet`` by name."""
    if os.path.isfile(location):
        return [location] if location.lower().endswith(".parquet") else []
    if not os.path.isdir(location):
        return []
    return sorted(
        os.path.join(location, name) for name in os.listdir(location)
        if name.lower().endswith(".parquet") and not name.startswith(".")
    )


def _hf_features(schema: pa.Schema) -> dict[str, Any]:
    """The Hugging Face features a table declares in its schema metadata ({} when none)."""
    raw = (schema.metadata or {}).get(b"huggingface")
    if not raw:
        return {}
    try:
        features = json.loads(raw).get("info", {}).get("features", {})
    except (ValueError, AttributeError):
        return {}
    return features if isinstance(features, dict) else {}


def _read_json(path: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read {path!r}: {exc}") from exc
    if not isinstance(data, dict):
        raise DataError(f"{path!r} does not hold a JSON object")
    return data


def _saved_dataset_tables(folder: str) -> list[_Table]:
    dict_file = os.path.join(folder, "dataset_dict.json")
    if os.path.isfile(dict_file):
        splits = _read_json(dict_file).get("splits", [])
        raise DataError(
            f"{folder!r} holds several splits ({', '.join(map(str, splits))}); give one of "
            f"them as DATA, e.g. {os.path.join(folder, str(splits[0]) if splits else 'train')}"
        )
    state = _read_json(os.path.join(folder, "state.json"))
    info_file = os.path.join(folder, "dataset_info.json")
    info = _read_json(info_file) if os.path.isfile(info_file) else {}
    tables = []
    for entry in state.get("_data_files", []):
        path = os.path.join(folder, str(entry.get("filename", "")))
        try:
            table = arrow_table(path)
        except (OSError, pa.ArrowException) as exc:
            raise DataError(f"cannot read the Arrow file {path!r}: {exc}") from exc
        features = _hf_features(table.schema) or info.get("features", {})
        tables.append(_Table(path, "arrow", table.schema, (table.num_rows,), features))
    if not tables:
        raise DataError(f"{folder!r} (a saved data set) lists no Arrow files in state.json")
    return tables


def _parquet_tables(files: list[str]) -> list[_Table]:
    tables = []
    for path in files:
        try:
            meta = pq.ParquetFile(path).metadata
            schema = meta.schema.to_arrow_schema()
        except (OSError, pa.ArrowException) as exc:
            raise DataError(f"cannot read the Parquet file {path!r}: {exc}") from exc
        groups = tuple(meta.row_group(i).num_rows for i in range(meta.num_row_groups))
        tables.append(_Table(path, "parquet", schema, groups, _hf_features(schema)))
    return tables


def _column(table: _Table, name: str) -> list[Any]:
    """The values of a column (or ``column.field`` of a struct) as Python objects."""
    column, _, child = name.partition(".")
    if table.kind == "parquet":  # a struct's field alone is read, not the whole struct
        values = pq.ParquetFile(table.path).read(columns=[name]).column(0).combine_chunks()
    else:
        values = arrow_table(table.path).column(column).combine_chunks()
    return (values.field(child) if child else values).to_pylist()


def _image_kind(table: _Table, column: str) -> Literal["bytes", "path", "struct"]:
    field = table.schema.field(column)
    kind = field.type
    if pa.types.is_struct(kind) and kind.get_field_index("bytes") >= 0:
        return "struct"
    if pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
        return "bytes"
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return "path"
    raise DataError(
        f"column {column!r} of {table.path!r} has type {kind}; an image column holds bytes, "
        "a path, or the Hugging Face Image struct {bytes, path}"
    )


def _plain_label(value: Any) -> int | str | None:
    if value is None or isinstance(value, int | str):
        return value
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    return str(value)


def _class_names(tables: list[_Table], label_column: str) -> list[str] | None:
    feature = tables[0].features.get(label_column, {})
    if isinstance(feature, dict) and feature.get("_type") == "ClassLabel":
        return [str(name) for name in feature.get("names", [])] or None
    return None


def _require(table: _Table, column: str, option: str) -> None:
    if column not in table.schema.names:
        raise DataError(
            f"{table.path!r} has no column {column!r}; columns found: "
            f"{', '.join(table.schema.names)} (name the right one with {option})"
        )


def _locations(table: _Table) -> list[tuple[int, int]]:
    """(row group, row within it) of every row of a table."""
    return [(group, row) for group, rows in enumerate(table.group_rows) for row in range(rows)]


def _cells(
    table: _Table, column: str, locations: list[tuple[int, int]], root: str,
    allow_outside: bool,
) -> tuple[list[TableCell | None], list[str | None]]:
    """For each row: the cell holding its bytes, or (a path column) the file it names."""
    kind = _image_kind(table, column)
    if kind == "path":
        folder = os.path.dirname(table.path)
        paths = [os.path.normpath(os.path.join(folder, value)) if value else None
                 for value in _column(table, column)]
        outside = [p for p in paths if p and os.path.commonpath([root, p]) != root]
        if outside and not allow_outside:
            raise DataError(
                f"paths in column {column!r} of {table.path!r} lie outside {root!r} (e.g. "
                f"{outside[0]!r}); move the files or pass --allow-outside if that is intended"
            )
        return [None] * len(paths), paths
    names = _column(table, f"{column}.path") if kind == "struct" else [None] * len(locations)
    cells: list[TableCell | None] = [
        TableCell(table.path, table.kind, column, group, row, os.path.basename(name or ""))
        for (group, row), name in zip(locations, names, strict=True)
    ]
    return cells, [None] * len(cells)


def _boxes(table: _Table, n: int) -> list[tuple[float, float, float, float] | None]:
    if not all(name in table.schema.names for name in BOX_COLUMNS):
        return [None] * n
    columns = [_column(table, name) for name in BOX_COLUMNS]
    boxes: list[tuple[float, float, float, float] | None] = []
    for x0, y0, x1, y1 in zip(*columns, strict=True):
        values = (x0, y0, x1, y1)
        usable = all(isinstance(v, int | float) and math.isfinite(v) for v in values)
        boxes.append((float(x0), float(y0), float(x1), float(y1))
                     if usable and x1 > x0 and y1 > y0 else None)
    return boxes


def open_table_source(
    location: str,
    classes: Sequence[str] | None,
    image_column: str = "image",
    label_column: str = "label",
    allow_outside: bool = False,
) -> DatasetIndex:
    """Index a Parquet file or folder, or a saved Hugging Face data set (module docstring).

    Raises:
        DataError: no table, a missing column, labels outside the classes.
    """
    saved = os.path.isdir(location) and is_saved_dataset(location)
    tables = _saved_dataset_tables(location) if saved else _parquet_tables(
        parquet_files(location))
    if not tables:
        raise DataError(f"no Parquet files directly in {location!r}")
    root = location if os.path.isdir(location) else os.path.dirname(location)
    raw_labels: list[int | str | None] = []
    unlabelled: list[SampleRef] = []  # label filled in once every table's labels are read
    for table in tables:
        _require(table, image_column, "--image-column")
        _require(table, label_column, "--label-column")
        locations = _locations(table)
        cells, paths = _cells(table, image_column, locations, root, allow_outside)
        mask_cells, mask_paths = (
            _cells(table, MASK_COLUMN, locations, root, allow_outside)
            if MASK_COLUMN in table.schema.names else ([None] * len(cells), [None] * len(cells)))
        boxes = _boxes(table, len(cells))
        raw_labels.extend(_plain_label(v) for v in _column(table, label_column))
        rel_table = os.path.relpath(table.path, root)
        for row, (cell, path, mask_cell, mask_path, box) in enumerate(
                zip(cells, paths, mask_cells, mask_paths, boxes, strict=True)):
            unlabelled.append(SampleRef(
                index=len(unlabelled), path=path or f"{table.path}#{row}",
                rel_path=os.path.relpath(path, root) if path else f"{rel_table}#{row}",
                label=-1, mask_path=mask_path, box=box, member=cell, mask_member=mask_cell,
            ))
    names, labels, warnings = resolve_labels(
        raw_labels, classes, _class_names(tables, label_column), location)
    samples = [replace(ref, label=label)
               for ref, label in zip(unlabelled, labels, strict=True)]
    if not samples:
        raise DataError(f"{location!r} holds no rows")
    return DatasetIndex(root=root, classes=names, samples=samples, warnings=warnings,
                        source="arrow" if saved else "parquet")
