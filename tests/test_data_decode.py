"""decode_image: every mode to the right RGB, the fingerprint, and every bad file refused."""

from __future__ import annotations

import math
import time

import cv2
import numpy as np
import pytest
from PIL import Image, ImageFile

from auditor.data.decode import PROPS_KEYS, decode_image, estimate_jpeg_quality
from auditor.errors import DecodeError
from tests.helpers import images


def decode(path, **kwargs):
    return decode_image(str(path), **kwargs)


@pytest.mark.parametrize("quality", [50, 75, 95])
def test_jpeg_quality_estimate_recovers_encoder_quality(tmp_path, quality):
    path = images.save(tmp_path / "q.jpg", Image.fromarray(images.noise_rgb(32, 24)), "JPEG",
                       quality=quality)
    assert abs(decode(path).props["jpeg_quality"] - quality) <= 2


def test_jpeg_quality_estimate_of_hand_derived_ijg_tables():
    # IJG quality 50 is scale 100: the Annex K tables themselves. Quality 100 is scale 0:
    # every entry clamps to 1 (quality 99, scale 2, already gives 2 for a base of 121).
    annex_k_luma = [
        16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55,
        14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62,
        18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
        49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99,
    ]
    assert estimate_jpeg_quality({0: annex_k_luma}) == 50.0
    assert estimate_jpeg_quality({0: [1] * 64, 1: [1] * 64}) == 100.0
    # Quality 25 is scale 200: every entry doubles (2b*100+50)//100 = 2b, clamped at 255.
    assert estimate_jpeg_quality({0: [min(2 * v, 255) for v in annex_k_luma]}) == 25.0
    assert math.isnan(estimate_jpeg_quality({}))


@pytest.mark.parametrize(("subsampling", "name"), [(0, "4:4:4"), (1, "4:2:2"), (2, "4:2:0")])
def test_chroma_subsampling_is_named_from_sampling_factors(tmp_path, subsampling, name):
    path = images.save(tmp_path / "s.jpg", Image.fromarray(images.noise_rgb(32, 32)), "JPEG",
                       subsampling=subsampling)
    assert decode(path).props["chroma_subsampling"] == name


def test_fingerprint_has_exactly_the_contract_keys_with_their_types(tmp_path):
    path = images.solid(tmp_path / "a.png", (40, 20))
    props = decode(path).props
    assert tuple(props) == PROPS_KEYS
    assert props["format"] == "PNG"
    assert props["extension"] == "png"
    assert props["extension_mismatch"] is False
    assert (props["width"], props["height"], props["aspect"]) == (40, 20, 2.0)
    assert props["bit_depth"] == 8
    assert props["mean_alpha"] == 1.0
    assert math.isnan(props["jpeg_quality"])
    assert props["chroma_subsampling"] == ""
    assert props["n_frames"] == 1
    assert props["file_size"] == path.stat().st_size


def test_png_named_jpg_decodes_by_content_and_records_the_mismatch(tmp_path):
    path = images.solid(tmp_path / "liar.JPG", (5, 4), images.BLUE, "PNG")
    decoded = decode(path)
    assert decoded.props["format"] == "PNG"
    assert decoded.props["extension"] == "jpg"
    assert decoded.props["extension_mismatch"] is True
    assert (decoded.rgb == images.BLUE).all()


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_gives_the_same_upright_image(tmp_path, orientation):
    upright = images.corner_marked(10, 6)
    stored = images.stored_for_orientation(upright, orientation)
    path = images.with_orientation(tmp_path / "o.png", stored, orientation)
    decoded = decode(path)
    np.testing.assert_array_equal(decoded.rgb, upright)
    assert decoded.props["exif_orientation"] == orientation
    assert decoded.props["has_exif"] is True
    assert (decoded.props["width"], decoded.props["height"]) == (10, 6)


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_exif_orientation_of_a_jpeg_puts_the_red_corner_top_left(tmp_path, orientation):
    upright = np.kron(images.corner_marked(10, 6), np.ones((8, 8, 1), dtype=np.uint8))
    stored = images.stored_for_orientation(upright, orientation)
    path = images.with_orientation(tmp_path / "o.jpg", stored, orientation, "JPEG", quality=95)
    rgb = decode(path).rgb.astype(int)
    assert rgb.shape == (48, 80, 3)
    assert np.abs(rgb[4:20, 4:28] - images.RED).max() < 40
    assert np.abs(rgb[30:, 40:] - images.BLUE).max() < 40


def test_cmyk_jpeg_red_stays_red(tmp_path):
    decoded = decode(images.cmyk_jpeg(tmp_path / "cmyk.jpg"))
    assert decoded.props["mode"] == "CMYK"
    assert np.abs(decoded.rgb.astype(int) - images.RED).max() <= 8


def test_ycck_jpeg_decodes_to_the_colours_an_independent_decoder_gives(tmp_path):
    path = images.ycck_jpeg(tmp_path / "ycck.jpg")
    decoded = decode(path)
    assert decoded.props["mode"] == "CMYK"
    reference = cv2.imread(str(path), cv2.IMREAD_COLOR)[..., ::-1]  # OpenCV's own libjpeg
    assert decoded.rgb.shape == reference.shape == (16, 24, 3)
    assert decoded.rgb.std() > 20  # varied colours, so the comparison means something
    assert np.abs(decoded.rgb.astype(int) - reference.astype(int)).max() <= 3


def test_16_bit_grey_is_scaled_to_8_bits_not_clipped(tmp_path):
    values = np.array([[0, 257, 1000, 32768, 65535]], dtype=np.uint16)
    decoded = decode(images.grey16_png(tmp_path / "g16.png", values))
    # round(v / 257): 0, 1, 3.89 -> 4, 127.5 -> 128, 255; clipping would give 255 from 1000.
    np.testing.assert_array_equal(decoded.rgb[0, :, 0], [0, 1, 4, 128, 255])
    assert (decoded.rgb[..., 0] == decoded.rgb[..., 2]).all()
    assert decoded.props["bit_depth"] == 16


