"""Every script in examples/ runs as users run it (small sizes) and prints what it promises."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

# Among the longest tests (whole audits, training, subprocesses): `-m "not slow"` skips them.
pytestmark = pytest.mark.slow

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _run(script: str, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / script), *args],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_demo_script_shows_the_background_shortcut(tmp_path: Path) -> None:
    out = _run(
        "demo_pokemon_digimon.py", "--out", str(tmp_path), "--per-class", "40", "--epochs", "4"
    )
    assert "background_attention" in out
    assert "metadata_shortcut" in out
    assert (tmp_path / "run" / "report.html").is_file()


def test_torchvision_manifest_script(tmp_path: Path) -> None:
    out = _run(
        "torchvision_manifest.py",
        "--out",
        str(tmp_path),
        "--per-class",
        "12",
        "--epochs",
        "1",
        "--image-size",
        "64",
    )
    assert "auditor audit" in out
    assert "target layer: ['layer4']" in out
    assert (tmp_path / "run" / "samples.parquet").is_file()


@pytest.mark.parametrize("script", ["python_api.py"])
def test_python_api_script(tmp_path: Path, script: str) -> None:
    out = _run(script, "--out", str(tmp_path), "--per-class", "16")
    assert "maps: {'gradcam': (8, 16, 16), 'gradcam++': (8, 16, 16), 'cam': (8, 16, 16)}" in out
    assert (tmp_path / "overlay.png").is_file()
    assert (tmp_path / "run" / "report.html").is_file()


def test_multilabel_dicom_script_finds_the_marker_for_its_label_only(tmp_path: Path) -> None:
    out = _run("multilabel_dicom_audit.py", "--out", str(tmp_path), "--n", "160",
               "--epochs", "10")
    audit = out.split("auditor audit flags:")[1]
    assert "HIGH   fixed_location [effusion]" in audit  # the burned-in "R" of the effusion films
    # Nodule rows of films that also carry the "R" can peak on it too (the tiny model's nodule
    # output partly reads it): at most a low finding there, never a medium or high one.
    assert "HIGH   fixed_location [nodule]" not in audit
    assert "MEDIUM fixed_location [nodule]" not in audit
    assert "metadata_shortcut [effusion]" in out  # the portable scanner's Manufacturer
    assert "metadata_shortcut [nodule]" not in out
    assert "effusion: precision" in out
    assert "patient fields found in" in out
    assert out.split("patient fields found in")[1].split(": ")[1].startswith("none")
