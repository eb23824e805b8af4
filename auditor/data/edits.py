"""Pure image edits for interventions: replace the background, blank the border band, fill a box,
re-encode a file in another format.

Tensor edits take uint8 image batches [B, 3, H, W] and return a new uint8 batch on the same
device (the input is never modified). Masks are bool [B, H, W], True = foreground (object).

Conventions:

* A colour is RGB in 0-255: a tuple of three numbers or a tensor [3], or one colour per sample
  as a tensor [B, 3].
* The border band is `auditor.data.regions.border_band` (the same band the measures use).
* A box in [0, 1] image coordinates (x0, y0, x1, y1) covers the pixels whose centres lie inside
  it: column c is inside when x0 <= (c + 0.5) / W < x1 (rows likewise), so a box of the whole
  image, (0, 0, 1, 1), covers every pixel.
* "blur" is a Gaussian blur with sigma = BLUR_SIGMA_FRACTION of the longer side (replicated
  edges): strong enough to wipe out texture, small text and compression artefacts.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from auditor.data.dataset import resize_image
from auditor.data.decode import decode_bytes, decode_image
from auditor.data.regions import border_band
from auditor.errors import UsageError

BLUR_SIGMA_FRACTION = 0.1

Colour = Sequence[float] | torch.Tensor
_FORMATS = {"JPEG": "JPEG", "JPG": "JPEG", "PNG": "PNG"}


def _check_images(images: torch.Tensor) -> None:
    if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8 or images.dim() != 4 \
            or images.shape[1] != 3:
        shape = tuple(getattr(images, "shape", ()))
        dtype = getattr(images, "dtype", type(images).__name__)
        raise UsageError(f"images must be a uint8 tensor [B, 3, H, W]; got shape {shape} dtype "
                         f"{dtype}. Pass the loader's un-normalised batch.")


def _colour_tensor(colour: Colour, images: torch.Tensor) -> torch.Tensor:
    """Colour(s) as float32 [B or 1, 3, 1, 1] on the images' device, checked to lie in 0-255."""
    value = torch.as_tensor(colour, dtype=torch.float32, device=images.device)
    if value.dim() == 1 and value.shape[0] == 3:
        value = value[None]
    if value.dim() != 2 or value.shape[1] != 3 or value.shape[0] not in (1, images.shape[0]):
        raise UsageError(f"a colour must be 3 numbers (R, G, B) or a [B, 3] tensor for a batch "
                         f"of {images.shape[0]}; got shape {tuple(value.shape)}")
    if not bool(torch.isfinite(value).all()) or float(value.min()) < 0 or float(value.max()) > 255:
        raise UsageError(f"colour values must lie in 0-255; got {value.tolist()}")
    return value[:, :, None, None]


def _as_uint8(values: torch.Tensor) -> torch.Tensor:
    return values.round().clamp_(0, 255).to(torch.uint8)


def gaussian_blur(images: torch.Tensor, sigma: float | None = None) -> torch.Tensor:
    """Separable Gaussian blur of uint8 [B, 3, H, W] -> uint8 [B, 3, H, W].

    sigma in pixels (default BLUR_SIGMA_FRACTION of the longer side); kernel radius ceil(3 sigma);
    edges replicated.
    """
    _check_images(images)
    height, width = images.shape[-2:]
    sigma = BLUR_SIGMA_FRACTION * max(height, width) if sigma is None else float(sigma)
    if not sigma > 0:
        raise UsageError(f"blur sigma must be positive pixels, got {sigma}")
    radius = max(1, math.ceil(3 * sigma))
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float32, device=images.device)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    kernel = kernel / kernel.sum()
    x = images.float()
    x = F.pad(x, (radius, radius, radius, radius), mode="replicate")
    x = F.conv2d(x, kernel.view(1, 1, 1, -1).expand(3, 1, 1, -1).contiguous(), groups=3)
    x = F.conv2d(x, kernel.view(1, 1, -1, 1).expand(3, 1, -1, 1).contiguous(), groups=3)
    return _as_uint8(x)


def replace_background(
    images: torch.Tensor,
    masks: torch.Tensor,
    fill: Colour | torch.Tensor | str,
) -> torch.Tensor:
    """Keep the object (mask True), replace every background pixel.

    Args:
        images: uint8 [B, 3, H, W].
        masks: bool [B, H, W], True = foreground.
        fill: a colour (3 numbers or [B, 3], 0-255), an image batch uint8 [B, 3, H, W] whose
            pixels are copied in, or "blur" (the image's own Gaussian blur).

    Returns:
        uint8 [B, 3, H, W].
    """
    _check_images(images)
    if masks.shape != (images.shape[0], *images.shape[2:]) or masks.dtype != torch.bool:
        raise UsageError(f"masks must be bool [B, H, W] = {(images.shape[0], *images.shape[2:])}; "
                         f"got {masks.dtype} {tuple(masks.shape)}")
    keep = masks.to(images.device)[:, None]
    return torch.where(keep, images, _fill_pixels(images, fill))


