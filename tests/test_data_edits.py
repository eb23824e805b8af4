"""Image edits for interventions: every pixel inside / outside the edited region checked by hand."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from auditor.data.dataset import resize_image
from auditor.data.edits import (
    blank_border,
    box_mask,
    fill_box,
    gaussian_blur,
    reencode,
    replace_background,
)
from auditor.errors import UsageError


@pytest.fixture
def batch() -> torch.Tensor:
    """uint8 [2, 3, 6, 8]: distinct random pixels per sample."""
    generator = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (2, 3, 6, 8), generator=generator, dtype=torch.uint8)


@pytest.fixture
def masks() -> torch.Tensor:
    """bool [2, 6, 8]: sample 0 has a 2x3 object at rows 2-3, cols 3-5; sample 1 none."""
    m = torch.zeros(2, 6, 8, dtype=torch.bool)
    m[0, 2:4, 3:6] = True
    return m


def test_replace_background_with_colour_keeps_object_and_paints_the_rest(batch, masks):
    out = replace_background(batch, masks, (10, 20, 30))
    assert torch.equal(out[0, :, 2:4, 3:6], batch[0, :, 2:4, 3:6])
    background = ~masks[0]
    for channel, value in enumerate((10, 20, 30)):
        assert bool((out[0, channel][background] == value).all())
        assert bool((out[1, channel] == value).all())
    assert out.dtype == torch.uint8


def test_replace_background_with_per_sample_colours(batch, masks):
    out = replace_background(batch, masks, torch.tensor([[1, 2, 3], [200, 100, 0]]))
    assert out[0, :, 0, 0].tolist() == [1, 2, 3]
    assert out[1, :, 5, 7].tolist() == [200, 100, 0]


def test_replace_background_with_images_copies_their_pixels_outside_the_object(batch, masks):
    donors = 255 - batch
    out = replace_background(batch, masks, donors)
    expected = torch.where(masks[:, None], batch, donors)
    assert torch.equal(out, expected)
    assert torch.equal(out[0, :, 0, 0], 255 - batch[0, :, 0, 0])


def test_replace_background_with_blur_keeps_object_and_blurs_background():
    images = torch.zeros(1, 3, 32, 40, dtype=torch.uint8)
    images[:, :, :, ::2] = 255  # vertical stripes: a sigma-4 blur turns them to 127.5
    masks = torch.zeros(1, 32, 40, dtype=torch.bool)
    masks[0, 10:20, 10:20] = True
    out = replace_background(images, masks, "blur")
    assert torch.equal(out[0, :, 10:20, 10:20], images[0, :, 10:20, 10:20])
    interior = out[0, :, 8:24, 22:28].float()
    assert float((interior - 127.5).abs().max()) <= 1.0


def test_gaussian_blur_of_a_constant_image_is_the_same_image():
    images = torch.full((1, 3, 5, 7), 93, dtype=torch.uint8)
    assert torch.equal(gaussian_blur(images, sigma=2.0), images)


def test_gaussian_blur_spreads_an_impulse_by_the_normalised_gaussian():
    images = torch.zeros(1, 3, 21, 21, dtype=torch.uint8)
    images[0, :, 10, 10] = 255
    out = gaussian_blur(images, sigma=1.0).float()
    kernel = np.exp(-0.5 * np.arange(-3, 4) ** 2)
    kernel /= kernel.sum()
    assert float(out[0, 0, 10, 10]) == pytest.approx(round(255 * kernel[3] ** 2), abs=1)
    assert float(out[0, 0, 10, 12]) == pytest.approx(round(255 * kernel[3] * kernel[5]), abs=1)


def test_blank_border_paints_exactly_the_band(batch):
    # border 0.25 on 6 x 8: rows 0-1 and 4-5 (round(1.5) = 2), cols 0-1 and 6-7.
    out = blank_border(batch, 0.25, (7, 7, 7))
    band = torch.zeros(6, 8, dtype=torch.bool)
    band[:2] = band[4:] = True
    band[:, :2] = band[:, 6:] = True
    assert bool((out[:, :, band] == 7).all())
    assert torch.equal(out[:, :, ~band], batch[:, :, ~band])
    assert int((~band).sum()) == 2 * 4


def test_fill_box_paints_pixels_whose_centres_are_inside(batch):
    # x in [0.25, 0.75) of 8 columns: centres 2.5/8 .. 5.5/8 -> cols 2-5; y in [0, 0.5) of 6
    # rows: centres 0.5/6 .. 2.5/6 -> rows 0-2.
    out = fill_box(batch, (0.25, 0.0, 0.75, 0.5), (0, 255, 0))
    inside = torch.zeros(6, 8, dtype=torch.bool)
    inside[0:3, 2:6] = True
    assert out[:, :, inside].permute(0, 2, 1).reshape(-1, 3).tolist() == [[0, 255, 0]] * 24
    assert torch.equal(out[:, :, ~inside], batch[:, :, ~inside])


def test_fill_box_per_sample_boxes_and_whole_image_box(batch):
    boxes = torch.tensor([[0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0]])
    out = fill_box(batch, boxes, (1, 1, 1))
    assert bool((out[0] == 1).all())
    assert torch.equal(out[1], batch[1])
    assert int(box_mask(boxes, 2, 6, 8)[0].sum()) == 48


def test_fill_box_copies_pixels_from_an_image_batch(batch):
    donors = torch.full_like(batch, 9)
    out = fill_box(batch, (0.0, 0.0, 0.5, 1.0), donors)
    assert bool((out[..., :4] == 9).all())
    assert torch.equal(out[..., 4:], batch[..., 4:])


def test_edits_never_modify_their_input(batch, masks):
    before = batch.clone()
    replace_background(batch, masks, "blur")
    blank_border(batch, 0.2, (0, 0, 0))
    fill_box(batch, (0, 0, 0.5, 0.5), (0, 0, 0))
    assert torch.equal(batch, before)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda b, m: replace_background(b.float(), m, (0, 0, 0)), "uint8"),
        (lambda b, m: replace_background(b, m.byte(), (0, 0, 0)), "bool"),
        (lambda b, m: replace_background(b, m, "noise"), "noise"),
        (lambda b, m: replace_background(b, m, (0, 0, 300)), "0-255"),
        (lambda b, m: fill_box(b, (0, 0, 1), (0, 0, 0)), "4 numbers"),
        (lambda b, m: blank_border(b, 0.2, (0, 0)), "3 numbers"),
    ],
)
def test_bad_arguments_raise_usage_errors_naming_the_problem(batch, masks, call, match):
    with pytest.raises(UsageError, match=match):
        call(batch, masks)


def _png_bytes(rgb: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def textured() -> np.ndarray:
    rng = np.random.default_rng(1)
    return rng.integers(0, 256, size=(20, 24, 3), dtype=np.uint8)


def test_reencode_png_as_jpeg_equals_pil_jpeg_round_trip(tmp_path, textured):
    path = tmp_path / "a.png"
    path.write_bytes(_png_bytes(textured))
    out = reencode(path, "JPEG", quality=75)
    buffer = io.BytesIO()
    Image.fromarray(textured).save(buffer, format="JPEG", quality=75)
    expected = np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))
    assert np.array_equal(out, expected)
    assert not np.array_equal(out, textured)  # JPEG at 75 is lossy on noise


def test_reencode_jpeg_as_png_is_lossless_and_bytes_equal_path(tmp_path, textured):
    buffer = io.BytesIO()
    Image.fromarray(textured).save(buffer, format="JPEG", quality=90)
    data = buffer.getvalue()
    path = tmp_path / "a.jpg"
    path.write_bytes(data)
    decoded = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    assert np.array_equal(reencode(path, "PNG"), decoded)
    assert np.array_equal(reencode(data, "png"), decoded)


def test_reencode_resizes_as_the_loader(tmp_path, textured):
    path = tmp_path / "a.png"
    path.write_bytes(_png_bytes(textured))
    out = reencode(path, "PNG", size=(10, 12))
    assert np.array_equal(out, resize_image(textured, (10, 12)))


def test_reencode_rejects_unknown_format(tmp_path, textured):
    path = tmp_path / "a.png"
    path.write_bytes(_png_bytes(textured))
    with pytest.raises(UsageError, match="GIF"):
        reencode(path, "GIF")


def test_cells_mask_lays_the_grid_over_the_image_by_pixel_centres():
    from auditor.data.edits import cells_mask
    got = cells_mask(np.array([[True, False], [False, True]]), 4, 6)
    expected = np.zeros((4, 6), dtype=bool)
    expected[:2, :3] = True
    expected[2:, 3:] = True
    assert torch.equal(got, torch.from_numpy(expected))


def test_fill_region_paints_only_the_region():
    from auditor.data.edits import fill_region
    images = torch.zeros(2, 3, 4, 4, dtype=torch.uint8)
    region = torch.zeros(4, 4, dtype=torch.bool)
    region[3] = True
    out = fill_region(images, region, (9, 9, 9))
    assert int(out[:, :, 3].min()) == 9
    assert int(out[:, :, :3].max()) == 0


def test_side_bands_cover_only_the_sides_asked_for():
    from auditor.data.regions import border_band, side_bands
    bottom = side_bands(10, 10, 0.2, ["bottom"])
    assert bottom[8:].all()
    assert not bottom[:8].any()
    assert torch.equal(side_bands(10, 10, 0.2, ["top", "bottom", "left", "right"]),
                       border_band(10, 10, 0.2))
