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
    merged = writer.merge()
    assert merged["index"].tolist() == [0, 1, 2, 3, 4, 5]
    reader = RunReader(tmp_path / "run")
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
    assert writer.merge()["index"].tolist() == [0, 1, 2, 3]


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
