"""Foreground masks and boxes, brought to the model's input grid exactly like the image.

Mask files (any mode) are binarised as follows: a mask with at most two distinct values one
of which is 0 (or a single value) uses ``value != 0`` (so 0/1 and 0/255 masks both work);
any other (soft, anti-aliased) mask uses ``value > half its range`` (> 127 for 8-bit,
> 32767 for 16-bit, > 0.5 for float). Palette masks use the palette INDEX (label maps).
RGBA/LA masks use the alpha channel when it varies, else the grey level of the colour.

Orientation: a mask with its own EXIF orientation is turned upright by it. A mask without
one is assumed stored like its image's pixels and gets the image's orientation, unless it
already has the image's upright shape and not its stored shape.

Boxes are in pixels of the upright original image, ``x0, y0, x1, y1``, edges (not pixel
centres). Scaled to the input they become ``x * W_in / W``, ``y * H_in / H`` per axis; a box
filled into a mask covers the pixels whose centres lie in ``[x0, x1) x [y0, y1)``. This is
the same rule as nearest-neighbour resizing (``cv2.INTER_NEAREST_EXACT``), so a box and a
mask of the same rectangle land on the same input pixels.
"""

from __future__ import annotations

import io
import math

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from auditor.data.decode import (
    DEFAULT_MAX_PIXELS,
    EXIF_ORIENTATION_TAG,
    orient_array,
    read_file_bytes,
    sniff_non_image,
    strict_pil,
)
from auditor.errors import DecodeError


def _mask_values(image: Image.Image) -> tuple[np.ndarray, float]:
    """Pixel values used for the foreground test and the top of their range."""
    mode = image.mode
    if mode in ("1", "P", "L"):
        return np.asarray(image), 1.0 if mode == "1" else 255.0
    if mode.startswith("I"):
        return np.asarray(image).astype(np.int64), 65535.0
    if mode == "F":
        values = np.nan_to_num(np.asarray(image, dtype=np.float64), nan=0.0)
        return values, 1.0 if values.size and values.max() <= 1.0 else 255.0
    if mode in ("RGBA", "LA", "PA"):
        alpha = np.asarray(image.getchannel("A"))
        if alpha.min() < 255:
            return alpha, 255.0
    return np.asarray(image.convert("L")), 255.0


def binarise(values: np.ndarray, top: float) -> np.ndarray:
    """Foreground of mask values [H, W] (rule in the module docstring) -> bool [H, W]."""
    distinct = np.unique(values)
    if distinct.size == 1 or (distinct.size == 2 and distinct[0] == 0):
        return values != 0
    return values > top / 2.0


