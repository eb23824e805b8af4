"""fixed_location flags: a planted corner hot-spot is found, a centred object is not."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from auditor.detect import location
from auditor.detect.attention import degenerate_maps_flags
from auditor.detect.band_mass import middle_bands, off_disc_shares, pooled_rest
from auditor.detect.location import (
    describe_region,
    fixed_location_flags,
    object_discs,
    peak_grid_counts,
)
from auditor.detect.map_regions import grow, pooled_rows
from auditor.errors import UsageError
from tests.helpers.peak_maps import SIZE, build, centre_masks, spot_maps


@pytest.fixture
def gen() -> torch.Generator:
    return torch.Generator().manual_seed(0)


def spread_cells(n: int, gen: torch.Generator) -> list[tuple[int, int]]:
    return [tuple(x) for x in torch.randint(0, 7, (n, 2), generator=gen).tolist()]


@pytest.mark.parametrize("with_masks", [False, True])
def test_planted_top_right_hot_spot_is_flagged(gen, with_masks):
    tag = [(0, 6)] * 17 + spread_cells(5, gen)  # 17 of 22 peak at the tag
    horse = spot_maps(tag, gen)
    zebra = spot_maps(spread_cells(22, gen), gen)
    masks = centre_masks(22) if with_masks else None
    samples, maps = build([("horse", horse, masks), ("zebra", zebra, masks)])
    flags = fixed_location_flags(samples, maps, ["horse", "zebra"])
    assert [f.class_name for f in flags] == ["horse"]
    flag = flags[0]
    x0, y0, x1, y1 = flag.evidence["region_box"]
    # The tag cell (row 0, col 6 of 7) spans x in [6/7, 1], y in [0, 1/7].
    assert x0 <= 6 / 7
    assert x1 == 1.0
    assert y0 == 0.0
    assert y1 >= 1 / 7
    assert flag.evidence["k"] >= 17
    assert flag.score == pytest.approx(flag.evidence["k"] / 22)
    assert flag.severity == "medium"  # share 0.77 < 0.8
    assert flag.evidence["mean_map_share_in_region"] > 3 * flag.evidence["spread_share"]
    assert "top-right corner" in flag.message
    assert len(flag.samples) == flag.evidence["k"]
    assert all(s.startswith("horse/") for s in flag.samples)
    assert sum(map(sum, flag.evidence["grid_counts"])) == 22
    if with_masks:
        assert flag.evidence["off_object_share"] == pytest.approx(1.0)


@pytest.mark.parametrize("with_masks", [False, True])
def test_class_whose_objects_are_always_centred_is_not_flagged(gen, with_masks):
    centred = spot_maps([(3, 3)] * 25, gen)
    other = spot_maps(spread_cells(25, gen), gen)
    masks = centre_masks(25) if with_masks else None
    samples, maps = build([("ball", centred, masks), ("cup", other, masks)])
    assert fixed_location_flags(samples, maps, ["ball", "cup"]) == []


def test_object_always_in_a_corner_and_looked_at_is_not_flagged(gen):
    masks = torch.zeros(25, SIZE, SIZE, dtype=torch.bool)
    masks[:, :6, -6:] = True  # the object itself sits top-right
    looked_at = spot_maps([(0, 6)] * 25, gen)
    samples, maps = build([("kite", looked_at, masks)])
    assert fixed_location_flags(samples, maps, ["kite"]) == []


def test_spread_out_class_is_not_flagged(gen):
    samples, maps = build([("a", spot_maps(spread_cells(40, gen), gen), None)])
    assert fixed_location_flags(samples, maps, ["a"]) == []


def test_high_severity_needs_a_large_share_and_enough_samples(gen):
    samples, maps = build([("horse", spot_maps([(6, 0)] * 24, gen), None)])
    flag = fixed_location_flags(samples, maps, ["horse"])[0]
    assert flag.severity == "high"
    assert "bottom-left corner" in flag.message
    samples, maps = build([("horse", spot_maps([(6, 0)] * 10, gen), None)])
    assert fixed_location_flags(samples, maps, ["horse"])[0].severity == "medium"


def test_error_rows_are_skipped_and_maps_align_with_ok_rows(gen):
    samples, maps = build([("horse", spot_maps([(0, 0)] * 12, gen), None)])
    error = pd.DataFrame({"rel_path": ["horse/bad.png"], "label": ["horse"], "status": ["error"],
                          "peak_x": [math.nan], "peak_y": [math.nan]})
    samples = pd.concat([error, samples], ignore_index=True)
    flags = fixed_location_flags(samples, maps, ["horse"])
    assert flags[0].evidence["n"] == 12
    assert "horse/bad.png" not in flags[0].samples
    with pytest.raises(UsageError):
        fixed_location_flags(samples, maps[:-1], ["horse"])


def test_peak_grid_counts_by_hand():
    samples = pd.DataFrame({
        "label": ["a", "a", "a", "b", "a"],
        "status": ["ok", "ok", "ok", "ok", "error"],
        "peak_x": [0.1, 0.9, 0.99, 0.5, 0.1],
        "peak_y": [0.1, 0.1, 0.6, 0.5, 0.1],
    })
    got = peak_grid_counts(samples, ["a", "b"], grid=4)
    assert got["a"] == [[1, 0, 0, 1], [0, 0, 0, 0], [0, 0, 0, 1], [0, 0, 0, 0]]
    assert got["b"] == [[0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0]]


@pytest.mark.parametrize(
    ("box", "expected"),
    [
        ([0.0, 0.0, 0.25, 0.25], "top-left corner"),
        ([0.625, 0.125, 0.875, 0.375], "top-right area"),  # the corner third, off both edges
        ([0.75, 0.75, 1.0, 1.0], "bottom-right corner"),
        ([0.0, 0.375, 0.25, 0.625], "left edge"),
        ([0.375, 0.125, 0.625, 0.375], "top side"),
        ([0.375, 0.375, 0.625, 0.625], "centre"),
    ],
)
def test_regions_are_described_by_where_they_are_and_which_edges_they_touch(box, expected):
    assert describe_region(box) == expected


def _centred_class(name: str, n: int, gen: torch.Generator) -> tuple:
    """n samples whose maps peak on their centred object (cells 2-4 of 7)."""
    cells = [tuple(x) for x in torch.randint(2, 5, (n, 2), generator=gen).tolist()]
    return name, spot_maps(cells, gen), centre_masks(n)


def test_a_corner_group_of_10_in_200_is_found_with_its_members(gen):
    cells = [(0, 0)] * 10 + [tuple(x) for x in torch.randint(2, 5, (190, 2),
                                                               generator=gen).tolist()]
    parts = [("horse", spot_maps(cells, gen), centre_masks(200)),
             _centred_class("cow", 200, gen), _centred_class("dog", 200, gen)]
    samples, maps = build(parts)
    flags = fixed_location_flags(samples, maps, ["horse", "cow", "dog"])
    assert [f.class_name for f in flags] == ["horse"]
    flag = flags[0]
    assert flag.evidence["share_of_class"] == pytest.approx(10 / 200)
    assert sorted(flag.evidence["members"]) == [f"horse/{i:03d}.png" for i in range(10)]
    assert flag.evidence["region_cells"][0][0] == 1
    assert "top-left corner" in flag.message


def _band_flag(band: list[tuple[int, int]], gen: torch.Generator):
    """The flag on "camera": 30 maps peaking in `band`'s cells, 70 in the centre, against a
    centred class "deer"."""
    cells = band + [tuple(x) for x in torch.randint(2, 5, (70, 2), generator=gen).tolist()]
    parts = [("camera", spot_maps(cells, gen), centre_masks(100)),
             _centred_class("deer", 100, gen)]
    samples, maps = build(parts)
    return fixed_location_flags(samples, maps, ["camera", "deer"])[0]


def test_a_band_along_the_bottom_is_found_as_a_band(gen):
    flag = _band_flag([(6, int(c)) for c in torch.randint(0, 7, (30,), generator=gen)], gen)
    assert flag.evidence["region_shape"] == "band"
    assert "band along the bottom edge" in flag.message
    assert flag.evidence["region_cells"][6] == [1] * 7
    assert sorted(flag.evidence["members"]) == [f"camera/{i:03d}.png" for i in range(30)]


def test_a_band_down_the_middle_says_its_columns_once(gen):
    flag = _band_flag([(int(r), 5) for r in torch.randint(0, 7, (30,), generator=gen)], gen)
    assert flag.evidence["region"] == "band down the image (columns 0.71-0.86)"
    assert "the band down the image (columns 0.71-0.86), vs " in flag.message
    assert "(x " not in flag.message  # the place is said once, not again as a box


def test_a_corner_gives_its_box_once_in_the_message(gen):
    cells = [(0, 0)] * 30 + [tuple(x) for x in torch.randint(2, 5, (70, 2), generator=gen).tolist()]
    parts = [("horse", spot_maps(cells, gen), centre_masks(100)), _centred_class("cow", 100, gen)]
    samples, maps = build(parts)
    flag = fixed_location_flags(samples, maps, ["horse", "cow"])[0]
    assert "the top-left corner (x 0.00-0.14, y 0.00-0.14 of the image), vs " in flag.message


def test_a_frame_is_found_as_a_frame(gen):
    ring = [(0, 1), (1, 6), (6, 4), (3, 0)] * 10
    cells = ring + [tuple(x) for x in torch.randint(2, 5, (40, 2), generator=gen).tolist()]
    parts = [("framed", spot_maps(cells, gen), centre_masks(80)), _centred_class("plain", 80, gen)]
    samples, maps = build(parts)
    flag = fixed_location_flags(samples, maps, ["framed", "plain"])[0]
    assert flag.evidence["region_shape"] == "frame"
    assert flag.evidence["k"] == 40


def test_peaks_in_the_hole_of_a_ring_shaped_object_are_on_it_at_map_resolution(gen):
    # A ring object with a small hole at the centre of cell 3 of 7: the mask calls the hole
    # background (pointing_hit 0), but the map, 4 pixels a cell, cannot tell it from the ring.
    yy, xx = torch.meshgrid(torch.arange(SIZE), torch.arange(SIZE), indexing="ij")
    radius = torch.hypot(yy - 13.5, xx - 13.5)
    ring = ((radius > 1.5) & (radius < 10)).expand(60, SIZE, SIZE).clone()
    parts = [("donut", spot_maps([(3, 3)] * 60, gen), ring),
             ("plate", spot_maps([(1, 3), (3, 1)] * 30, gen), ring)]
    samples, maps = build(parts)
    assert (samples.loc[samples["label"] == "donut", "pointing_hit"] == 0).all()
    assert fixed_location_flags(samples, maps, ["donut", "plate"]) == []


def test_300_classes_of_10_spread_peaks_raise_no_location_flag(gen):
    parts = [(f"c{k:03d}", spot_maps(spread_cells(10, gen), gen), None) for k in range(300)]
    samples, maps = build(parts)
    assert fixed_location_flags(samples, maps, [p[0] for p in parts]) == []
def test_constant_maps_are_degenerate_and_never_a_fixed_location(gen):
    # 20 constant non-zero maps (a layer that ignores its input) used to peak at the first
    # pixel, the top-left corner, and raise a high flag; they have no peak at all.
    flat = torch.full((20, 7, 7), 0.8)
    other = spot_maps(spread_cells(20, gen), gen)
    samples, maps = build([("horse", flat, None), ("zebra", other, None)])
    assert fixed_location_flags(samples, maps, ["horse", "zebra"]) == []
    flags = degenerate_maps_flags(samples, ["horse", "zebra"])
    assert [f.kind for f in flags] == ["degenerate_maps"]
    assert flags[0].evidence["per_class"] == {"horse": 20, "zebra": 0}


def test_a_class_far_above_others_that_also_peak_there_is_found(gen):
    # Every "effusion" map peaks on a corner marker; 40% of the other rows (multi-label rows of
    # the same films) peak there too, so the share is 2.5x theirs, under the 3x ratio, but
    # 0.6 above it.
    tagged = [(0, 0)] * 60
    others = [(0, 0)] * 24 + [tuple(x) for x in torch.randint(2, 5, (36, 2),
                                                               generator=gen).tolist()]
    parts = [("effusion", spot_maps(tagged, gen), centre_masks(60)),
             ("nodule", spot_maps(others, gen), centre_masks(60))]
    samples, maps = build(parts)
    flags = fixed_location_flags(samples, maps, ["effusion", "nodule"])
    assert [f.class_name for f in flags] == ["effusion"]
    assert flags[0].evidence["excess"] == pytest.approx(0.6)


def test_without_masks_a_tag_one_cell_in_from_the_corner_of_a_fine_grid_is_off_object(gen):
    # 12x12 maps (a finer layer): the tag's cell (row 1, col 1) is not an outer cell, but it
    # lies within a quarter of the image from two edges, where a centred object never peaks.
    centred = [tuple(x) for x in torch.randint(4, 8, (40, 2), generator=gen).tolist()]
    samples, maps = build([("tagged", spot_maps([(1, 1)] * 40, gen, 12), None),
                           ("plain", spot_maps(centred, gen, 12), None)])
    flags = fixed_location_flags(samples, maps, ["tagged", "plain"])
    assert [f.class_name for f in flags] == ["tagged"]
    assert "top-left" in flags[0].message


def test_without_masks_object_parts_one_cell_in_on_an_8x8_grid_are_not_off_object(gen):
    # The clean 100-class benchmark: large objects anywhere put a class's peak on the same part
    # of them (a disk's lower edge), one cell in from the bottom of an 8x8 map on most images.
    # Within a quarter of the side from an edge (75% of the image) raised high flags there; only
    # the outer eighth (the outer ring of cells on 8x8) is taken as off the object.
    lower = [(6, int(c)) for c in torch.randint(2, 6, (40,), generator=gen)]
    upper = [tuple(x) for x in torch.randint(1, 5, (40, 2), generator=gen).tolist()]
    samples, maps = build([("disk", spot_maps(lower, gen, 8), None),
                           ("square", spot_maps(upper, gen, 8), None)])
    assert fixed_location_flags(samples, maps, ["disk", "square"]) == []
    # The same class peaking in the outer ring (a tag on the edge) is still found.
    edge = [(7, c) for _, c in lower]
    samples, maps = build([("disk", spot_maps(edge, gen, 8), None),
                           ("square", spot_maps(upper, gen, 8), None)])
    assert [f.class_name for f in fixed_location_flags(samples, maps, ["disk", "square"])] \
        == ["disk"]


def test_peaks_that_follow_their_objects_are_not_a_fixed_location(gen):
    # The clean 100-class benchmark's bars: the map peaks in the cell just above the bar (the
    # background that makes a bar a bar), all background, and the bars of most maps happen to
    # sit high, so those peaks gather in one cell. They follow the objects (the members' bars
    # lie nearer that cell than the other samples' objects); a tag in the same cell on images
    # whose objects lie anywhere is found.
    def bars(tops: list[int]) -> torch.Tensor:
        masks = torch.zeros(len(tops), SIZE, SIZE, dtype=torch.bool)
        for i, top in enumerate(tops):
            masks[i, top:top + 4, 6:22] = True
        return masks

    def squares(n: int) -> tuple[torch.Tensor, list[tuple[int, int]]]:
        cells = [tuple(x) for x in torch.randint(2, 6, (n, 2), generator=gen).tolist()]
        masks = torch.zeros(n, SIZE, SIZE, dtype=torch.bool)
        for i, (r, c) in enumerate(cells):
            masks[i, 4 * r:4 * r + 4, 4 * c:4 * c + 4] = True
        return masks, cells

    tops = [8] * 30 + [16] * 10
    peaks = [(top // 4 - 1, 3) for top in tops]  # the cell just above each bar
    other_masks, other_cells = squares(60)
    samples, maps = build([("bar", spot_maps(peaks, gen), bars(tops)),
                           ("square", spot_maps(other_cells, gen), other_masks)])
    assert (samples.loc[samples["label"] == "bar", "peak_fg_cover"] == 0).all()
    assert fixed_location_flags(samples, maps, ["bar", "square"]) == []
    # Objects anywhere below the tagged cell: the same peaks are a fixed location.
    tagged_masks, _ = squares(40)
    samples, maps = build([("bar", spot_maps([(1, 3)] * 40, gen), tagged_masks),
                           ("square", spot_maps(other_cells, gen), other_masks)])
    flags = fixed_location_flags(samples, maps, ["bar", "square"])
    assert [f.class_name for f in flags] == ["bar"]
    assert flags[0].evidence["objects_nearer_p"] > 0.05


def test_peaks_in_an_ls_inner_corner_are_within_the_object_not_a_fixed_place(gen):
    # The clean 100-class benchmark's L class: its maps peak in the L's inner corner, a cell
    # the mask calls background (peak_fg_cover 0), at the same place on every image. The peak
    # lies inside the object's convex hull (peak_in_hull), so it is on the object's extent.
    ell = torch.zeros(40, SIZE, SIZE, dtype=torch.bool)
    ell[:, 4:24, 4:10] = True
    ell[:, 18:24, 4:24] = True
    spread = [tuple(x) for x in torch.randint(1, 6, (60, 2), generator=gen).tolist()]
    samples, maps = build([("ell", spot_maps([(3, 3)] * 40, gen), ell),
                           ("square", spot_maps(spread, gen), centre_masks(60))])
    members = samples["label"] == "ell"
    assert (samples.loc[members, "peak_fg_cover"] == 0).all()
    assert (samples.loc[members, "peak_in_hull"] == 1).all()
    assert fixed_location_flags(samples, maps, ["ell", "square"]) == []
    # Without the hull measure the same peaks are a fixed place: the rule is what stops it.
    older = samples.drop(columns=["peak_in_hull"])
    assert [f.class_name for f in fixed_location_flags(older, maps, ["ell", "square"])] \
        == ["ell"]


def test_peaks_beside_a_large_objects_edge_follow_it_though_its_centre_is_far(gen):
    # The 4-class shortcut sets' triangles: a large object's maps peak just off one of its
    # corners, a background cell, the same cell for many of the class, while its centroid
    # lies far from there (no nearer than the other classes' small objects). From the
    # object's edge (centroid distance less the radius of a disc of its area), the members'
    # objects touch the cell: the peaks follow the objects, not a fixed place.
    big = torch.zeros(40, SIZE, SIZE, dtype=torch.bool)
    big[:, 8:24, 8:24] = True  # 16x16: centroid (16, 16) px, the corner at the cell's corner
    def smalls(low: int, high: int) -> tuple[torch.Tensor, list[tuple[int, int]]]:
        cells = [tuple(x) for x in torch.randint(low, high, (60, 2), generator=gen).tolist()]
        masks = torch.zeros(60, SIZE, SIZE, dtype=torch.bool)
        for i, (r, c) in enumerate(cells):
            masks[i, 4 * r:4 * r + 4, 4 * c:4 * c + 4] = True
        return masks, cells

    small, small_cells = smalls(2, 6)
    samples, maps = build([("big", spot_maps([(1, 1)] * 40, gen), big),
                           ("small", spot_maps(small_cells, gen), small)])
    members = samples["label"] == "big"
    assert (samples.loc[members, "peak_fg_cover"] == 0).all()
    assert (samples.loc[members, "peak_in_hull"] == 0).all()
    discs = object_discs(samples)
    assert discs[0] == pytest.approx([16 / SIZE, 16 / SIZE, math.sqrt(256 / SIZE**2 / math.pi)],
                                     abs=1e-6)
    assert fixed_location_flags(samples, maps, ["big", "small"]) == []
    # From the centroids alone (radius 0) the same peaks are a fixed place: the rule stops it.
    centroids_only = samples.assign(fg_energy=0.0)
    assert (object_discs(centroids_only)[:, 2] == 0).all()
    flags = fixed_location_flags(centroids_only, maps, ["big", "small"])
    assert [f.class_name for f in flags] == ["big"]
    # Large objects in the opposite corner, small ones anywhere, a tag top-left: the large
    # objects' edges lie no nearer the tag than the small ones', so it is a fixed place.
    far = torch.zeros(40, SIZE, SIZE, dtype=torch.bool)
    far[:, 16:28, 16:28] = True
    small, small_cells = smalls(0, 7)
    samples, maps = build([("big", spot_maps([(0, 0)] * 40, gen), far),
                           ("small", spot_maps(small_cells, gen), small)])
    flags = fixed_location_flags(samples, maps, ["big", "small"])
    assert [f.class_name for f in flags] == ["big"]
    assert flags[0].evidence["objects_nearer_p"] > 0.05


def test_off_disc_shares_by_hand():
    # 4x4 maps, one region: the whole grid. All mass in cell (0, 0) = [0, .25]^2, a disc at
    # the centre of radius .25 (nearest corner of the cell at .354): all of it beyond. All
    # mass in cell (1, 1) under a disc of radius 1: none beyond. No centroid: unknown.
    maps = np.zeros((3, 4, 4))
    maps[0, 0, 0] = maps[1, 1, 1] = maps[2, 2, 2] = 1.0
    discs = np.array([[0.5, 0.5, 0.25], [0.375, 0.375, 1.0], [np.nan, np.nan, 0.0]])
    shares = off_disc_shares(maps, discs, np.ones((1, 4, 4), dtype=bool))
    assert shares[:2, 0].tolist() == [1.0, 0.0]
    assert np.isnan(shares[2, 0])
    assert middle_bands(8, 8).shape == (2 * (4 + 3), 8, 8)
    assert middle_bands(8, 8)[0].nonzero()[0].min() == 2  # rows 2-5: not one cell in from an edge


def band_maps(n: int, band: bool, gen: torch.Generator) -> torch.Tensor:
    """8x8 maps: weak noise, a hot spot on the small centred object (cells 3-4), and for
    `band` a full-width band over rows 3-4 a little cooler than the spot (the peak stays on
    it)."""
    maps = 0.05 * torch.rand(n, 8, 8, generator=gen)
    maps[:, 3:5, 3:5] += 1.0
    if band:
        maps[:, 3:5, :] = maps[:, 3:5, :].clamp(min=0.9)
    return maps


def small_masks(n: int) -> torch.Tensor:
    masks = torch.zeros(n, SIZE, SIZE, dtype=torch.bool)
    masks[:, 10:18, 10:18] = True
    return masks


def test_a_band_across_the_middle_over_the_objects_is_found_from_mass_beyond_them(
        gen, monkeypatch):
    # A text band across the middle of 20 of 60 images of a class, crossing their centred
    # objects: every peak lies on the object (the peak-based searches cannot see it) and
    # the other classes' maps also put most of their mass in those rows, on their objects.
    # Beyond a disc of each object's area, only the band's maps have mass there.
    masks = small_masks(60)
    parts = [("marked", torch.cat([band_maps(20, True, gen), band_maps(40, False, gen)]), masks),
             ("b", band_maps(60, False, gen), masks), ("c", band_maps(60, False, gen), masks)]
    samples, maps = build(parts)
    assert (samples["peak_fg_cover"] >= 0.5).all()
    flags = fixed_location_flags(samples, maps, ["marked", "b", "c"])
    assert [f.class_name for f in flags] == ["marked"]
    evidence = flags[0].evidence
    assert evidence["region_found_by"] == "band mass"
    assert evidence["region_shape"] == "band"
    assert sorted(evidence["members"]) == [f"marked/{i:03d}.png" for i in range(20)]
    assert evidence["beyond_object_share"] == 1.0
    rows = [r for r, row in enumerate(evidence["scan_cells"]) if any(row)]
    assert set(rows) <= {3, 4}
    assert all(all(evidence["scan_cells"][r]) for r in rows)
    # Without the band search nothing finds it.
    monkeypatch.setattr(location, "band_mass", lambda grid, index, discs, n: [None] * n)
    assert fixed_location_flags(samples, maps, ["marked", "b", "c"]) == []


def test_maps_lit_over_their_own_objects_in_the_middle_rows_are_no_band(gen):
    # The same maps on objects as wide as the band (16 px of 28 across, rows 10-18): the
    # marked maps' mass in rows 3-4 lies mostly inside a disc of the object's area, so
    # none of them is beyond its object and no band is found.
    wide = torch.zeros(60, SIZE, SIZE, dtype=torch.bool)
    wide[:, 6:22, 0:SIZE] = True
    parts = [("marked", torch.cat([band_maps(20, True, gen), band_maps(40, False, gen)]), wide),
             ("b", band_maps(60, False, gen), small_masks(60)),
             ("c", band_maps(60, False, gen), small_masks(60))]
    samples, maps = build(parts)
    assert fixed_location_flags(samples, maps, ["marked", "b", "c"]) == []


@pytest.mark.parametrize("size", [50, 9000, 30000])
def test_the_pool_of_the_other_rows_is_the_pool_of_their_difference(size: int) -> None:
    rng = np.random.default_rng(size)
    half = np.sort(rng.choice(3 * size, size, replace=False))
    for share in (0.0, 0.01, 0.3):
        mine = np.sort(rng.choice(half, int(share * size), replace=False))
        expected = pooled_rows(np.setdiff1d(half, mine))
        assert np.array_equal(pooled_rest(half, mine), expected)
    # By hand: the 2nd row of six taken out; fewer than MAX_POOL left, so all of them.
    assert pooled_rest(np.arange(10, 16), np.array([11])).tolist() == [10, 12, 13, 14, 15]


def test_growing_a_region_is_a_binary_dilation_by_a_3x3_square():
    from scipy import ndimage

    rng = np.random.default_rng(1)
    for _ in range(300):
        cells = rng.random(tuple(rng.integers(1, 17, 2))) < rng.random()
        assert np.array_equal(grow(cells),
                              ndimage.binary_dilation(cells, structure=np.ones((3, 3), bool)))
    # A stack of grids grows each one alone.
    stack = rng.random((20, 5, 7)) < 0.2
    assert np.array_equal(grow(stack), np.stack([grow(cells) for cells in stack]))


def test_each_distinct_argument_tuple_is_evaluated_once_with_the_same_values():
    from scipy import stats

    rng = np.random.default_rng(2)
    k = rng.integers(0, 6, 500)
    big = rng.integers(40, 43, 500)
    drawn = rng.integers(5, 9, 500)
    calls = []

    def sf(*args):
        calls.append(len(args[0]))
        return stats.hypergeom.sf(*args)

    got = location._elementwise_once(sf, k - 1, big, drawn + k, drawn)
    assert np.array_equal(got, stats.hypergeom.sf(k - 1, big, drawn + k, drawn))
    assert calls == [len({(a, b, c) for a, b, c in zip(k, big, drawn, strict=True)})]


@pytest.mark.parametrize("n_rest", [5, 300, 40_000])
def test_the_screened_scan_p_equals_the_direct_p_wherever_the_scan_reads_it(n_rest):
    from scipy import stats

    rng = np.random.default_rng(n_rest)
    classes, regions = 60, 25
    n = rng.integers(8, 60, (classes, 1))
    # Few distinct counts: exact ties between regions, as on a small grid.
    k = np.minimum(rng.integers(0, 8, (classes, regions)) * rng.choice([1, 3], (classes, 1)), n)
    k_rest = np.minimum(rng.integers(0, 30, (classes, regions)) * (n_rest // 100 + 1), n_rest)
    area = rng.choice([1 / 16, 1 / 8, 1 / 4], regions)
    off_k = (k * rng.uniform(0.3, 1.0, (classes, 1))).astype(int)
    off_n = (n * 0.8).astype(int)
    direct = np.maximum(
        stats.hypergeom.sf(k - 1, n + n_rest, k + k_rest, n) if n_rest >= location.MIN_REST
        else stats.binom.sf(k - 1, n, area), stats.binom.sf(off_k - 1, off_n, area))
    scan = location._ScanP(k, n, k_rest, np.full((classes, 1), n_rest), area, off_k, off_n)
    asked = [sorted(rng.choice(regions, 3, replace=False).tolist()) for _ in range(classes)]
    got = scan.exact(asked)
    # Each class's smallest is among the values computed, to the bit, with every tie of it ...
    assert np.array_equal(np.nanmin(got, axis=1), direct.min(axis=1))
    assert np.array_equal(got == direct.min(axis=1, keepdims=True),
                          direct == direct.min(axis=1, keepdims=True))
    # ... and every region asked for is computed, the same as the direct p.
    for row, mine in enumerate(asked):
        assert np.array_equal(got[row, mine], direct[row, mine])
    computed = np.isfinite(got)
    assert np.array_equal(got[computed], direct[computed])
    if n_rest >= location.MIN_REST:
        assert computed.mean() < 0.5  # the screen leaves most hypergeometric tails out
