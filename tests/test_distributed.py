"""torchrun: two CPU processes (gloo) give exactly the single-process result; a failing rank
stops the job with its error instead of leaving the others waiting."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from auditor.audit import run_audit
from auditor.config import AuditConfig
from auditor.demo import DemoNet

# Among the longest tests (whole audits, training, subprocesses): `-m "not slow"` skips them.
pytestmark = pytest.mark.slow

NUMBERS = [
    "fg_energy", "fg_enrichment", "bg_energy", "border_energy", "border_lift", "pointing_hit",
    "wsol_iou", "peak_x", "peak_y", "confidence", "target_prob", "suspicion",
]
EXACT = ["index", "rel_path", "label", "status", "pred", "target_index", "correct", "flags"]


class FailingOnRankOne(DemoNet):
    """DemoNet whose pass forward fails on rank 1 only."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled() and os.environ.get("RANK") == "1":
            raise RuntimeError("rank one is broken")
        return super().forward(x)


def failing_on_rank_one() -> FailingOnRankOne:
    """Model factory for `--model tests/test_distributed.py:failing_on_rank_one`."""
    return FailingOnRankOne()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _args(demo_set: Path, out: Path, model: str) -> list[str]:
    return [
        "audit", str(demo_set / "data"), "--model", model,
        "--weights", str(demo_set / "demo_model.pt"), "--masks", str(demo_set / "masks"),
        "--image-size", "64", "--mean", "0.5,0.5,0.5", "--std", "0.5,0.5,0.5",
        "--out", str(out), "--workers", "0", "--batch-size", "16", "--device", "cpu",
        "--no-interventions", "--quiet",
    ]


def _torchrun(args: list[str], timeout: float = 120) -> subprocess.CompletedProcess:
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
        "--master-addr", "127.0.0.1", "--master-port", str(_free_port()),
        "-m", "auditor", *args,
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "AUDITOR_DIST_TIMEOUT": "60"}
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)


def test_two_ranks_give_the_single_process_samples_and_flags(demo_set, tmp_path):
    model = "auditor.demo:build_demo_model"
    done = _torchrun(_args(demo_set, tmp_path / "two", model))
    assert done.returncode == 0, done.stderr[-3000:]
    config = AuditConfig(
        data=str(demo_set / "data"), model=model, weights=str(demo_set / "demo_model.pt"),
        masks=str(demo_set / "masks"), out=str(tmp_path / "one"), image_size=(64, 64),
        mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), workers=0, batch_size=16, device="cpu",
        quiet=True, interventions=False,
    )
    single = run_audit(config)
    one = single.samples()
    two = pd.read_parquet(tmp_path / "two" / "samples.parquet")
    # Both ranks wrote chunks, so the samples really were split.
    assert {p.name[:4] for p in (tmp_path / "two" / "parts").glob("*.parquet")} == {
        "r000", "r001"
    }
    assert len(two) == len(one)
    pd.testing.assert_frame_equal(one[EXACT], two[EXACT])
    np.testing.assert_allclose(two[NUMBERS], one[NUMBERS], rtol=1e-5, atol=1e-5)
    flag_keys = [(f["kind"], f["class"], f["severity"]) for f in single.flags]
    summary = json.loads((tmp_path / "two" / "summary.json").read_text())
    assert [(f["kind"], f["class"], f["severity"]) for f in summary["flags"]] == flag_keys
    assert flag_keys  # the demo's shortcuts are found, so the comparison means something


def test_a_failing_rank_stops_the_job_with_its_error(demo_set, tmp_path):
    model = f"{Path(__file__).resolve()}:failing_on_rank_one"
    failed = _torchrun(_args(demo_set, tmp_path / "run", model), timeout=90)
    assert failed.returncode != 0
    assert "rank one is broken" in failed.stderr
    assert not (tmp_path / "run" / "samples.parquet").exists()
