"""Bytes of samples kept inside container files: a cell of a Parquet or Arrow table, a member
of a tar shard. Read on demand, never extracted to disk.

A ``TableCell`` names a row of one column. The cell holds the encoded image as bytes, or the
Hugging Face ``Image`` struct ``{bytes, path}``; a struct whose bytes are null (an image saved
by reference) is read from its ``path``, relative to the table's folder when not absolute.
A ``TarMember`` is the byte range of one member of an uncompressed tar: one seek, one read.

Each process keeps the tables and row groups it read last (loader workers are processes, and
read their samples in index order, so a row group is decoded about once per worker).
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import pyarrow as pa
import pyarrow.parquet as pq

from auditor.data.decode import read_file_bytes
from auditor.errors import DecodeError

if TYPE_CHECKING:
    from auditor.data.sources import SampleRef

# Row groups kept per process: an image column and a mask column of the group being read.
_ROW_GROUPS_CACHED = 4
_TABLES_CACHED = 8


@dataclass(frozen=True)
class TableCell:
    """One cell of a Parquet file (``row_group``, ``row`` within it) or of a saved Arrow
    stream (``row_group`` 0, ``row`` in the file); ``name`` is the file name the bytes had
    ("" when the table did not keep one)."""

    container: str
    kind: Literal["parquet", "arrow"]
    column: str
    row_group: int
    row: int
    name: str = ""


@dataclass(frozen=True)
class TarMember:
    """The bytes of one tar member: ``size`` bytes from ``offset`` of the shard file."""

    container: str
    offset: int
    size: int
    name: str


Member = TableCell | TarMember


@functools.lru_cache(maxsize=_ROW_GROUPS_CACHED)
def _parquet_group(path: str, row_group: int, column: str) -> pa.Array:
    """One column of one row group of a Parquet file, as one array."""
    table = pq.ParquetFile(path).read_row_group(row_group, columns=[column])
    return table.column(0).combine_chunks()


@functools.lru_cache(maxsize=_TABLES_CACHED)
def arrow_table(path: str) -> pa.Table:
    """A saved Arrow stream (``datasets.save_to_disk``), memory-mapped: no copy is made."""
    return pa.ipc.open_stream(pa.memory_map(path, "r")).read_all()


def _cell_value(cell: TableCell) -> object:
    if cell.kind == "parquet":
        return _parquet_group(cell.container, cell.row_group, cell.column)[cell.row].as_py()
    return arrow_table(cell.container).column(cell.column)[cell.row].as_py()


def _read_cell(cell: TableCell) -> bytes:
    try:
        value = _cell_value(cell)
    except (OSError, pa.ArrowException) as exc:
        raise DecodeError(f"cannot read row {cell.row} of {cell.container!r}: {exc}") from exc
    if isinstance(value, dict):  # the Hugging Face Image struct {bytes, path}
        if value.get("bytes"):
            return bytes(value["bytes"])
        value = value.get("path")
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    if isinstance(value, str) and value:
        folder = os.path.dirname(cell.container)
        return read_file_bytes(os.path.join(folder, os.path.expanduser(value)))
    raise DecodeError(f"empty cell: column {cell.column!r} of row {cell.row} holds no image")


def _read_tar(member: TarMember) -> bytes:
    try:
        with open(member.container, "rb") as handle:
            handle.seek(member.offset)
            data = handle.read(member.size)
    except OSError as exc:
        raise DecodeError(f"cannot read shard {member.container!r}: {exc.strerror or exc}") from exc
    if len(data) != member.size:
        raise DecodeError(
            f"truncated shard: {member.name!r} needs {member.size} bytes, "
            f"{len(data)} are left in {member.container!r}"
        )
    return data


def read_member(member: Member) -> bytes:
    """The encoded bytes a member names.

    Raises:
        DecodeError: the container cannot be read or the cell holds no image.
    """
    if isinstance(member, TarMember):
        return _read_tar(member)
    return _read_cell(member)


def sample_bytes(ref: SampleRef) -> tuple[bytes, str]:
    """(encoded bytes, the file name they had) of a sample's image: its member's or its
    file's.

    Raises:
        DecodeError: the bytes cannot be read.
    """
    if ref.member is None:
        return read_file_bytes(ref.path), ref.path
    return read_member(ref.member), ref.member.name
