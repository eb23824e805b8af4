"""Writers of test DICOM files, pixels built in code, patient fields filled with strings that
must never appear in any output (``PATIENT_STRINGS``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

pydicom = pytest.importorskip("pydicom")
from pydicom.dataset import Dataset, FileMetaDataset  # noqa: E402
from pydicom.encaps import encapsulate  # noqa: E402
from pydicom.uid import ExplicitVRLittleEndian, JPEGLSLossless, RLELossless  # noqa: E402

#: Distinctive values of the patient, study and institution fields of every written file.
PATIENT_FIELDS: dict[str, str] = {
    "PatientName": "Quixotica^Zephyrine",
    "PatientID": "PID-7Q3X9-4471",
    "PatientBirthDate": "19230917",
    "StudyDate": "20190305",
    "InstitutionName": "Saint Wenceslaus Infirmary",
    "AccessionNumber": "ACC55Z81G",
    "ReferringPhysicianName": "Oppenheim^Barnabus",
    "StudyDescription": "Confidential note Xylophage",
    "ImageComments": "comment Plumbago-4417",
}
PATIENT_STRINGS: tuple[str, ...] = (
    "Quixotica", "Zephyrine", "PID-7Q3X9-4471", "19230917", "20190305", "Wenceslaus",
    "ACC55Z81G", "Oppenheim", "Barnabus", "Xylophage", "Plumbago",
)
_SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"


def dicom_dataset(
    pixels: np.ndarray,
    photometric: str = "MONOCHROME2",
    bits_stored: int | None = None,
    **tags: Any,
) -> Dataset:
    """A DICOM data set around ``pixels`` (uint8/uint16/int16 [H, W], or uint8 [H, W, 3]).

    ``tags`` set any further element by keyword (Manufacturer="X", WindowCenter=..., ...).
    """
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = _SECONDARY_CAPTURE
    ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    ds.SOPClassUID = _SECONDARY_CAPTURE
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    for keyword, value in PATIENT_FIELDS.items():
        setattr(ds, keyword, value)
    allocated = pixels.dtype.itemsize * 8
    ds.Rows, ds.Columns = pixels.shape[:2]
    ds.SamplesPerPixel = 3 if pixels.ndim == 3 else 1
    if pixels.ndim == 3:
        ds.PlanarConfiguration = 0
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = allocated
    ds.BitsStored = bits_stored or allocated
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 1 if pixels.dtype.kind == "i" else 0
    for keyword, value in tags.items():
        setattr(ds, keyword, value)
    ds.PixelData = np.ascontiguousarray(pixels).tobytes()
    return ds


def write_dicom(path: Path, ds: Dataset) -> Path:
    """Save a data set as a DICOM Part 10 file (with preamble), creating parent folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def write_rle(path: Path, pixels: np.ndarray, **tags: Any) -> Path:
    """The same pixels, RLE Lossless compressed (pydicom's own encoder)."""
    ds = dicom_dataset(pixels, **tags)
    ds.compress(RLELossless, pixels)
    return write_dicom(path, ds)


def write_jpeg_ls(path: Path) -> Path:
    """A JPEG-LS file (its codestream is junk: a decoder, if installed, would reject it)."""
    ds = dicom_dataset(np.zeros((8, 8), dtype=np.uint8))
    ds.file_meta.TransferSyntaxUID = JPEGLSLossless
    ds.PixelData = encapsulate([b"\xff\xd8\xff\xf7" + bytes(32)])
    ds["PixelData"].VR = "OB"
    return write_dicom(path, ds)