def _fill_pixels(images: torch.Tensor, fill: Colour | torch.Tensor | str) -> torch.Tensor:
    """The replacement pixels uint8 [B, 3, H, W] that `fill` describes (see replace_background)."""
    if isinstance(fill, str):
        if fill != "blur":
            raise UsageError(f"fill {fill!r} is unknown; use a colour, an image batch or 'blur'")
        return gaussian_blur(images)
    if isinstance(fill, torch.Tensor) and fill.dim() == 4:
        _check_images(fill)
        if fill.shape != images.shape:
            raise UsageError(f"fill images must match the images' shape {tuple(images.shape)}; "
                             f"got {tuple(fill.shape)}")
        return fill.to(images.device)
    return _as_uint8(_colour_tensor(fill, images).expand_as(images))


def blank_border(images: torch.Tensor, fraction: float, colour: Colour) -> torch.Tensor:
    """Paint the border band (`fraction` of each side, see regions.border_band) in `colour`.

    images: uint8 [B, 3, H, W] -> uint8 [B, 3, H, W].
    """
    _check_images(images)
    band = border_band(images.shape[2], images.shape[3], fraction, device=images.device)
    paint = _as_uint8(_colour_tensor(colour, images).expand_as(images))
    return torch.where(band[None, None], paint, images)


def box_mask(box01: Sequence[float] | torch.Tensor, batch: int, height: int, width: int,
             device: torch.device | str | None = None) -> torch.Tensor:
    """Bool [B, H, W]: the pixels whose centres lie in the box (x0, y0, x1, y1) in [0, 1].

    box01: 4 numbers (the same box for every sample) or a tensor [B, 4].
    """
    box = torch.as_tensor(box01, dtype=torch.float32, device=device)
    if box.shape == (4,):
        box = box[None].expand(batch, 4)
    if box.shape != (batch, 4):
        raise UsageError(f"box must be 4 numbers (x0, y0, x1, y1) or a [B, 4] tensor for a batch "
                         f"of {batch}; got shape {tuple(box.shape)}")
    if not bool(torch.isfinite(box).all()):
        raise UsageError(f"box coordinates must be finite numbers in [0, 1]; got {box.tolist()}")
    xs = (torch.arange(width, device=box.device, dtype=torch.float32) + 0.5) / width
    ys = (torch.arange(height, device=box.device, dtype=torch.float32) + 0.5) / height
    inside_x = (xs[None] >= box[:, 0:1]) & (xs[None] < box[:, 2:3])
    inside_y = (ys[None] >= box[:, 1:2]) & (ys[None] < box[:, 3:4])
    return inside_y[:, :, None] & inside_x[:, None, :]


def fill_box(images: torch.Tensor, box01: Sequence[float] | torch.Tensor,
             fill: Colour | torch.Tensor | str) -> torch.Tensor:
    """Replace the pixels of a box given in [0, 1] image coordinates (x0, y0, x1, y1).

    images: uint8 [B, 3, H, W]; box01: 4 numbers or [B, 4]; fill: as in replace_background (a
    colour, an image batch whose pixels are copied in, or "blur") -> uint8 [B, 3, H, W].
    """
    _check_images(images)
    inside = box_mask(box01, images.shape[0], images.shape[2], images.shape[3], images.device)
    return torch.where(inside[:, None], _fill_pixels(images, fill), images)


def reencode(
    source: str | Path | bytes,
    fmt: str,
    quality: int = 75,
    size: tuple[int, int] | None = None,
    dicom_window: tuple[float, float] | None = None,
) -> np.ndarray:
    """Decode a file as the loader does, encode it in `fmt`, decode that again.

    Args:
        source: an image file path, or its bytes (decoded by decode_bytes, exactly as the
            loader decodes: EXIF orientation, alpha on black).
        fmt: "JPEG" (or "JPG") or "PNG".
        quality: JPEG quality 1-95 (ignored for PNG, which is lossless).
        size: (H, W) to resize to as the loader does (area when shrinking, else bilinear);
            None keeps the decoded size.
        dicom_window: the run's --dicom-window for a DICOM source (None: the file's own).

    Returns:
        RGB uint8 [H, W, 3].

    Raises:
        DecodeError: the source cannot be decoded.
    """
    target = _FORMATS.get(str(fmt).upper())
    if target is None:
        raise UsageError(f"re-encode format {fmt!r} is not supported; use 'JPEG' or 'PNG'")
    if not 1 <= int(quality) <= 95:
        raise UsageError(f"JPEG quality must be 1-95, got {quality}")
    if isinstance(source, bytes):
        rgb = decode_bytes(source, "", dicom_window=dicom_window).rgb
    else:
        rgb = decode_image(str(source), dicom_window=dicom_window).rgb
    buffer = io.BytesIO()
    options = {"quality": int(quality)} if target == "JPEG" else {}
    Image.fromarray(rgb).save(buffer, format=target, **options)
    buffer.seek(0)
    with Image.open(buffer) as image:
        again = np.asarray(image.convert("RGB"))
    return resize_image(again, size) if size is not None else np.ascontiguousarray(again)
