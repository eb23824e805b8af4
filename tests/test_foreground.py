"""Foreground estimation on synthetic images: object on white, object on a texture."""

from __future__ import annotations

import numpy as np
import pytest

from auditor.data.foreground import estimate_foreground
from auditor.errors import UsageError


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max(1, (a | b).sum()))


@pytest.fixture
def disk() -> np.ndarray:
    yy, xx = np.mgrid[:80, :100]
    return (yy - 42) ** 2 + (xx - 48) ** 2 < 22**2


def test_object_on_white_is_recovered_by_flood_fill(disk):
    rng = np.random.default_rng(0)
    image = np.full((80, 100, 3), 250, dtype=np.uint8)
    image += rng.integers(0, 5, image.shape, dtype=np.uint8)  # JPEG-like noise on the white
    image[disk] = (200, 30, 40)
    fg = estimate_foreground(image)
    assert fg.dtype == np.bool_
    assert fg.shape == (80, 100)
    assert iou(fg, disk) > 0.98


def test_white_hole_inside_the_object_stays_foreground(disk):
    image = np.full((80, 100, 3), 255, dtype=np.uint8)
    image[disk] = (20, 120, 20)
    image[40:45, 46:51] = 255  # a highlight not connected to the background
    fg = estimate_foreground(image)
    assert fg[40:45, 46:51].all()
    assert iou(fg, disk) > 0.98


def test_object_on_a_texture_is_found_by_grabcut(disk):
    rng = np.random.default_rng(1)
    texture = rng.integers(0, 256, (80, 100, 3), dtype=np.uint8)
    stripes = (np.arange(100)[None, :, None] // 5 % 2) * 120
    image = (texture // 3 + stripes).astype(np.uint8)
    image[disk] = (250, 220, 30)
    fg = estimate_foreground(image)
    assert iou(fg, disk) > 0.8


def test_uniform_image_has_an_empty_foreground():
    assert not estimate_foreground(np.full((20, 30, 3), 128, dtype=np.uint8)).any()


@pytest.mark.parametrize("bad", [np.zeros((10, 10), np.uint8), np.zeros((10, 10, 3), np.float32),
                                 np.zeros((2, 10, 3), np.uint8)])
def test_bad_input_raises_usage_error(bad):
    with pytest.raises(UsageError):
        estimate_foreground(bad)
