"""Foreground estimation for images that come without a mask or a box (`--foreground estimate`).

Two strategies, chosen per image:

1. Uniform border (a product shot on white, a sprite on a flat colour): when at least
   `UNIFORM_SHARE` of the outer ring of pixels lies within `COLOUR_TOLERANCE` (max abs channel
   difference) of the ring's median colour, the background is every pixel of that colour that
   is connected (8-connectivity) to the image edge: a flood fill from the border. The rest is
   the foreground, holes of background colour inside the object included.
2. Otherwise GrabCut (cv2.grabCut) initialised with a centre rectangle (`GRABCUT_MARGIN` of
   each side outside it is background), run on a copy shrunk to at most `GRABCUT_SIDE` pixels
   per side for speed, and resized back with nearest-neighbour.

An estimate is a guess: numbers computed from it are labelled as such by the caller.
"""

from __future__ import annotations

import cv2
import numpy as np

from auditor.errors import UsageError

COLOUR_TOLERANCE = 24
UNIFORM_SHARE = 0.9
RING_FRACTION = 0.02
GRABCUT_SIDE = 96
GRABCUT_MARGIN = 0.1
GRABCUT_ITERATIONS = 3


def estimate_foreground(rgb: np.ndarray) -> np.ndarray:
    """Estimated foreground of an RGB image.

    Args:
        rgb: uint8 [H, W, 3].

    Returns:
        bool [H, W], True = foreground. May be empty when nothing stands out.
    """
    if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8 or rgb.ndim != 3 \
            or rgb.shape[2] != 3:
        shape = getattr(rgb, "shape", None)
        dtype = getattr(rgb, "dtype", type(rgb).__name__)
        raise UsageError(f"estimate_foreground needs a uint8 array [H, W, 3]; got shape {shape} "
                         f"dtype {dtype}. Convert with np.asarray(image.convert('RGB')).")
    height, width = rgb.shape[:2]
    if height < 3 or width < 3:
        raise UsageError(f"image of {height}x{width} pixels is too small to estimate a "
                         "foreground (at least 3x3)")
    ring = _edge_ring(height, width)
    colour = np.median(rgb[ring], axis=0)
    near = np.abs(rgb.astype(np.int16) - colour.astype(np.int16)).max(axis=2) <= COLOUR_TOLERANCE
    if near[ring].mean() >= UNIFORM_SHARE:
        return _flood_from_border(near)
    return _grabcut_centre(rgb)


def _edge_ring(height: int, width: int) -> np.ndarray:
    """Bool [H, W]: the outer ring, RING_FRACTION of the shorter side deep (at least 1 pixel)."""
    depth = max(1, round(RING_FRACTION * min(height, width)))
    ring = np.zeros((height, width), dtype=bool)
    ring[:depth] = ring[-depth:] = True
    ring[:, :depth] = ring[:, -depth:] = True
    return ring


def _flood_from_border(background_colour: np.ndarray) -> np.ndarray:
    """Foreground = not (background-coloured pixels connected to the image edge)."""
    _, labels = cv2.connectedComponents(background_colour.astype(np.uint8), connectivity=8)
    edge_labels = np.unique(np.concatenate(
        (labels[0], labels[-1], labels[:, 0], labels[:, -1])))
    edge_labels = edge_labels[edge_labels > 0]
    return ~np.isin(labels, edge_labels)


def _grabcut_centre(rgb: np.ndarray) -> np.ndarray:
    """GrabCut on a shrunk copy with a centre rectangle as the probable foreground."""
    height, width = rgb.shape[:2]
    scale = min(1.0, GRABCUT_SIDE / max(height, width))
    small_w, small_h = max(3, round(width * scale)), max(3, round(height * scale))
    small = cv2.resize(rgb, (small_w, small_h), interpolation=cv2.INTER_AREA)
    # GrabCut only models colour distributions: channel order does not matter, no BGR swap.
    x0, y0 = max(1, round(GRABCUT_MARGIN * small_w)), max(1, round(GRABCUT_MARGIN * small_h))
    rect = (x0, y0, max(1, small_w - 2 * x0), max(1, small_h - 2 * y0))
    mask = np.zeros((small_h, small_w), dtype=np.uint8)
    background_model = np.zeros((1, 65), dtype=np.float64)
    foreground_model = np.zeros((1, 65), dtype=np.float64)
    # GrabCut seeds its k-means from OpenCV's global RNG: fix it so estimates are reproducible.
    cv2.setRNGSeed(0)
    cv2.grabCut(np.ascontiguousarray(small), mask, rect, background_model, foreground_model,
                GRABCUT_ITERATIONS, cv2.GC_INIT_WITH_RECT)
    small_fg = ((mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD)).astype(np.uint8)
    return cv2.resize(small_fg, (width, height), interpolation=cv2.INTER_NEAREST).astype(bool)
