"""Attention measures on hand-made maps and masks with answers derived by hand."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch

import auditor.metrics as metrics_module
from auditor.errors import UsageError
from auditor.metrics import (
    MEASURES,
    attention_measures,
    box_iou,
    in_convex_hull,
    label_components,
    normalise_maps,
    upsample_maps,
)

NO_BOX = torch.full((1, 4), math.nan)
FG_MEASURES = ("fg_energy", "fg_enrichment", "bg_energy", "pointing_hit", "wsol_iou")


def measure_one(heat: torch.Tensor, mask: torch.Tensor | None, box=None, border: float = 0.1):
    """Measures of one sample as plain floats; mask None means no mask."""
    has = torch.tensor([mask is not None])
    if mask is None:
        mask = torch.zeros(heat.shape, dtype=torch.bool)
    boxes = NO_BOX if box is None else torch.tensor([box], dtype=torch.float32)
    out = attention_measures(heat[None], mask[None], has, boxes, border=border)
    return {k: float(v[0]) for k, v in out.items()}


@pytest.fixture
def left_half_map() -> torch.Tensor:
    heat = torch.zeros(8, 8)
    heat[:, :4] = 1.0
    return heat


@pytest.fixture
def left_quarter_mask() -> torch.Tensor:
    mask = torch.zeros(8, 8, dtype=torch.bool)
    mask[:, :2] = True
    return mask


def test_left_half_map_on_left_quarter_mask_gives_hand_derived_measures(
    left_half_map, left_quarter_mask
):
    # Map at input resolution (no upsampling). Mass 32; mask holds 16 -> 0.5 of the mass on
    # 0.25 of the area. Band of 1 pixel (0.125 * 8) covers 28 of 64 pixels and holds column 0
    # (8) + rows 0 and 7 of columns 1..3 (6) = 14 of 32. Peak = centre of the plateau (the left
    # half): pixel coordinates (2, 4) -> (0.25, 0.5), the corner of pixel (row 4, col 2), which
    # lies off the mask (columns 0-1): a pointing miss. Localisation: the left half, box
    # (0,0,4,8), vs the mask box (0,0,2,8) -> IoU 16/32.
    got = measure_one(left_half_map, left_quarter_mask, border=0.125)
    assert got["fg_energy"] == pytest.approx(0.5)
    assert got["fg_enrichment"] == pytest.approx(2.0)
    assert got["bg_energy"] == pytest.approx(0.5)
    assert got["border_energy"] == pytest.approx(14 / 32)
    assert got["border_lift"] == pytest.approx((14 / 32) / (28 / 64))
    assert got["pointing_hit"] == 0.0
    assert got["wsol_iou"] == pytest.approx(0.5)
    assert got["peak_x"] == pytest.approx(0.25)
    assert got["peak_y"] == pytest.approx(0.5)


def test_bilinear_upsampling_matches_hand_computed_weights():
    # 2 -> 4 with align_corners=False samples source coords -0.25, 0.25, 0.75, 1.25 (edges
    # clamp), so the profile of [1, 0] is [1, .75, .25, 0]; the 2-D map is its outer product.
    profile = torch.tensor([1.0, 0.75, 0.25, 0.0])
    up = upsample_maps(torch.tensor([[[1.0, 0.0], [0.0, 0.0]]]), (4, 4))
    torch.testing.assert_close(up[0], profile[:, None] * profile[None, :])


def test_fg_energy_is_measured_after_upsampling():
    # Mass of the upsampled map: 2 * 2 = 4; top-left quadrant holds 1.75 ** 2.
    mask = torch.zeros(4, 4, dtype=torch.bool)
    mask[:2, :2] = True
    got = measure_one(torch.tensor([[1.0, 0.0], [0.0, 0.0]]), mask)
    assert got["fg_energy"] == pytest.approx(1.75**2 / 4)
    assert got["fg_enrichment"] == pytest.approx(1.75**2 / 4 / 0.25)


def test_upsample_clamps_negative_values_to_zero():
    up = upsample_maps(torch.tensor([[[-1.0, 2.0]]]), (1, 2))
    assert up.tolist() == [[[0.0, 2.0]]]


def test_peak_position_uses_pixel_centres_and_keeps_width_and_height_apart():
    heat = torch.zeros(4, 6)
    heat[2, 5] = 3.0
    got = measure_one(heat, None)
    assert got["peak_x"] == pytest.approx(5.5 / 6)
    assert got["peak_y"] == pytest.approx(2.5 / 4)


def test_pointing_miss_when_peak_is_background(left_quarter_mask):
    heat = torch.zeros(8, 8)
    heat[3, 6] = 1.0
    got = measure_one(heat, left_quarter_mask)
    assert got["pointing_hit"] == 0.0
    assert got["fg_energy"] == 0.0
    assert got["fg_enrichment"] == 0.0


@pytest.mark.parametrize("bad", ["zeros", "subnormal", "nan", "inf"])
def test_degenerate_map_makes_every_measure_nan(bad, left_quarter_mask):
    heat = torch.zeros(8, 8)
    if bad == "subnormal":
        # Shares of values below float32's smallest normal number are rounding noise.
        heat[0, 0] = 1e-45
        heat[5, 2] = 3e-45
    elif bad != "zeros":
        heat[0, 0] = math.nan if bad == "nan" else math.inf
        heat[1, 1] = 1.0
    got = measure_one(heat, left_quarter_mask)
    assert all(math.isnan(got[k]) for k in MEASURES)


def test_degenerate_map_does_not_affect_its_batch_neighbours(left_half_map, left_quarter_mask):
    bad = torch.full((8, 8), math.nan)
    maps = torch.stack([bad, left_half_map])
    masks = left_quarter_mask.expand(2, 8, 8)
    out = attention_measures(maps, masks, torch.tensor([True, True]),
                             NO_BOX.expand(2, 4), border=0.125)
    assert math.isnan(float(out["fg_energy"][0]))
    assert float(out["fg_energy"][1]) == pytest.approx(0.5)
    assert float(out["wsol_iou"][1]) == pytest.approx(0.5)


def test_no_mask_gives_nan_foreground_but_defined_border_and_peaks(left_half_map):
    got = measure_one(left_half_map, None, border=0.125)
    assert all(math.isnan(got[k]) for k in FG_MEASURES)
    assert got["border_energy"] == pytest.approx(14 / 32)
    assert got["peak_x"] == pytest.approx(0.25)


def test_has_mask_false_ignores_the_mask_row(left_half_map, left_quarter_mask):
    out = attention_measures(left_half_map[None], left_quarter_mask[None], torch.tensor([False]),
                             NO_BOX)
    assert math.isnan(float(out["fg_energy"][0]))


def test_empty_mask_gives_nan_foreground_measures(left_half_map):
    got = measure_one(left_half_map, torch.zeros(8, 8, dtype=torch.bool))
    assert all(math.isnan(got[k]) for k in FG_MEASURES)
    assert not math.isnan(got["border_energy"])


def test_full_mask_gives_enrichment_exactly_one():
    heat = torch.rand(7, 7, generator=torch.Generator().manual_seed(3))
    got = measure_one(heat, torch.ones(32, 32, dtype=torch.bool))
    assert got["fg_energy"] == 1.0
    assert got["fg_enrichment"] == 1.0
    assert got["bg_energy"] == 0.0
    assert got["pointing_hit"] == 1.0
    assert 0.0 < got["border_energy"] < 1.0


def test_uint8_mask_equals_bool_mask(left_half_map, left_quarter_mask):
    as_bool = measure_one(left_half_map, left_quarter_mask)
    as_uint8 = measure_one(left_half_map, left_quarter_mask.to(torch.uint8) * 255)
    assert as_bool == pytest.approx(as_uint8, nan_ok=True)


def test_wsol_takes_largest_component_above_fifteen_percent_of_max():
    # Block A (3x3) and block B (2x2) joined by a bridge at 10% of the max: the bridge is
    # below the 15% threshold, so A alone is localised; at 20% the bridge joins them.
    heat = torch.zeros(10, 10)
    heat[0:3, 0:3] = 1.0
    heat[6:8, 6:8] = 1.0
    heat[3:6, 3:6] = torch.eye(3) * 0.1
    mask = torch.zeros(10, 10, dtype=torch.bool)
    mask[0:3, 0:3] = True
    assert measure_one(heat, mask)["wsol_iou"] == pytest.approx(1.0)
    heat[3:6, 3:6] = torch.eye(3) * 0.2
    # Now the predicted box is (0,0,8,8): IoU with (0,0,3,3) is 9 / 64.
    assert measure_one(heat, mask)["wsol_iou"] == pytest.approx(9 / 64)


def test_wsol_components_connect_through_diagonals():
    heat = torch.zeros(6, 6)
    heat[0:2, 0:2] = 1.0
    heat[2:4, 2:4] = 1.0  # touches the first block at one corner only
    heat[5, 5] = 1.0
    got = measure_one(heat, torch.ones(6, 6, dtype=torch.bool), box=(0.0, 0.0, 4.0, 4.0))
    assert got["wsol_iou"] == pytest.approx(1.0)


def test_wsol_prefers_the_given_box_over_the_mask_box(left_half_map, left_quarter_mask):
    got = measure_one(left_half_map, left_quarter_mask, box=(0.0, 0.0, 4.0, 4.0))
    assert got["wsol_iou"] == pytest.approx(16 / 32)
    got = measure_one(left_half_map, left_quarter_mask, box=(0.0, 0.0, 4.0, 8.0))
    assert got["wsol_iou"] == pytest.approx(1.0)


def test_measures_of_a_batch_equal_measures_of_each_sample_alone():
    gen = torch.Generator().manual_seed(7)
    maps = torch.rand(5, 7, 7, generator=gen) ** 4
    masks = torch.rand(5, 28, 28, generator=gen) > 0.6
    has = torch.tensor([True, False, True, True, True])
    boxes = torch.full((5, 4), math.nan)
    boxes[2] = torch.tensor([2.0, 3.0, 20.0, 25.0])
    together = attention_measures(maps, masks, has, boxes)
    for i in range(5):
        alone = attention_measures(maps[i:i + 1], masks[i:i + 1], has[i:i + 1], boxes[i:i + 1])
        for name in MEASURES:
            torch.testing.assert_close(together[name][i:i + 1], alone[name], equal_nan=True)


def test_every_measure_is_float32_of_batch_length():
    out = attention_measures(torch.rand(3, 7, 7), torch.ones(3, 14, 14, dtype=torch.bool),
                             torch.ones(3, dtype=torch.bool), torch.full((3, 4), math.nan))
    assert set(out) == set(MEASURES)
    assert all(v.dtype == torch.float32 and v.shape == (3,) for v in out.values())


def test_normalise_maps_peaks_at_one_and_zeroes_degenerate_maps():
    maps = torch.tensor([[[2.0, 4.0]], [[0.0, 0.0]], [[math.nan, 1.0]]])
    out = normalise_maps(maps)
    assert out.tolist() == [[[0.5, 1.0]], [[0.0, 0.0]], [[0.0, 0.0]]]


def test_box_iou_of_hand_made_boxes():
    a = torch.tensor([[0.0, 0.0, 2.0, 2.0], [0.0, 0.0, 1.0, 1.0], [math.nan] * 4])
    b = torch.tensor([[1.0, 1.0, 3.0, 3.0], [2.0, 2.0, 3.0, 3.0], [0.0, 0.0, 1.0, 1.0]])
    iou = box_iou(a, b)
    assert iou[0].item() == pytest.approx(1 / 7)
    assert iou[1].item() == 0.0
    assert math.isnan(iou[2].item())


def _same_partition(ours: np.ndarray, reference: np.ndarray) -> bool:
    """True when two labellings split the pixels into the same components (0 = background)."""
    if not np.array_equal(ours == 0, reference == 0):
        return False
    pairs = {(int(a), int(b)) for a, b in zip(ours[ours > 0], reference[reference > 0],
                                              strict=True)}
    return len(pairs) == len({a for a, _ in pairs}) == len({b for _, b in pairs})


@pytest.mark.parametrize("density", [0.3, 0.45, 0.6])
def test_component_labelling_matches_opencv_on_random_masks(density):
    gen = torch.Generator().manual_seed(int(density * 100))
    binary = torch.rand(6, 31, 47, generator=gen) < density
    labels = label_components(binary).numpy()
    for i in range(binary.shape[0]):
        _, reference = cv2.connectedComponents(binary[i].numpy().astype(np.uint8),
                                               connectivity=8)
        assert _same_partition(labels[i], reference)


def test_component_labelling_follows_a_long_snake():
    # A serpentine path: one component whose diameter is most of the image.
    snake = np.zeros((21, 21), dtype=np.uint8)
    snake[::2, :] = 1
    snake[1::4, -1] = 1
    snake[3::4, 0] = 1
    labels = label_components(torch.from_numpy(snake)[None]).numpy()[0]
    assert len(np.unique(labels[labels > 0])) == 1
    assert np.array_equal(labels > 0, snake > 0)


def test_largest_component_box_matches_opencv_stats():
    gen = torch.Generator().manual_seed(11)
    heat = torch.rand(1, 30, 30, generator=gen) ** 6
    mask = torch.ones(1, 30, 30, dtype=torch.bool)
    located = (heat[0] >= 0.15 * heat.max()).numpy().astype(np.uint8)
    _, _, stats, _ = cv2.connectedComponentsWithStats(located, connectivity=8)
    best = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    x, y, w, h = stats[best, :4]
    box = torch.tensor([[float(x), float(y), float(x + w), float(y + h)]])
    out = attention_measures(heat, mask, torch.tensor([True]), box)
    assert float(out["wsol_iou"][0]) == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("maps", "masks", "has", "boxes", "border"),
    [
        (torch.rand(2, 7), torch.ones(2, 8, 8), torch.ones(2, dtype=torch.bool),
         torch.zeros(2, 4), 0.1),
        (torch.rand(2, 7, 7), torch.ones(3, 8, 8), torch.ones(2, dtype=torch.bool),
         torch.zeros(2, 4), 0.1),
        (torch.rand(2, 7, 7), torch.ones(2, 8, 8), torch.ones(3, dtype=torch.bool),
         torch.zeros(2, 4), 0.1),
        (torch.rand(2, 7, 7), torch.ones(2, 8, 8), torch.ones(2, dtype=torch.bool),
         torch.zeros(2, 3), 0.1),
        (torch.rand(2, 7, 7), torch.ones(2, 8, 8), torch.ones(2, dtype=torch.bool),
         torch.zeros(2, 4), 0.6),
    ],
)
def test_bad_shapes_and_border_raise_usage_error(maps, masks, has, boxes, border):
    with pytest.raises(UsageError):
        attention_measures(maps, masks, has, boxes, border=border)


def test_ceiling_is_the_mask_seen_through_the_map_grid_by_hand():
    # Left-half mask of an 8x8 input, 2x2 map: the pooled mask is [[1, 0], [1, 0]]; upsampled
    # (align_corners=False) its columns are 1, 1, .875, .625, .375, .125, 0, 0, so the mask
    # holds 3.5 of 4 units: energy .875 on half the image = enrichment 1.75.
    mask = torch.zeros(8, 8, dtype=torch.bool)
    mask[:, :4] = True
    heat = torch.tensor([[0.0, 1.0], [0.0, 1.0]])  # peaks on the right: background
    out = measure_one(heat, mask)
    assert out["fg_enrichment_ceiling"] == pytest.approx(1.75, abs=1e-6)
    assert out["peak_fg_cover"] == pytest.approx(0.0, abs=1e-6)
    out = measure_one(heat.flip(1), mask)  # peaks on the left column: all object
    assert out["peak_fg_cover"] == pytest.approx(1.0, abs=1e-6)


def test_ceiling_of_a_whole_image_object_is_chance_and_no_mask_is_nan():
    heat = torch.rand(4, 4) + 0.1
    assert measure_one(heat, torch.ones(16, 16, dtype=torch.bool))[
        "fg_enrichment_ceiling"] == pytest.approx(1.0, abs=1e-6)
    out = measure_one(heat, None)
    assert math.isnan(out["fg_enrichment_ceiling"])
    assert math.isnan(out["peak_fg_cover"])


def test_ceiling_of_a_large_object_is_barely_above_chance_and_a_small_one_far_above():
    yy, xx = torch.meshgrid(torch.arange(64), torch.arange(64), indexing="ij")
    radius = torch.hypot(yy - 31.5, xx - 31.5)
    heat = torch.rand(8, 8) + 0.1
    large = measure_one(heat, radius < 35)["fg_enrichment_ceiling"]  # 88% of the image
    small = measure_one(heat, radius < 11)["fg_enrichment_ceiling"]  # 9% of the image
    assert 1.0 < large < 1.1
    assert small > 5.0
def test_an_edge_cell_peaks_at_its_centre_and_the_pointing_game_hits_an_object_there():
    # 7x7 map on a 224 input: cell (row 3, col 0) spans x [0, 32), y [96, 128), centre (16,
    # 112). Bilinear upsampling holds the cell's value flat from x = 0 to its centre, so the
    # first arg-max pixel of the upsampled map is at x = 0.5 / 224, off an object that sits
    # inside the cell away from the image edge.
    heat = torch.full((7, 7), 0.1)
    heat[3, 0] = 1.0
    mask = torch.zeros(224, 224, dtype=torch.bool)
    mask[100:124, 8:28] = True
    got = measure_one(heat, mask)
    assert got["peak_x"] == pytest.approx(0.5 / 7)
    assert got["peak_y"] == pytest.approx(3.5 / 7)
    assert got["pointing_hit"] == 1.0


def test_a_plateau_peaks_at_its_centre():
    # Cells (rows 2-3, cols 4-5) tie: the centre is their shared corner (x 5, y 3 in cells).
    heat = torch.full((7, 7), 0.2)
    heat[2:4, 4:6] = 1.0
    got = measure_one(heat, None)
    assert (got["peak_x"], got["peak_y"]) == pytest.approx((5 / 7, 3 / 7))


def test_the_largest_plateau_wins_over_an_earlier_smaller_one():
    heat = torch.zeros(7, 7)
    heat[0, 0] = 1.0  # one cell, first in raster order
    heat[4, 2:5] = 1.0  # three cells in a row: centre (3.5, 4.5) in cells
    got = measure_one(heat, None)
    assert (got["peak_x"], got["peak_y"]) == pytest.approx((3.5 / 7, 4.5 / 7))


def test_a_ring_plateau_peaks_on_its_cell_nearest_the_centroid_not_in_its_hole():
    # A 3x3 ring (centre cell lower) has its centroid in the hole at (2.5, 2.5) cells; the
    # ring cells nearest to it are the four edge midpoints, the first in raster order being
    # (row 1, col 2): centre (2.5, 1.5).
    heat = torch.zeros(5, 5)
    heat[1:4, 1:4] = 1.0
    heat[2, 2] = 0.5
    got = measure_one(heat, None)
    assert (got["peak_x"], got["peak_y"]) == pytest.approx((2.5 / 5, 1.5 / 5))


@pytest.mark.parametrize("value", [1.0, 3e-4, 250.0])
def test_a_constant_map_is_degenerate_never_a_location(value, left_quarter_mask):
    got = measure_one(torch.full((7, 7), value), left_quarter_mask)
    assert all(math.isnan(got[k]) for k in MEASURES)


def test_peaks_of_a_batch_with_plateaus_equal_peaks_of_each_sample_alone():
    gen = torch.Generator().manual_seed(5)
    maps = torch.rand(6, 7, 7, generator=gen)
    maps[1, 2:5, 1] = 2.0  # a column plateau
    maps[3] = 0.7  # constant
    maps[4, 0, 0] = maps[4, 6, 6] = 5.0  # two single-cell plateaus: the first wins
    masks = torch.ones(6, 28, 28, dtype=torch.bool)
    has = torch.ones(6, dtype=torch.bool)
    boxes = torch.full((6, 4), math.nan)
    together = attention_measures(maps, masks, has, boxes)
    assert (float(together["peak_x"][1]), float(together["peak_y"][1])) == pytest.approx(
        (1.5 / 7, 3.5 / 7))
    assert math.isnan(float(together["peak_x"][3]))
    assert (float(together["peak_x"][4]), float(together["peak_y"][4])) == pytest.approx(
        (0.5 / 7, 0.5 / 7))
    for i in range(6):
        alone = attention_measures(maps[i:i + 1], masks[i:i + 1], has[i:i + 1], boxes[i:i + 1])
        for name in MEASURES:
            torch.testing.assert_close(together[name][i:i + 1], alone[name], equal_nan=True)


def test_batched_opencv_boxes_equal_the_tensor_labelling_ties_included():
    # One cv2 call for the whole stacked batch must pick the same component per image as the
    # batched tensor labelling, including its tie rule (equal areas: last raster pixel first).
    gen = torch.Generator().manual_seed(5)
    binary = torch.rand(40, 13, 17, generator=gen) < torch.linspace(0.05, 0.7, 40)[:, None, None]
    binary[:, 0, 0] = True  # every image has a foreground pixel
    ties = torch.zeros(4, 13, 17, dtype=torch.bool)
    ties[0, 1:3, 1:3] = ties[0, 8:10, 12:14] = True  # two equal squares
    ties[1, 12, 16] = ties[1, 0, 0] = True  # two single pixels in opposite corners
    ties[2, 0, :] = True  # a component touching the row that separates stacked images
    ties[2, 12, :] = True
    # Equal areas (11): the column starts first in raster order but ends last, so the row
    # wins; a rule by first pixel (opencv's label order) would pick the column.
    ties[3, 0:11, 0] = True
    ties[3, 2, 5:16] = True
    binary = torch.cat([binary, ties])
    got = metrics_module._largest_component_boxes_opencv(binary)
    want = metrics_module._largest_component_boxes_tensor(binary)
    assert torch.equal(got, want)


def test_object_centroid_by_hand_and_nan_without_a_mask():
    # Rows 2-3, columns 4-7 of an 8x16 input: pixel centres 4.5..7.5 of 16 and 2.5..3.5 of 8.
    mask = torch.zeros(8, 16, dtype=torch.bool)
    mask[2:4, 4:8] = True
    heat = torch.rand(2, 4) + 0.1
    out = measure_one(heat, mask)
    assert out["fg_cx"] == pytest.approx(6.0 / 16, abs=1e-6)
    assert out["fg_cy"] == pytest.approx(3.0 / 8, abs=1e-6)
    out = measure_one(heat, None)
    assert math.isnan(out["fg_cx"])
    assert math.isnan(out["fg_cy"])


def test_convex_hull_holds_a_rings_hole_and_an_ls_corner_not_what_lies_beyond() -> None:
    fg = torch.zeros(3, 32, 32, dtype=torch.bool)
    fg[0, 4:28, 4:10] = True  # an L: a vertical arm ...
    fg[0, 22:28, 4:28] = True  # ... and a horizontal one; its inner corner is around (15, 15)
    yy, xx = torch.meshgrid(torch.arange(32) + 0.5, torch.arange(32) + 0.5, indexing="ij")
    radius = torch.hypot(yy - 16, xx - 16)
    fg[1] = (radius > 6) & (radius < 12)  # a ring with a hole of radius 6
    fg[2, 20:30, 20:30] = True  # a square: pixels 20-29, extent [20, 30)
    inside = in_convex_hull(fg, torch.tensor([15.0, 16.0, 29.9]), torch.tensor([15.0, 16.0, 20.1]))
    assert inside.tolist() == [True, True, True]
    # Beyond the L's diagonal, outside the ring, half a pixel left of the square's extent.
    outside = in_convex_hull(fg, torch.tensor([26.0, 31.5, 19.4]), torch.tensor([6.0, 16.0, 25.0]))
    assert outside.tolist() == [False, False, False]
    assert not in_convex_hull(torch.zeros(1, 8, 8, dtype=torch.bool), torch.tensor([4.0]),
                              torch.tensor([4.0]))[0]


def test_peak_in_hull_marks_a_peak_in_the_hole_and_not_one_beside_the_object() -> None:
    # 28 px input, 7x7 maps (4 px a cell). A ring centred on cell (3, 3) with a hole that holds
    # that cell; a peak there is in the hull, a peak in cell (0, 6) is not; no mask: NaN.
    yy, xx = torch.meshgrid(torch.arange(28) + 0.5, torch.arange(28) + 0.5, indexing="ij")
    radius = torch.hypot(yy - 14, xx - 14)
    ring = ((radius > 4) & (radius < 10)).expand(3, 28, 28).clone()
    maps = torch.zeros(3, 7, 7)
    maps[0, 3, 3] = maps[1, 0, 6] = maps[2, 3, 3] = 1.0
    out = attention_measures(maps, ring, torch.tensor([True, True, False]),
                             torch.full((3, 4), math.nan))
    assert out["pointing_hit"][0] == 0.0  # the hole is background by the mask ...
    assert out["peak_in_hull"][0] == 1.0  # ... but inside the object's extent
    assert out["peak_in_hull"][1] == 0.0
    assert math.isnan(out["peak_in_hull"][2])
