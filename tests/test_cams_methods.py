"""The map methods against hand-derived identities and slow per-sample reference loops."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from auditor.cams import CamEngine, HeadWeights
from auditor.cams.methods import eigencam, eigencam_uncentred, gradcam_plus_plus
from auditor.errors import AuditorError, UsageError
from auditor.map_methods import GRADIENT_METHODS, validate_one_pass
from tests.helpers.cam_models import max_pool_head_net, spatial_head_net, tiny_gap_net


@pytest.fixture
def images() -> Tensor:
    generator = torch.Generator().manual_seed(1)
    return torch.randn(3, 3, 16, 12, generator=generator)


# -- slow, obviously-correct references: one sample at a time, explicit loops ---------------------


def reference_activations_and_gradients(
    before: Callable[[Tensor], Tensor],
    after: Callable[[Tensor], Tensor],
    image: Tensor,
    target: int,
) -> tuple[np.ndarray, np.ndarray]:
    """A [K,h,w] and dS/dA for ONE image, S = after(A)[0, target], via .backward()."""
    activations = before(image[None]).detach().requires_grad_()
    after(activations)[0, target].backward()
    return activations.detach()[0].double().numpy(), activations.grad[0].double().numpy()


def reference_map(method: str, a: np.ndarray, g: np.ndarray) -> np.ndarray:
    """The published definitions, written out with explicit loops over k, i, j."""
    channels, height, width = a.shape
    weights = [0.0] * channels
    for k in range(channels):
        total_g = total_a = total_ga = 0.0
        for i in range(height):
            for j in range(width):
                total_g += g[k, i, j]
                total_a += a[k, i, j]
                total_ga += g[k, i, j] * a[k, i, j]
        if method == "gradcam":
            weights[k] = total_g / (height * width)
        elif method == "counterfactual":
            weights[k] = -total_g / (height * width)
        elif method == "xgradcam":
            weights[k] = total_ga / (total_a + 1e-7)
        elif method == "gradcam++":
            for i in range(height):
                for j in range(width):
                    grad = g[k, i, j]
                    denominator = 2 * grad**2 + total_a * grad**3
                    alpha = grad**2 / denominator if denominator != 0 else 0.0
                    weights[k] += alpha * max(grad, 0.0)
    out = np.zeros((height, width))
    for i in range(height):
        for j in range(width):
            value = 0.0
            for k in range(channels):
                if method == "layercam":
                    value += max(g[k, i, j], 0.0) * a[k, i, j]
                elif method == "hirescam":
                    value += g[k, i, j] * a[k, i, j]
                else:
                    value += weights[k] * a[k, i, j]
            out[i, j] = max(value, 0.0)
    return out


SPLITS = {
    # model builder, target layer, (part before the layer, part after it)
    "spatial_head": (
        lambda: spatial_head_net(height=8, width=6),
        "features",
        lambda m: (m.features, m.head),
    ),
    "gap_inplace_relu": (
        tiny_gap_net,
        "features.3",
        lambda m: (m.features[:4], lambda a: m.head(F.relu(a))),
    ),
}


@pytest.mark.parametrize("split", sorted(SPLITS))
def test_every_gradient_method_matches_per_sample_reference(split: str, images: Tensor) -> None:
    build, layer, parts = SPLITS[split]
    model = build()
    targets = torch.tensor([0, 2, 1])
    with CamEngine(model, layer, methods=sorted(GRADIENT_METHODS)) as engine:
        out = engine(images, targets)
    before, after = parts(model)
    for index in range(len(images)):
        a, g = reference_activations_and_gradients(before, after, images[index],
                                                   int(targets[index]))
        for method in sorted(GRADIENT_METHODS):
            expected = torch.from_numpy(reference_map(method, a, g)).float()
            assert expected.abs().sum() > 0 or method == "counterfactual"
            torch.testing.assert_close(out.maps[method][index], expected, rtol=1e-4, atol=1e-5,
                                       msg=f"{method}, sample {index}")


def test_gradcam_equals_cam_up_to_one_over_hw_on_gap_linear_head(images: Tensor) -> None:
    model = tiny_gap_net()
    with CamEngine(model, "features", methods=("gradcam", "cam")) as engine:
        out = engine(images)
    height, width = out.maps["cam"].shape[-2:]
    # GAP+linear: S = sum_k W_ck mean_ij A_k, so dS/dA_kij = W_ck / (h w) everywhere and the
    # Grad-CAM weights are W_ck / (h w): Grad-CAM = CAM / (h w).
    assert out.maps["cam"].abs().sum() > 0
    torch.testing.assert_close(out.maps["gradcam"] * height * width, out.maps["cam"],
                               rtol=1e-4, atol=1e-5)


def test_cam_uses_the_head_found_or_given(images: Tensor) -> None:
    model = tiny_gap_net()
    features = model.features(images).detach()
    with CamEngine(model, "features", methods=("cam",)) as engine:
        out = engine(images)
    expected = torch.einsum("bk,bkhw->bhw", model.head[2].weight[out.targets], features)
    torch.testing.assert_close(out.maps["cam"], expected.clamp_min(0))
    flipped = HeadWeights(-model.head[2].weight.detach())
    with CamEngine(model, "features", methods=("cam",), head=flipped) as engine:
        given = engine(images, out.targets)
    torch.testing.assert_close(given.maps["cam"], (-expected).clamp_min(0))


def test_gradcam_equals_hirescam_when_gradient_is_spatially_constant(images: Tensor) -> None:
    with CamEngine(tiny_gap_net(), "features", methods=("gradcam", "hirescam")) as engine:
        out = engine(images, torch.tensor([0, 1, 2]))
    assert out.maps["gradcam"].abs().sum() > 0
    torch.testing.assert_close(out.maps["gradcam"], out.maps["hirescam"])
    # ...and they differ once the gradient varies over space (the test can tell them apart).
    with CamEngine(spatial_head_net(8, 6), "features", methods=("gradcam", "hirescam")) as e:
        varying = e(images, torch.tensor([0, 1, 2]))
    assert not torch.allclose(varying.maps["gradcam"], varying.maps["hirescam"])


def test_gradcam_plus_plus_closed_form_matches_autograd_derivatives_of_exp_score(
    images: Tensor,
) -> None:
    """Grad-CAM++ (Chattopadhay et al., eq. 10 and 19) for the score Y = exp(S).

    The paper's weights are w_k = sum_ij alpha_kij relu(dY/dA_kij) with
    alpha_kij = d2Y / (2 d2Y + sum_ab A_kab d3Y), the derivatives taken element-wise along the
    diagonal. Here they are computed by autograd from Y = exp(S) itself. For a head that is
    piecewise linear in A (this one), dY = e^S G, d2Y = e^S G^2, d3Y = e^S G^3, so alpha is the
    closed form G^2 / (2 G^2 + sum_ab A G^3) and w_k = e^S sum_ij alpha relu(G): the closed-form
    map times e^S.
    """
    model = spatial_head_net(height=3, width=2)
    with torch.no_grad():
        model.head[3].weight.mul_(0.3)  # keeps e^S moderate
    x = images[:1, :, :6, :4]
    target = 1
    activations = model.features(x).detach().requires_grad_()
    score = model.head(activations)[0, target]
    y = torch.exp(score)
    (dy,) = torch.autograd.grad(y, activations, create_graph=True)
    flat_dy = dy.reshape(-1)
    d2 = torch.zeros(flat_dy.numel(), dtype=torch.float64)
    d3 = torch.zeros_like(d2)
    for e in range(flat_dy.numel()):
        (row2,) = torch.autograd.grad(flat_dy[e], activations, create_graph=True)
        second = row2.reshape(-1)[e]
        d2[e] = second.item()
        (row3,) = torch.autograd.grad(second, activations, retain_graph=True, allow_unused=True)
        d3[e] = 0.0 if row3 is None else row3.reshape(-1)[e].item()
    a = activations.detach().double()
    shape = a.shape
    d2, d3 = d2.reshape(shape), d3.reshape(shape)
    denominator = 2 * d2 + a.sum(dim=(2, 3), keepdim=True) * d3
    alpha = torch.where(denominator != 0, d2 / denominator, torch.zeros_like(d2))
    weights = (alpha * dy.detach().double().clamp_min(0)).sum(dim=(2, 3))
    expected = torch.einsum("bk,bkhw->bhw", weights, a).clamp_min(0) / torch.exp(
        score.detach().double()
    )
    grads = torch.autograd.grad(score, activations)[0]
    got = gradcam_plus_plus(a.float(), grads)
    assert expected.abs().sum() > 0
    torch.testing.assert_close(got.double(), expected, rtol=1e-4, atol=1e-6)


def reference_eigencam(a: np.ndarray, centred: bool) -> np.ndarray:
    """Eigen-CAM of ONE sample's activations [K, h, w] in numpy, the way pytorch-grad-cam's
    get_2d_projection writes it (positions x channels, each channel centred over the positions,
    full SVD, projection on VT[0]); `centred` False gives the paper's variant. The SVD's sign
    is arbitrary: it is fixed by the documented rule (the centred map correlates positively with
    the channel mean; the uncentred projection sums to >= 0), then relu."""
    channels, height, width = a.shape
    matrix = a.reshape(channels, -1).T
    if centred:
        matrix = matrix - matrix.mean(axis=0)
    projection = matrix @ np.linalg.svd(matrix, full_matrices=True)[2][0]
    if centred:
        flip = np.cov(projection, a.mean(axis=0).reshape(-1))[0, 1] < 0
    else:
        flip = projection.sum() < 0
    return np.maximum(-projection if flip else projection, 0).reshape(height, width)


def test_eigencam_of_rank_one_activations_is_the_centred_spatial_pattern() -> None:
    # A_k = c_k * P: the centred matrix is (P - mean P) c^T, its first right singular vector is
    # +-c/|c|, so the projection is +-|c| (P - mean P); the channel mean, mean(c) P, picks +.
    pattern = torch.rand(2, 5, 4) + 0.1
    coefficients = torch.tensor([[1.0, 2.0, 2.0], [3.0, 0.0, 4.0]])
    activations = coefficients[:, :, None, None] * pattern[:, None]
    got = eigencam(activations)
    centred = pattern - pattern.mean(dim=(1, 2), keepdim=True)
    torch.testing.assert_close(got, (torch.tensor([3.0, 5.0])[:, None, None] * centred).clamp(0))
    uncentred = eigencam_uncentred(activations)
    torch.testing.assert_close(uncentred, torch.tensor([3.0, 5.0])[:, None, None] * pattern)


@pytest.mark.parametrize("centred", [True, False])
def test_eigencam_matches_numpy_svd_reference(images: Tensor, centred: bool) -> None:
    name = "eigencam" if centred else "eigencam-uncentred"
    with CamEngine(spatial_head_net(8, 6), "features", methods=(name,)) as engine:
        out = engine(images)
    features = spatial_head_net(8, 6).features(images).detach().double().numpy()
    for index, a in enumerate(features):
        expected = torch.from_numpy(reference_eigencam(a, centred))
        assert expected.sum() > 0
        torch.testing.assert_close(out.maps[name][index].double(), expected,
                                   rtol=1e-4, atol=1e-5)


def test_eigencam_sign_never_zeroes_a_map_that_has_signal() -> None:
    # Channel 1 = 10 + e, channel 2 = 3 - 2e over the positions (e in [-1, 1], mean 0).
    # Uncentred, v_1 is close to (10, 3) / sqrt(109), so the projection ~ (109 + 4e) / sqrt(109)
    # is positive everywhere and rises with e, where the channel mean (13 - e) / 2 falls: a
    # sign chosen by correlation with the channel mean zeroed the whole map. Centred, the
    # channels are e and -2e, v_1 = +-(1, -2) / sqrt(5) and the projection +-sqrt(5) e: half
    # the positions are positive under either sign.
    e = torch.linspace(-1.0, 1.0, 12).reshape(1, 3, 4)
    activations = torch.stack([10 + e, 3 - 2 * e], dim=1)
    uncentred = eigencam_uncentred(activations)
    torch.testing.assert_close(uncentred, (109 + 4 * e) / 109 ** 0.5, rtol=2e-3, atol=0)
    centred = eigencam(activations)
    # The channel mean falls with e: the centred map is positive where e < 0.
    assert bool((centred[e < 0] > 0).all())
    assert bool((centred[e > 0] == 0).all())
    torch.testing.assert_close(centred, (-e * 5 ** 0.5).clamp(0))


def test_callable_target_explains_the_callable_score(images: Tensor) -> None:
    model = tiny_gap_net()
    with CamEngine(model, "features", methods=("gradcam",)) as engine:
        out = engine(images, lambda logits: logits[:, 0] + 2 * logits[:, 2])
    weight = model.head[2].weight.detach()
    features = model.features(images).detach()
    height, width = features.shape[-2:]
    expected = torch.einsum("k,bkhw->bhw", (weight[0] + 2 * weight[2]) / (height * width),
                            features).clamp_min(0)
    torch.testing.assert_close(out.maps["gradcam"], expected)
    assert torch.equal(out.targets, out.logits.argmax(dim=1))


def test_cam_without_gap_linear_head_raises_naming_the_reason(images: Tensor) -> None:
    with pytest.raises(AuditorError, match=r"method 'cam'.*no nn\.Linear with in_features=4"), \
            CamEngine(spatial_head_net(8, 6), "features", methods=("cam",)) as engine:
        engine(images)
    with pytest.raises(AuditorError, match="do not take the spatial mean"), \
            CamEngine(max_pool_head_net(), "features", methods=("cam",)) as engine:
        engine(images)


def test_unknown_method_raises_usage_error_listing_valid_names() -> None:
    with pytest.raises(UsageError, match=r"\['gradcamm'\].*eigencam, eigencam-uncentred, gradcam"):
        validate_one_pass(["gradcam", "gradcamm"])
    assert validate_one_pass(["layercam", "gradcam", "layercam"]) == ("layercam", "gradcam")
