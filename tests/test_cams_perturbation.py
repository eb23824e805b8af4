"""Score-CAM and occlusion against hand-derived values and naive per-perturbation loops."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from auditor.cams import occlusion, scorecam
from auditor.errors import UsageError
from tests.helpers.cam_models import CornerNet, PatchMeanNet, PixelMLP, count_hooks, tiny_gap_net


def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


@pytest.fixture
def images() -> Tensor:
    return torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(5))


@pytest.mark.parametrize(("mode", "factor"), [("occlude", 0.8), ("scale", 1.2)])
def test_occlusion_map_of_a_patch_mean_model_is_that_patch(mode: str, factor: float) -> None:
    # logit_0 = 4 * mean over rows 8:16, cols 0:8 (all channels); logit_1 = 0. Altering a
    # fraction f of that box changes logit_0 from 4v to 4v(1 - f) (fill 0) or 4v(1 + 0.2 f)
    # (scale 1.2), so p_0 drops by sigmoid(4v) - sigmoid(new logit), and p_1 by the opposite.
    model = PatchMeanNet(top=8, left=0, size=8, scale=4.0)
    values = torch.tensor([1.0, 0.5])
    images = values[:, None, None, None].expand(2, 3, 32, 32).clone()
    targets = torch.tensor([0, 1])
    got = occlusion(model, images, targets, patch=8, stride=4, mode=mode, factor=factor,
                    batch_size=10)
    assert got.shape == (2, 7, 7)
    expected = torch.zeros(2, 7, 7)
    for b, v in enumerate(values.tolist()):
        for i in range(7):
            for j in range(7):
                rows = max(0, min(4 * i + 8, 16) - max(4 * i, 8))
                cols = max(0, min(4 * j + 8, 8) - max(4 * j, 0))
                f = rows * cols / 64
                new_logit = 4 * v * (1 - f) if mode == "occlude" else 4 * v * (1 + 0.2 * f)
                drop = sigmoid(4 * v) - sigmoid(new_logit)
                expected[b, i, j] = drop if b == 0 else -drop
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    assert (expected[:, [1, 2, 3]][:, :, [0, 1]] != 0).all()
    assert (expected[:, :, 2:] == 0).all()


def test_occlusion_matches_naive_loop_on_a_model_without_convolutions() -> None:
    model = PixelMLP(image_size=(12, 16))
    images = torch.randn(2, 3, 12, 16, generator=torch.Generator().manual_seed(6))
    got = occlusion(model, images, None, patch=(4, 8), stride=(4, 4), fill=0.5, batch_size=7)
    assert got.shape == (2, 3, 3)
    with torch.no_grad():
        probs = torch.softmax(model(images), dim=1)
        targets = probs.argmax(dim=1)
        for b in range(2):
            for i in range(3):
                for j in range(3):
                    altered = images[b].clone()
                    altered[:, 4 * i : 4 * i + 4, 4 * j : 4 * j + 8] = 0.5
                    p = torch.softmax(model(altered[None]), dim=1)[0, targets[b]]
                    assert got[b, i, j] == pytest.approx(float(probs[b, targets[b]] - p),
                                                         abs=1e-6)


def test_occlusion_sample_is_the_same_alone_and_in_a_batch(images: Tensor) -> None:
    model = tiny_gap_net()
    targets = torch.tensor([2, 0, 1])
    batched = occlusion(model, images, targets, patch=8, stride=8, batch_size=5)
    for b in range(3):
        alone = occlusion(model, images[b : b + 1], targets[b : b + 1], patch=8, stride=8)
        torch.testing.assert_close(alone[0], batched[b], rtol=1e-5, atol=1e-6)


def reference_scorecam(model, images: Tensor, targets: Tensor, keep: int | None) -> Tensor:
    """Score-CAM one sample and one channel at a time, on the model's features."""
    maps = []
    with torch.no_grad():
        for b in range(len(images)):
            a = model.features(images[b : b + 1])[0]
            channels = range(a.shape[0])
            if keep is not None:
                channels = a.mean(dim=(1, 2)).argsort(descending=True)[:keep].tolist()
            total = torch.zeros(a.shape[1:])
            for k in channels:
                mask = F.interpolate(a[k][None, None], size=images.shape[-2:], mode="bilinear",
                                     align_corners=False)[0, 0]
                if mask.max() == mask.min():
                    continue
                mask = (mask - mask.min()) / (mask.max() - mask.min())
                logits = model(images[b : b + 1] * mask)
                total += torch.softmax(logits, dim=1)[0, targets[b]] * a[k]
            maps.append(total.clamp_min(0))
    return torch.stack(maps)


