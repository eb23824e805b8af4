"""The run directory: chunks, merge, resume checks, lock, random access to maps."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from auditor import store
from auditor.errors import RunDirectoryError
from auditor.store import RunLock, RunReader, RunWriter

FP = {"config": "c1", "model": "m1", "data": "d1"}


def _chunk(
    indices: list[int], ok: list[bool]
) -> tuple[pd.DataFrame, np.ndarray, dict[str, np.ndarray]]:
    rows = pd.DataFrame({"index": indices, "status": ["ok" if o else "error" for o in ok]})
    map_rows = np.full(len(indices), -1)
    map_rows[np.array(ok)] = np.arange(sum(ok))
    kept = [i for i, o in zip(indices, ok, strict=True) if o]
    maps = np.stack([np.full((3, 4), float(i), dtype=np.float16) for i in kept])
    return rows, map_rows, {"maps/gradcam": maps}


def test_chunks_merge_sorted_and_maps_read_back_one_at_a_time(tmp_path: Path) -> None:
    writer = RunWriter(tmp_path / "run", FP)
    writer.write_chunk(writer.next_part_name(), *_chunk([3, 4, 5], [True, False, True]))
    writer.write_chunk(writer.next_part_name(), *_chunk([0, 1, 2], [True, True, True]))
    writer.merge()
    reader = RunReader(tmp_path / "run")
    assert reader.samples()["index"].tolist() == [0, 1, 2, 3, 4, 5]
    assert reader.load_map(5, "gradcam")[0, 0] == 5.0
    assert reader.load_map(4, "gradcam") is None
    many = reader.load_maps([2, 4, 3], "gradcam")
    assert many.shape == (3, 3, 4)
    assert many[0, 0, 0] == 2.0
    assert np.isnan(many[1]).all()
    assert many[2, 0, 0] == 3.0


def test_resume_knows_done_indices_and_refuses_another_run(tmp_path: Path) -> None:
    run = tmp_path / "run"
    writer = RunWriter(run, FP)
    writer.write_chunk(writer.next_part_name(), *_chunk([0, 1], [True, True]))
    again = RunWriter(run, FP)
    assert again.done_indices() == {0, 1}
    assert again.next_part_name() == "r000-000001"
    with pytest.raises(RunDirectoryError, match="differs in: model"):
        RunWriter(run, {**FP, "model": "m2"})
    fresh = RunWriter(run, {**FP, "model": "m2"}, overwrite=True)
    assert fresh.done_indices() == set()


def test_non_run_directory_is_not_clobbered(tmp_path: Path) -> None:
    (tmp_path / "precious.txt").write_text("keep me")
    with pytest.raises(RunDirectoryError, match="not an auditor run directory"):
        RunWriter(tmp_path, FP)
    assert (tmp_path / "precious.txt").read_text() == "keep me"


def test_failed_write_keeps_earlier_chunks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    writer = RunWriter(tmp_path / "run", FP)
    writer.write_chunk(writer.next_part_name(), *_chunk([0, 1], [True, True]))
    real = store._atomic_write_bytes

    def disk_full(path: Path, data: bytes) -> None:
        if path.suffix == ".parquet":
            raise RunDirectoryError(f"cannot write {path}: No space left on device")
        real(path, data)

    monkeypatch.setattr(store, "_atomic_write_bytes", disk_full)
    with pytest.raises(RunDirectoryError, match="No space left"):
        writer.write_chunk(writer.next_part_name(), *_chunk([2, 3], [True, True]))
    monkeypatch.setattr(store, "_atomic_write_bytes", real)
    assert writer.done_indices() == {0, 1}
    assert not list((tmp_path / "run" / "parts").glob(".*tmp*"))
    writer.write_chunk(writer.next_part_name(), *_chunk([2, 3], [True, True]))
    writer.merge()
    assert RunReader(tmp_path / "run").samples()["index"].tolist() == [0, 1, 2, 3]


def test_lock_refuses_a_second_live_writer_and_takes_over_a_dead_one(tmp_path: Path) -> None:
    (tmp_path / ".lock").write_text(str(os.getppid()))
    with pytest.raises(RunDirectoryError, match="in use by another audit"):
        RunLock(tmp_path).acquire()
    (tmp_path / ".lock").write_text("999999999")
    with RunLock(tmp_path):
        assert (tmp_path / ".lock").read_text() == str(os.getpid())
    assert not (tmp_path / ".lock").exists()


def test_json_is_strict_with_nan_as_null(tmp_path: Path) -> None:
    store.write_json(tmp_path / "s.json", {"a": float("nan"), "b": np.float32(0.5), "c": (1, 2)})
    assert (tmp_path / "s.json").read_text().replace(" ", "").replace(
        "\n", ""
    ) == '{"a":null,"b":0.5,"c":[1,2]}'


def test_merge_joins_parts_of_different_columns_as_pandas_concat_does(tmp_path: Path) -> None:
    # Parts as the pass writes them from file fingerprints: a property absent from a whole
    # chunk, whole numbers in one chunk and NaN gaps in another, booleans with gaps, text with
    # gaps, all-missing text; index 1 stored twice (the first part's row wins).
    parts = [
        pd.DataFrame({"index": [4, 1], "file_width": [32, 64], "file_has_alpha": [True, False],
                      "file_format": ["PNG", "JPEG"], "file_chroma": [None, None]}),
        pd.DataFrame({"index": [0, 1, 2], "file_width": [16.0, np.nan, 8.0],
                      "file_has_alpha": [True, None, False], "file_format": ["=x", None, "é"],
                      "file_quality": [90.0, np.nan, 75.0], "file_chroma": ["4:2:0", None, "x"]}),
        pd.DataFrame({"index": [3], "file_format": ["BMP"]}),
    ]
    writer = RunWriter(tmp_path / "run", FP)
    for rows in parts:
        writer.write_chunk(writer.next_part_name(), rows, np.full(len(rows), -1), {})
    writer.merge()
    merged = RunReader(tmp_path / "run").samples()
    # The reference: pandas' concat of the parts as read, the first of each index, sorted,
    # written and read back.
    expected = pd.concat([pd.read_parquet(p) for p in sorted((tmp_path / "run" / "parts")
                                                            .glob("*.parquet"))],
                         ignore_index=True)
    expected = expected.drop_duplicates("index").sort_values("index").reset_index(drop=True)
    expected.to_parquet(tmp_path / "expected.parquet", index=False)
    pd.testing.assert_frame_equal(merged, pd.read_parquet(tmp_path / "expected.parquet"),
                                  check_exact=True)
    assert merged["index"].tolist() == [0, 1, 2, 3, 4]
    assert merged["file_width"].tolist()[:2] == [16.0, 64.0]  # index 1 from the first part
    assert list(merged.columns[:6]) == ["index", "file_width", "file_has_alpha", "file_format",
                                        "file_chroma", "map_part"]
