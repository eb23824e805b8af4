"""Figures of the report: colour map, overlays (orientation, RGB order, blend), encodings and
chart layouts, against hand-derived values and reference implementations."""

from __future__ import annotations

import base64

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from auditor.errors import UsageError
from auditor.report import figures

# Entries 0, 64, 128, 192 and 255 of matplotlib's published viridis table, times 255.
VIRIDIS_REFERENCE = {
    0: (68.1, 1.2, 84.0),
    64: (58.6, 82.2, 139.2),
    128: (32.5, 144.6, 140.4),
    192: (94.1, 201.2, 97.6),
    255: (253.3, 231.1, 36.7),
}


def _decode(uri: str) -> np.ndarray:
    payload = base64.b64decode(uri.split(",", 1)[1])
    bgr = cv2.imdecode(np.frombuffer(payload, np.uint8), cv2.IMREAD_COLOR)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _hotness(rgb: np.ndarray) -> np.ndarray:
    """How close each pixel is to the top of the colour map (yellow): R + G - B."""
    return rgb[..., 0].astype(float) + rgb[..., 1] - rgb[..., 2]


def test_viridis_lut_matches_the_published_table_at_anchor_entries() -> None:
    assert figures.VIRIDIS.shape == (256, 3)
    assert figures.VIRIDIS.dtype == np.uint8
    for index, expected in VIRIDIS_REFERENCE.items():
        np.testing.assert_allclose(figures.VIRIDIS[index], expected, atol=3.5)


def test_viridis_luminance_rises_monotonically_so_grey_prints_keep_the_order() -> None:
    srgb = figures.VIRIDIS / 255.0
    linear = np.where(srgb <= 0.04045, srgb / 12.92, ((srgb + 0.055) / 1.055) ** 2.4)
    luminance = linear @ np.array([0.2126, 0.7152, 0.0722])
    # Rises over every 4 entries; single steps may dip by uint8 rounding only (the published
    # table, rounded to uint8, dips the same way).
    assert np.all(np.diff(luminance[::4]) > 0)
    assert np.diff(luminance).min() > -5e-4
    assert luminance[-1] > 10 * luminance[0]


