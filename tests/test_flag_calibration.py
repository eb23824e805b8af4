"""benchmarks/flag_calibration.py --quick runs end to end and reports every figure it publishes."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import flag_calibration


def test_planted_regions_are_where_the_shortcut_is_painted():
    rng = np.random.default_rng(0)
    data = flag_calibration.clean_arrays(3, 10, rng, kind="corner", share=0.3)
    assert np.flatnonzero(data.carriers).tolist() == [0, 1, 2]  # the first 30% of class c0
    region = data.regions[0]
    tag = flag_calibration.TAG
    assert region[:tag, :tag].all()
    assert int(region.sum()) == tag ** 2
    assert (data.images[0][:tag, :tag] == 255).all()
    assert not (data.masks[0] & region).any()  # the tag is no part of the object
    clean = flag_calibration.clean_arrays(2, 5, np.random.default_rng(0))
    assert not clean.carriers.any()
    # The clean draws are the same with or without a shortcut elsewhere in the set.
    again = flag_calibration.clean_arrays(2, 5, np.random.default_rng(0), kind="corner",
                                          share=0.0)
    assert (again.images == clean.images).all()


def test_background_colour_is_painted_on_the_background_only_and_pasted_the_same_way():
    data = flag_calibration.clean_arrays(2, 5, np.random.default_rng(1), kind="background",
                                         share=0.4)
    first = data.regions[0]
    assert (first == ~data.masks[0]).all()
    assert (data.images[0][first] == flag_calibration._magenta(data.backgrounds[0])[first]).all()
    pasted = flag_calibration.pasted(data, "background", np.random.default_rng(2))
    plain = 7  # a sample of class c1
    assert not data.carriers[plain]
    on = data.masks[plain]
    assert (pasted[plain][on] == data.images[plain][on]).all()  # the object is untouched
    assert (pasted[plain][~on] == flag_calibration._magenta(data.backgrounds[plain])[~on]).all()


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
    assert 0.0 <= row["carrier_accuracy"] <= 1.0
    assert 0.0 <= row["paste_to_c0"] <= 1.0
    assert row["learned"] == (row["carrier_accuracy"] >= flag_calibration.LEARNED)
    assert len(list((tmp_path / "cache").glob("shortcut-corner-0.8-4-0-*.pt"))) == 1
    detection = out["summary"]["detection"]["corner 80%"]
    assert np.isfinite(detection["topk_precision"])
    assert detection["runs"] == 1
    assert detection["learned"] in (0, 1)
    assert detection["found_where_learned"] <= detection["learned"]
    assert (tmp_path / "out.json").exists()
