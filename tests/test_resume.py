"""Interrupt an audit (SIGINT, SIGTERM), resume it with the same command, compare the result
with an uninterrupted run; a run directory of another run is refused; --overwrite restarts."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner, Result

from auditor.audit import run_audit
from auditor.cli import main
from auditor.config import AuditConfig
from auditor.demo import DemoNet
from auditor.errors import RunMismatchError

HOLD_ENV = "AUDITOR_TEST_HOLD"
# The model blocks in this forward pass (counting only the engine's, which record autograd)
# while the hold file exists, so the run is reliably mid-pass when the test signals it.
HOLD_AT_FORWARD = 3
BATCH = 8
NUMBERS = [
    "fg_energy", "fg_enrichment", "bg_energy", "border_energy", "border_lift", "pointing_hit",
    "wsol_iou", "peak_x", "peak_y", "confidence", "target_prob", "pred_index",
]


class GatedDemoNet(DemoNet):
    """DemoNet that waits for a signal in its HOLD_AT_FORWARD-th gradient-recording forward
    while the file named by $AUDITOR_TEST_HOLD exists."""

    def __init__(self) -> None:
        super().__init__()
        self.grad_forwards = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled():
            self.grad_forwards += 1
            hold = os.environ.get(HOLD_ENV)
            if self.grad_forwards >= HOLD_AT_FORWARD and hold and Path(hold).exists():
                signal.pause()
        return super().forward(x)


def gated_demo_model() -> GatedDemoNet:
    """Model factory for `--model tests/test_resume.py:gated_demo_model`."""
    return GatedDemoNet()


def _command(demo_set: Path, out: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "auditor", "audit", str(demo_set / "data"),
        "--model", f"{Path(__file__).resolve()}:gated_demo_model",
        "--weights", str(demo_set / "demo_model.pt"), "--masks", str(demo_set / "masks"),
        "--image-size", "64", "--mean", "0.5,0.5,0.5", "--std", "0.5,0.5,0.5",
        "--out", str(out), "--workers", "0", "--batch-size", str(BATCH),
        "--chunk-size", str(BATCH), "--no-interventions", "--amp", "off", *extra,
    ]


def _run(command: list[str]) -> Result:
    """The same `auditor` command line, run in this process (no second torch start-up)."""
    assert command[1:3] == ["-m", "auditor"]
    return CliRunner().invoke(main, command[3:], catch_exceptions=False)


def _wait_for_parts(parts: Path, n: int, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while len(list(parts.glob("*.parquet"))) < n:
        if proc.poll() is not None:
            pytest.fail(f"the audit ended (exit {proc.returncode}) before writing {n} chunks")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"no {n} chunks in {parts} after {timeout} s")
        time.sleep(0.02)


@pytest.fixture(scope="module")
def baseline(demo_set: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The run directory of the same audit, never interrupted (in this process)."""
    out = tmp_path_factory.mktemp("baseline") / "run"
    config = AuditConfig(
        data=str(demo_set / "data"), model=f"{Path(__file__).resolve()}:gated_demo_model",
        weights=str(demo_set / "demo_model.pt"), masks=str(demo_set / "masks"), out=str(out),
        image_size=(64, 64), mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), workers=0,
        batch_size=BATCH, quiet=True, interventions=False, amp="off",
    )
    run_audit(config)
    return out


@pytest.mark.slow  # an audit subprocess, interrupted and resumed
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupted_run_resumes_to_the_uninterrupted_result(demo_set, tmp_path, baseline, signum):
    out = tmp_path / "run"
    hold = tmp_path / "hold"
    hold.touch()
    command = _command(demo_set, out)
    env = {**os.environ, HOLD_ENV: str(hold)}
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    _wait_for_parts(out / "parts", HOLD_AT_FORWARD - 1, proc)
    proc.send_signal(signum)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "Run the same command again to resume" in stderr
    stored = pd.concat(pd.read_parquet(p) for p in (out / "parts").glob("*.parquet"))
    expected = pd.read_parquet(baseline / "samples.parquet")
    assert 0 < len(stored) < len(expected)
    assert not (out / "samples.parquet").exists()

    hold.unlink()
    resumed = _run(command)
    assert resumed.exit_code == 0, resumed.output
    samples = pd.read_parquet(out / "samples.parquet")
    assert samples["index"].is_unique
    assert samples["index"].tolist() == expected["index"].tolist()
    assert samples["rel_path"].tolist() == expected["rel_path"].tolist()
    np.testing.assert_allclose(samples[NUMBERS], expected[NUMBERS], rtol=1e-5, atol=1e-6)
    assert samples["flags"].tolist() == expected["flags"].tolist()
    # The mean inputs, summed by each of the two passes, are those of the uninterrupted run.
    assert len(list((out / "class_sums").glob("*.npz"))) == 2
    with np.load(out / "class_means.npz") as got, np.load(baseline / "class_means.npz") as want:
        np.testing.assert_array_equal(got["mean_image"], want["mean_image"])


@pytest.mark.slow  # three whole audits
def test_resume_with_other_options_is_refused_and_overwrite_starts_again(demo_set, tmp_path):
    out = tmp_path / "run"
    first = _run(_command(demo_set, out, "--quiet"))
    assert first.exit_code == 0, first.output
    other = _command(demo_set, out, "--quiet")
    other[other.index("--image-size") + 1] = "48"
    refused = _run(other)
    assert refused.exit_code == 2
    assert "differs in: config" in refused.output
    assert "image_size [64, 64] -> [48, 48]" in refused.output
    assert "--overwrite" in refused.output
    again = _run([*other, "--overwrite"])
    assert again.exit_code == 0, again.output
    assert pd.read_parquet(out / "samples.parquet")["status"].eq("ok").all()


def _config(demo_set: Path, data: Path, out: Path, weights: Path) -> AuditConfig:
    return AuditConfig(
        data=str(data), model="auditor.demo:build_demo_model", weights=str(weights),
        out=str(out), image_size=(32, 32), workers=0, quiet=True, interventions=False,
    )


def test_resume_with_other_weights_or_data_is_refused(demo_set, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(demo_set / "data", data)
    for path in sorted((data / "pokemon").iterdir())[4:]:
        path.unlink()
    for path in sorted((data / "digimon").iterdir())[4:]:
        path.unlink()
    weights = tmp_path / "w.pt"
    shutil.copy(demo_set / "demo_model.pt", weights)
    out = tmp_path / "run"
    run_audit(_config(demo_set, data, out, weights))

    torch.save(DemoNet().state_dict(), weights)  # other weights, same file name
    with pytest.raises(RunMismatchError, match=r"differs in: model\)"):
        run_audit(_config(demo_set, data, out, weights))
    shutil.copy(demo_set / "demo_model.pt", weights)
    next(iter((data / "pokemon").iterdir())).unlink()
    with pytest.raises(RunMismatchError, match=r"differs in: data\)"):
        run_audit(_config(demo_set, data, out, weights))
    assert RunMismatchError.exit_code == 2
