"""Decode one image file into RGB uint8 pixels plus its file fingerprint.

Decoding is by content, never by extension: a PNG named ``.jpg`` decodes as PNG and the
mismatch is recorded in the fingerprint, because such mismatches are themselves a shortcut the
model-free probes look for.

Conventions decided here (the rest of the package relies on them):

* Transparency (RGBA, LA, palette with a transparent entry) is composited on BLACK, i.e. the
  colour is multiplied by alpha. Loaders that call ``convert("RGB")`` show fully transparent
  pixels as their stored colour, which encoders almost always store as black, so black keeps
  the audit close to what a typical training pipeline fed the model while staying
  deterministic when the hidden colour is garbage. ``mean_alpha`` records how much was
  transparent.
* 16-bit and 32-bit integer greys are scaled to 8 bits by ``round(v / 257)`` (65535 -> 255),
  not clipped; 16-bit colour PNGs keep PIL's reduction to the high byte (``v >> 8``, at most
  one level below rounding); float images are read as [0, 1] when their maximum is at most
  1, else as [0, 255], and clipped.
* EXIF orientations 1-8 are applied, so width/height in the fingerprint are the upright ones.
* Only the first frame of an animation is decoded; ``n_frames`` records how many there are.
"""

from __future__ import annotations

import io
import math
import os
import struct
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageFile, UnidentifiedImageError

from auditor.data.dicom import DICOM_EXTENSIONS, decode_dicom, has_dicom_preamble
from auditor.data.limits import DEFAULT_MAX_PIXELS, check_declared_size
from auditor.errors import DecodeError, UsageError

EXIF_ORIENTATION_TAG = 0x0112

# Extensions each PIL format is expected to carry; anything else is an extension mismatch.
_FORMAT_EXTENSIONS: dict[str, frozenset[str]] = {
    "JPEG": frozenset({"jpg", "jpeg", "jpe", "jfif"}),
    "MPO": frozenset({"jpg", "jpeg", "mpo"}),
    "PNG": frozenset({"png"}),
    "GIF": frozenset({"gif"}),
    "WEBP": frozenset({"webp"}),
    "BMP": frozenset({"bmp", "dib"}),
    "TIFF": frozenset({"tif", "tiff"}),
}

_MODE_BIT_DEPTH: dict[str, int] = {
    "1": 1, "L": 8, "LA": 8, "P": 8, "PA": 8, "RGB": 8, "RGBA": 8, "RGBX": 8, "CMYK": 8,
    "YCbCr": 8, "LAB": 8, "HSV": 8, "I;16": 16, "I;16L": 16, "I;16B": 16, "I;16N": 16,
    "I": 32, "F": 32,
}

# IJG reference quantisation tables (JPEG standard, Annex K), natural (row-major) order.
_IJG_LUMA = np.array([
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55,
    14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62,
    18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99,
], dtype=np.float64)
_IJG_CHROMA = np.array([
    17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99,
    24, 26, 56, 99, 99, 99, 99, 99, 47, 66, 99, 99, 99, 99, 99, 99,
    *([99] * 32),
], dtype=np.float64)

# Fingerprint keys decode_image fills; dataset.py adds the border_* keys.
PROPS_KEYS: tuple[str, ...] = (
    "format", "extension", "extension_mismatch", "mode", "bit_depth", "has_alpha",
    "mean_alpha", "width", "height", "aspect", "file_size", "jpeg_quality",
    "chroma_subsampling", "has_exif", "exif_orientation", "n_frames",
)


@dataclass(frozen=True)
class DecodedImage:
    """An upright RGB image and its file fingerprint.

    Attributes:
        rgb: uint8 array [H, W, 3], EXIF-oriented, alpha composited on black.
        props: fingerprint dict with the keys of ``PROPS_KEYS``.
        orientation: EXIF orientation applied (1-8, 1 = none); masks need it too.
        raw_size: (width, height) of the stored pixels before orientation.
    """

    rgb: np.ndarray
    props: dict[str, Any]
    orientation: int
    raw_size: tuple[int, int]