def read_mask(
    path: str,
    image_size: tuple[int, int],
    image_raw_size: tuple[int, int],
    image_orientation: int,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> tuple[np.ndarray, str]:
    """Read a mask file, upright, binarised.

    Args:
        path: the mask image.
        image_size: (width, height) of the upright image the mask belongs to.
        image_raw_size: (width, height) of that image's stored pixels.
        image_orientation: EXIF orientation of that image (1-8).
        max_pixels: refuse masks declaring more pixels than this.

    Returns:
        (bool array [h, w] upright, warning or ""). The mask keeps its own size; a size
        different from the image's is reported in the warning.

    Raises:
        DecodeError: the mask cannot be read.
    """
    return read_mask_bytes(
        read_file_bytes(path), image_size, image_raw_size, image_orientation, max_pixels
    )


def read_mask_bytes(
    data: bytes,
    image_size: tuple[int, int],
    image_raw_size: tuple[int, int],
    image_orientation: int,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> tuple[np.ndarray, str]:
    """read_mask for the encoded bytes of a mask (a Parquet cell, a tar member)."""
    if not data:
        raise DecodeError("empty mask file (0 bytes)")
    try:
        with strict_pil():
            image = Image.open(io.BytesIO(data))
            width, height = image.size
            if width * height > max_pixels:
                raise DecodeError(f"mask declares {width}x{height} pixels, over max_pixels")
            own_orientation = int(image.getexif().get(EXIF_ORIENTATION_TAG, 1) or 1)
            image.load()
            foreground = binarise(*_mask_values(image))
    except DecodeError:
        raise
    except UnidentifiedImageError as exc:
        raise DecodeError(f"mask {sniff_non_image(data)}") from exc
    except (OSError, SyntaxError, ValueError, IndexError, TypeError, KeyError, EOFError,
            Image.DecompressionBombError, MemoryError, RuntimeError, OverflowError) as exc:
        raise DecodeError(f"corrupt mask: {type(exc).__name__}: {exc}") from exc
    return upright_mask(
        foreground, own_orientation, image_size, image_raw_size, image_orientation
    )


def upright_mask(
    foreground: np.ndarray,
    own_orientation: int,
    image_size: tuple[int, int],
    image_raw_size: tuple[int, int],
    image_orientation: int,
) -> tuple[np.ndarray, str]:
    """Turn a binarised mask [h, w] upright (rules in the module docstring) and say when its
    size differs from the image's.

    Args:
        own_orientation: the mask's own EXIF orientation (1 = none).
        image_size, image_raw_size, image_orientation: as for read_mask.

    Returns:
        (bool array [h, w] upright, warning or "").
    """
    height, width = foreground.shape
    if own_orientation in range(2, 9):
        foreground = orient_array(foreground, own_orientation)
    elif image_orientation != 1:
        already_upright = (width, height) == image_size and (width, height) != image_raw_size
        if not already_upright:
            foreground = orient_array(foreground, image_orientation)
    mask_h, mask_w = foreground.shape
    warning = ""
    if (mask_w, mask_h) != image_size:
        aspect = "" if math.isclose(mask_w / mask_h, image_size[0] / image_size[1],
                                    rel_tol=0.01) else ", a different aspect"
        warning = (f"mask size {mask_w}x{mask_h} differs from image size "
                   f"{image_size[0]}x{image_size[1]}{aspect}; resized to fit")
    return np.ascontiguousarray(foreground), warning


def resize_mask(mask: np.ndarray, input_size: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour (pixel-centre) resize of a bool mask [h, w] -> uint8 [H, W] of 0/1.

    Args:
        input_size: (H, W) of the model input.
    """
    out_h, out_w = input_size
    return cv2.resize(
        mask.astype(np.uint8), (out_w, out_h), interpolation=cv2.INTER_NEAREST_EXACT
    )


def scale_box(
    box: tuple[float, float, float, float],
    image_size: tuple[int, int],
    input_size: tuple[int, int],
) -> tuple[np.ndarray | None, str]:
    """Scale a box from upright image pixels to input pixels, clipped to the input.

    Args:
        box: x0, y0, x1, y1 in pixels of the upright original image.
        image_size: (width, height) of the upright original image.
        input_size: (H, W) of the model input.

    Returns:
        (float32 [4] x0, y0, x1, y1 in input pixels, "") or (None, warning) when the box
        lies outside the image.
    """
    width, height = image_size
    out_h, out_w = input_size
    factors = np.array([out_w / width, out_h / height] * 2, dtype=np.float64)
    scaled = np.asarray(box, dtype=np.float64) * factors
    clipped = np.clip(scaled, 0.0, [out_w, out_h, out_w, out_h])
    if clipped[2] <= clipped[0] or clipped[3] <= clipped[1]:
        return None, f"box {tuple(box)} lies outside the {width}x{height} image; ignored"
    return clipped.astype(np.float32), ""


def box_to_mask(box: np.ndarray, input_size: tuple[int, int]) -> np.ndarray:
    """Fill a box (x0, y0, x1, y1 in input pixels) -> uint8 [H, W], 1 where the pixel
    centre lies in [x0, x1) x [y0, y1)."""
    out_h, out_w = input_size
    centres_x = np.arange(out_w) + 0.5
    centres_y = np.arange(out_h) + 0.5
    inside_x = (centres_x >= box[0]) & (centres_x < box[2])
    inside_y = (centres_y >= box[1]) & (centres_y < box[3])
    return (inside_y[:, None] & inside_x[None, :]).astype(np.uint8)
