"""Guided backpropagation: the ReLU rule by hand, every relu spelling, batches, clean-up."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from auditor.cams import CamEngine, guided_backprop, guided_gradcam
from tests.helpers.cam_models import CornerNet, TwoLayerReluNet, count_hooks, tiny_gap_net


@pytest.fixture
def images() -> Tensor:
    return torch.randn(4, 3, 4, 4, generator=torch.Generator().manual_seed(8))


def test_two_layer_net_follows_the_guided_relu_rule(images: Tensor) -> None:
    # y = W3 relu(W2 relu(W1 x)). Guided rule at each ReLU, from the top: pass the incoming
    # gradient g only where the ReLU's input z > 0 AND g > 0, i.e. g' = g * [z > 0] * [g > 0].
    model = TwoLayerReluNet(in_features=48, hidden=6)
    targets = torch.tensor([0, 1, 2, 1])
    got = guided_backprop(model, images, targets)
    w1, w2, w3 = (layer.weight.detach() for layer in (model.fc1, model.fc2, model.fc3))
    expected, vanilla = [], []
    for b in range(len(images)):
        x = images[b].flatten()
        z1 = w1 @ x
        z2 = w2 @ z1.clamp_min(0)
        g_h2 = w3[targets[b]]
        g_z2 = g_h2 * (z2 > 0) * (g_h2 > 0)
        g_h1 = w2.T @ g_z2
        g_z1 = g_h1 * (z1 > 0) * (g_h1 > 0)
        expected.append((w1.T @ g_z1).reshape(3, 4, 4))
        plain_h1 = w2.T @ (g_h2 * (z2 > 0))
        vanilla.append((w1.T @ (plain_h1 * (z1 > 0))).reshape(3, 4, 4))
    torch.testing.assert_close(got, torch.stack(expected), rtol=1e-5, atol=1e-6)
    assert not torch.allclose(got, torch.stack(vanilla), atol=1e-4)


def _inplace_module(z: Tensor) -> Tensor:
    return nn.ReLU(inplace=True)(z)


RELU_SPELLINGS: dict[str, Callable[[Tensor], Tensor]] = {
    "nn.ReLU": nn.ReLU(),
    "nn.ReLU(inplace)": _inplace_module,
    "F.relu": F.relu,
    "F.relu(inplace)": lambda z: F.relu(z, inplace=True),
    "F.relu(z, True)": lambda z: F.relu(z, True),
    "F.relu_": F.relu_,
    "torch.relu": torch.relu,
    "torch.relu_": torch.relu_,
    "Tensor.relu": lambda z: z.relu(),
    "Tensor.relu_": lambda z: z.relu_(),
}


class OneReluNet(nn.Module):
    """y = W2 relu(W1 x) with a chosen relu spelling."""

    def __init__(self, relu: Callable[[Tensor], Tensor]) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.fc1 = nn.Linear(48, 8, bias=False)
        self.fc2 = nn.Linear(8, 2, bias=False)
        self.relu = relu
        self.eval()

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.relu(self.fc1(x.flatten(1))))


@pytest.mark.parametrize("spelling", sorted(RELU_SPELLINGS))
def test_every_relu_spelling_gets_the_guided_rule(spelling: str, images: Tensor) -> None:
    model = OneReluNet(RELU_SPELLINGS[spelling])
    targets = torch.tensor([0, 1, 0, 1])
    got = guided_backprop(model, images, targets)
    w1, w2 = model.fc1.weight.detach(), model.fc2.weight.detach()
    z = images.flatten(1) @ w1.T
    g = w2[targets]
    expected = ((g * (z > 0) * (g > 0)) @ w1).reshape(images.shape)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    # Outside the call every relu has its plain gradient again.
    z_plain = torch.tensor([1.0, -1.0, 2.0], requires_grad=True)
    (grad,) = torch.autograd.grad((torch.relu(z_plain) * torch.tensor([-1.0, 1.0, 1.0])).sum(),
                                  z_plain)
    assert torch.equal(grad, torch.tensor([-1.0, 0.0, 1.0]))


def test_guided_backprop_sample_is_the_same_alone_and_in_a_batch() -> None:
    model = tiny_gap_net()
    images = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(9))
    targets = torch.tensor([1, 0, 2])
    for function in (guided_backprop, guided_gradcam):
        batched = function(model, images, targets)
        assert batched.shape == (3, 3, 32, 32)
        assert batched.abs().sum() > 0
        for b in range(3):
            alone = function(model, images[b : b + 1], targets[b : b + 1])
            torch.testing.assert_close(alone[0], batched[b], rtol=1e-5, atol=1e-6)


def test_guided_gradcam_is_guided_backprop_times_upsampled_gradcam() -> None:
    model = tiny_gap_net()
    images = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(10))
    got = guided_gradcam(model, images, None, "features")
    with CamEngine(model, "features") as engine:
        out = engine(images)
    upsampled = F.interpolate(out.maps["gradcam"][:, None], size=(32, 32), mode="bilinear",
                              align_corners=False)
    torch.testing.assert_close(got, guided_backprop(model, images, out.targets) * upsampled)


@pytest.mark.parametrize("corner", ["top_left", "bottom_right"])
def test_guided_maps_are_confined_to_the_only_corner_the_model_sees(corner: str) -> None:
    model = CornerNet(corner, image_size=(32, 48), region=8)
    images = torch.rand(2, 3, 32, 48, generator=torch.Generator().manual_seed(11)) + 0.1
    targets = torch.zeros(2, dtype=torch.long)
    for saliency in (guided_backprop(model, images, targets),
                     guided_gradcam(model, images, targets, "body")):
        strength = saliency.abs().amax(dim=1)
        region = strength[:, :8, :8] if corner == "top_left" else strength[:, -8:, -8:]
        assert (region.sum(dim=(1, 2)) > 0).all()
        torch.testing.assert_close(region.sum(), strength.sum())


class FailingNet(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        F.relu(x)
        raise RuntimeError("model failed")


def test_nothing_stays_patched_or_hooked_even_after_an_exception() -> None:
    model = tiny_gap_net()
    model.head[2].weight.requires_grad_(False)
    flags = [p.requires_grad for p in model.parameters()]
    hooks = count_hooks(model)
    classes = [type(m) for m in model.modules()]
    images = torch.randn(2, 3, 32, 32)
    before = model(images)
    guided_gradcam(model, images)
    with pytest.raises(RuntimeError, match="model failed"):
        guided_backprop(FailingNet().eval(), images)
    assert count_hooks(model) == hooks
    assert [type(m) for m in model.modules()] == classes
    assert [p.requires_grad for p in model.parameters()] == flags
    assert all(p.grad is None for p in model.parameters())
    assert F.relu is torch.nn.functional.relu
    torch.testing.assert_close(model(images), before, rtol=0, atol=0)
    z = torch.tensor([2.0], requires_grad=True)
    (grad,) = torch.autograd.grad(F.relu(z) * -3.0, z)
    assert grad.item() == -3.0  # the plain rule: negative gradients pass again