def read_file_bytes(path: str) -> bytes:
    """Read a whole file, turning OS errors into a DecodeError with a human reason."""
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except FileNotFoundError as exc:
        raise DecodeError(
            f"file not found: {path!r} (moved or deleted after indexing?)"
        ) from exc
    except PermissionError as exc:
        raise DecodeError(f"permission denied reading {path!r}; check the file's mode") from exc
    except IsADirectoryError as exc:
        raise DecodeError(f"{path!r} is a directory, not an image file") from exc
    except OSError as exc:
        raise DecodeError(f"cannot read {path!r}: {exc.strerror or exc}") from exc


def sniff_non_image(data: bytes) -> str:
    """Say what a byte string that PIL could not identify looks like, for the error message."""
    head = data[:512].lstrip(b"\xef\xbb\xbf \t\r\n")
    lowered = head.lower()
    if lowered.startswith((b"<!doctype html", b"<html", b"<head", b"<body")) or (
        lowered.startswith(b"<") and b"html" in lowered
    ):
        return "not an image: looks like HTML/text (a saved web page or an error page?)"
    if lowered.startswith((b"<?xml", b"<svg")):
        return "not an image: looks like XML/SVG text (vector images are not supported)"
    if head.startswith((b"{", b"[")):
        return "not an image: looks like JSON/text"
    sample = head[:256]
    printable = sum(1 for byte in sample if 32 <= byte < 127 or byte in (9, 10, 13))
    if sample and printable / len(sample) > 0.95:
        return "not an image: looks like HTML/text"
    return "not an image: unrecognised file format"


def estimate_jpeg_quality(quantization: dict[int, Any]) -> float:
    """Estimate the IJG quality (1-100) that produced a JPEG's quantisation tables.

    Inverts IJG scaling (q < 50: scale = 5000 / q, else scale = 200 - 2q; entry =
    clamp((base * scale + 50) // 100, 1, 255)) by finding the quality whose tables are
    closest (L1) to the file's luminance (and chrominance, when present) tables.

    Args:
        quantization: PIL's ``JpegImageFile.quantization``, tables in natural order.

    Returns:
        The best-fitting quality, NaN when there is no usable table.
    """
    tables = [np.asarray(quantization[key], dtype=np.float64) for key in sorted(quantization)]
    tables = [table for table in tables if table.size == 64]
    if not tables:
        return math.nan
    qualities = np.arange(1, 101, dtype=np.float64)
    scales = np.where(qualities < 50, 5000.0 / qualities, 200.0 - 2.0 * qualities)

    def scaled(base: np.ndarray) -> np.ndarray:  # [100, 64]
        return np.clip(np.floor((base[None, :] * scales[:, None] + 50.0) / 100.0), 1, 255)

    error = np.abs(scaled(_IJG_LUMA) - tables[0][None, :]).sum(axis=1)
    if len(tables) > 1:
        error = error + np.abs(scaled(_IJG_CHROMA) - tables[1][None, :]).sum(axis=1)
    return float(qualities[int(np.argmin(error))])


