"""DICOM files -> display RGB uint8 and a fingerprint of allow-listed technical tags.

Patient data never leaves the file: the file is parsed with pydicom's ``specific_tags``, so
only the tags needed to decode the pixels (``DECODE_TAGS``) and the technical tags of
``TECHNICAL_TAGS`` are read at all; every other element (names, IDs, dates, institution,
accession number, free text) is skipped unparsed and so can reach no fingerprint, error
message or log. pydicom's warnings are silenced while a file is read, since they could quote
a value.

Pixels to display (the DICOM grayscale pipeline, PS3.3 C.11):

1. stored values (first frame) -> modality values: Modality LUT Sequence, else
   ``value * RescaleSlope + RescaleIntercept`` (pydicom's ``apply_modality_lut``);
2. modality values -> 0-255, the first VOI that applies:
   ``dicom_window`` (the user's ``--dicom-window CENTER,WIDTH``, linear) >
   the file's VOI LUT Sequence (first LUT, output scaled by 255 / (2^bits - 1)) >
   the file's first WindowCenter/WindowWidth with its VOILUTFunction (LINEAR,
   LINEAR_EXACT or SIGMOID, PS3.3 C.11.2.1.2-3) > the image's own min..max (linear);
3. MONOCHROME1 (white = low values) is inverted, ``255 - v``, so bone is bright in both.

Colour files (RGB, YBR_* converted to RGB by pydicom, PALETTE COLOR through its palette) are
reduced to 8 bits by dropping the low bits (``v >> (bits - 8)``). Compressed transfer
syntaxes decode when a pydicom decoder plugin for them is installed (RLE always; JPEG and
JPEG 2000 through Pillow); otherwise the file's error row names the packages to install.
"""

from __future__ import annotations

import io
import logging
import math
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

from auditor.data.limits import check_declared_size
from auditor.errors import DecodeError, UsageError

DICOM_EXTENSIONS: frozenset[str] = frozenset({".dcm", ".dicom"})
PREAMBLE_SIZE = 132  # 128-byte preamble + "DICM"
INSTALL_HINT = "pip install 'auditor[dicom]' (or: pip install pydicom)"

#: Technical tags read into the fingerprint, as ``dicom_<Keyword>`` properties. Rows,
#: Columns, BitsStored and NumberOfFrames are the ``height``, ``width``, ``bit_depth`` and
#: ``n_frames`` properties every image has.
DICOM_CATEGORICAL_TAGS: tuple[str, ...] = (
    "Manufacturer",
    "ManufacturerModelName",
    "Modality",
    "ViewPosition",
    "PhotometricInterpretation",
    "BitsAllocated",
    "PixelRepresentation",
    "BurnedInAnnotation",
    "ImageLaterality",
    "PresentationIntentType",
    "ConversionType",
    "DetectorType",
    "LossyImageCompression",
    "SoftwareVersions",
    "TransferSyntaxUID",
)
DICOM_NUMERIC_TAGS: tuple[str, ...] = (
    "PixelSpacing",
    "ImagerPixelSpacing",
    "KVP",
    "Exposure",
    "ExposureTime",
    "XRayTubeCurrent",
    "DistanceSourceToDetector",
    "RescaleSlope",
    "RescaleIntercept",
    "WindowCenter",
    "WindowWidth",
)
TECHNICAL_TAGS: tuple[str, ...] = DICOM_CATEGORICAL_TAGS + DICOM_NUMERIC_TAGS
PROPERTY_PREFIX = "dicom_"
DICOM_PROPS_KEYS: tuple[str, ...] = tuple(PROPERTY_PREFIX + tag for tag in TECHNICAL_TAGS)

