"""Maps that need many forward passes: Score-CAM and occlusion, batched over perturbations.

Both cost one forward per perturbed copy of an image, so they run on chosen samples (the
suspects), not by default on a whole data set. Both explain the softmax probability of the
target class and work on the whole batch at once.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from auditor.cams.engine import eval_mode, resolve_targets
from auditor.errors import AuditorError, UsageError
from auditor.models.layers import get_module

_OCCLUSION_MODES = ("occlude", "scale")


def _check_images(images: Tensor) -> None:
    if not isinstance(images, Tensor) or images.dim() != 4:
        raise UsageError(
            f"images must be a float tensor [B, C, H, W]; got "
            f"{getattr(images, 'shape', type(images).__name__)}."
        )


def _check_positive(name: str, value: int) -> None:
    if value < 1:
        raise UsageError(f"{name} must be a positive integer; got {value}.")


def _target_probabilities(model: nn.Module, images: Tensor, targets: Tensor) -> Tensor:
    """Softmax probability of ``targets`` [n] for ``images`` [n, 3, H, W] -> float32 [n]."""
    probabilities = torch.softmax(model(images).float(), dim=1)
    return probabilities.gather(1, targets[:, None])[:, 0]


def _layer_activations(
    model: nn.Module,
    images: Tensor,
    layer: str,
    reshape: Callable[[Tensor], Tensor] | None,
) -> tuple[Tensor, Tensor]:
    """(logits float32 [B, C], activations float32 [B, K, h, w]) from one forward."""
    captured: list[Tensor] = []

    def hook(_module: nn.Module, _inputs: object, output: Tensor) -> None:
        captured.append(output.detach().float().clone())

    handle = get_module(model, layer).register_forward_hook(hook)
    try:
        logits = model(images).float()
    finally:
        handle.remove()
    if len(captured) != 1:
        raise AuditorError(
            f"layer {layer!r} ran {len(captured)} times in one forward pass; choose a module "
            "that runs exactly once."
        )
    activations = captured[0] if reshape is None else reshape(captured[0])
    if activations.dim() != 4:
        raise AuditorError(
            f"layer {layer!r} gives shape {tuple(activations.shape)}; Score-CAM needs "
            "[B, K, h, w] (pass reshape=vit_reshape_for(model, (H, W)) for token outputs)."
        )
    return logits, activations


def scorecam(
    model: nn.Module,
    images: Tensor,
    targets: Tensor | None,
    layer: str,
    max_channels: int | None = None,
    batch_size: int = 64,
    reshape: Callable[[Tensor], Tensor] | None = None,
) -> Tensor:
    """Score-CAM (Wang et al. 2020): channels weighted by the score of the image they mask.

    Each activation channel A_k is upsampled (bilinear) to the input size and min-max scaled to
    [0, 1] per sample; the image times that mask is classified and the softmax probability
    p_k of the target class is the channel weight: map = relu(sum_k p_k A_k). As in the
    authors' code, no baseline score is subtracted and a constant channel (no spatial
    information) gets weight 0.

    Args:
        model: images -> logits [B, C]; run in eval mode, without gradients.
        images: float [B, 3, H, W] on the model's device.
        targets: long [B], or None for the predicted class.
        layer: dotted name of the layer whose channels become masks.
        max_channels: keep only the k channels of largest mean activation per sample (the
            map then sums over those k); None keeps all K.
        batch_size: masked images per forward pass.
        reshape: maps the layer output to [B, K, h, w] (e.g. ``vit_reshape``).

    Returns:
        float32 [B, h, w], >= 0, at the layer's grid.
    """
    _check_images(images)
    _check_positive("batch_size", batch_size)
    if max_channels is not None:
        _check_positive("max_channels", max_channels)
    height, width = images.shape[-2:]
    with eval_mode(model), torch.no_grad():
        logits, activations = _layer_activations(model, images, layer, reshape)
        explained = resolve_targets(logits, targets)
        batch, channels = activations.shape[:2]
        if max_channels is not None and max_channels < channels:
            order = activations.mean(dim=(2, 3)).topk(max_channels, dim=1).indices
            activations = activations.gather(
                1, order[:, :, None, None].expand(-1, -1, *activations.shape[2:])
            )
            channels = max_channels
        weights = torch.empty(batch * channels, device=images.device)
        flat = activations.reshape(batch * channels, 1, *activations.shape[2:])
        for start in range(0, batch * channels, batch_size):
            rows = torch.arange(start, min(start + batch_size, batch * channels),
                                device=images.device)
            masks = F.interpolate(flat[rows], size=(height, width), mode="bilinear",
                                  align_corners=False)
            low = masks.amin(dim=(2, 3), keepdim=True)
            span = masks.amax(dim=(2, 3), keepdim=True) - low
            constant = span[:, 0, 0, 0] == 0
            masks = (masks - low) / torch.where(span == 0, 1.0, span)
            sample = torch.div(rows, channels, rounding_mode="floor")
            masked = images[sample] * masks.to(images.dtype)
            probabilities = _target_probabilities(model, masked, explained[sample])
            weights[rows] = torch.where(constant, 0.0, probabilities)
    weights = weights.reshape(batch, channels)
    return torch.einsum("bk,bkhw->bhw", weights, activations).clamp_min(0)


def _pair(name: str, value: int | tuple[int, int]) -> tuple[int, int]:
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2 or any(int(v) < 1 for v in pair):
        raise UsageError(f"{name} must be a positive int or (height, width); got {value!r}.")
    return int(pair[0]), int(pair[1])


def occlusion(
    model: nn.Module,
    images: Tensor,
    targets: Tensor | None = None,
    patch: int | tuple[int, int] = 8,
    stride: int | tuple[int, int] | None = None,
    fill: float = 0.0,
    mode: str = "occlude",
    factor: float = 0.8,
    batch_size: int = 64,
) -> Tensor:
    """Occlusion sensitivity: how much the target probability drops when a patch is altered.

    Model-agnostic (any images -> logits model, convolutional or not). Patches of size
    ``patch`` (ph, pw) slide with ``stride`` (default: the patch size) from the top-left
    corner; positions (i, j) have their top-left pixel at (i * sh, j * sw) and the patch must
    fit inside the image.

    Args:
        model: images -> logits [B, C]; run in eval mode, without gradients.
        images: float [B, 3, H, W] on the model's device.
        targets: long [B], or None for the predicted class.
        patch, stride: int or (height, width), in pixels.
        fill: value written into the patch in "occlude" mode (in the normalised input space).
        mode: "occlude" replaces the patch by ``fill``; "scale" multiplies it by ``factor``
            (e.g. 0.8 darker, 1.2 brighter).
        batch_size: perturbed images per forward pass.

    Returns:
        float32 [B, nh, nw] with nh = (H - ph) // sh + 1, nw = (W - pw) // sw + 1:
        p(target | image) - p(target | altered image), in probability units; negative where
        the alteration raised the probability.
    """
    _check_images(images)
    _check_positive("batch_size", batch_size)
    if mode not in _OCCLUSION_MODES:
        raise UsageError(f"occlusion mode must be one of {_OCCLUSION_MODES}; got {mode!r}.")
    patch_h, patch_w = _pair("patch", patch)
    stride_h, stride_w = _pair("stride", patch if stride is None else stride)
    batch, _, height, width = images.shape
    if patch_h > height or patch_w > width:
        raise UsageError(
            f"patch {(patch_h, patch_w)} is larger than the images {(height, width)}; "
            "use a smaller patch."
        )
    grid_h = (height - patch_h) // stride_h + 1
    grid_w = (width - patch_w) // stride_w + 1
    positions = grid_h * grid_w
    device = images.device
    rows_all = torch.arange(height, device=device)
    cols_all = torch.arange(width, device=device)
    with eval_mode(model), torch.no_grad():
        logits = model(images).float()
        explained = resolve_targets(logits, targets)
        base = torch.softmax(logits, dim=1).gather(1, explained[:, None])[:, 0]
        drops = torch.empty(batch * positions, device=device)
        for start in range(0, batch * positions, batch_size):
            flat = torch.arange(start, min(start + batch_size, batch * positions), device=device)
            sample = torch.div(flat, positions, rounding_mode="floor")
            position = flat % positions
            top = torch.div(position, grid_w, rounding_mode="floor") * stride_h
            left = (position % grid_w) * stride_w
            in_rows = (rows_all >= top[:, None]) & (rows_all < top[:, None] + patch_h)
            in_cols = (cols_all >= left[:, None]) & (cols_all < left[:, None] + patch_w)
            inside = (in_rows[:, :, None] & in_cols[:, None, :])[:, None]
            originals = images[sample]
            if mode == "occlude":
                altered = torch.where(inside, torch.as_tensor(fill, dtype=images.dtype,
                                                              device=device), originals)
            else:
                altered = originals * torch.where(inside, factor, 1.0).to(images.dtype)
            drops[flat] = base[sample] - _target_probabilities(model, altered, explained[sample])
    return drops.reshape(batch, grid_h, grid_w)