def chroma_subsampling(layers: list[tuple[Any, int, int, int]] | None) -> str:
    """Name the chroma subsampling of a JPEG from its per-component (id, h, v, table) list.

    Greyscale (one component) and unusual factor combinations give "other".
    """
    if not layers or len(layers) < 3:
        return "other"
    (_, luma_h, luma_v, _), *chroma = layers
    if any((h, v) != (chroma[0][1], chroma[0][2]) for _, h, v, _ in chroma):
        return "other"
    ratio = (luma_h // chroma[0][1], luma_v // chroma[0][2])
    if luma_h % chroma[0][1] or luma_v % chroma[0][2]:
        return "other"
    return {(1, 1): "4:4:4", (2, 1): "4:2:2", (2, 2): "4:2:0"}.get(ratio, "other")


def orient_array(array: np.ndarray, orientation: int) -> np.ndarray:
    """Turn stored pixels upright per an EXIF orientation (same as PIL's exif_transpose).

    Args:
        array: [H, W] or [H, W, C] stored pixels.
        orientation: EXIF orientation 1-8; anything else is treated as 1.

    Returns:
        A view of ``array`` oriented upright ([W, H, ...] for orientations 5-8).
    """
    if orientation == 2:
        return array[:, ::-1]
    if orientation == 3:
        return array[::-1, ::-1]
    if orientation == 4:
        return array[::-1]
    if orientation == 5:
        return array.swapaxes(0, 1)
    if orientation == 6:
        return np.rot90(array, k=-1)
    if orientation == 7:
        return np.rot90(array, k=2).swapaxes(0, 1)
    if orientation == 8:
        return np.rot90(array, k=1)
    return array


def _png_bit_depth(data: bytes) -> int | None:
    """Per-channel bit depth from a PNG's IHDR (byte 24), which PIL's mode hides for RGB48."""
    if len(data) > 24 and data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR":
        return int(data[24])
    return None


def _alpha_to_rgb(array: np.ndarray) -> tuple[np.ndarray, float]:
    """Composite RGBA uint8 [H, W, 4] on black: returns (RGB uint8 [H, W, 3], mean alpha)."""
    alpha = array[..., 3:4].astype(np.float32) / 255.0
    rgb = np.rint(array[..., :3].astype(np.float32) * alpha).astype(np.uint8)
    return rgb, float(alpha.mean())


def _to_rgb(image: Image.Image) -> tuple[np.ndarray, bool, float]:
    """Any PIL mode -> (RGB uint8 [H, W, 3], has_alpha, mean_alpha in [0, 1])."""
    mode = image.mode
    if mode.startswith("I;16") or mode == "I":
        values = np.asarray(image).astype(np.float64)
        grey = np.rint(np.clip(values, 0, 65535) / 257.0).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=2), False, 1.0
    if mode == "F":
        values = np.nan_to_num(np.asarray(image, dtype=np.float64), nan=0.0)
        span = 1.0 if values.size and values.max() <= 1.0 else 255.0
        grey = np.rint(np.clip(values / span, 0.0, 1.0) * 255.0).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=2), False, 1.0
    has_alpha = mode in ("RGBA", "LA", "PA", "La", "RGBa") or (
        mode in ("P", "L", "RGB") and "transparency" in image.info
    )
    if has_alpha:
        rgb, mean_alpha = _alpha_to_rgb(np.asarray(image.convert("RGBA")))
        return rgb, True, mean_alpha
    # PIL's CMYK -> RGB handles Adobe-inverted CMYK and YCCK at decode time (libjpeg).
    return np.asarray(image.convert("RGB")), False, 1.0


@contextmanager
def strict_pil() -> Iterator[None]:
    """PIL settings for decoding untrusted files, restored on exit.

    ``ImageFile.LOAD_TRUNCATED_IMAGES`` (read by PIL both when opening and when loading)
    makes PIL pad a short file with grey; an audit must see the truncation instead, so it
    is forced off whatever the caller set. PIL's decompression-bomb WARNING is silenced
    because callers check their own ``max_pixels``; PIL's bomb ERROR (above twice its
    limit) still fires. PIL's warnings about corrupt metadata are silenced too. Not
    thread-safe (module state); loader workers are processes.
    """
    previous = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            # PIL warns on each corrupt TIFF tag / EXIF block; the error row says enough.
            warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL\.")
            yield
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = previous


def decode_image(
    path: str,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    dicom_window: tuple[float, float] | None = None,
) -> DecodedImage:
    """Decode an image file by content into upright RGB uint8 and its fingerprint.

    DICOM files (the ``DICM`` preamble, or a ``.dcm``/``.dicom`` name) go to
    auditor.data.dicom; their fingerprint adds the allow-listed ``dicom_<Keyword>`` tags.

    Args:
        path: the image file.
        max_pixels: refuse images whose declared width*height exceeds this, before any
            pixel is decoded (decompression bombs).
        dicom_window: (center, width) replacing a DICOM file's own VOI; None = the file's.

    Returns:
        DecodedImage with ``rgb`` uint8 [H, W, 3].

    Raises:
        DecodeError: the file is empty, missing, unreadable, not an image, truncated,
            corrupt, or too large; the message says which.
    """
    if max_pixels <= 0:
        raise UsageError(f"max_pixels must be a positive pixel count, got {max_pixels}")
    return decode_bytes(read_file_bytes(path), path, max_pixels, dicom_window)