@pytest.mark.parametrize(("height", "width"), [(40, 96), (96, 40), (50, 50)])
def test_map_peaking_top_left_gives_overlay_hottest_at_top_left(height: int, width: int) -> None:
    image = np.full((height, width, 3), 128, dtype=np.uint8)
    cam = np.zeros((4, 6), dtype=np.float32)
    cam[0, 0] = 5.0
    out = figures.overlay(image, cam)
    assert out.shape == (height, width, 3)
    hot = _hotness(out)
    row, col = np.unravel_index(np.argmax(hot), hot.shape)
    assert row < height / 4
    assert col < width / 4
    quadrant = hot[: height // 2, : width // 2].mean()
    assert quadrant > hot[height // 2 :, width // 2 :].mean() + 20


def test_map_peaking_bottom_right_on_wide_image_is_hottest_bottom_right() -> None:
    image = np.zeros((30, 80, 3), dtype=np.uint8)
    cam = np.zeros((3, 8), dtype=np.float32)
    cam[2, 7] = 1.0
    hot = _hotness(figures.overlay(image, cam))
    row, col = np.unravel_index(np.argmax(hot), hot.shape)
    assert row >= 20
    assert col >= 70


def test_overlay_is_rgb_hot_pixels_are_yellow_not_blue() -> None:
    image = np.full((20, 30, 3), 128, dtype=np.uint8)
    cam = np.zeros((2, 3), dtype=np.float32)
    cam[0, 0] = 1.0
    out = figures.overlay(image, cam).astype(int)
    hottest = out[0, 0]
    assert hottest[0] > hottest[2] + 60  # yellow (R high, B low); BGR order would invert this


def test_overlay_equals_the_hand_computed_blend() -> None:
    image = np.full((6, 10, 3), 100, dtype=np.uint8)
    full = figures.overlay(image, np.ones((3, 5)), alpha=0.4)
    expected = np.round(0.6 * 100 + 0.4 * figures.VIRIDIS[255].astype(float))
    assert np.array_equal(full[2, 3], expected.astype(np.uint8))
    # An all-zero map is "no attention anywhere": the lowest colour, never NaN.
    none = figures.overlay(image, np.zeros((3, 5)), alpha=0.4)
    expected_low = np.round(0.6 * 100 + 0.4 * figures.VIRIDIS[0].astype(float))
    assert np.array_equal(none[0, 0], expected_low.astype(np.uint8))


def test_overlay_is_invariant_to_the_scale_of_the_map() -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)
    cam = rng.uniform(0, 1, (3, 4)).astype(np.float32)
    assert np.array_equal(figures.overlay(image, cam), figures.overlay(image, cam * 37.5))


def test_overlay_rejects_a_non_rgb_image() -> None:
    with pytest.raises(UsageError, match=r"\[H, W, 3\]"):
        figures.overlay(np.zeros((8, 8), dtype=np.uint8), np.ones((2, 2)))


def test_upsample_matches_torch_bilinear_without_corner_alignment() -> None:
    rng = np.random.default_rng(1)
    cam = rng.uniform(0, 1, (5, 7)).astype(np.float32)
    ours = figures.upsample(cam, (23, 41))
    reference = F.interpolate(
        torch.from_numpy(cam)[None, None], size=(23, 41), mode="bilinear", align_corners=False
    )[0, 0].numpy()
    assert ours.shape == (23, 41)
    np.testing.assert_allclose(ours, reference, atol=1e-3)


def test_normalise_map_divides_by_max_and_zeroes_undefined_maps() -> None:
    np.testing.assert_allclose(figures.normalise_map(np.array([[1.0, 4.0], [2.0, -1.0]])),
                               [[0.25, 1.0], [0.5, 0.0]])
    assert not figures.normalise_map(np.zeros((2, 2))).any()
    assert not figures.normalise_map(np.full((2, 2), np.nan)).any()


def test_png_data_uri_round_trips_pixels_in_rgb_order() -> None:
    rgb = np.zeros((5, 7, 3), dtype=np.uint8)
    rgb[..., 0] = 200
    rgb[1, 2] = (1, 2, 3)
    uri = figures.png_data_uri(rgb)
    assert uri.startswith("data:image/png;base64,")
    assert np.array_equal(_decode(uri), rgb)


def test_jpeg_data_uri_keeps_colours_close() -> None:
    rgb = np.zeros((16, 16, 3), dtype=np.uint8)
    rgb[..., 0] = 220
    uri = figures.jpeg_data_uri(rgb)
    assert uri.startswith("data:image/jpeg;base64,")
    back = _decode(uri).astype(int)
    assert abs(back[..., 0].mean() - 220) < 6
    assert back[..., 2].mean() < 10


def test_fit_within_keeps_the_aspect_ratio_and_never_enlarges() -> None:
    assert figures.fit_within(np.zeros((100, 400, 3), np.uint8), 160).shape == (40, 160, 3)
    assert figures.fit_within(np.zeros((30, 20, 3), np.uint8), 160).shape == (30, 20, 3)


def test_box_stats_are_numpy_quartiles_with_tukey_whiskers() -> None:
    values = np.array([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 100, np.nan], dtype=float)
    stats = figures.box_stats(values)
    assert stats is not None
    q1, med, q3 = np.percentile(values[:-1], [25, 50, 75])
    assert (stats["q1"], stats["median"], stats["q3"]) == (q1, med, q3)
    assert stats["lo"] == 1
    assert stats["hi"] == 10
    assert stats["n"] == 11
    assert figures.box_stats(np.array([np.nan])) is None


def test_box_plot_layout_places_quartiles_on_the_scale() -> None:
    layout = figures.box_plot_layout(
        "t", [("a", np.array([0.25, 0.5, 0.75]), False), ("empty", np.array([]), True)],
        baseline=np.array([0.0, 1.0]), domain=(0.0, 1.0),
    )
    x0, x1 = layout["plot_x0"], layout["plot_x1"]
    row = layout["rows"][0]
    assert row["median"] == pytest.approx(x0 + 0.5 * (x1 - x0), abs=0.1)
    assert row["q1"] == pytest.approx(x0 + 0.375 * (x1 - x0), abs=0.1)
    assert row["lo"] == pytest.approx(x0 + 0.25 * (x1 - x0), abs=0.1)
    assert layout["rows"][1]["empty"]
    assert layout["rows"][1]["flagged"]
    assert layout["baseline"]["x"] == pytest.approx(row["median"], abs=0.1)


def test_nice_ticks_are_round_and_cover_the_range() -> None:
    assert figures.nice_ticks(0.0, 1.0) == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert figures.nice_ticks(0.0, 1.6) == [0.0, 0.5, 1.0, 1.5]
    assert figures.nice_ticks(-0.1, 0.3) == [-0.1, 0.0, 0.1, 0.2, 0.3]


def test_bar_chart_negative_values_extend_left_of_zero() -> None:
    layout = figures.bar_chart_layout("t", [("x", [0.3, -0.1])], ["edit", "control"])
    zero = layout["zero"]
    up, down = layout["groups"][0]["bars"]
    assert up["x"] == zero
    assert up["w"] > 0
    assert down["x"] + down["w"] == pytest.approx(zero, abs=0.1)
    assert up["w"] == pytest.approx(3 * down["w"], abs=0.3)
    missing = figures.bar_chart_layout("t", [("x", [None])], ["edit"])
    assert missing["groups"][0]["bars"][0]["empty"]


def test_heat_grid_colours_by_share_of_max_and_labels_counts() -> None:
    layout = figures.heat_grid_layout([[6, 0], [3, 0]])
    cells = {(c["x"], c["y"]): c for c in layout["cells"]}
    top_left, bottom_left = cells[(0.0, 0.0)], cells[(0.0, layout["cell"])]
    assert top_left["fill"] == figures.hex_colour(figures.VIRIDIS[255])
    assert top_left["text"] == "6"
    assert top_left["ink"] == "#000000"
    assert bottom_left["fill"] == figures.hex_colour(figures.VIRIDIS[128])
    assert cells[(layout["cell"], 0.0)]["fill"] == figures.hex_colour(figures.VIRIDIS[0])
    assert cells[(layout["cell"], 0.0)]["ink"] == "#ffffff"
    with pytest.raises(UsageError, match="2-D"):
        figures.heat_grid_layout([1, 2, 3])


def test_heat_grid_outlines_the_marked_region_where_it_is() -> None:
    # Cells 10 units; marked: the top-right cell and the block below it, an L of 3 cells in a
    # 3 x 3 grid (row 0 at the top). Its border: 8 unit edges, none between marked cells.
    marked = [[False, False, True], [False, True, True], [False, False, False]]
    layout = figures.heat_grid_layout([[0, 0, 5], [0, 2, 9], [1, 0, 0]], cell=10.0,
                                      marked=marked)
    assert sorted(layout["outline"]) == sorted([
        [20.0, 0.0, 30.0, 0.0],    # top of (0, 2): the grid's edge
        [20.0, 0.0, 20.0, 10.0],   # left of (0, 2)
        [30.0, 0.0, 30.0, 10.0],   # right of (0, 2)
        [10.0, 10.0, 20.0, 10.0],  # top of (1, 1)
        [10.0, 10.0, 10.0, 20.0],  # left of (1, 1)
        [10.0, 20.0, 20.0, 20.0],  # bottom of (1, 1)
        [20.0, 20.0, 30.0, 20.0],  # bottom of (1, 2)
        [30.0, 10.0, 30.0, 20.0],  # right of (1, 2)
    ])
    assert figures.heat_grid_layout([[1, 2], [3, 4]])["outline"] == []
    assert figures.heat_grid_layout([[1, 2], [3, 4]], marked=marked)["outline"] == []  # shape


def test_interval_chart_marks_chance_and_interval() -> None:
    layout = figures.interval_chart_layout(
        "t", [{"label": "meta", "value": 0.9, "low": 0.8, "high": 1.0, "chance": 0.5}]
    )
    row = layout["rows"][0]
    assert row["low"] < row["x"] < row["high"]
    assert row["chance"] == pytest.approx((layout["plot_x0"] + layout["plot_x1"]) / 2, abs=0.1)


def test_mask_outline_traces_the_mask_boundary_on_a_non_square_image() -> None:
    image = np.zeros((20, 40, 3), dtype=np.uint8)
    mask = np.zeros((10, 20), dtype=bool)  # half resolution: resized nearest-neighbour
    mask[2:6, 12:18] = True  # right half of the image: x 24-35, y 4-11 at full size
    out = figures.mask_outline(image, mask)
    drawn = (out == np.array(figures.OUTLINE_RGB)).all(axis=2)
    ys, xs = np.nonzero(drawn)
    assert (xs.min(), xs.max(), ys.min(), ys.max()) == (24, 35, 4, 11)
    assert not drawn[6:10, 26:34].any()  # the inside stays untouched
    assert (out[~drawn] == 0).all()