@pytest.mark.parametrize("keep", [None, 3])
def test_scorecam_matches_per_channel_reference(images: Tensor, keep: int | None) -> None:
    model = tiny_gap_net()
    with torch.no_grad():
        # Channel 0 becomes a constant 0.5: a mask without spatial information, weight 0.
        model.features[3].weight[0] = 0
        model.features[3].bias[0] = 0.5
    targets = torch.tensor([0, 2, 1])
    got = scorecam(model, images, targets, "features", max_channels=keep, batch_size=5)
    expected = reference_scorecam(model, images, targets, keep)
    assert got.shape == (3, 16, 16)
    assert expected.abs().sum() > 0
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-6)


def test_scorecam_sample_is_the_same_alone_and_in_a_batch(images: Tensor) -> None:
    model = tiny_gap_net()
    batched = scorecam(model, images, None, "features", batch_size=6)
    for b in range(3):
        alone = scorecam(model, images[b : b + 1], None, "features", batch_size=6)
        torch.testing.assert_close(alone[0], batched[b], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("corner", ["top_left", "bottom_right"])
def test_perturbation_maps_peak_in_the_only_corner_the_model_sees(corner: str) -> None:
    model = CornerNet(corner)
    images = torch.rand(2, 3, 32, 48, generator=torch.Generator().manual_seed(7)) + 0.1
    targets = torch.zeros(2, dtype=torch.long)
    score_map = scorecam(model, images, targets, "body")
    occlusion_map = occlusion(model, images, targets, patch=8)
    assert occlusion_map.shape == (2, 4, 6)
    for cam_map in (score_map, occlusion_map):
        height, width = cam_map.shape[-2:]
        peak = cam_map.flatten(1).argmax(dim=1)
        rows, cols = peak // width, peak % width
        if corner == "top_left":
            assert ((rows < height // 2) & (cols < width // 2)).all()
        else:
            assert ((rows >= height // 2) & (cols >= width // 2)).all()
    # Only the patch over the seen 8 x 8 corner changes the output.
    expected_cell = (0, 0) if corner == "top_left" else (3, 5)
    assert (occlusion_map[:, expected_cell[0], expected_cell[1]] > 0).all()
    assert occlusion_map.abs().sum() == occlusion_map[:, expected_cell[0], expected_cell[1]].sum()


def test_perturbation_methods_leave_model_unchanged(images: Tensor) -> None:
    model = tiny_gap_net().train()
    hooks = count_hooks(model)
    running_mean = model.features[1].running_mean.clone()
    with pytest.warns(UserWarning, match="train mode"):
        scorecam(model, images, None, "features", max_channels=2)
    with pytest.warns(UserWarning, match="train mode"):
        occlusion(model, images, None, patch=16)
    assert count_hooks(model) == hooks
    assert model.training
    assert torch.equal(model.features[1].running_mean, running_mean)


def test_bad_occlusion_arguments_raise_usage_errors(images: Tensor) -> None:
    model = tiny_gap_net()
    with pytest.raises(UsageError, match="larger than the images"):
        occlusion(model, images, patch=40)
    with pytest.raises(UsageError, match="'blur'"):
        occlusion(model, images, mode="blur")
    with pytest.raises(UsageError, match="stride"):
        occlusion(model, images, stride=0)
