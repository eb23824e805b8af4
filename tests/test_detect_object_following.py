"""The object-following gate (auditor.detect.object_following): each region's distances ranked
once, each group of members tested against the rest, equal to a Mann-Whitney U of the two
samples computed from scratch."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage, stats

from auditor.detect.fdr import either_test
from auditor.detect.flags import Flag
from auditor.detect.object_following import DISTANCE_STEPS, RegionDistances, objects_nearer_p


def _reference(cells, members, objects):
    """The gate as written for one region and group: distances of every object, then scipy's
    Mann-Whitney U of the members' against the others' (members bool [N])."""
    known = np.isfinite(objects[:, :2]).all(axis=1)
    near, rest = members & known, ~members & known
    if near.sum() < 3 or rest.sum() < 3:
        return math.nan
    gh, gw = cells.shape
    fine = np.kron(cells, np.ones((DISTANCE_STEPS, DISTANCE_STEPS), dtype=bool))
    distance = ndimage.distance_transform_edt(
        ~fine, sampling=(1 / (gh * DISTANCE_STEPS), 1 / (gw * DISTANCE_STEPS)))
    ys = np.clip((objects[known, 1] * fine.shape[0]).astype(int), 0, fine.shape[0] - 1)
    xs = np.clip((objects[known, 0] * fine.shape[1]).astype(int), 0, fine.shape[1] - 1)
    d = np.full(len(objects), np.nan)
    d[known] = np.maximum(distance[ys, xs] - objects[known, 2], 0.0)
    return float(stats.mannwhitneyu(d[near], d[rest], alternative="less").pvalue)


@pytest.mark.parametrize("seed", range(4))
def test_the_pooled_gate_equals_a_mann_whitney_of_each_group_from_scratch(seed):
    rng = np.random.default_rng(seed)
    n, gh, gw = int(rng.choice([12, 60, 400])), 4, 6
    objects = np.stack([rng.random(n), rng.random(n), rng.uniform(0, 0.3, n)], axis=1)
    if seed % 2:  # quantised centroids and radii: ties
        objects = np.round(objects * 4) / 4
    objects[rng.random(n) < 0.2, :2] = np.nan  # no mask
    distances = RegionDistances(objects, gh, gw)
    checked = 0
    for _ in range(40):
        cells = rng.random((gh, gw)) < 0.2
        cells[rng.integers(gh), rng.integers(gw)] = True
        size = int(rng.choice([0, 2, 3, 5, 9, n // 2, n - 2]))
        members = np.sort(rng.choice(n, size, replace=False))
        mask = np.zeros(n, dtype=bool)
        mask[members] = True
        expected = _reference(cells, mask, objects)
        got = objects_nearer_p(distances, cells, members)
        assert (math.isnan(got) and math.isnan(expected)) or got == expected
        checked += not math.isnan(expected)
    assert checked > 10


def test_objects_beside_the_region_are_nearer_by_hand():
    # 2x2 grid, region = the top-left cell. Five members' objects sit in it (distance 0), five
    # others' in the bottom-right cell: U = 0 for the members, the smallest possible.
    objects = np.array([[0.1, 0.1, 0.0]] * 5 + [[0.9, 0.9, 0.0]] * 5)
    cells = np.array([[True, False], [False, False]])
    p = objects_nearer_p(RegionDistances(objects, 2, 2), cells, np.arange(5))
    assert p == pytest.approx(stats.mannwhitneyu([0.0] * 5, [0.4 * math.sqrt(2) - 0.025] * 5,
                                                 alternative="less").pvalue)
    assert p < 0.01
    # Fewer than three members with a centroid: not tested.
    assert math.isnan(objects_nearer_p(RegionDistances(objects, 2, 2), cells, np.arange(2)))


def test_either_test_builds_only_the_flag_it_reports():
    built = []

    def builder(name):
        def build():
            built.append(name)
            return Flag(kind="fixed_location", severity="low", class_name="c", score=0.1,
                        message=name, evidence={})
        return build

    test = either_test("k", "c", [(0.01, None), (0.02, builder("b")), (0.03, builder("c"))])
    assert built == []
    assert test.raises
    assert test.flag.message == "b"
    assert test.flag is test.flag
    assert built == ["b"]
    assert test.p_value == pytest.approx(0.06)
    assert test.flag.evidence["p_value"] == test.p_value
    test = either_test("k", "c", [(0.01, None), (0.5, None)])
    assert test.flag is None
    assert test.p_value == pytest.approx(0.02)
