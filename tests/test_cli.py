"""The `auditor` command end to end: outputs, error rows, exit codes."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from auditor.cli import PRINTED_FINDINGS, _print_findings, main

DEMO_OPTS = [
    "--model",
    "auditor.demo:build_demo_model",
    "--image-size",
    "64",
    "--mean",
    "0.5,0.5,0.5",
    "--std",
    "0.5,0.5,0.5",
    "--workers",
    "0",
    "--quiet",
]


def _audit(args: list[str]) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["audit", *args], catch_exceptions=False)
    return result.exit_code, result.output


@pytest.fixture(scope="module")
def folder_run(demo_set: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = tmp_path_factory.mktemp("data") / "data"
    shutil.copytree(demo_set / "data", data)
    (data / "pokemon" / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    out = tmp_path_factory.mktemp("runs") / "run"
    code, output = _audit(
        [
            str(data),
            "--out",
            str(out),
            "--weights",
            str(demo_set / "demo_model.pt"),
            "--masks",
            str(demo_set / "masks"),
            "--methods",
            "gradcam,cam",
            *DEMO_OPTS,
        ]
    )
    assert code == 0, output
    return out


def test_audit_writes_every_output(folder_run: Path) -> None:
    for name in ("samples.parquet", "samples.csv", "summary.json", "report.html"):
        assert (folder_run / name).is_file(), name
    assert list((folder_run / "maps" / "gradcam").glob("*.npy"))
    assert list((folder_run / "maps" / "cam").glob("*.npy"))
    summary = json.loads((folder_run / "summary.json").read_text())
    assert summary["model"]["target_layers"] == ["features"]
    assert summary["data"]["classes"] == ["digimon", "pokemon"]
    assert summary["data"]["n_samples"] == 81


def test_corrupt_file_is_an_error_row_and_the_run_goes_on(folder_run: Path) -> None:
    samples = pd.read_parquet(folder_run / "samples.parquet")
    bad = samples[samples["rel_path"].str.endswith("corrupt.png")]
    assert len(bad) == 1
    assert bad.iloc[0]["status"] == "error"
    assert bad.iloc[0]["error"]
    assert (samples["status"] == "ok").sum() == 80
    assert samples.loc[samples["status"] == "ok", "fg_energy"].notna().all()


def test_manifest_with_masks_and_boxes(demo_set: Path, tmp_path: Path) -> None:
    manifest = tmp_path / "m.csv"
    with open(manifest, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "label", "mask", "x0", "y0", "x1", "y1"])
        for label in ("digimon", "pokemon"):
            for image in sorted((demo_set / "data" / label).iterdir())[:6]:
                mask = demo_set / "masks" / label / f"{image.stem}.png"
                writer.writerow([image, label, mask, 8, 8, 56, 56])
    out = tmp_path / "run"
    code, output = _audit(
        [
            str(manifest),
            "--out",
            str(out),
            "--allow-outside",
            "--weights",
            str(demo_set / "demo_model.pt"),
            *DEMO_OPTS,
        ]
    )
    assert code == 0, output
    samples = pd.read_parquet(out / "samples.parquet")
    assert len(samples) == 12
    assert samples["wsol_iou"].notna().all()
    assert set(samples["foreground_source"]) == {"mask"}


def test_report_rerenders_and_prints_json(folder_run: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(main, ["report", str(folder_run), "--format", "json"])
    assert result.exit_code == 0
    assert json.loads(result.output)["primary"] == "gradcam"
    target = tmp_path / "again.html"
    result = runner.invoke(main, ["report", str(folder_run), "--output", str(target)])
    assert result.exit_code == 0, result.output
    assert target.stat().st_size > 10_000


def test_fail_on_gives_exit_3_when_the_shortcut_is_flagged(demo_set: Path, tmp_path: Path) -> None:
    code, output = _audit(
        [
            str(demo_set / "data"),
            "--out",
            str(tmp_path / "run"),
            "--weights",
            str(demo_set / "demo_model.pt"),
            "--masks",
            str(demo_set / "masks"),
            "--fail-on",
            "medium",
            "--no-interventions",
            *DEMO_OPTS,
        ]
    )
    assert code == 3, output


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--model", "torchvision:not_a_model"], "torchvision has no model"),
        (["--model", "auditor.demo:build_demo_model", "--target-layer", "nope"], "nope"),
        (
            ["--model", "auditor.demo:build_demo_model", "--num-classes", "2",
             "--classes", "digimon,pokemon,extra"],
            "3 classes",
        ),
        (["--model", "auditor.demo:build_demo_model", "--border", "0.7"], "--border"),
        (
            ["--model", "tests.helpers.cam_models:FeatureDictNet"],
            "forward returns the logits tensor",
        ),
    ],
)
def test_bad_usage_exits_2_with_a_message(
    demo_set: Path, tmp_path: Path, extra: list[str], message: str
) -> None:
    result = CliRunner().invoke(
        main,
        [
            "audit",
            str(demo_set / "data"),
            "--out",
            str(tmp_path / "r"),
            "--workers",
            "0",
            "--image-size",
            "64",
            *extra,
        ],
    )
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output


def test_probe_needs_no_model(demo_set: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main,
        [
            "probe",
            str(demo_set / "data"),
            "--out",
            str(tmp_path / "p"),
            "--workers",
            "0",
            "--image-size",
            "64",
            "--quiet",
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "p" / "summary.json").read_text())
    kinds = {f["kind"] for f in summary["flags"]}
    assert "metadata_shortcut" in kinds
    assert (tmp_path / "p" / "report.html").is_file()


def test_torchscript_model_is_refused_with_the_reason(demo_set: Path, tmp_path: Path) -> None:
    import torch

    from auditor.demo import DemoNet

    scripted = tmp_path / "scripted.pt"
    torch.jit.script(DemoNet().eval()).save(str(scripted))
    result = CliRunner().invoke(
        main, ["audit", str(demo_set / "data"), "--model", str(scripted), "--out",
               str(tmp_path / "r"), "--workers", "0", "--image-size", "64"],
    )
    assert result.exit_code == 2, result.output
    assert "cannot be hooked" in result.output


def test_an_internal_error_is_one_line_not_a_traceback(
    demo_set: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import auditor.audit

    def broken(*args: object, **kwargs: object) -> None:
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(auditor.audit, "run_pass", broken)
    result = CliRunner().invoke(
        main, ["audit", str(demo_set / "data"), "--out", str(tmp_path / "r"), *DEMO_OPTS],
    )
    assert result.exit_code == 1
    assert "internal error: ZeroDivisionError" in result.output
    assert "Traceback" not in result.output


def test_probe_report_speaks_of_data_not_of_a_model(demo_set: Path, tmp_path: Path) -> None:
    CliRunner().invoke(
        main, ["probe", str(demo_set / "data"), "--out", str(tmp_path / "p"), "--workers", "0",
               "--image-size", "64", "--quiet"],
    )
    html = (tmp_path / "p" / "report.html").read_text(encoding="utf-8")
    assert "Data-set probe:" in html
    assert "before a model is trained on this data" in html
    assert "Model-free shortcut checks on 80 files" in html


def test_a_model_returning_an_output_dict_is_audited_through_its_logits(
        demo_set: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(main, [
        "audit", str(demo_set / "data"), "--model", "tests.helpers.cam_models:DictOutputNet",
        "--out", str(tmp_path / "r"), "--workers", "0", "--image-size", "32", "--quiet",
        "--no-interventions",
    ])
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["model"]["target_layers"] == ["net.features"]


def test_every_audit_option_fills_the_config_field_of_its_name() -> None:
    from dataclasses import fields

    from auditor.config import AuditConfig

    audit = main.commands["audit"]
    names = {param.name for param in audit.params} - {"help", "no_interventions"}
    assert names <= {f.name for f in fields(AuditConfig)}
    # The same option object serves every command that takes it: one declaration.
    explain, sanity = main.commands["explain"], main.commands["sanity"]
    for option in ("model", "weights", "target_layers", "reshape", "mean", "std", "device"):
        helps = {p.help for c in (audit, explain, sanity) for p in c.params if p.name == option}
        assert len(helps) == 1, option


def test_every_option_is_declared_in_cli_options_not_in_the_commands() -> None:
    import ast

    from auditor import cli

    tree = ast.parse(Path(cli.__file__).read_text(encoding="utf-8"))
    declared = [
        node.lineno for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
        and node.func.attr == "option"
    ]
    assert not declared, f"cli.py declares options at lines {declared}: move them to cli_options"


def test_the_terminal_prints_findings_grouped_as_the_report_and_at_most_ten(capsys) -> None:
    def flag(kind: str, cls: str | None, severity: str, **evidence: object) -> dict:
        return {"kind": kind, "class": cls, "severity": severity, "score": 1.0,
                "message": f"{kind} on {cls}", "evidence": evidence}

    confirms = {"kind": "background_attention", "class": "a"}
    flags = [flag("intervention_sensitive", "a", "high", confirms=confirms),
             flag("background_attention", "a", "high"),
             flag("metadata_shortcut", None, "medium")]
    _print_findings(flags)
    out = capsys.readouterr().out.splitlines()
    assert out == ["2 findings from 3 flags:",
                   "  HIGH   background_attention [a]: background_attention on a",
                   "         with intervention_sensitive (high)",
                   "  MEDIUM metadata_shortcut: metadata_shortcut on None"]
    many = [flag("border_attention", f"c{i}", "low") for i in range(PRINTED_FINDINGS + 3)]
    _print_findings(many)
    out = capsys.readouterr().out.splitlines()
    assert len([line for line in out if line.startswith("  LOW")]) == PRINTED_FINDINGS
    assert out[-1] == "  ... and 3 more findings in the report"