#: Tags the pixels need (image pixel module, modality and VOI LUTs, palettes).
DECODE_TAGS: tuple[str, ...] = (
    "SamplesPerPixel",
    "PhotometricInterpretation",
    "PlanarConfiguration",
    "NumberOfFrames",
    "Rows",
    "Columns",
    "BitsAllocated",
    "BitsStored",
    "HighBit",
    "PixelRepresentation",
    "RescaleSlope",
    "RescaleIntercept",
    "RescaleType",
    "ModalityLUTSequence",
    "VOILUTSequence",
    "WindowCenter",
    "WindowWidth",
    "VOILUTFunction",
    "RedPaletteColorLookupTableDescriptor",
    "GreenPaletteColorLookupTableDescriptor",
    "BluePaletteColorLookupTableDescriptor",
    "RedPaletteColorLookupTableData",
    "GreenPaletteColorLookupTableData",
    "BluePaletteColorLookupTableData",
    "SegmentedRedPaletteColorLookupTableData",
    "SegmentedGreenPaletteColorLookupTableData",
    "SegmentedBluePaletteColorLookupTableData",
    "ExtendedOffsetTable",
    "ExtendedOffsetTableLengths",
    "PixelData",
)
_READ_TAGS: list[str] = sorted(set(DECODE_TAGS) | set(TECHNICAL_TAGS) - {"TransferSyntaxUID"})


def has_dicom_preamble(head: bytes) -> bool:
    """True when bytes start with a DICOM Part 10 preamble (128 bytes, then ``DICM``)."""
    return len(head) >= PREAMBLE_SIZE and head[128:132] == b"DICM"


def is_dicom_file(path: str) -> bool:
    """True when a file starts with the DICOM preamble; False when it does not or cannot be read."""
    try:
        with open(path, "rb") as handle:
            return has_dicom_preamble(handle.read(PREAMBLE_SIZE))
    except OSError:
        return False


def parse_window(text: str) -> tuple[float, float]:
    """``"CENTER,WIDTH"`` -> (center, width) in modality units (e.g. HU); width > 0.

    Raises:
        UsageError: not two numbers, or a width that is not positive.
    """
    try:
        center, width = (float(part) for part in text.split(","))
    except ValueError:
        raise UsageError(
            f"--dicom-window takes CENTER,WIDTH in modality units (e.g. 2048,4096), not {text!r}"
        ) from None
    if not (math.isfinite(center) and math.isfinite(width)) or width <= 0:
        raise UsageError(f"--dicom-window needs a finite centre and a width > 0, not {text!r}")
    return center, width


def window_to_8bit(
    values: np.ndarray, center: float, width: float, function: str = "LINEAR"
) -> np.ndarray:
    """Apply a DICOM VOI window (PS3.3 C.11.2.1.2-3) with output range 0-255.

    Args:
        values: modality values, any shape.
        center, width: the window; LINEAR needs width >= 1, the others width > 0.
        function: "LINEAR", "LINEAR_EXACT" or "SIGMOID".

    Returns:
        uint8 array of the same shape.
    """
    x = values.astype(np.float64)
    if function == "SIGMOID":
        y = 255.0 / (1.0 + np.exp(-4.0 * (x - center) / width))
    elif function == "LINEAR_EXACT":
        y = ((x - center) / width + 0.5) * 255.0
    else:
        span = max(width - 1.0, 1e-12)
        y = ((x - (center - 0.5)) / span + 0.5) * 255.0
    return np.rint(np.clip(y, 0.0, 255.0)).astype(np.uint8)


def lut_to_8bit(values: np.ndarray, descriptor: list[int], data: np.ndarray) -> np.ndarray:
    """Apply a VOI LUT (PS3.3 C.11.2.1.1): values below the first mapped one take the first
    entry, above the last the last entry; output scaled from ``descriptor[2]`` bits to 0-255.

    Args:
        values: modality values, any shape.
        descriptor: (entries, first mapped value, bits per entry); 0 entries means 65536.
        data: the LUT entries, int [entries].
    """
    entries = int(descriptor[0]) or 65536
    first, bits = int(descriptor[1]), int(descriptor[2])
    table = np.asarray(data, dtype=np.float64)[:entries]
    position = np.clip(np.rint(values.astype(np.float64)) - first, 0, len(table) - 1)
    scaled = table[position.astype(np.int64)] * (255.0 / (2.0**bits - 1.0))
    return np.rint(np.clip(scaled, 0.0, 255.0)).astype(np.uint8)


def range_to_8bit(values: np.ndarray) -> np.ndarray:
    """Map an image's own min..max linearly to 0-255 (a constant image gives 0)."""
    x = values.astype(np.float64)
    low, high = float(x.min()), float(x.max())
    if high <= low:
        return np.zeros(x.shape, dtype=np.uint8)
    return np.rint((x - low) * (255.0 / (high - low))).astype(np.uint8)


