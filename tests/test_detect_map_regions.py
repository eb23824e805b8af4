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


def test_maps_that_gather_on_their_own_object_are_not_a_finding(gen):
    # The same stripe, but each carrier's object covers the stripe except the cell its map
    # peaks in (a ring whose hole the map peaks in): the peaks are off the object, the mass is
    # on it (fg_enrichment far above 1). A class that looks at its objects is no finding.
    n = 20
    maps = diagonal_maps(n, gen)
    tops = maps.reshape(n, -1).argmax(dim=1)
    masks = torch.zeros(n, 28, 28, dtype=torch.bool)
    for i in range(n):
        for r in range(GRID):
            if r * GRID + GRID - 1 - r != int(tops[i]):
                masks[i, 4 * r:4 * r + 4, 4 * (GRID - 1 - r):4 * (GRID - r)] = True
    horse_masks = torch.cat([masks, corner_masks(80)])
    horse = torch.cat([maps, on_object(80, gen)])
    parts = [("horse", horse, horse_masks), ("cow", on_object(100, gen), corner_masks(100)),
             ("dog", on_object(100, gen), corner_masks(100))]
    samples, all_maps = build(parts)
    carriers = samples.iloc[:n]
    assert (carriers["peak_fg_cover"] < 0.5).all()
    assert (carriers["fg_enrichment"] > 1).all()
    flags = fixed_location_flags(samples, all_maps, ["horse", "cow", "dog"])
    assert all(f.evidence["region_found_by"] == "scan" for f in flags)


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


def _contrast_regions_one_class_at_a_time(hot, class_index, n_classes):
    """contrast_regions as it was written, a class at a time with scipy's labelling: the
    reference the all-classes rule must equal."""
    from scipy import ndimage

    flat = hot.reshape(len(hot), -1).astype(float)
    used = class_index >= 0
    counts = np.bincount(class_index[used], minlength=n_classes).astype(float)
    sums = np.zeros((n_classes, flat.shape[1]))
    np.add.at(sums, class_index[used], flat[used])
    total, n_total = sums.sum(axis=0), counts.sum()
    regions = []
    for c in range(n_classes):
        if counts[c] == 0 or n_total - counts[c] == 0:
            regions.append(None)
            continue
        contrast = (sums[c] / counts[c] - (total - sums[c]) / (n_total - counts[c]))
        contrast = contrast.reshape(hot.shape[1:])
        top = float(contrast.max())
        if top < map_regions.MIN_CONTRAST:
            regions.append(None)
            continue
        labels, _ = ndimage.label(contrast >= map_regions.REGION_LEVEL * top,
                                  structure=np.ones((3, 3)))
        region = labels == labels.flat[int(np.argmax(contrast))]
        regions.append(region if region.mean() <= map_regions.MAX_AREA else None)
    return regions


def test_every_class_region_at_once_equals_the_region_of_one_class_at_a_time():
    rng = np.random.default_rng(4)
    found = 0
    for _ in range(60):
        shape = tuple(rng.choice([2, 4, 7, 8, 12, 16], 2))
        n_classes = int(rng.integers(1, 30))
        class_index = rng.integers(-1, n_classes, int(rng.integers(1, 600)))
        # Sparse hot cells (snakes and blobs of several components) and a few dense classes.
        hot = rng.random((class_index.size, *shape)) < rng.choice([0.05, 0.2, 0.6])
        lit = rng.integers(0, max(n_classes, 1), 3)
        hot[np.isin(class_index, lit)] |= rng.random(shape) < 0.3
        expected = _contrast_regions_one_class_at_a_time(hot, class_index, n_classes)
        got = map_regions.contrast_regions(hot, class_index, n_classes)
        assert len(got) == n_classes
        for g, e in zip(got, expected, strict=True):
            assert (g is None) == (e is None)
            if e is not None:
                assert np.array_equal(g, e)
                found += 1
    assert found > 100


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


