"""The model-randomisation sanity check: its similarity measures, its cascade, and its verdict."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from scipy.stats import spearmanr
from torch import Tensor, nn

from auditor.cli import main
from auditor.data import AuditDataset, open_source
from auditor.demo import DemoNet
from auditor.errors import UsageError
from auditor.runtime import normalise_images
from auditor.sanity import (
    format_sanity_table,
    passes,
    randomisation_order,
    randomisation_steps,
    reinitialise,
    run_sanity,
    sample_images,
    spearman,
    ssim,
)

HALF = (0.5, 0.5, 0.5)
C1 = 0.01**2  # SSIM constants for data range 1
DEMO_LAYERS = ["fc", "features.6", "features.3", "features.0"]


def edge_magnitude(model: nn.Module, images: Tensor, targets: Tensor) -> Tensor:
    """A 'method' that ignores the model: Sobel gradient magnitude of the grey image."""
    sobel = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])
    kernels = torch.stack([sobel, sobel.T])[:, None].to(images)
    grads = F.conv2d(images.mean(dim=1, keepdim=True), kernels, padding=1)
    return grads.pow(2).sum(dim=1).sqrt()


@pytest.fixture(scope="module")
def trained(demo_set: Path) -> DemoNet:
    model = DemoNet()
    model.load_state_dict(torch.load(demo_set / "demo_model.pt", weights_only=True))
    return model.eval()


@pytest.fixture(scope="module")
def demo_images(demo_set: Path) -> Tensor:
    dataset = AuditDataset(open_source(demo_set / "data"), (64, 64))
    uint8, _ = sample_images(dataset, 6, seed=0)
    return normalise_images(uint8, HALF, HALF, torch.device("cpu"))


# -------------------------------------------------------------------------- Spearman, SSIM


def test_spearman_hand_cases() -> None:
    a = torch.tensor([[1.0, 2.0, 3.0, 4.0], [1.0, 1.0, 2.0, 9.0]])
    b = torch.tensor([[4.0, 3.0, 2.0, 1.0], [1.0, 2.0, 3.0, 4.0]])
    # Row 2: ranks (0.5, 0.5, 2, 3) vs (0, 1, 2, 3): centred (-1, -1, .5, 1.5), (-1.5, -.5, .5,
    # 1.5); covariance 1.5 + 0.5 + 0.25 + 2.25 = 4.5, norms sqrt(4.5) and sqrt(5).
    expected = torch.tensor([-1.0, 4.5 / math.sqrt(4.5 * 5.0)], dtype=torch.float64)
    torch.testing.assert_close(spearman(a, b), expected)


def test_spearman_matches_scipy_with_many_ties() -> None:
    generator = torch.Generator().manual_seed(0)
    a = torch.randint(0, 6, (5, 40), generator=generator).float()
    b = torch.randint(0, 6, (5, 40), generator=generator).float()
    expected = [spearmanr(a[i].numpy(), b[i].numpy())[0] for i in range(5)]
    np.testing.assert_allclose(spearman(a, b).numpy(), expected, rtol=1e-10)


def test_spearman_of_constant_maps_is_0_against_structure_and_1_against_constant() -> None:
    zeros = torch.zeros(1, 9)
    ramp = torch.arange(9.0)[None]
    assert spearman(ramp, zeros).item() == 0.0
    assert spearman(zeros, zeros + 5).item() == 1.0


def _ssim_reference(x: np.ndarray, y: np.ndarray) -> float:
    """SSIM written out window by window, straight from Wang et al. 2004."""
    offsets = np.arange(11) - 5.0
    g = np.exp(-(offsets**2) / (2 * 1.5**2))
    w = np.outer(g, g) / np.outer(g, g).sum()
    c2 = 0.03**2
    values = []
    for i in range(x.shape[0] - 10):
        for j in range(x.shape[1] - 10):
            px, py = x[i : i + 11, j : j + 11], y[i : i + 11, j : j + 11]
            mx, my = (w * px).sum(), (w * py).sum()
            vx, vy = (w * (px - mx) ** 2).sum(), (w * (py - my) ** 2).sum()
            cov = (w * (px - mx) * (py - my)).sum()
            values.append(((2 * mx * my + C1) * (2 * cov + c2))
                          / ((mx**2 + my**2 + C1) * (vx + vy + c2)))
    return float(np.mean(values))


def test_ssim_hand_cases() -> None:
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.random((2, 13, 16)))
    torch.testing.assert_close(ssim(x, x), torch.ones(2, dtype=torch.float64))
    # Flat images: no variance, so SSIM is the luminance term (2 a b + C1) / (a^2 + b^2 + C1).
    ones, zeros = torch.ones(1, 12, 12), torch.zeros(1, 12, 12)
    assert ssim(ones, zeros).item() == pytest.approx(C1 / (1 + C1))
    assert ssim(ones * 0.5, ones * 0.25).item() == pytest.approx(
        (2 * 0.125 + C1) / (0.25 + 0.0625 + C1))
    y = torch.from_numpy(np.clip(x.numpy() + rng.normal(0, 0.2, x.shape), 0, 1))
    expected = [_ssim_reference(x[i].numpy(), y[i].numpy()) for i in range(2)]
    np.testing.assert_allclose(ssim(x, y).numpy(), expected, rtol=1e-10)


def test_ssim_matches_scikit_image() -> None:
    from skimage import metrics  # the test extra installs scikit-image
    rng = np.random.default_rng(1)
    x = rng.random((3, 20, 24))
    y = np.clip(x + rng.normal(0, 0.3, x.shape), 0, 1)
    expected = [metrics.structural_similarity(x[i], y[i], data_range=1.0, gaussian_weights=True,
                                              sigma=1.5, use_sample_covariance=False)
                for i in range(3)]
    np.testing.assert_allclose(ssim(torch.from_numpy(x), torch.from_numpy(y)).numpy(), expected,
                               rtol=1e-9)


def test_ssim_rejects_maps_smaller_than_the_window() -> None:
    with pytest.raises(UsageError, match="window"):
        ssim(torch.zeros(1, 8, 8), torch.zeros(1, 8, 8))


# ----------------------------------------------------------------------------- the cascade


class CalledOutOfOrder(nn.Module):
    """Registers `late` before `early` but calls early first; `unused` never runs."""

    def __init__(self) -> None:
        super().__init__()
        self.late = nn.Linear(4, 2)
        self.early = nn.Linear(3, 4)
        self.unused = nn.Linear(2, 2)

    def forward(self, x: Tensor) -> Tensor:
        return self.late(self.early(x))


def test_randomisation_order_follows_the_forward_from_the_head_down() -> None:
    order = randomisation_order(CalledOutOfOrder().eval(), torch.zeros(1, 3))
    assert order == ["late", "early"]
    assert randomisation_order(DemoNet().eval(), torch.zeros(1, 3, 64, 64)) == DEMO_LAYERS


def test_randomisation_steps_group_consecutive_modules() -> None:
    names = ["a", "b", "c", "d", "e"]
    assert randomisation_steps(names, 2) == [["a", "b", "c"], ["d", "e"]]
    assert randomisation_steps(names, None) == [[n] for n in names]
    assert randomisation_steps(names, 9) == [[n] for n in names]
    with pytest.raises(UsageError, match="steps"):
        randomisation_steps(names, 0)


def test_reinitialise_uses_reset_parameters_else_a_normal_init() -> None:
    torch.manual_seed(0)
    batch_norm = nn.BatchNorm2d(3)
    with torch.no_grad():
        batch_norm.weight.fill_(5.0)
        batch_norm.running_mean.fill_(2.0)
    reinitialise(batch_norm)
    assert torch.equal(batch_norm.weight, torch.ones(3))
    assert torch.equal(batch_norm.running_mean, torch.zeros(3))

    class Token(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.token = nn.Parameter(torch.zeros(20_000))

    token = Token()
    reinitialise(token)
    assert token.token.std().item() == pytest.approx(0.02, rel=0.05)


def test_cascade_is_cumulative_from_the_head_and_leaves_the_model_untouched(
    trained: DemoNet, demo_images: Tensor
) -> None:
    original = {k: v.clone() for k, v in trained.state_dict().items()}
    changed_per_call: list[list[str]] = []

    def record_changes(model: nn.Module, images: Tensor, targets: Tensor) -> Tensor:
        changed_per_call.append([
            name for name in DEMO_LAYERS
            if not torch.equal(model.get_submodule(name).weight,
                               trained.get_submodule(name).weight)
        ])
        return edge_magnitude(model, images, targets)

    run_sanity(trained, demo_images, methods=["record"], steps=None, batch_size=8,
               custom_methods={"record": record_changes})
    assert changed_per_call == [[], DEMO_LAYERS[:1], DEMO_LAYERS[:2], DEMO_LAYERS[:3],
                                DEMO_LAYERS]
    for key, value in trained.state_dict().items():
        assert torch.equal(value, original[key]), key
    assert not trained.training
    assert all(p.requires_grad for p in trained.parameters())


# ----------------------------------------------------------------------------- the verdict


@pytest.fixture(scope="module")
def verdict(trained: DemoNet, demo_images: Tensor) -> dict:
    return run_sanity(trained, demo_images, methods=["gradcam", "edges"], steps=None,
                      custom_methods={"edges": edge_magnitude})


def test_gradcam_maps_change_when_the_model_is_randomised(verdict: dict) -> None:
    gradcam = verdict["gradcam"]
    assert gradcam["passed"] is True
    assert [row["layer"] for row in gradcam["layers"]] == DEMO_LAYERS
    assert gradcam["half_layer"] == "features.6"
    assert gradcam["layers"][-1]["spearman"] < 0.5
    assert gradcam["layers"][-1]["ssim"] < 0.5
    assert gradcam["n_samples"] == 6


def test_a_model_independent_map_fails_the_check(verdict: dict) -> None:
    edges = verdict["edges"]
    assert edges["passed"] is False
    for row in edges["layers"]:
        assert row["spearman"] == pytest.approx(1.0)
        assert row["ssim"] == pytest.approx(1.0)


def test_pass_rule_needs_low_correlation_half_way_and_at_the_end() -> None:
    assert passes([0.2, 0.1, 0.1, 0.0], 1, 0.5)
    # Guided-backprop-like: unchanged while the top is random, changed once the input layer is.
    assert not passes([0.9, 0.8, 0.6, 0.1], 1, 0.5)
    # Changed half-way but back to the original ranking at the end.
    assert not passes([0.2, 0.1, 0.3, 0.6], 1, 0.5)


def test_result_is_json_ready_and_the_table_states_each_verdict(verdict: dict) -> None:
    assert json.loads(json.dumps(verdict)) == verdict
    table = format_sanity_table(verdict)
    assert "gradcam: PASSED" in table
    assert "edges: FAILED" in table
    assert "features.3" in table


def test_same_seed_gives_the_same_result(trained: DemoNet, demo_images: Tensor) -> None:
    first = run_sanity(trained, demo_images[:2], methods=["gradcam"], seed=3)
    again = run_sanity(trained, demo_images[:2], methods=["gradcam"], seed=3)
    assert first == again


def test_custom_methods_cannot_shadow_builtins(trained: DemoNet, demo_images: Tensor) -> None:
    with pytest.raises(UsageError, match="shadow"):
        run_sanity(trained, demo_images, methods=["gradcam"],
                   custom_methods={"gradcam": edge_magnitude})
    with pytest.raises(UsageError, match="unknown"):
        run_sanity(trained, demo_images, methods=["lime"])


def test_sample_images_skips_unreadable_files_deterministically(tmp_path: Path,
                                                                demo_set: Path) -> None:
    data = tmp_path / "data" / "a"
    data.mkdir(parents=True)
    for i, src in enumerate(sorted((demo_set / "data" / "pokemon").iterdir())[:4]):
        (data / f"{i}.png").write_bytes(src.read_bytes())
    (data / "bad.png").write_bytes(b"not an image")
    dataset = AuditDataset(open_source(tmp_path / "data"), (64, 64))
    images, positions = sample_images(dataset, 10, seed=5)
    assert images.shape == (4, 3, 64, 64)
    assert sorted(dataset.index.samples[p].rel_path for p in positions) == [
        "a/0.png", "a/1.png", "a/2.png", "a/3.png"]
    assert sample_images(dataset, 2, seed=5)[1] == positions[:2]


def test_cli_prints_the_table_and_writes_sanity_json(demo_set: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(main, [
        "sanity", str(demo_set / "data"), "--model", "auditor.demo:build_demo_model",
        "--weights", str(demo_set / "demo_model.pt"), "--image-size", "64",
        "--mean", "0.5,0.5,0.5", "--std", "0.5,0.5,0.5", "--n-samples", "3", "--steps", "2",
        "--methods", "gradcam", "--device", "cpu", "--out", str(tmp_path), "--quiet"])
    assert result.exit_code == 0, result.output
    assert "gradcam:" in result.stdout
    saved = json.loads((tmp_path / "sanity.json").read_text())
    assert [row["layer"] for row in saved["gradcam"]["layers"]] == ["features.6", "features.0"]
    assert saved["gradcam"]["n_samples"] == 3


def test_cli_checks_a_vision_transformer_with_the_reshape_option(demo_set: Path,
                                                                 tmp_path: Path) -> None:
    result = CliRunner().invoke(main, [
        "sanity", str(demo_set / "data"), "--model", "tests.helpers.cam_models:tiny_vit",
        "--num-classes", "2", "--image-size", "32", "--reshape", "vit", "--n-samples", "3",
        "--steps", "2", "--methods", "gradcam", "--device", "cpu", "--out", str(tmp_path),
        "--quiet"])
    assert result.exit_code == 0, result.output
    saved = json.loads((tmp_path / "sanity.json").read_text())
    assert saved["gradcam"]["n_samples"] == 3
