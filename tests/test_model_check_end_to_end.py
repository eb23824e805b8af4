"""Whole audits whose model fails the model check: the class order reversed on the demo data,
and a model on random initial weights over many classes."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from auditor.audit import run_audit
from auditor.config import AuditConfig
from auditor.detect.model_check import WITHHELD_KINDS


def demo_config(demo_set: Path, out: Path, **kw: object) -> AuditConfig:
    return AuditConfig(
        data=str(demo_set / "data"), model="auditor.demo:build_demo_model",
        masks=str(demo_set / "masks"), out=str(out), image_size=(64, 64),
        mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), workers=0, quiet=True, **kw)


def test_reversed_class_order_is_labels_permuted_and_no_attention_flag_is_a_finding(
        demo_set: Path, tmp_path: Path) -> None:
    result = run_audit(demo_config(demo_set, tmp_path / "run",
                                   weights=str(demo_set / "demo_model.pt"),
                                   classes=("pokemon", "digimon")))
    flags = result.summary["flags"]
    assert flags[0]["kind"] == "labels_permuted"
    assert flags[0]["severity"] == "high"
    assert flags[0]["evidence"]["classes_order"] == ["digimon", "pokemon"]
    assert "--classes digimon,pokemon" in flags[0]["message"]
    assert result.summary["accuracy"]["overall"] < 0.2
    # No model-based shortcut flag is presented, and no edit was tried on its predictions; the
    # model-free probes (PNG vs JPEG, border pixels) still stand: they do not read the model.
    assert not [f for f in flags if f["kind"] in WITHHELD_KINDS]
    assert not result.summary["interventions"]
    assert "interventions were not run" in result.summary["model"]["warnings"][-1]
    html = (result.run_dir / "report.html").read_text()
    assert "rerun with --classes digimon,pokemon" in html


def _noise_classes(root: Path, n_classes: int, per_class: int) -> Path:
    rng = np.random.default_rng(0)
    for k in range(n_classes):
        (root / f"c{k:02d}").mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 256, size=(64, 64, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / f"c{k:02d}" / f"{i}.png")
    return root


def test_random_weights_on_many_classes_are_at_chance_with_no_per_class_flag(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    data = _noise_classes(tmp_path / "data", 30, 10)
    config = AuditConfig(data=str(data), model="auditor.demo:build_demo_model", num_classes=30,
                         out=str(tmp_path / "run"), image_size=(64, 64), workers=0,
                         quiet=True, foreground="estimate")
    with caplog.at_level(logging.WARNING, logger="auditor"):
        result = run_audit(config)
    summary = json.loads((result.run_dir / "summary.json").read_text())
    kinds = [f["kind"] for f in summary["flags"]]
    assert kinds[0] == "model_at_chance"
    assert not [f for f in summary["flags"] if f["class"] is not None
                and f["kind"] in WITHHELD_KINDS]
    assert summary["model"]["random_weights"] is True
    assert "random initial weights" in caplog.text
    assert "random initial weights" in summary["model"]["warnings"][0]
    html = (result.run_dir / "report.html").read_text()
    assert "random initial weights" in html
    assert "The model is no better than chance" in html


def test_trained_weights_are_not_called_random(demo_set: Path, tmp_path: Path) -> None:
    result = run_audit(demo_config(demo_set, tmp_path / "run",
                                   weights=str(demo_set / "demo_model.pt"),
                                   interventions=False))
    assert result.summary["model"]["random_weights"] is False
    assert not [f for f in result.summary["flags"]
                if f["kind"] in ("labels_permuted", "model_at_chance")]
    assert result.summary["withheld_flags"] == []