def _one_threshold(share_class, share_rest, area, off_class):
    """choose_threshold as it was written for one class (np.quantile, np.unique, a sort of the
    rest, one Fisher call): the reference the batched rule must equal."""
    finite = share_class[np.isfinite(share_class)]
    candidates = (np.unique(np.quantile(finite, map_regions.THRESHOLD_QUANTILES, method="lower"))
                  if finite.size else finite)
    candidates = candidates[candidates >= map_regions.MIN_LIFT * area]
    reach = share_class[:, None] >= candidates
    off_share = (reach & off_class[:, None]).sum(axis=0) / np.maximum(reach.sum(axis=0), 1)
    candidates = candidates[off_share >= 0.5]
    if candidates.size == 0:
        return None
    k = finite.size - np.searchsorted(np.sort(finite), candidates, side="left")
    rest = np.sort(share_rest[np.isfinite(share_rest)])
    k_rest = rest.size - np.searchsorted(rest, candidates, side="left")
    p = map_regions.fisher_greater(k, share_class.size, k_rest, share_rest.size)
    return float(candidates[int(np.argmin(p))])


def _random_problem(rng, dtype):
    n = int(rng.choice([0, 1, 2, 3, 8, 17, 40, 150]))
    # Quantised values give ties; some NaN (all-zero maps); float32 as the mass shares are.
    values = np.round(rng.beta(1, 3, n) * rng.choice([5, 20, 1000]), 0) / 20
    values[rng.random(n) < 0.1] = np.nan
    rest = np.round(rng.beta(1, 4, int(rng.integers(1, 300))) * 20, 0) / 20
    rest[rng.random(rest.size) < 0.05] = np.nan
    return (values.astype(dtype), rest.astype(dtype), float(rng.choice([0.0, 0.02, 0.07, 0.35])),
            rng.random(n) < rng.uniform(0.2, 1.0))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_batched_threshold_rule_equals_the_rule_for_one_class_at_a_time(dtype):
    rng = np.random.default_rng(7)
    problems = [_random_problem(rng, dtype) for _ in range(300)]
    expected = [_one_threshold(*problem) for problem in problems]
    assert sum(e is not None for e in expected) > 100  # the rule does choose thresholds
    # One class at a time through the public function ...
    assert [map_regions.choose_threshold(*problem) for problem in problems] == expected
    # ... and all 300 at once, each problem's rest counted on its own rest.
    values = np.concatenate([v for v, _, _, _ in problems])
    owner = np.repeat(np.arange(len(problems)), [v.size for v, _, _, _ in problems])
    found = map_regions.threshold_candidates(
        values, owner, len(problems), np.concatenate([o for _, _, _, o in problems]),
        np.array([a for _, _, a, _ in problems]))
    k_rest = np.array([map_regions.rest_reaching(problems[i][1], np.array([t]))[0]
                       for i, t in zip(found.problem, found.value, strict=True)])
    best, p = map_regions.pick_thresholds(
        found, k_rest, np.array([v.size for v, _, _, _ in problems]),
        np.array([r.size for _, r, _, _ in problems]), len(problems))
    got = [None if b < 0 else float(found.value[b]) for b in best]
    assert got == expected
    assert np.isnan(p[best < 0]).all()
    assert (p[best >= 0] <= 1).all()


def test_candidates_by_hand():
    # Problem 0: ten values 0.6, thirty 0.2 (all off the object), area 0.1: both distinct
    # quantile values pass the lift (>= 0.2), reaching 40 and 10. Problem 1: nothing finite.
    values = np.r_[np.full(10, 0.6), np.full(30, 0.2), np.nan, np.nan]
    owner = np.r_[np.zeros(40, dtype=int), [1, 1]]
    found = map_regions.threshold_candidates(values, owner, 2, np.ones(42, dtype=bool),
                                             np.array([0.1, 0.1]))
    assert found.problem.tolist() == [0, 0]
    assert found.value.tolist() == [0.2, 0.6]
    assert found.k.tolist() == [40, 10]


def test_the_pool_counts_leave_out_the_class_own_rows():
    rng = np.random.default_rng(3)
    values = rng.random((500, 4)).astype(np.float32)
    values[rng.random((500, 4)) < 0.05] = np.nan
    pool_class = rng.integers(0, 6, 500)
    block = [5, 2, 0, 3]
    counts = map_regions._PoolCounts(values, [np.flatnonzero(pool_class == c) for c in block])
    columns = rng.permutation(np.repeat(np.arange(4), 3))  # in any order
    thresholds = rng.random(12).astype(np.float32)
    expected = [int((values[pool_class != block[c], c] >= t).sum())
                for c, t in zip(columns, thresholds, strict=True)]
    assert counts.reaching(columns, thresholds).tolist() == expected
    assert counts.reaching(columns[:0], thresholds[:0]).tolist() == []
    assert counts.size.tolist() == [int((pool_class != c).sum()) for c in block]
