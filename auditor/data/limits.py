"""The decompression-bomb limit every decoder checks before decoding any pixel."""

from __future__ import annotations

from auditor.errors import DecodeError

# PIL's own default, about a 0.25-gigapixel RGB image (8 GiB of RGBA float is far past it).
DEFAULT_MAX_PIXELS = 89_478_485


def check_declared_size(width: int, height: int, max_pixels: int, kind: str = "image") -> None:
    """Refuse a file whose header declares no pixels or more than ``max_pixels`` of them.

    Raises:
        DecodeError: the size is not positive, or width * height exceeds ``max_pixels``.
    """
    if width <= 0 or height <= 0:
        raise DecodeError(f"invalid {kind} size {width}x{height}")
    if width * height > max_pixels:
        raise DecodeError(
            f"refused: decompression bomb: declared size {width}x{height} = "
            f"{width * height} pixels exceeds max_pixels={max_pixels} "
            "(raise max_pixels if the file is trusted)"
        )
