"""The pass at scale: fast exact component boxes, mixed precision, torch.compile, chunking."""

from __future__ import annotations

import copy
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.stats import spearmanr

from auditor import distributed
from auditor.audit import run_audit
from auditor.config import AuditConfig
from auditor.metrics import _largest_component_boxes_opencv, _largest_component_boxes_tensor
from auditor.store import RunReader

FLOATS = ["fg_energy", "border_energy", "wsol_iou", "peak_x", "confidence"]


def _config(demo_set: Path, out: Path, **overrides: object) -> AuditConfig:
    options: dict = {
        "data": str(demo_set / "data"), "model": "auditor.demo:build_demo_model",
        "weights": str(demo_set / "demo_model.pt"), "masks": str(demo_set / "masks"),
        "out": str(out), "image_size": (64, 64), "mean": (0.5, 0.5, 0.5),
        "std": (0.5, 0.5, 0.5), "workers": 0, "batch_size": 32, "quiet": True,
        "interventions": False, "amp": "off",
    }
    options.update(overrides)
    return AuditConfig(**options)


@pytest.mark.parametrize("density", [0.2, 0.5, 0.7])
def test_opencv_component_boxes_equal_the_tensor_labelling(density):
    gen = torch.Generator().manual_seed(int(density * 10))
    binary = torch.rand(16, 23, 37, generator=gen) < density
    binary[:, 0, 0] = True  # every image needs a foreground pixel
    assert torch.equal(
        _largest_component_boxes_opencv(binary), _largest_component_boxes_tensor(binary)
    )


def test_opencv_component_boxes_break_ties_like_the_tensor_labelling():
    # Two 2x2 blobs of equal size: the one whose last pixel comes first in raster order wins.
    # The right blob ends on row 2 and the left one on row 5, so the right one is chosen.
    binary = torch.zeros(2, 8, 8, dtype=torch.bool)
    binary[0, 4:6, 0:2] = True
    binary[0, 1:3, 5:7] = True
    binary[1] = binary[0].flip(0)  # now the left blob ends first
    expected = torch.tensor([[5.0, 1.0, 7.0, 3.0], [0.0, 2.0, 2.0, 4.0]])
    assert torch.equal(_largest_component_boxes_tensor(binary), expected)
    assert torch.equal(_largest_component_boxes_opencv(binary), expected)


def test_bfloat16_autocast_pass_gives_maps_close_to_float32(demo_set, tmp_path):
    full = run_audit(_config(demo_set, tmp_path / "fp32", amp="off"))
    mixed = run_audit(_config(demo_set, tmp_path / "bf16", amp="on"))
    a, b = full.samples(), mixed.samples()
    assert a["status"].eq("ok").all()
    pd.testing.assert_series_equal(a["index"], b["index"])
    maps_a = RunReader(full.run_dir).load_maps(a["index"], "gradcam").reshape(len(a), -1)
    maps_b = RunReader(mixed.run_dir).load_maps(b["index"], "gradcam").reshape(len(b), -1)
    rho = np.array([spearmanr(x, y).statistic for x, y in zip(maps_a, maps_b, strict=True)])
    assert np.nanmin(rho) > 0.9
    assert np.nanmax(np.abs(a["fg_energy"] - b["fg_energy"])) < 0.05
    # The two passes really differ: bfloat16 keeps ~3 significant digits.
    assert not np.array_equal(maps_a, maps_b)


@pytest.mark.slow  # torch.compile of the model
def test_compiled_pass_gives_the_eager_numbers(demo_set, tmp_path):
    # The "eager" backend runs dynamo's graph capture (where hooks could break) without the
    # slow C++ compile of inductor.
    eager = run_audit(_config(demo_set, tmp_path / "eager"))
    compiled = run_audit(_config(
        demo_set, tmp_path / "compiled", compile=True, compile_backend="eager"
    ))
    assert compiled.summary["pass"]["compiled"] is True
    a, b = eager.samples(), compiled.samples()
    np.testing.assert_allclose(a[FLOATS], b[FLOATS], rtol=1e-5, atol=1e-6)


@pytest.mark.slow  # torch.compile of the model
def test_compile_failure_falls_back_to_eager_with_a_warning(demo_set, tmp_path, monkeypatch):
    def exploding_compile(model: torch.nn.Module, backend: str) -> torch.nn.Module:
        class Exploding(type(model)):
            def forward(self, x: torch.Tensor) -> torch.Tensor:
                raise RuntimeError("backend exploded")

        broken = copy.deepcopy(model)
        broken.__class__ = Exploding
        return broken

    monkeypatch.setattr(torch, "compile", exploding_compile)
    eager = run_audit(_config(demo_set, tmp_path / "eager"))
    with pytest.warns(RuntimeWarning, match="backend exploded"):
        fallback = run_audit(_config(demo_set, tmp_path / "fallback", compile=True))
    assert fallback.summary["pass"]["compiled"] is False
    a, b = eager.samples(), fallback.samples()
    np.testing.assert_array_equal(a[FLOATS], b[FLOATS])


def test_small_chunks_store_every_row_once_with_its_own_map(demo_set, tmp_path):
    whole = run_audit(_config(demo_set, tmp_path / "whole"))
    chunked = run_audit(_config(demo_set, tmp_path / "chunked", chunk_size=7))
    n = len(whole.samples())
    parts = list((chunked.run_dir / "parts").glob("*.parquet"))
    # Chunks close at batch ends once they hold >= 7 rows: batches of 32 give one per batch.
    assert len(parts) == -(-n // 32)
    a, b = whole.samples(), chunked.samples()
    assert b["index"].is_unique
    np.testing.assert_array_equal(a[FLOATS], b[FLOATS])
    maps_a = RunReader(whole.run_dir).load_maps(a["index"], "gradcam")
    maps_b = RunReader(chunked.run_dir).load_maps(b["index"], "gradcam")
    np.testing.assert_array_equal(maps_a, maps_b)


def test_pass_records_timings_and_throughput(demo_set, tmp_path):
    result = run_audit(_config(demo_set, tmp_path / "run"))
    timings = result.summary["timings"]
    assert {"index", "model", "pass", "merge", "detect", "report"} <= set(timings)
    assert all(seconds >= 0 for seconds in timings.values())
    stats = result.summary["pass"]
    assert stats["n_processed"] == len(result.samples())
    assert stats["images_per_s"] == pytest.approx(stats["n_processed"] / stats["seconds"])


def test_loader_workers_are_shared_among_the_ranks_of_a_node():
    two = distributed.Ranks(rank=1, world_size=2, local_rank=1, local_world_size=2)
    assert distributed.workers_per_rank(None, two, cores=16) == 7
    eight = distributed.Ranks(rank=0, world_size=8, local_rank=0, local_world_size=8)
    assert distributed.workers_per_rank(None, eight, cores=16) == 1
    assert distributed.workers_per_rank(3, eight, cores=16) == 3
    assert distributed.workers_per_rank(None, distributed.Ranks(), cores=16) is None


def test_bad_distributed_timeout_is_a_usage_error(monkeypatch):
    from auditor.errors import UsageError

    monkeypatch.setenv("AUDITOR_DIST_TIMEOUT", "soon")
    with pytest.raises(UsageError, match="AUDITOR_DIST_TIMEOUT"):
        distributed.timeout_seconds()


def test_single_process_agree_reraises_its_own_error():
    with warnings.catch_warnings():
        distributed.agree(distributed.Ranks(), None)
    with pytest.raises(ValueError, match="boom"):
        distributed.agree(distributed.Ranks(), ValueError("boom"))