def test_16_bit_rgb_png_keeps_colour_and_reports_16_bits(tmp_path):
    rgb16 = np.full((3, 4, 3), [65535, 32896, 0], dtype=np.uint16)
    decoded = decode(images.rgb48_png(tmp_path / "rgb48.png", rgb16))
    np.testing.assert_array_equal(decoded.rgb[0, 0], [255, 128, 0])
    assert decoded.props["bit_depth"] == 16


def test_palette_transparency_is_composited_on_black(tmp_path):
    decoded = decode(images.palette_transparent_png(tmp_path / "p.png", size=(8, 6)))
    assert (decoded.rgb[:, :4] == 0).all()  # transparent green -> black
    assert (decoded.rgb[:, 4:] == images.RED).all()
    assert decoded.props["has_alpha"] is True
    assert decoded.props["mean_alpha"] == pytest.approx(0.5)
    assert decoded.props["mode"] == "P"


def test_rgba_is_premultiplied_on_black_and_mean_alpha_recorded(tmp_path):
    decoded = decode(images.rgba_png(tmp_path / "a.png", rgb=(200, 100, 50), alpha=128))
    # 200 * 128 / 255 = 100.4, 100 * 128 / 255 = 50.2, 50 * 128 / 255 = 25.1
    assert (decoded.rgb == [100, 50, 25]).all()
    assert decoded.props["mean_alpha"] == pytest.approx(128 / 255)


def test_grey_alpha_and_one_bit_images_become_grey_rgb(tmp_path):
    la = decode(images.la_png(tmp_path / "la.png", grey=200, alpha=255))
    assert (la.rgb == 200).all()
    assert la.props["has_alpha"] is True
    assert la.props["mean_alpha"] == 1.0
    bits = decode(images.one_bit_png(tmp_path / "bits.png", size=(8, 8)))
    assert (bits.rgb[:4] == 255).all()
    assert (bits.rgb[4:] == 0).all()
    assert bits.props["bit_depth"] == 1


@pytest.mark.parametrize(("name", "image_format"), [("a.gif", "GIF"), ("a.webp", "WEBP")])
def test_animation_decodes_its_first_frame_and_counts_frames(tmp_path, name, image_format):
    decoded = decode(images.animated(tmp_path / name, image_format))
    assert decoded.props["n_frames"] == 3
    assert (decoded.rgb == images.RED).all()


def test_one_pixel_image_decodes(tmp_path):
    decoded = decode(images.solid(tmp_path / "one.png", (1, 1), images.BLUE))
    assert decoded.rgb.shape == (1, 1, 3)
    assert decoded.props["aspect"] == 1.0


def test_zero_byte_file_is_refused_as_empty(tmp_path):
    with pytest.raises(DecodeError, match="empty file"):
        decode(images.raw(tmp_path / "zero.jpg", b""))


@pytest.mark.parametrize(("name", "image_format"), [("t.jpg", "JPEG"), ("t.png", "PNG")])
def test_truncated_image_is_refused_even_if_pil_is_told_to_accept_it(
    tmp_path, monkeypatch, name, image_format
):
    data = images.encoded(Image.fromarray(images.noise_rgb(64, 64)), image_format)
    path = images.truncated(tmp_path / name, data, keep=0.6)
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    with pytest.raises(DecodeError, match="truncated"):
        decode(path)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is True  # the caller's setting is restored


def test_html_with_an_image_extension_is_named_as_html(tmp_path):
    with pytest.raises(DecodeError, match="not an image: looks like HTML/text"):
        decode(images.raw(tmp_path / "page.jpg", images.HTML_PAGE))


def test_plain_text_and_random_bytes_are_not_images(tmp_path):
    with pytest.raises(DecodeError, match="looks like HTML/text"):
        decode(images.raw(tmp_path / "notes.png", b"just some notes\nabout cats\n" * 4))
    with pytest.raises(DecodeError, match="unrecognised file format"):
        decode(images.raw(tmp_path / "noise.png", bytes(range(256)) * 2))


def test_decompression_bomb_is_refused_before_decoding(tmp_path):
    path = images.bomb_png(tmp_path / "bomb.png", width=100_000, height=100_000)
    start = time.perf_counter()
    with pytest.raises(DecodeError, match="decompression bomb"):
        decode(path)
    assert time.perf_counter() - start < 1.0


def test_max_pixels_is_configurable_and_checked_on_the_declared_size(tmp_path):
    path = images.bomb_png(tmp_path / "big.png", width=3000, height=2000)  # no real pixels
    with pytest.raises(DecodeError, match=r"3000x2000 = 6000000 pixels exceeds max_pixels=5999999"):
        decode(path, max_pixels=5_999_999)
    small = images.solid(tmp_path / "small.png", (10, 10))
    assert decode(small, max_pixels=100).rgb.shape == (10, 10, 3)
    with pytest.raises(DecodeError, match="decompression bomb"):
        decode(small, max_pixels=99)


def test_vanished_file_is_reported_as_not_found(tmp_path):
    with pytest.raises(DecodeError, match="file not found"):
        decode(tmp_path / "gone.png")


def test_permission_denied_is_reported(tmp_path, monkeypatch):
    path = images.solid(tmp_path / "locked.png", (2, 2))

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    # Tests may run as root, where chmod 000 does not stop reading: fail the open instead.
    monkeypatch.setattr("auditor.data.decode.open", refuse, raising=False)
    with pytest.raises(DecodeError, match="permission denied"):
        decode(path)
