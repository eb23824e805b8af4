"""Whole audits on hand-built models and hostile folders: orientation from the model to the
stored map and the rendered overlay, bad files as error rows, NaN models, train-mode models."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from auditor.audit import run_audit
from auditor.config import AuditConfig
from auditor.store import RunReader
from tests.helpers import images as img
from tests.helpers.audit_runs import (
    BatchNormNet,
    CornerFeatureNet,
    NaNNet,
    audit_config,
    hottest_overlay_point,
    noise_folder,
)


@pytest.mark.parametrize("corner", ["top_left", "bottom_right"])
def test_map_peaks_where_the_model_looks_in_store_samples_and_report(
    tmp_path: Path, corner: str
) -> None:
    data = noise_folder(tmp_path / "data")
    result = run_audit(audit_config(data, tmp_path / "run", methods=("gradcam", "hirescam")),
                       model=CornerFeatureNet(corner))
    samples = result.samples()
    ok = samples[samples["status"] == "ok"]
    expect_low = corner == "top_left"
    for axis in ("peak_x", "peak_y"):
        assert ((ok[axis] < 0.25) if expect_low else (ok[axis] > 0.75)).all(), axis
    stored = RunReader(result.run_dir).load_map(int(ok["index"].iloc[0]), "gradcam")
    row, col = np.unravel_index(np.argmax(stored), stored.shape)
    assert (row < 8 and col < 8) if expect_low else (row >= 24 and col >= 24)
    html = (result.run_dir / "report.html").read_text(encoding="utf-8")
    y, x, h, w = hottest_overlay_point(html, "Attention map over")
    if expect_low:
        assert (y < h / 3, x < w / 3) == (True, True)
    else:
        assert (y > 2 * h / 3, x > 2 * w / 3) == (True, True)


def test_hostile_folder_gives_error_rows_and_the_report_lists_them(tmp_path: Path) -> None:
    data = noise_folder(tmp_path / "data")
    cls = data / "a"
    cls.joinpath("empty.png").write_bytes(b"")
    img.truncated(cls / "cut.jpg", img.encoded(Image.fromarray(img.noise_rgb(40, 40)), "JPEG"))
    cls.joinpath("page.jpg").write_text("<html><body>not an image</body></html>")
    img.bomb_png(cls / "bomb.png")
    img.solid(cls / "really_png.jpg", (20, 10), image_format="PNG")
    img.cmyk_jpeg(cls / "cmyk.jpg")
    img.grey16_png(cls / "grey16.png", np.full((12, 12), 40000, dtype=np.uint16))
    img.animated(cls / "anim.gif", "GIF")
    img.solid(cls / "tiny.png", (1, 1))
    img.solid(cls / '<script>alert("x")</script>.png', (8, 8))
    raw_name = os.fsencode(str(cls)) + b"/caf\xe9.png"
    with open(raw_name, "wb") as fh:
        fh.write(img.encoded(Image.new("RGB", (8, 8)), "PNG"))

    result = run_audit(audit_config(data, tmp_path / "run"), model=CornerFeatureNet("top_left"))
    samples = result.samples().set_index("rel_path")
    errors = samples[samples["status"] == "error"]
    bad_names = {"empty.png", "cut.jpg", "page.jpg", "bomb.png"}
    assert set(errors.index.str.split("/").str[-1]) == bad_names
    assert errors["error"].str.len().gt(0).all()
    ok_names = set(samples[samples["status"] == "ok"].index.str.split("/").str[-1])
    assert {"really_png.jpg", "cmyk.jpg", "grey16.png", "anim.gif", "tiny.png"} <= ok_names
    assert bool(samples.loc["a/really_png.jpg", "file_extension_mismatch"])
    assert result.summary["data"]["n_errors"] == 4
    html = (result.run_dir / "report.html").read_text(encoding="utf-8")
    assert "<script>alert" not in html
    assert "&lt;script&gt;alert" in html
    for name in ("empty.png", "cut.jpg", "page.jpg", "bomb.png"):
        assert name in html


def test_nan_logits_are_recorded_and_flagged_not_a_crash(tmp_path: Path) -> None:
    data = noise_folder(tmp_path / "data", per_class=8)
    result = run_audit(audit_config(data, tmp_path / "run"), model=NaNNet())
    samples = result.samples()
    assert samples["map_degenerate"].all()
    assert samples["fg_energy"].isna().all()
    kinds = {f["kind"]: f["severity"] for f in result.flags}
    assert kinds.get("degenerate_maps") == "high"


def test_model_in_train_mode_is_audited_in_eval_mode(tmp_path: Path) -> None:
    data = noise_folder(tmp_path / "data")
    reference = BatchNormNet().eval()
    trained = BatchNormNet().train()
    a = run_audit(audit_config(data, tmp_path / "eval"), model=reference).samples()
    b = run_audit(audit_config(data, tmp_path / "train"), model=trained).samples()
    columns = ["confidence", "border_energy", "peak_x", "peak_y"]
    pd.testing.assert_frame_equal(a[columns], b[columns])
    assert not trained.features[1].training
    assert float(trained.features[1].running_mean[0]) == 5.0


def test_estimated_foreground_is_marked_and_still_finds_the_background_shortcut(
    demo_set: Path, tmp_path: Path
) -> None:
    config = AuditConfig(
        data=str(demo_set / "data"), model="auditor.demo:build_demo_model",
        weights=str(demo_set / "demo_model.pt"), out=str(tmp_path / "run"),
        image_size=(64, 64), mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), workers=0,
        quiet=True, interventions=False, foreground="estimate",
    )
    result = run_audit(config)
    samples = result.samples()
    assert set(samples["foreground_source"]) == {"estimate"}
    assert samples["fg_energy"].notna().all()
    assert result.summary["data"]["foreground_source"] == "estimate"
    flagged = {(f["kind"], f["class"]) for f in result.flags}
    assert ("background_attention", "pokemon") in flagged
    assert "foreground was estimated" in (result.run_dir / "report.html").read_text()


def _audit_factory(tmp_path: Path, source: str, out: str, *options: str) -> tuple[Path, Any]:
    """`auditor audit` of 32-px noise images with the model `build` of the factory source;
    (run directory, click result)."""
    from click.testing import CliRunner

    from auditor.cli import main

    data = tmp_path / "data"
    if not data.exists():
        noise_folder(data)
    factory = tmp_path / "factory.py"
    factory.write_text(source)
    run = tmp_path / out
    result = CliRunner().invoke(main, [
        "audit", str(data), "--model", f"{factory}:build", "--out", str(run),
        "--image-size", "32", "--workers", "0", "--quiet", "--no-interventions", *options,
    ])
    return run, result


TORCHVISION_VIT = (
    "from tests.helpers.cam_models import tiny_vit\n\n"
    "def build(num_classes=2):\n    return tiny_vit(num_classes=num_classes)\n"
)
TIMM_VIT = (
    "from timm.models.vision_transformer import VisionTransformer\n\n"
    "def build(num_classes=2):\n"
    "    return VisionTransformer(img_size=32, patch_size=8, embed_dim=32, depth=2,\n"
    "                             num_heads=2, num_classes=num_classes, reg_tokens=4)\n"
)


def test_vision_transformer_audit_through_the_cli_reshape_option(tmp_path: Path) -> None:
    out, result = _audit_factory(tmp_path, TORCHVISION_VIT, "run", "--reshape", "vit",
                                 "--target-layer", "encoder.layers.encoder_layer_1.ln_1")
    assert result.exit_code == 0, result.output
    samples = pd.read_parquet(out / "samples.parquet")
    assert (samples["status"] == "ok").all()
    stored = RunReader(out).load_map(0, "gradcam")
    assert stored.shape == (4, 4)  # 32 px / patch 8: the token grid, class token dropped
    _, bad = _audit_factory(tmp_path, TORCHVISION_VIT, "r2", "--reshape", "grid")
    assert bad.exit_code == 2
    assert "--reshape" in bad.output


def test_timm_vision_transformer_audits_with_its_default_token_layer(tmp_path: Path) -> None:
    out, result = _audit_factory(tmp_path, TIMM_VIT, "run", "--reshape", "vit")
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["model"]["target_layers"] == ["blocks.1.norm1"]
    assert summary["model"]["target_layers_given"] is False
    # The factory builds random weights: the only note says so (no target-layer warning).
    assert [w for w in summary["model"]["warnings"] if "random initial weights" not in w] == []
    stored = RunReader(out).load_map(0, "gradcam")
    assert stored.shape == (4, 4)  # class token and 4 registers dropped
    assert float(np.abs(stored).max()) > 0
    # Without --reshape the default is the patch embedding: the run says so, in the report too.
    plain, result = _audit_factory(tmp_path, TIMM_VIT, "plain")
    assert result.exit_code == 0, result.output
    summary = json.loads((plain / "summary.json").read_text())
    assert summary["model"]["target_layers"] == ["patch_embed.proj"]
    assert "--reshape vit" in summary["model"]["warnings"][-1]
    assert "--reshape vit" in (plain / "report.html").read_text()


HIDDEN_PATCH_VIT = (
    "import torch\nfrom torch import nn\n\n"
    "class Tokens(nn.Module):\n"
    "    # 16-px patch tokens after a class token; no attribute says the patch size.\n"
    "    def __init__(self, num_classes):\n"
    "        super().__init__()\n"
    "        self.embed = nn.Conv2d(3, 8, 16, stride=16)\n"
    "        self.cls = nn.Parameter(torch.randn(1, 1, 8))\n"
    "        self.norm = nn.LayerNorm(8)\n"
    "        self.head = nn.Linear(8, num_classes)\n\n"
    "    def forward(self, x):\n"
    "        t = self.embed(x).flatten(2).transpose(1, 2)\n"
    "        t = torch.cat([self.cls.expand(len(x), -1, -1), t], dim=1)\n"
    "        return self.head(self.norm(t).mean(dim=1))\n\n"
    "def build(num_classes=2):\n    torch.manual_seed(0)\n    return Tokens(num_classes)\n"
)


@pytest.mark.parametrize("layer", [(), ("--target-layer", "norm")])
def test_an_ambiguous_token_count_stops_the_audit_naming_the_grid_to_pass(
        tmp_path: Path, layer: tuple[str, ...]) -> None:
    # 10 tokens of a 48 x 48 input: 3 x 3 patches after 1 class token, or 2 x 2 after 6.
    _, result = _audit_factory(tmp_path, HIDDEN_PATCH_VIT, "run", "--reshape", "vit",
                               "--image-size", "48", *layer)
    assert result.exit_code == 2, result.output
    assert "--reshape vit:3x3" in result.output
    out, result = _audit_factory(tmp_path, HIDDEN_PATCH_VIT, "run2", "--reshape", "vit:3x3",
                                 "--image-size", "48", *layer)
    assert result.exit_code == 0, result.output
    assert RunReader(out).load_map(0, "gradcam").shape == (3, 3)
