"""Writers of test images of every kind the data layer must handle (good and hostile).

Every function builds its pixels in code, writes one file and returns its path. Other test
modules may import these.
"""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

RED = (255, 0, 0)
BLUE = (0, 0, 255)


def save(path: Path, image: Image.Image, image_format: str | None = None, **options) -> Path:
    """Save a PIL image (creating parent folders) and return the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format=image_format, **options)
    return path


def solid(path: Path, size: tuple[int, int], colour=RED, image_format: str | None = None,
          **options) -> Path:
    """A single-colour RGB image of (width, height)."""
    return save(path, Image.new("RGB", size, colour), image_format, **options)


def encoded(image: Image.Image, image_format: str, **options) -> bytes:
    """The bytes of a PIL image encoded in a format."""
    buffer = io.BytesIO()
    image.save(buffer, format=image_format, **options)
    return buffer.getvalue()


def noise_rgb(width: int, height: int, seed: int = 0) -> np.ndarray:
    """Smooth-ish random RGB uint8 [height, width, 3] (compresses like a photo)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, size=(max(height // 4, 1), max(width // 4, 1), 3))
    return cv2.resize(small.astype(np.uint8), (width, height), interpolation=cv2.INTER_LINEAR)


def corner_marked(width: int, height: int) -> np.ndarray:
    """Upright RGB uint8 [height, width, 3]: blue, with a red 4x3 (w x h) top-left corner."""
    array = np.zeros((height, width, 3), dtype=np.uint8)
    array[...] = BLUE
    array[:3, :4] = RED
    return array


def stored_for_orientation(upright: np.ndarray, orientation: int) -> np.ndarray:
    """The stored pixels that a viewer shows as ``upright`` under an EXIF orientation.

    Derived from the EXIF specification's meaning of each tag (where the 0th stored row and
    column go when displayed), independently of any library's transpose table.
    """
    stored = {
        1: lambda a: a,
        2: lambda a: a[:, ::-1],                 # mirrored horizontally
        3: lambda a: a[::-1, ::-1],              # rotated 180
        4: lambda a: a[::-1],                    # mirrored vertically
        5: lambda a: a.swapaxes(0, 1),           # mirrored along the main diagonal
        6: lambda a: np.rot90(a, k=1),           # shown after a 90 degree clockwise turn
        7: lambda a: np.rot90(a, k=2).swapaxes(0, 1),  # mirrored along the anti-diagonal
        8: lambda a: np.rot90(a, k=-1),          # shown after a 90 degree anticlockwise turn
    }[orientation](upright)
    return np.ascontiguousarray(stored)


def with_orientation(path: Path, stored: np.ndarray, orientation: int,
                     image_format: str = "PNG", **options) -> Path:
    """Write stored pixels with an EXIF orientation tag."""
    image = Image.fromarray(stored)
    exif = Image.Exif()
    exif[0x0112] = orientation
    return save(path, image, image_format, exif=exif.tobytes(), **options)


def cmyk_jpeg(path: Path, cmyk=(0, 255, 255, 0), size=(16, 12)) -> Path:
    """A CMYK JPEG of one colour (default: pure red ink mix, C=0 M=Y=100% K=0)."""
    return save(path, Image.new("CMYK", size, cmyk), "JPEG", quality=95)


def ycck_jpeg(path: Path, size=(24, 16)) -> Path:
    """A JPEG whose Adobe marker says YCCK (transform 2), as Photoshop writes CMYK.

    PIL cannot encode YCCK, so a CMYK JPEG of smooth ramps is written and its APP14 transform
    byte set to 2: every decoder then reads the same stored components as Y, Cb, Cr, K, which
    gives a valid YCCK file of varied colours.
    """
    w, h = size
    x, y = np.meshgrid(np.linspace(0, 255, w), np.linspace(0, 255, h))
    planes = np.stack([x, y, 255 - x, (x + y) / 4], axis=-1).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(planes, "CMYK").save(buffer, "JPEG", quality=95)
    data = bytearray(buffer.getvalue())
    app14 = data.find(b"\xff\xee\x00\x0eAdobe")
    assert app14 >= 0, "PIL wrote no Adobe marker"
    data[app14 + 15] = 2  # FF EE, length (2), "Adobe" (5), version (2), flags (4), transform
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(bytes(data))
    return path


def grey16_png(path: Path, values: np.ndarray) -> Path:
    """A 16-bit greyscale PNG of uint16 values [H, W]."""
    return save(path, Image.fromarray(values.astype(np.uint16)), "PNG")


def rgb48_png(path: Path, rgb16: np.ndarray) -> Path:
    """A 16-bit-per-channel RGB PNG of uint16 [H, W, 3] (RGB order)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.ascontiguousarray(rgb16[..., ::-1]).astype(np.uint16))
    return path


def palette_transparent_png(path: Path, size=(8, 6)) -> Path:
    """A palette PNG: index 0 green and fully transparent (left half), index 1 red (right)."""
    width, height = size
    indices = np.zeros((height, width), dtype=np.uint8)
    indices[:, width // 2:] = 1
    image = Image.fromarray(indices, mode="P")
    image.putpalette([0, 255, 0, 255, 0, 0] + [0, 0, 0] * 254)
    return save(path, image, "PNG", transparency=0)


def rgba_png(path: Path, rgb=(200, 100, 50), alpha: int = 128, size=(6, 4)) -> Path:
    """An RGBA PNG of one colour and one alpha."""
    return save(path, Image.new("RGBA", size, (*rgb, alpha)), "PNG")


def la_png(path: Path, grey: int = 200, alpha: int = 255, size=(6, 4)) -> Path:
    """A grey + alpha PNG."""
    return save(path, Image.new("LA", size, (grey, alpha)), "PNG")


def one_bit_png(path: Path, size=(8, 8)) -> Path:
    """A 1-bit PNG: white top half, black bottom half."""
    array = np.zeros((size[1], size[0]), dtype=bool)
    array[: size[1] // 2] = True
    return save(path, Image.fromarray(array), "PNG")


def animated(path: Path, image_format: str, colours=(RED, (0, 255, 0), BLUE),
             size=(8, 8)) -> Path:
    """An animated GIF/WebP, one solid frame per colour."""
    frames = [Image.new("RGB", size, colour) for colour in colours]
    options = {"lossless": True} if image_format == "WEBP" else {}
    return save(path, frames[0], image_format, save_all=True, append_images=frames[1:],
                duration=100, loop=0, **options)


def truncated(path: Path, data: bytes, keep: float = 0.5) -> Path:
    """The first ``keep`` fraction of valid image bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def raw(path: Path, data: bytes) -> Path:
    """Write bytes as they are (zero-byte files, HTML named .jpg, fuzzed bytes...)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


HTML_PAGE = b"<!DOCTYPE html>\n<html><head><title>404 Not Found</title></head></html>\n"


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    """One PNG chunk: length, type, payload, CRC."""
    return (struct.pack(">I", len(payload)) + kind + payload
            + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF))


def bomb_png(path: Path, width: int = 100_000, height: int = 100_000) -> Path:
    """A PNG that declares width x height greyscale pixels but holds almost no data."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    body = (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header)
            + png_chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + png_chunk(b"IEND", b""))
    return raw(path, body)