def decode_bytes(
    data: bytes,
    name: str,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    dicom_window: tuple[float, float] | None = None,
) -> DecodedImage:
    """Decode the bytes of an image (a file, a Parquet cell, a tar member) like decode_image.

    Args:
        data: the encoded image.
        name: the file name the bytes had, for the ``extension`` of the fingerprint; a name
            without an extension (bytes stored without one) never counts as a mismatch.
        max_pixels, dicom_window: as for decode_image.
    """
    if max_pixels <= 0:
        raise UsageError(f"max_pixels must be a positive pixel count, got {max_pixels}")
    if not data:
        raise DecodeError("empty file (0 bytes)")
    extension = os.path.splitext(name)[1].lower().lstrip(".")
    if has_dicom_preamble(data) or f".{extension}" in DICOM_EXTENSIONS:
        rgb, props = decode_dicom(data, extension, max_pixels, dicom_window)
        height, width = rgb.shape[:2]
        return DecodedImage(rgb=rgb, props=props, orientation=1, raw_size=(width, height))
    try:
        with strict_pil():
            image = Image.open(io.BytesIO(data))
            return _decode_opened(image, data, extension, max_pixels)
    except DecodeError:
        raise
    except UnidentifiedImageError as exc:
        raise DecodeError(sniff_non_image(data)) from exc
    except Image.DecompressionBombError as exc:
        raise DecodeError(f"refused: decompression bomb ({exc})") from exc
    except (OSError, SyntaxError, ValueError, IndexError, TypeError, KeyError, EOFError,
            struct.error, ZeroDivisionError, MemoryError, RuntimeError, OverflowError) as exc:
        # PIL plugins signal corrupt data with all of these; the message keeps PIL's reason.
        reason = str(exc) or type(exc).__name__
        if "truncated" in reason.lower():
            raise DecodeError(f"truncated image: {reason}") from exc
        raise DecodeError(f"corrupt or unsupported image: {type(exc).__name__}: {reason}") from exc


def _decode_opened(
    image: Image.Image, data: bytes, extension: str, max_pixels: int
) -> DecodedImage:
    """Check size, fingerprint, fully load, orient and convert an opened PIL image."""
    raw_width, raw_height = image.size
    check_declared_size(raw_width, raw_height, max_pixels)
    image_format = image.format or ""
    n_frames = int(getattr(image, "n_frames", 1) or 1)
    exif = image.getexif()
    orientation = int(exif.get(EXIF_ORIENTATION_TAG, 1) or 1)
    if orientation not in range(1, 9):
        orientation = 1
    is_jpeg = image_format in ("JPEG", "MPO")
    jpeg_quality = estimate_jpeg_quality(getattr(image, "quantization", None) or {}) \
        if is_jpeg else math.nan
    subsampling = chroma_subsampling(getattr(image, "layer", None)) if is_jpeg else ""
    mode = image.mode
    bit_depth = _png_bit_depth(data) if image_format == "PNG" else None
    if bit_depth is None:
        bit_depth = _MODE_BIT_DEPTH.get(mode, 8)
    image.load()
    rgb, has_alpha, mean_alpha = _to_rgb(image)
    rgb = orient_array(rgb, orientation)
    height, width = rgb.shape[:2]
    expected = _FORMAT_EXTENSIONS.get(image_format)
    props: dict[str, Any] = {
        "format": image_format,
        "extension": extension,
        "extension_mismatch": bool(expected is not None and extension
                                   and extension not in expected),
        "mode": mode,
        "bit_depth": int(bit_depth),
        "has_alpha": bool(has_alpha),
        "mean_alpha": float(mean_alpha),
        "width": int(width),
        "height": int(height),
        "aspect": float(width / height),
        "file_size": len(data),
        "jpeg_quality": float(jpeg_quality),
        "chroma_subsampling": subsampling,
        "has_exif": bool(len(exif) > 0),
        "exif_orientation": orientation,
        "n_frames": n_frames,
    }
    return DecodedImage(
        rgb=np.ascontiguousarray(rgb), props=props, orientation=orientation,
        raw_size=(raw_width, raw_height),
    )
