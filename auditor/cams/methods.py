"""Channel weightings of the Grad-CAM family, as pure functions of one forward/backward pass.

Each method takes only what it needs (as listed in ``auditor.map_methods``): the target
layer's activations ``A`` [B, K, h, w], the gradients ``G`` [B, K, h, w] of each sample's
target score with respect to ``A`` (float32, same device), and for CAM the weights of a
GAP+linear head and the explained classes ``targets`` [B]. Each returns a map [B, h, w],
float32, >= 0, unnormalised, so that magnitudes stay comparable across a data set. Sums over
``ij`` below are over the h x w grid. ``one_pass_map`` calls a method by name with what the
registry says it needs, and is the one place that checks it was given.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from auditor.errors import AuditorError
from auditor.map_methods import METHODS

# Guards the divisions by sums of activations against 0/0 on dead channels.
_EPS = 1e-7


@dataclass(frozen=True)
class HeadWeights:
    """A GAP+linear classification head: ``logits = weight @ mean_ij(A) + bias``.

    Attributes:
        weight: [C, K] class weights over the K channels of the target layer.
        bias: [C] or None. CAM does not use it; kept so the head is described completely.
    """

    weight: Tensor
    bias: Tensor | None = None


def _weighted_channel_sum(weights: Tensor, activations: Tensor) -> Tensor:
    """relu(sum_k weights[b, k] * A[b, k]) -> [B, h, w]."""
    return torch.einsum("bk,bkhw->bhw", weights, activations).clamp_min(0)


def gradcam(activations: Tensor, gradients: Tensor) -> Tensor:
    """Grad-CAM: relu(sum_k w_k A_k) with w_k = mean_ij G_kij. Returns [B, h, w]."""
    return _weighted_channel_sum(gradients.mean(dim=(2, 3)), activations)


def gradcam_plus_plus(activations: Tensor, gradients: Tensor) -> Tensor:
    """Grad-CAM++, closed form for the score exp(S) (Chattopadhay et al. 2018, eq. 19).

    alpha_kij = G^2 / (2 G^2 + sum_ab(A_kab) G^3), with 0/0 -> 0; w_k = sum_ij alpha * relu(G);
    map = relu(sum_k w_k A_k). The positive factor exp(S) of the paper is dropped (one
    positive scale per sample). Returns [B, h, w].
    """
    squared = gradients.pow(2)
    denominator = 2 * squared + activations.sum(dim=(2, 3), keepdim=True) * squared * gradients
    nonzero = denominator != 0
    alpha = torch.where(nonzero, squared / torch.where(nonzero, denominator, 1.0), 0.0)
    weights = (alpha * gradients.clamp_min(0)).sum(dim=(2, 3))
    return _weighted_channel_sum(weights, activations)


def xgradcam(activations: Tensor, gradients: Tensor) -> Tensor:
    """XGrad-CAM: w_k = sum_ij(G A) / (sum_ij(A) + eps); map = relu(sum_k w_k A_k). [B, h, w]."""
    weights = (gradients * activations).sum(dim=(2, 3)) / (activations.sum(dim=(2, 3)) + _EPS)
    return _weighted_channel_sum(weights, activations)


def layercam(activations: Tensor, gradients: Tensor) -> Tensor:
    """Layer-CAM: relu(sum_k relu(G_k) * A_k), element-wise weights. Returns [B, h, w]."""
    return (gradients.clamp_min(0) * activations).sum(dim=1).clamp_min(0)


def hirescam(activations: Tensor, gradients: Tensor) -> Tensor:
    """HiRes-CAM: relu(sum_k G_k * A_k), element-wise gradients. Returns [B, h, w]."""
    return (gradients * activations).sum(dim=1).clamp_min(0)


def counterfactual(activations: Tensor, gradients: Tensor) -> Tensor:
    """Counterfactual Grad-CAM: Grad-CAM with negated gradients (evidence against the class)."""
    return _weighted_channel_sum(-gradients.mean(dim=(2, 3)), activations)


def cam(activations: Tensor, head: HeadWeights, targets: Tensor) -> Tensor:
    """CAM (Zhou et al. 2016): relu(sum_k W[target, k] A_k) for a GAP+linear head. [B, h, w]."""
    if head.weight.shape[1] != activations.shape[1]:
        raise AuditorError(
            f"method 'cam': the head has {head.weight.shape[1]} input features but the target "
            f"layer has {activations.shape[1]} channels; pick the layer that feeds the head."
        )
    weights = head.weight.to(device=activations.device, dtype=activations.dtype)[targets]
    return _weighted_channel_sum(weights, activations)


def _first_principal_projection(matrix: Tensor) -> Tensor:
    """Projection of each row of ``matrix`` [B, N, K] on its first right singular vector v_1
    (unit length, sign as the SVD returns it: arbitrary). Returns [B, N]."""
    _, _, vh = torch.linalg.svd(matrix, full_matrices=False)
    return torch.einsum("bnk,bk->bn", matrix, vh[:, 0, :])


def _activation_matrix(activations: Tensor) -> Tensor:
    """A [B, K, h, w] as the matrix of positions by channels [B, hw, K]."""
    batch, channels, height, width = activations.shape
    return activations.reshape(batch, channels, height * width).transpose(1, 2)


def eigencam(activations: Tensor) -> Tensor:
    """Eigen-CAM as pytorch-grad-cam computes it: first principal component of the positions.

    Per sample, the activation matrix M [hw, K] is centred (each channel's mean over the
    positions subtracted), factorised M_c = U S V^T, and the map is relu(s M_c v_1). A centred
    projection sums to zero over the positions, so whenever it is not all zero both signs
    leave a non-zero map; s = +-1 makes it correlate positively with the channel mean of A
    (the principal direction points to where the layer is active). Class-agnostic. Returns
    [B, h, w].
    """
    batch, _, height, width = activations.shape
    matrix = _activation_matrix(activations)
    projection = _first_principal_projection(matrix - matrix.mean(dim=1, keepdim=True))
    strength = activations.mean(dim=1).reshape(batch, -1)
    covariance = (projection * (strength - strength.mean(dim=1, keepdim=True))).sum(
        dim=1, keepdim=True)
    sign = torch.where(covariance < 0, -1.0, 1.0)
    return (projection * sign).clamp_min(0).reshape(batch, height, width)


def eigencam_uncentred(activations: Tensor) -> Tensor:
    """Eigen-CAM as in the paper (Muhammad & Yeasin 2020): the activation matrix M [hw, K] is
    not centred; the map is relu(s M v_1).

    s = +-1 makes the projection's sum non-negative: relu then keeps the larger part of its
    mass (sum relu(p) - sum relu(-p) = sum p), so a projection with signal never gives an
    all-zero map; for non-negative activations (after a ReLU) v_1 is one-signed and the whole
    projection is kept. Class-agnostic. Returns [B, h, w].
    """
    batch, _, height, width = activations.shape
    projection = _first_principal_projection(_activation_matrix(activations))
    sign = torch.where(projection.sum(dim=1, keepdim=True) < 0, -1.0, 1.0)
    return (projection * sign).clamp_min(0).reshape(batch, height, width)


def one_pass_map(
    name: str,
    activations: Tensor,
    gradients: Tensor | None = None,
    targets: Tensor | None = None,
    head: HeadWeights | None = None,
) -> Tensor:
    """The one-pass method ``name`` on one layer, given what it needs. Returns [B, h, w].

    ``gradients`` are needed by the gradient methods, ``head`` and ``targets`` by CAM; an
    AuditorError says what is missing.
    """
    method = METHODS[name]
    if method.separate:
        raise AuditorError(f"method {name!r} needs passes of its own; use compute_maps.")
    inputs: dict[str, Tensor | HeadWeights] = {}
    if method.needs_gradients:
        if gradients is None:
            raise AuditorError(
                f"method {name!r} needs the gradients of the target score, but none were "
                "given; run it through CamEngine, which computes them in the same pass."
            )
        inputs["gradients"] = gradients
    if method.needs_head:
        if head is None or targets is None:
            raise AuditorError(
                f"method {name!r} needs the class weights of a GAP+linear head "
                "(head=HeadWeights(...)) and the explained classes; CamEngine finds the head "
                "itself when such a head follows the target layer."
            )
        inputs["head"], inputs["targets"] = head, targets
    return method.function(activations, **inputs)