@contextmanager
def _quiet_pydicom() -> Iterator[None]:
    """Silence pydicom's warnings and log records (they can quote element values)."""
    logger = logging.getLogger("pydicom")
    previous = logger.disabled
    logger.disabled = True
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.disabled = previous


def _import_pydicom() -> Any:
    try:
        import pydicom
    except ImportError as exc:
        raise DecodeError(f"DICOM file, but pydicom is not installed: {INSTALL_HINT}") from exc
    return pydicom


def _is_multi(value: Any) -> bool:
    """True for a multi-valued element's value (pydicom's MultiValue is a Sequence)."""
    return isinstance(value, Sequence) and not isinstance(value, str | bytes)


def _first(value: Any) -> Any:
    """The first item of a multi-valued element, the value itself otherwise."""
    if _is_multi(value):
        return value[0] if len(value) else None
    return value


def _as_float(value: Any) -> float:
    try:
        number = float(_first(value))
    except (TypeError, ValueError):
        return math.nan
    return number if math.isfinite(number) else math.nan


def _as_category(value: Any) -> str | None:
    if value is None:
        return None
    values = value if _is_multi(value) else [value]
    text = "\\".join(str(v).strip() for v in values)
    return text or None


def technical_properties(ds: Any) -> dict[str, Any]:
    """The ``dicom_<Keyword>`` fingerprint of a parsed file: category strings (None when
    absent), numbers as float (first value of a multi-valued tag; NaN when absent)."""
    props: dict[str, Any] = {}
    for tag in DICOM_CATEGORICAL_TAGS:
        if tag == "TransferSyntaxUID":
            uid = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
            props[PROPERTY_PREFIX + tag] = None if uid is None else str(uid.name)
        else:
            props[PROPERTY_PREFIX + tag] = _as_category(ds.get(tag))
    for tag in DICOM_NUMERIC_TAGS:
        props[PROPERTY_PREFIX + tag] = _as_float(ds.get(tag))
    return props


def _check_decoder(pydicom: Any, ds: Any) -> None:
    """Raise a DecodeError naming what to install when no decoder handles the file's syntax."""
    uid = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if uid is None:
        return
    try:
        decoder = pydicom.pixels.get_decoder(uid)
    except NotImplementedError:
        raise DecodeError(f"DICOM transfer syntax {uid.name} ({uid}) is not supported") from None
    if not decoder.is_available:
        needs = "; ".join(decoder.missing_dependencies)
        raise DecodeError(
            f"compressed DICOM ({uid.name}) and no decoder for it is installed; install one "
            f"of: {needs}"
        )


def _lut_entries(item: Any) -> np.ndarray:
    """A LUT item's entries as int [n]: US values as read, OW bytes as little-endian 16-bit
    words (8-bit entries stored in OW are one byte each only when the byte count says so)."""
    data = item.LUTData
    if isinstance(data, bytes | bytearray):
        entries = int(item.LUTDescriptor[0]) or 65536
        dtype = "<u1" if len(data) == entries and int(item.LUTDescriptor[2]) <= 8 else "<u2"
        return np.frombuffer(data, dtype=dtype).astype(np.int64)
    return np.atleast_1d(np.asarray(data, dtype=np.int64))


def _grey_to_8bit(
    pydicom: Any, pixels: np.ndarray, ds: Any, window: tuple[float, float] | None
) -> np.ndarray:
    """Stored grey values [H, W] -> display uint8 [H, W] (steps 1-3 of the module docstring)."""
    values = pydicom.pixels.apply_modality_lut(pixels, ds)
    if window is not None:
        grey = window_to_8bit(values, *window)
    elif "VOILUTSequence" in ds and len(ds.VOILUTSequence):
        item = ds.VOILUTSequence[0]
        grey = lut_to_8bit(values, list(item.LUTDescriptor), _lut_entries(item))
    elif "WindowCenter" in ds and "WindowWidth" in ds:
        center, width = _as_float(ds.WindowCenter), _as_float(ds.WindowWidth)
        function = str(ds.get("VOILUTFunction", "LINEAR") or "LINEAR").upper()
        if math.isnan(center) or math.isnan(width) or width <= 0:
            grey = range_to_8bit(values)
        else:
            grey = window_to_8bit(values, center, width, function)
    else:
        grey = range_to_8bit(values)
    if str(ds.get("PhotometricInterpretation", "")).upper() == "MONOCHROME1":
        grey = 255 - grey
    return grey


