"""DICOM decoding against hand-computed pixels, DICOM files found in folders and manifests,
header shortcuts found by `probe`, and no patient string in any output."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from auditor.cli import main
from auditor.data.decode import PROPS_KEYS, decode_image
from auditor.data.dicom import DICOM_PROPS_KEYS, lut_to_8bit, window_to_8bit
from auditor.data.sources import open_source
from auditor.errors import DecodeError

pytest.importorskip("pydicom")
from tests.helpers.dicom_files import (
    PATIENT_STRINGS,
    dicom_dataset,
    write_dicom,
    write_jpeg_ls,
    write_rle,
)

# Stored 0..4000 in 16 bits; with slope 2 and intercept -1000 the modality values are
# -1000..7000. The window below is chosen so that display = modality / 4 inside it.
STORED = np.array([[500, 700, 1000], [1010, 0, 4000]], dtype=np.uint16)
MODALITY = STORED.astype(np.float64) * 2 - 1000  # [[0, 400, 1000], [1020, -1000, 7000]]
BY_FOUR = np.array([[0, 100, 250], [255, 0, 255]], dtype=np.uint8)


def grey(path: Path) -> np.ndarray:
    rgb = decode_image(str(path)).rgb
    assert (rgb[..., 0] == rgb[..., 1]).all()
    assert (rgb[..., 0] == rgb[..., 2]).all()
    return rgb[..., 0]


def test_linear_window_of_the_standard_maps_modality_values_to_display(tmp_path):
    # LINEAR, c = 510.5, w = 1021: ((x - 510) / 1020 + 0.5) * 255 = x / 4, clipped to 0..255.
    ds = dicom_dataset(STORED, RescaleSlope=2, RescaleIntercept=-1000, WindowCenter=510.5,
                       WindowWidth=1021)
    assert np.array_equal(grey(write_dicom(tmp_path / "a.dcm", ds)), BY_FOUR)


def test_linear_exact_and_sigmoid_windows_follow_the_standard(tmp_path):
    # LINEAR_EXACT, c = 510, w = 1020: ((x - 510) / 1020 + 0.5) * 255 = x / 4.
    ds = dicom_dataset(STORED, RescaleSlope=2, RescaleIntercept=-1000, WindowCenter=510,
                       WindowWidth=1020, VOILUTFunction="LINEAR_EXACT")
    assert np.array_equal(grey(write_dicom(tmp_path / "e.dcm", ds)), BY_FOUR)
    # SIGMOID, c = 1000, w = 1000: 255 / (1 + exp(-4 (x - 1000) / 1000)); x = 1000 -> 127.5.
    ds = dicom_dataset(STORED, RescaleSlope=2, RescaleIntercept=-1000, WindowCenter=1000,
                       WindowWidth=1000, VOILUTFunction="SIGMOID")
    expected = np.rint(255 / (1 + np.exp(-4 * (MODALITY - 1000) / 1000))).astype(np.uint8)
    assert np.array_equal(grey(write_dicom(tmp_path / "s.dcm", ds)), expected)
    assert expected[0, 2] == 128  # the centre is mid-grey (127.5 rounds to even 128)


def test_monochrome1_is_inverted_after_the_window(tmp_path):
    ds = dicom_dataset(STORED, photometric="MONOCHROME1", RescaleSlope=2,
                       RescaleIntercept=-1000, WindowCenter=510.5, WindowWidth=1021)
    assert np.array_equal(grey(write_dicom(tmp_path / "m1.dcm", ds)), 255 - BY_FOUR)


def test_12_bit_without_window_spans_its_own_range(tmp_path):
    stored = np.array([[0, 4095], [2048, 1024]], dtype=np.uint16)
    ds = dicom_dataset(stored, bits_stored=12)
    # min..max = 0..4095: 2048 * 255 / 4095 = 127.53 -> 128, 1024 * 255 / 4095 = 63.77 -> 64.
    assert np.array_equal(grey(write_dicom(tmp_path / "b12.dcm", ds)), [[0, 255], [128, 64]])
    assert decode_image(str(tmp_path / "b12.dcm")).props["bit_depth"] == 12


def test_8_bit_grey_without_window_spans_its_own_range(tmp_path):
    stored = np.array([[10, 20], [30, 110]], dtype=np.uint8)
    # min..max = 10..110: (v - 10) * 2.55 -> 0, 25.5 -> 26 (rint to even), 51, 255.
    assert np.array_equal(grey(write_dicom(tmp_path / "b8.dcm", dicom_dataset(stored))),
                          [[0, 26], [51, 255]])


def test_12_bit_stored_ignores_bits_above_high_bit(tmp_path):
    # Bits 12-15 carry an overlay-like pattern; only the 12 stored bits are the pixel.
    stored = np.array([[0xF000, 0xF000 | 4095]], dtype=np.uint16)
    ds = dicom_dataset(stored, bits_stored=12, WindowCenter=2048, WindowWidth=4096,
                       VOILUTFunction="LINEAR_EXACT")
    # LINEAR_EXACT c=2048 w=4096: (x / 4096) * 255: 0 -> 0, 4095 -> 254.94 -> 255.
    assert np.array_equal(grey(write_dicom(tmp_path / "hb.dcm", ds)), [[0, 255]])


def test_signed_16_bit_pixels_keep_their_sign(tmp_path):
    stored = np.array([[-1000, 0, 1000]], dtype=np.int16)
    ds = dicom_dataset(stored, WindowCenter=0, WindowWidth=2000, VOILUTFunction="LINEAR_EXACT")
    # (x / 2000 + 0.5) * 255: -1000 -> 0, 0 -> 127.5 -> 128, 1000 -> 255.
    assert np.array_equal(grey(write_dicom(tmp_path / "s16.dcm", ds)), [[0, 128, 255]])


@pytest.mark.parametrize("vr", ["US", "OW"])
def test_voi_lut_sequence_is_applied_and_scaled_from_its_bit_depth(tmp_path, vr):
    from pydicom.dataset import Dataset

    lut = Dataset()
    lut.LUTDescriptor = [4, 100, 16]
    entries = [0, 257, 65535, 1000]
    lut.add_new("LUTData", vr, entries if vr == "US" else np.array(entries, "<u2").tobytes())
    stored = np.array([[50, 100, 101], [102, 103, 900]], dtype=np.uint16)
    ds = dicom_dataset(stored, VOILUTSequence=[lut], WindowCenter=0, WindowWidth=1)
    # Below the first mapped value -> entry 0; above the last -> last entry. 16-bit entries
    # scale by 255 / 65535: 257 -> 1, 1000 -> 3.89 -> 4. The LUT wins over the window.
    expected = [[0, 0, 1], [255, 4, 4]]
    assert np.array_equal(grey(write_dicom(tmp_path / "lut.dcm", ds)), expected)


def test_lut_and_window_functions_on_hand_values():
    assert np.array_equal(lut_to_8bit(np.array([99, 100, 101, 102, 103, 104]), [4, 100, 8],
                                      np.array([0, 10, 200, 255])), [0, 0, 10, 200, 255, 255])
    assert np.array_equal(window_to_8bit(np.array([0.0, 400.0, 2000.0]), 510.5, 1021),
                          [0, 100, 255])


def test_user_window_overrides_the_files_own(tmp_path):
    ds = dicom_dataset(STORED, RescaleSlope=2, RescaleIntercept=-1000, WindowCenter=510.5,
                       WindowWidth=1021)
    path = write_dicom(tmp_path / "w.dcm", ds)
    # LINEAR c = 1020.5, w = 2041: ((x - 1020) / 2040 + 0.5) * 255 = x / 8.
    rgb = decode_image(str(path), dicom_window=(1020.5, 2041)).rgb[..., 0]
    assert np.array_equal(rgb, [[0, 50, 125], [128, 0, 255]])  # 1020 / 8 = 127.5 -> 128


def test_eight_bit_rgb_passes_through(tmp_path):
    pixels = np.zeros((4, 6, 3), dtype=np.uint8)
    pixels[..., 0], pixels[:, :3, 2] = 200, 90
    rgb = decode_image(str(write_dicom(tmp_path / "rgb.dcm", dicom_dataset(pixels, "RGB")))).rgb
    assert np.array_equal(rgb, pixels)


def test_rle_compressed_file_decodes_to_the_same_pixels(tmp_path):
    tags = {"RescaleSlope": 2, "RescaleIntercept": -1000, "WindowCenter": 510.5,
            "WindowWidth": 1021}
    path = write_rle(tmp_path / "rle.dcm", STORED, **tags)
    decoded = decode_image(str(path))
    assert np.array_equal(decoded.rgb[..., 0], BY_FOUR)
    assert decoded.props["dicom_TransferSyntaxUID"] == "RLE Lossless"


def test_missing_decoder_is_an_error_naming_what_to_install(tmp_path):
    from pydicom.pixels import get_decoder
    from pydicom.uid import JPEGLSLossless

    if get_decoder(JPEGLSLossless).is_available:
        pytest.skip("a JPEG-LS decoder is installed here")
    with pytest.raises(DecodeError, match=r"JPEG-LS.*no decoder.*pylibjpeg"):
        decode_image(str(write_jpeg_ls(tmp_path / "jls.dcm")))


def test_dicom_without_pixel_data_and_without_pydicom_are_clear_errors(tmp_path, monkeypatch):
    ds = dicom_dataset(np.zeros((2, 2), dtype=np.uint8))
    del ds.PixelData
    with pytest.raises(DecodeError, match="without pixel data"):
        decode_image(str(write_dicom(tmp_path / "nopix.dcm", ds)))
    good = write_dicom(tmp_path / "ok.dcm", dicom_dataset(np.zeros((2, 2), dtype=np.uint8)))
    monkeypatch.setitem(sys.modules, "pydicom", None)
    with pytest.raises(DecodeError, match=r"pydicom is not installed: pip install"):
        decode_image(str(good))


def test_fingerprint_has_the_image_keys_and_the_allow_listed_tags_only(tmp_path):
    ds = dicom_dataset(STORED, Manufacturer="ACME", ViewPosition="AP", KVP=110,
                       PixelSpacing=[0.14, 0.15], Modality="CR")
    props = decode_image(str(write_dicom(tmp_path / "f.dcm", ds))).props
    assert tuple(props) == PROPS_KEYS + DICOM_PROPS_KEYS
    assert props["format"] == "DICOM"
    assert props["mode"] == "L"
    assert (props["width"], props["height"], props["bit_depth"]) == (3, 2, 16)
    assert props["dicom_Manufacturer"] == "ACME"
    assert props["dicom_ViewPosition"] == "AP"
    assert props["dicom_KVP"] == 110.0
    assert props["dicom_PixelSpacing"] == 0.14
    assert props["dicom_BurnedInAnnotation"] is None
    assert math.isnan(props["dicom_Exposure"])


def test_dicom_found_by_extension_or_preamble_in_folders_and_manifests(tmp_path):
    pixels = np.zeros((4, 4), dtype=np.uint16)
    write_dicom(tmp_path / "data" / "a" / "one.dcm", dicom_dataset(pixels))
    write_dicom(tmp_path / "data" / "b" / "IM0001", dicom_dataset(pixels))  # no extension
    (tmp_path / "data" / "b" / "notes.txt").write_text("not an image")
    index = open_source(tmp_path / "data")
    assert [s.rel_path for s in index.samples] == ["a/one.dcm", "b/IM0001"]
    (tmp_path / "data" / "m.csv").write_text("path,label\na/one.dcm,x\nb/IM0001,y\n")
    paths = [s.path for s in open_source(tmp_path / "data" / "m.csv").samples]
    assert [decode_image(p).props["format"] for p in paths] == ["DICOM", "DICOM"]


def _header_shortcut_set(root: Path) -> None:
    """Two classes, one manufacturer each; pixels carry nothing (same noise statistics)."""
    rng = np.random.default_rng(0)
    for label, maker in (("effusion", "Northwind Imaging"), ("normal", "Contoso Medical")):
        for i in range(15):
            pixels = rng.integers(0, 4096, (24, 24)).astype(np.uint16)
            ds = dicom_dataset(pixels, bits_stored=12, Manufacturer=maker, Modality="DX",
                               ViewPosition="PA" if i % 2 else "AP")
            write_dicom(root / label / f"{label}_{i:02d}.dcm", ds)
    # A DICOM file whose pixel data is cut short: an error row that must not leak either.
    ds = dicom_dataset(np.zeros((24, 24), dtype=np.uint16), Manufacturer="Contoso Medical")
    ds.PixelData = ds.PixelData[:100]
    write_dicom(root / "normal" / "broken.dcm", ds)


def _every_text(out: Path) -> str:
    """Every output file as text: raw bytes (latin-1) plus parquet cells read back."""
    parts = []
    for path in sorted(p for p in out.rglob("*") if p.is_file()):
        parts.append(path.read_bytes().decode("latin-1"))
        if path.suffix == ".parquet":
            parts.append(pd.read_parquet(path).astype(str).to_csv())
    return "\n".join(parts)


def test_probe_names_the_header_tag_and_no_patient_string_leaves_the_files(tmp_path):
    _header_shortcut_set(tmp_path / "data")
    out = tmp_path / "probe"
    result = CliRunner().invoke(
        main, ["probe", str(tmp_path / "data"), "--out", str(out), "--workers", "0",
               "--image-size", "32"],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    shortcut = [f for f in summary["flags"] if f["kind"] == "metadata_shortcut"]
    assert len(shortcut) == 1
    assert "dicom_Manufacturer" in shortcut[0]["message"]
    assert "Northwind Imaging" in shortcut[0]["message"]
    named = [p["property"] for p in shortcut[0]["evidence"]["properties"]]
    assert named[0] == "dicom_Manufacturer"
    assert "dicom_ViewPosition" not in named  # alternates within each class: no shortcut
    samples = pd.read_parquet(out / "samples.parquet")
    broken = samples[samples["rel_path"] == "normal/broken.dcm"]
    assert broken["status"].tolist() == ["error"]
    assert "DICOM" in broken["error"].iloc[0]
    assert (samples["status"] == "ok").sum() == 30
    texts = _every_text(out) + result.output + (result.stderr_bytes or b"").decode()
    leaked = [s for s in PATIENT_STRINGS if s in texts]
    assert not leaked, f"patient data in the outputs: {leaked}"
    # The search itself works: an allow-listed value is found the same way.
    assert "Northwind Imaging" in texts


def test_audit_of_dicom_files_leaks_no_patient_string(tmp_path):
    _header_shortcut_set(tmp_path / "data")
    out = tmp_path / "run"
    result = CliRunner().invoke(
        main, ["audit", str(tmp_path / "data"), "--out", str(out), "--model",
               "auditor.demo:build_demo_model", "--image-size", "32", "--workers", "0",
               "--dicom-window", "2048,4096"],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["config"]["dicom_window"] == [2048.0, 4096.0]
    assert any(f["kind"] == "metadata_shortcut" for f in summary["flags"])
    texts = _every_text(out) + result.output + (result.stderr_bytes or b"").decode()
    assert not [s for s in PATIENT_STRINGS if s in texts]
    assert "Northwind Imaging" in texts


def test_reencode_decodes_a_dicom_file_with_the_runs_window(tmp_path):
    from auditor.data.edits import reencode

    ds = dicom_dataset(STORED, RescaleSlope=2, RescaleIntercept=-1000, WindowCenter=510.5,
                       WindowWidth=1021)
    path = write_dicom(tmp_path / "w.dcm", ds)
    # PNG is lossless: the re-encoded pixels are the decoded ones, with the window given.
    own = reencode(str(path), "PNG")[..., 0]
    given = reencode(str(path), "PNG", dicom_window=(1020.5, 2041))[..., 0]
    assert np.array_equal(own, BY_FOUR)
    assert np.array_equal(given, [[0, 50, 125], [128, 0, 255]])
