"""Image regions shared by the data layer, the metrics and the probes: the border band.

The one band rule: a band of fraction f on a side of n pixels is round-half-up(f * n) pixels
wide, and at least one pixel when f > 0 (a positive border never vanishes on a small image).
"""

from __future__ import annotations

import math

import torch

from auditor.errors import UsageError


def border_width(size: int, fraction: float) -> int:
    """Pixels of the band along one side: ``fraction * size`` rounded half up, at least 1
    when ``fraction > 0``."""
    if fraction <= 0:
        return 0
    return max(1, math.floor(fraction * size + 0.5))


def border_band(
    height: int, width: int, fraction: float, device: torch.device | str | None = None
) -> torch.Tensor:
    """Mask of the band along the four sides of an image.

    A pixel (y, x) is in the band when ``y < bh or y >= height - bh or x < bw or
    x >= width - bw`` with ``bh = border_width(height, fraction)`` and
    ``bw = border_width(width, fraction)``.

    Args:
        height: image height in pixels, >= 1.
        width: image width in pixels, >= 1.
        fraction: band thickness as a fraction of each side, in [0, 0.5].
        device: where to build the mask.

    Returns:
        bool tensor [height, width], True in the band.
    """
    if height < 1 or width < 1:
        raise UsageError(f"border_band needs a positive size, got {height}x{width}")
    if not 0.0 <= fraction <= 0.5:
        raise UsageError(f"border fraction must be in [0, 0.5], got {fraction}")
    band_h = border_width(height, fraction)
    band_w = border_width(width, fraction)
    rows = torch.arange(height, device=device)
    cols = torch.arange(width, device=device)
    row_band = (rows < band_h) | (rows >= height - band_h)
    col_band = (cols < band_w) | (cols >= width - band_w)
    return row_band[:, None] | col_band[None, :]
