"""benchmarks/flag_calibration.py --quick runs end to end and reports every figure it publishes."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import flag_calibration


def test_planted_regions_are_where_the_shortcut_is_painted(tmp_path):
    carriers = flag_calibration.write_set(tmp_path, 3, 10, seed=0, kind="corner", share=0.3)
    assert sorted(carriers) == ["c0/000.png", "c0/001.png", "c0/002.png"]
    region = carriers["c0/000.png"]
    assert region[:flag_calibration.TAG, :flag_calibration.TAG].all()
    assert int(region.sum()) == flag_calibration.TAG ** 2
    assert flag_calibration.write_set(tmp_path / "clean", 2, 5, seed=0) == {}


def test_uses_counts_a_peak_in_or_one_map_cell_next_to_the_planted_region():
    frame = np.zeros((flag_calibration.SIZE, flag_calibration.SIZE), dtype=bool)
    frame[:2], frame[-2:], frame[:, :2], frame[:, -2:] = True, True, True, True
    cell = 1 / flag_calibration.MAP_GRID
    # A frame lights its maps up one cell in (the inner edge): that is using it.
    assert flag_calibration.near_region(1.5 * cell, 4.5 * cell, frame)
    assert flag_calibration.near_region(0.5 * cell, 0.5 * cell, frame)
    # Two cells in, or at the centre, is not.
    assert not flag_calibration.near_region(2.5 * cell, 4.5 * cell, frame)
    assert not flag_calibration.near_region(0.5, 0.5, frame)


def test_quick_mode_reports_false_flags_and_detection(tmp_path):
    out = flag_calibration.main(["--quick", "--json", str(tmp_path / "out.json"),
                                 "--cache", str(tmp_path / "cache")])
    clean = out["summary"]["false_flags_per_100_classes"]["2"]
    assert set(clean) == {"high", "medium", "low", "accuracy", "object_removed_accuracy",
                          "seeds", "per_kind", "without_masks"}
    assert set(clean["without_masks"]) == {"high", "medium", "low"}
    figures = [clean[k] for k in ("high", "medium", "low", "accuracy",
                                  "object_removed_accuracy")]
    assert all(math.isfinite(v) and v >= 0 for v in figures)
    assert len(list((tmp_path / "cache").glob("clean-2-0-*.pt"))) == 1  # weights cached
    row = out["shortcut"][0]
    assert row["carriers"] == round(0.8 * 40)
    assert 0.0 <= row["topk_precision"] <= 1.0
    assert isinstance(row["found"], bool)
    assert isinstance(row["found_by"], list)
    assert isinstance(row["cluster_candidate"], bool)
    assert row["uses_base"] is None or 0.0 <= row["uses_base"] <= 1.0
    detection = out["summary"]["detection"]["corner 80%"]
    assert np.isfinite(detection["topk_precision"])
    assert (tmp_path / "out.json").exists()
