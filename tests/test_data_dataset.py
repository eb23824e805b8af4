"""AuditDataset items, masks and boxes on the input grid, border band/stats, batching."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from auditor.data import dataset as dataset_module
from auditor.data.dataset import (
    AuditDataset,
    border_stats,
    collate_samples,
    make_loader,
)
from auditor.data.regions import border_band
from auditor.data.sources import DatasetIndex, SampleRef, open_source
from auditor.detect.probe_encoding import border_band_mask
from auditor.errors import UsageError
from tests.helpers import images

ITEM_KEYS = {"index", "image", "mask", "has_mask", "box", "ok", "error", "props", "thumb16",
             "warning", "foreground_source"}


def one_sample(path, mask_path=None, box=None, image_size=(32, 32), border=0.1):
    ref = SampleRef(index=7, path=str(path), rel_path="x", label=0, mask_path=mask_path, box=box)
    index = DatasetIndex(root="/", classes=["a"], samples=[ref])
    return AuditDataset(index, image_size=image_size, border=border)[0]


def test_item_has_the_contract_keys_shapes_and_dtypes(tmp_path):
    item = one_sample(images.solid(tmp_path / "a.png", (40, 20)), image_size=(24, 32))
    assert set(item) == ITEM_KEYS
    assert item["index"] == 7
    assert item["image"].shape == (3, 24, 32)
    assert item["image"].dtype == torch.uint8
    assert item["mask"].shape == (24, 32)
    assert item["mask"].dtype == torch.uint8
    assert item["box"].dtype == torch.float32
    assert torch.isnan(item["box"]).all()
    assert item["thumb16"].shape == (3, 16, 16)
    assert (item["ok"], item["error"], item["warning"], item["has_mask"]) == (True, "", "", False)
    assert item["foreground_source"] == "none"
    assert item["props"]["border_dominant"] == "#ff0000"


def test_non_square_image_keeps_width_and_height_apart(tmp_path):
    array = np.zeros((20, 40, 3), dtype=np.uint8)
    array[:, :20] = images.RED
    array[:, 20:] = images.BLUE
    item = one_sample(images.save(tmp_path / "lr.png", Image.fromarray(array)),
                      image_size=(10, 20))
    image = item["image"]
    assert (image[:, :, :10] == torch.tensor(images.RED)[:, None, None]).all()
    assert (image[:, :, 10:] == torch.tensor(images.BLUE)[:, None, None]).all()


def test_downscaling_is_area_averaging_and_thumb_is_area_downsampled(tmp_path):
    # Every third column is 255: a 3x (and 6x) area average is exactly 85 everywhere, while
    # bilinear sampling at 3x reads only the middle column of each triple (0).
    array = np.zeros((96, 96, 3), dtype=np.uint8)
    array[:, 2::3] = 255
    item = one_sample(images.save(tmp_path / "stripes.png", Image.fromarray(array)),
                      image_size=(32, 32))
    assert (item["image"] == 85).all()
    assert (item["thumb16"] == 85).all()


@pytest.mark.parametrize(("input_size", "expected"), [
    ((32, 32), [8.0, 8.0, 24.0, 24.0]),   # x * 32/40 = 0.8 x, y * 32/20 = 1.6 y
    ((16, 48), [12.0, 4.0, 36.0, 12.0]),  # x * 48/40 = 1.2 x, y * 16/20 = 0.8 y
])
def test_box_is_scaled_per_axis_on_a_non_square_image(tmp_path, input_size, expected):
    path = images.solid(tmp_path / "a.png", (40, 20))
    item = one_sample(path, box=(10.0, 5.0, 30.0, 15.0), image_size=input_size)
    assert item["box"].tolist() == expected
    x0, y0, x1, y1 = (int(v) for v in expected)
    filled = torch.zeros(input_size, dtype=torch.uint8)
    filled[y0:y1, x0:x1] = 1
    assert torch.equal(item["mask"], filled)
    assert item["has_mask"] is True


def test_mask_file_and_box_of_the_same_rectangle_land_on_the_same_input_pixels(tmp_path):
    path = images.solid(tmp_path / "a.png", (40, 20))
    rectangle = np.zeros((20, 40), dtype=np.uint8)
    rectangle[3:11, 7:29] = 255  # box x0=7, y0=3, x1=29, y1=11
    mask_path = images.save(tmp_path / "m.png", Image.fromarray(rectangle))
    for size in [(32, 32), (13, 50), (7, 9)]:
        from_mask = one_sample(path, mask_path=str(mask_path), image_size=size)["mask"]
        from_box = one_sample(path, box=(7.0, 3.0, 29.0, 11.0), image_size=size)["mask"]
        assert torch.equal(from_mask, from_box), size
        assert from_mask.sum() > 0


def test_box_outside_the_image_is_dropped_with_a_warning(tmp_path):
    item = one_sample(images.solid(tmp_path / "a.png", (40, 20)), box=(50.0, 1.0, 60.0, 5.0))
    assert item["has_mask"] is False
    assert torch.isnan(item["box"]).all()
    assert "lies outside" in item["warning"]


def test_mask_of_a_different_size_is_resized_with_a_warning(tmp_path):
    path = images.solid(tmp_path / "a.png", (40, 20))
    half = np.zeros((10, 10), dtype=np.uint8)
    half[:, 5:] = 1
    mask_path = images.save(tmp_path / "m.png", Image.fromarray(half))
    item = one_sample(path, mask_path=str(mask_path), image_size=(8, 8))
    assert item["has_mask"] is True
    assert "mask size 10x10 differs from image size 40x20, a different aspect" in item["warning"]
    assert item["mask"][:, :4].sum() == 0
    assert (item["mask"][:, 4:] == 1).all()


@pytest.mark.parametrize(("values", "foreground"), [
    ([0, 1], [0, 1]),                 # 0/1 label mask: nonzero is foreground
    ([0, 255], [0, 1]),
    ([0, 127, 128, 255], [0, 0, 1, 1]),  # soft mask: > 127
    ([1, 1], [1, 1]),                 # all-full is a valid mask
    ([0, 0], [0, 0]),                 # all-empty too
])
def test_mask_values_are_binarised_by_the_documented_rule(tmp_path, values, foreground):
    path = images.solid(tmp_path / "a.png", (len(values), 1))
    mask_path = images.save(tmp_path / "m.png",
                            Image.fromarray(np.array([values], dtype=np.uint8)))
    item = one_sample(path, mask_path=str(mask_path), image_size=(1, len(values)))
    assert item["mask"][0].tolist() == foreground
    assert item["has_mask"] is True


def test_rgba_mask_uses_its_alpha_channel(tmp_path):
    path = images.solid(tmp_path / "a.png", (4, 1))
    rgba = np.zeros((1, 4, 4), dtype=np.uint8)
    rgba[..., :3] = 255
    rgba[0, :, 3] = [0, 0, 255, 255]
    mask_path = images.save(tmp_path / "m.png", Image.fromarray(rgba, mode="RGBA"))
    assert one_sample(path, mask_path=str(mask_path), image_size=(1, 4))["mask"][0].tolist() == [
        0, 0, 1, 1]


@pytest.mark.parametrize("orientation", [6, 3, 5])
def test_mask_is_oriented_like_its_exif_rotated_image(tmp_path, orientation):
    upright = images.corner_marked(10, 6)
    stored = images.stored_for_orientation(upright, orientation)
    path = images.with_orientation(tmp_path / "o.png", stored, orientation)
    stored_mask = (stored[..., 0] == 255).astype(np.uint8)  # the red corner, as stored
    mask_path = images.save(tmp_path / "m.png", Image.fromarray(stored_mask))
    own_exif_path = images.with_orientation(tmp_path / "m_exif.png", stored_mask * 255,
                                            orientation)
    expected = torch.from_numpy((upright[..., 0] == 255).astype(np.uint8))
    for mask_file in (mask_path, own_exif_path):
        item = one_sample(path, mask_path=str(mask_file), image_size=(6, 10))
        assert torch.equal(item["mask"], expected)
        assert item["warning"] == ""


def test_mask_already_upright_is_not_rotated_again(tmp_path):
    upright = images.corner_marked(10, 6)
    path = images.with_orientation(tmp_path / "o.png", images.stored_for_orientation(upright, 6),
                                   6)
    upright_mask = (upright[..., 0] == 255).astype(np.uint8)
    mask_path = images.save(tmp_path / "m.png", Image.fromarray(upright_mask))
    item = one_sample(path, mask_path=str(mask_path), image_size=(6, 10))
    assert torch.equal(item["mask"], torch.from_numpy(upright_mask))


def test_unreadable_mask_keeps_the_image_with_a_warning(tmp_path):
    path = images.solid(tmp_path / "a.png", (8, 8))
    bad = images.raw(tmp_path / "m.png", images.HTML_PAGE)
    for mask_path in (str(bad), str(tmp_path / "missing.png")):
        item = one_sample(path, mask_path=mask_path)
        assert item["ok"] is True
        assert item["has_mask"] is False
        assert item["warning"].startswith("mask ignored:")
    with_box = one_sample(path, mask_path=str(bad), box=(0.0, 0.0, 4.0, 4.0), image_size=(8, 8))
    assert with_box["has_mask"] is True
    assert with_box["mask"].sum() == 16


def test_every_bad_file_becomes_an_error_row_with_a_recognisable_reason(tmp_path):
    root = tmp_path / "data"
    good = Image.fromarray(images.noise_rgb(32, 32))
    images.save(root / "cat" / "good.png", good)
    images.raw(root / "cat" / "zero.jpg", b"")
    images.truncated(root / "cat" / "short.jpg", images.encoded(good, "JPEG"), 0.5)
    images.truncated(root / "cat" / "short.png", images.encoded(good, "PNG"), 0.5)
    images.raw(root / "cat" / "page.jpg", images.HTML_PAGE)
    images.bomb_png(root / "cat" / "bomb.png")
    images.solid(root / "cat" / "vanishes.png", (4, 4))
    index = open_source(root)
    (root / "cat" / "vanishes.png").unlink()
    dataset = AuditDataset(index, image_size=(16, 16))
    reasons = {s.rel_path: dataset[i]["error"] for i, s in enumerate(index.samples)}
    assert reasons["cat/good.png"] == ""
    assert "empty file" in reasons["cat/zero.jpg"]
    assert "truncated" in reasons["cat/short.jpg"]
    assert "truncated" in reasons["cat/short.png"]
    assert "looks like HTML" in reasons["cat/page.jpg"]
    assert "decompression bomb" in reasons["cat/bomb.png"]
    assert "file not found" in reasons["cat/vanishes.png"]
    bad = dataset[index.samples.index(next(s for s in index.samples if "zero" in s.rel_path))]
    assert bad["ok"] is False
    assert bad["image"].shape == (3, 16, 16)
    assert bad["image"].sum() == 0
    assert bad["props"] == {}


def test_unexpected_exception_becomes_an_error_row(tmp_path, monkeypatch):
    def explode(*args, **kwargs):
        raise RuntimeError("library bug")

    monkeypatch.setattr(dataset_module, "decode_bytes", explode)
    item = one_sample(images.solid(tmp_path / "a.png", (4, 4)))
    assert item["ok"] is False
    assert item["error"] == "unexpected error: RuntimeError: library bug"


def test_border_band_matches_a_hand_built_band():
    band = border_band(10, 8, 0.25)
    # rows: round half up 2.5 -> 3; columns: 2.0 -> 2
    expected = torch.zeros(10, 8, dtype=torch.bool)
    expected[:3] = True
    expected[7:] = True
    expected[:, :2] = True
    expected[:, 6:] = True
    assert torch.equal(band, expected)
    assert not border_band(5, 5, 0.0).any()
    assert border_band(5, 4, 0.5).all()
    with pytest.raises(UsageError, match=r"0\.6"):
        border_band(5, 5, 0.6)


def test_a_positive_border_is_at_least_one_pixel_and_the_probe_uses_the_same_band():
    # 0.01 * 16 = 0.16 rounds to 0: the one rule keeps a one-pixel band on every side.
    band = border_band(16, 16, 0.01)
    assert band.sum() == 16 * 16 - 14 * 14
    np.testing.assert_array_equal(border_band_mask(16, 16, 0.01), band.numpy())
    np.testing.assert_array_equal(border_band_mask(16, 12, 0.25), border_band(16, 12, 0.25).numpy())


def test_border_stats_of_a_solid_frame_around_noise():
    rgb = np.random.default_rng(0).integers(0, 256, size=(20, 20, 3)).astype(np.uint8)
    band = border_band(20, 20, 0.1).numpy()
    rgb[band] = (10, 20, 30)
    stats = border_stats(rgb, band)
    assert stats == {"border_mean_r": 10.0, "border_mean_g": 20.0, "border_mean_b": 30.0,
                     "border_std": 0.0, "border_uniform_frac": 1.0, "border_dominant": "#0a141e"}


def test_border_stats_uniform_fraction_counts_pixels_near_the_dominant_colour():
    band = np.ones((1, 10), dtype=bool)
    rgb = np.zeros((1, 10, 3), dtype=np.uint8)
    rgb[0, :6] = 200
    rgb[0, 6:8] = 210  # within 16 of 200 -> uniform
    rgb[0, 8:] = 50
    stats = border_stats(rgb, band)
    assert stats["border_dominant"] == "#c8c8c8"
    assert stats["border_uniform_frac"] == pytest.approx(0.8)
    assert stats["border_mean_r"] == pytest.approx((6 * 200 + 2 * 210 + 2 * 50) / 10)
    empty = border_stats(rgb, np.zeros((1, 10), dtype=bool))
    assert math.isnan(empty["border_std"])
    assert empty["border_dominant"] == ""


def test_item_props_carry_border_stats_of_the_resized_image(tmp_path):
    array = np.zeros((40, 40, 3), dtype=np.uint8)
    array[:4] = array[-4:] = array[:, :4] = array[:, -4:] = (0, 255, 0)
    props = one_sample(images.save(tmp_path / "frame.png", Image.fromarray(array)),
                       image_size=(20, 20), border=0.1)["props"]
    assert props["border_dominant"] == "#00ff00"
    assert props["border_uniform_frac"] == 1.0


def test_collate_stacks_tensors_and_keeps_lists(tmp_path):
    good = images.solid(tmp_path / "a.png", (8, 8))
    bad = images.raw(tmp_path / "b.png", b"")
    refs = [SampleRef(i, str(p), p.name, 0) for i, p in enumerate([good, bad, good])]
    dataset = AuditDataset(DatasetIndex("/", ["a"], refs), image_size=(6, 5))
    batch = collate_samples([dataset[i] for i in range(3)])
    assert batch["image"].shape == (3, 3, 6, 5)
    assert batch["mask"].shape == (3, 6, 5)
    assert batch["box"].shape == (3, 4)
    assert batch["thumb16"].shape == (3, 3, 16, 16)
    assert batch["ok"].tolist() == [True, False, True]
    assert batch["ok"].dtype == torch.bool
    assert batch["has_mask"].dtype == torch.bool
    assert batch["index"] == [0, 1, 2]
    assert batch["error"][1].startswith("empty file")
    assert batch["props"][1] == {}
    assert batch["warning"] == ["", "", ""]


@pytest.mark.parametrize("workers", [0, 1])
def test_loader_yields_the_requested_positions_in_order(tmp_path, workers):
    refs = [SampleRef(i, str(images.solid(tmp_path / f"{i}.png", (4, 4), (i * 40, 0, 0))),
                      f"{i}.png", 0) for i in range(5)]
    dataset = AuditDataset(DatasetIndex("/", ["a"], refs), image_size=(4, 4))
    loader = make_loader(dataset, batch_size=2, workers=workers, indices=[4, 1, 3])
    batches = list(loader)
    assert [b["index"] for b in batches] == [[4, 1], [3]]
    assert batches[0]["image"][:, 0, 0, 0].tolist() == [160, 40]
    assert loader.persistent_workers is (workers > 0)


def test_bad_dataset_arguments_are_usage_errors(tmp_path):
    index = DatasetIndex("/", ["a"], [])
    with pytest.raises(UsageError, match=r"\(0, 5\)"):
        AuditDataset(index, image_size=(0, 5))
    with pytest.raises(UsageError, match="batch_size"):
        make_loader(AuditDataset(index, image_size=(4, 4)), batch_size=0)
