"""Regions found from the maps themselves (auditor.detect.map_regions) and their flags: a shape
outside the fixed scan is found with exactly its members; noise is not, at the nominal rate."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from auditor.detect import map_regions
from auditor.detect.location import fixed_location_flags, region_shape
from auditor.detect.suspicion import suspicion_scores
from tests.helpers.peak_maps import build, spot_maps

GRID = 7
#: The anti-diagonal of the 7x7 grid: (row r, column 6 - r).
DIAGONAL = np.fliplr(np.eye(GRID, dtype=bool))


def corner_masks(n: int) -> torch.Tensor:
    """Objects in the top-left 12x12 pixels of 28 (cells 0-2 of 7), off the anti-diagonal."""
    masks = torch.zeros(n, 28, 28, dtype=torch.bool)
    masks[:, :12, :12] = True
    return masks


def on_object(n: int, gen: torch.Generator) -> torch.Tensor:
    """Maps that peak on the object: a random cell of rows and columns 0-2."""
    return spot_maps([tuple(x) for x in torch.randint(0, 3, (n, 2), generator=gen).tolist()],
                     gen)


def diagonal_maps(n: int, gen: torch.Generator) -> torch.Tensor:
    """Maps lit along the anti-diagonal (a stripe no window, band or frame of the scan holds),
    each peaking at a random cell of it."""
    maps = 0.1 * torch.rand(n, GRID, GRID, generator=gen)
    rows = torch.arange(GRID)
    maps[:, rows, GRID - 1 - rows] += 0.7 + 0.2 * torch.rand(n, GRID, generator=gen)
    top = torch.randint(0, GRID, (n,), generator=gen)
    maps[torch.arange(n), top, GRID - 1 - top] = 1.2
    return maps


@pytest.fixture
def gen() -> torch.Generator:
    return torch.Generator().manual_seed(0)


def test_a_diagonal_stripe_on_20_percent_of_a_class_is_found_with_exactly_its_members(gen):
    horse = torch.cat([diagonal_maps(20, gen), on_object(80, gen)])
    parts = [("horse", horse, corner_masks(100)), ("cow", on_object(100, gen), corner_masks(100)),
             ("dog", on_object(100, gen), corner_masks(100))]
    samples, maps = build(parts)
    flags = fixed_location_flags(samples, maps, ["horse", "cow", "dog"])
    assert [f.class_name for f in flags] == ["horse"]
    flag = flags[0]
    assert flag.evidence["region_found_by"] == "maps"
    carriers = [f"horse/{i:03d}.png" for i in range(20)]
    assert sorted(flag.evidence["members"]) == carriers
    assert flag.evidence["share_of_class"] == pytest.approx(0.2)
    assert np.array_equal(np.array(flag.evidence["scan_cells"], dtype=bool), DIAGONAL)
    # The region to blank holds the whole stripe.
    assert np.array(flag.evidence["region_cells"], dtype=bool)[DIAGONAL].all()
    assert flag.evidence["test_half"]["k"] == 10
    # The members lead the class's suspects.
    samples["suspicion"] = suspicion_scores(samples, flags)
    horse_rows = samples[samples["label"] == "horse"]
    top = horse_rows.sort_values("suspicion", ascending=False).head(20)
    assert sorted(top["rel_path"]) == carriers


def test_the_fixed_scan_alone_names_only_part_of_the_stripe(gen, monkeypatch):
    # Without the regions found in the maps (every class untested), no window, band or frame
    # of the scan holds the stripe: at best a window with a few of its peaks.
    horse = torch.cat([diagonal_maps(20, gen), on_object(80, gen)])
    parts = [("horse", horse, corner_masks(100)), ("cow", on_object(100, gen), corner_masks(100)),
             ("dog", on_object(100, gen), corner_masks(100))]
    samples, maps = build(parts)
    monkeypatch.setattr("auditor.detect.location.map_regions",
                        lambda grid, index, off, n: [None] * n)
    flags = fixed_location_flags(samples, maps, ["horse", "cow", "dog"])
    assert all(f.evidence["region_found_by"] == "scan" for f in flags)
    assert all(len(f.evidence["members"]) <= 10 for f in flags)


def test_spread_maps_raise_no_flag(gen):
    spread = [(name, spot_maps([tuple(x) for x in torch.randint(0, GRID, (100, 2),
                                                                generator=gen).tolist()],
                               gen), None) for name in ("a", "b", "c")]
    samples, maps = build(spread)
    assert fixed_location_flags(samples, maps, ["a", "b", "c"]) == []


def test_cross_fitted_p_values_hold_their_level_on_noise():
    # 60 data sets of 4 classes x 40 maps of pure noise: the search over shapes and thresholds
    # on one half must not make the other half's test liberal. Under the null a valid p is
    # below 0.05 in at most ~5% of tests (Fisher is conservative; the two directions' Bonferroni
    # more so); testing on the choosing samples instead gives p < 0.05 in most of them.
    rng = np.random.default_rng(0)
    small = 0
    tests = 0
    for _ in range(60):
        grid = rng.random((160, GRID, GRID))
        grid /= grid.reshape(160, -1).max(axis=1)[:, None, None]
        found = map_regions.map_regions(grid, np.repeat(np.arange(4), 40),
                                        np.ones(160, dtype=bool), 4)
        tests += len(found)
        small += sum(f is not None and f.p_value < 0.05 for f in found)
    assert small <= 0.05 * tests


def test_halves_alternate_within_each_class():
    classes = np.array([0, 1, 0, 1, 0, -1, 1, 0])
    first = map_regions.halves(classes)
    # class 0 at positions 0, 2, 4, 7 -> A, B, A, B; class 1 at 1, 3, 6 -> A, B, A.
    assert first.tolist() == [True, True, False, False, True, False, True, False]


def test_the_region_is_the_connected_cells_of_largest_contrast():
    hot = np.zeros((40, 5, 5), dtype=bool)
    hot[:20, 0, :] = True  # the class: its whole top row
    hot[:20, 4, 4] = True  # and a lone cell that the others light up as often
    hot[20:, 4, 4] = True
    regions = map_regions.contrast_regions(hot, np.repeat([0, 1], 20), 2)
    expected = np.zeros((5, 5), dtype=bool)
    expected[0] = True
    assert np.array_equal(regions[0], expected)
    assert regions[1] is None  # nothing the second class lights up more than the first


def test_mass_shares_by_hand():
    grid = np.zeros((2, 2, 2))
    grid[0] = [[1.0, 1.0], [2.0, 0.0]]
    region = np.array([[[True, False], [True, False]]])
    shares = map_regions.mass_shares(grid, region)
    assert shares[0, 0] == pytest.approx(3 / 4)
    assert np.isnan(shares[1, 0])  # an all-zero map has no share


@pytest.mark.parametrize(("rows", "expected"), [
    (["1111111", "0000000", "0000000", "0000000", "0000000", "0000000", "0000000"], "band"),
    (["0000000", "0000000", "0111110", "1111111", "0000000", "0000000", "0000000"], "band"),
    (["1111111", "1000001", "1000001", "1000001", "1000001", "1000001", "1111111"], "frame"),
    (["1100000", "1100000", "0000000", "0000000", "0000000", "0000000", "0000000"], "window"),
    (["0000001", "0000010", "0000100", "0001000", "0010000", "0100000", "1000000"], "region"),
])
def test_region_shapes_in_words(rows, expected):
    cells = np.array([[c == "1" for c in row] for row in rows])
    assert region_shape(cells) == expected


def test_members_read_the_whole_class_and_error_rows_are_left_out(gen):
    horse = torch.cat([diagonal_maps(20, gen), on_object(80, gen)])
    parts = [("horse", horse, corner_masks(100)), ("cow", on_object(100, gen), corner_masks(100))]
    samples, maps = build(parts)
    broken = samples.iloc[:3].copy()
    broken["status"] = "error"
    broken["rel_path"] = [f"broken/{i}.png" for i in range(3)]
    samples = pd.concat([broken, samples], ignore_index=True)
    flags = fixed_location_flags(samples, maps, ["horse", "cow"])
    assert [f.class_name for f in flags] == ["horse"]
    assert len(flags[0].evidence["members"]) == 20


def test_the_threshold_splits_where_the_class_differs_and_stays_above_a_flat_map():
    # 10 of 40 class maps put 0.6 of their mass in the region, the rest 0.2 like every other
    # map: the best split keeps exactly the ten.
    share_class = np.r_[np.full(10, 0.6), np.full(30, 0.2)]
    share_rest = np.full(80, 0.2)
    off = np.ones(40, dtype=bool)
    assert map_regions.choose_threshold(share_class, share_rest, 0.1, off) == pytest.approx(0.6)
    # A map as flat as the grid puts the region's area share there: never a member.
    assert map_regions.choose_threshold(share_class, share_rest, 0.6, off) is None
    # Members must mostly peak off the object: where the ten peak on it, they are never the
    # members alone; only the split that keeps all 40 (30 off the object) is left.
    off[:10] = False
    assert map_regions.choose_threshold(share_class, share_rest, 0.1, off) == pytest.approx(0.2)