def _colour_to_8bit(pydicom: Any, pixels: np.ndarray, ds: Any) -> np.ndarray:
    """Colour pixels [H, W, 3] (or palette indices [H, W]) -> RGB uint8 [H, W, 3]."""
    photometric = str(ds.get("PhotometricInterpretation", "")).upper()
    if photometric == "PALETTE COLOR":
        rgb = pydicom.pixels.apply_color_lut(pixels, ds)
        return (rgb.astype(np.uint32) >> 8).astype(np.uint8) if rgb.dtype.itemsize > 1 else rgb
    bits = int(ds.get("BitsStored", 8) or 8)
    shift = max(bits - 8, 0)
    return np.clip(pixels.astype(np.int64) >> shift, 0, 255).astype(np.uint8)


def decode_dicom(
    data: bytes,
    extension: str,
    max_pixels: int,
    window: tuple[float, float] | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Decode the first frame of a DICOM file to display RGB and its fingerprint.

    Args:
        data: the whole file.
        extension: the file's extension, lower case, without the dot.
        max_pixels: refuse files whose Rows*Columns exceeds this, before decoding pixels.
        window: (center, width) overriding the file's VOI, in modality units; None = file's.

    Returns:
        (rgb uint8 [H, W, 3], props with the keys of decode.PROPS_KEYS and DICOM_PROPS_KEYS).

    Raises:
        DecodeError: pydicom missing, not DICOM, no pixel data, no decoder, too large or
            corrupt; the message quotes no element value outside the allow-list.
    """
    pydicom = _import_pydicom()
    with _quiet_pydicom():
        try:
            ds = pydicom.dcmread(
                io.BytesIO(data), force=not has_dicom_preamble(data), specific_tags=_READ_TAGS
            )
        except Exception as exc:  # pydicom's reason may quote bytes of any element: not shown
            raise DecodeError(f"corrupt DICOM file ({type(exc).__name__})") from exc
        if "PixelData" not in ds:
            raise DecodeError("DICOM file without pixel data (not an image: a report, "
                              "a DICOMDIR or a presentation state?)")
        rows, columns = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
        check_declared_size(columns, rows, max_pixels, kind="DICOM image")
        _check_decoder(pydicom, ds)
        try:
            pixels = pydicom.pixels.pixel_array(ds, index=0)
            samples = int(ds.get("SamplesPerPixel", 1) or 1)
            photometric = str(ds.get("PhotometricInterpretation", "")).upper()
            if samples == 1 and photometric != "PALETTE COLOR":
                grey = _grey_to_8bit(pydicom, pixels, ds, window)
                rgb = np.repeat(grey[..., None], 3, axis=2)
            else:
                rgb = _colour_to_8bit(pydicom, pixels, ds)
        except (ValueError, KeyError, IndexError, TypeError, AttributeError, RuntimeError,
                NotImplementedError, OverflowError, MemoryError) as exc:
            # Decoder messages speak of pixel data and transfer syntaxes, never of values.
            raise DecodeError(
                f"corrupt or unsupported DICOM pixel data: {type(exc).__name__}: "
                f"{str(exc)[:300]}"
            ) from exc
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise DecodeError(f"unsupported DICOM pixel layout {tuple(pixels.shape)}")
    height, width = rgb.shape[:2]
    props: dict[str, Any] = {
        "format": "DICOM",
        "extension": extension,
        "extension_mismatch": bool(f".{extension}" not in DICOM_EXTENSIONS and extension != ""),
        "mode": "L" if samples == 1 and photometric != "PALETTE COLOR" else "RGB",
        "bit_depth": int(ds.get("BitsStored", 8) or 8),
        "has_alpha": False,
        "mean_alpha": 1.0,
        "width": int(width),
        "height": int(height),
        "aspect": float(width / height),
        "file_size": len(data),
        "jpeg_quality": math.nan,
        "chroma_subsampling": "",
        "has_exif": False,
        "exif_orientation": 1,
        "n_frames": int(ds.get("NumberOfFrames", 1) or 1),
    }
    props.update(technical_properties(ds))
    return np.ascontiguousarray(rgb), props

