"""The AuditResult object Python users and notebooks get back."""

from __future__ import annotations

from pathlib import Path

from auditor.audit import run_audit
from auditor.config import AuditConfig


def test_result_gives_flags_samples_gate_and_a_notebook_summary(
    demo_set: Path, tmp_path: Path
) -> None:
    result = run_audit(AuditConfig(
        data=str(demo_set / "data"), masks=str(demo_set / "masks"),
        model="auditor.demo:build_demo_model", weights=str(demo_set / "demo_model.pt"),
        out=str(tmp_path / "run"), image_size=(64, 64), mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5), workers=0, quiet=True, interventions=False,
    ))
    assert len(result.samples()) == 80
    assert result.report_path.is_file()
    severities = {f["severity"] for f in result.flags}
    assert "high" in severities
    assert result.exit_code("high") == 3
    assert result.exit_code(None) == 0
    html = result._repr_html_()
    assert "background_attention" in html or "Attention on the background" in html
    assert "<script" not in html.lower()
