"""Guided backpropagation and Guided Grad-CAM, for a whole batch at once.

Guided backprop (Springenberg et al. 2015) changes only the backward rule of ReLU: the gradient
passes where the ReLU's forward input was positive AND the incoming gradient is positive. The
rule is applied to every ReLU the forward runs through Python -- ``nn.ReLU`` modules (whose
forward calls ``F.relu``) and the functional forms ``F.relu``, ``F.relu_``, ``torch.relu``,
``torch.relu_``, ``Tensor.relu``, ``Tensor.relu_`` -- by a TorchFunctionMode that is active only
during the call, so no module is replaced and nothing stays patched, even after an exception.
ReLUs hidden inside TorchScript or expressed as ``clamp(min=0)`` keep the plain rule.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from auditor.cams.engine import CamEngine, eval_mode, frozen_parameters, resolve_targets
from auditor.errors import UsageError


class _GuidedReLU(torch.autograd.Function):
    """relu(x) forward; backward passes grad only where x > 0 and grad > 0."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, inplace: bool) -> Tensor:
        positive = x > 0
        ctx.save_for_backward(positive)
        if inplace:
            ctx.mark_dirty(x)
            return x.clamp_(min=0)
        return x.clamp(min=0)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        (positive,) = ctx.saved_tensors
        return grad.clamp(min=0) * positive, None


_OUT_OF_PLACE = (torch.relu, torch.Tensor.relu)
_IN_PLACE = (torch.relu_, torch.Tensor.relu_)


class _GuidedReLUMode(TorchFunctionMode):
    """Routes every Python-level relu through _GuidedReLU while active."""

    def __torch_function__(
        self,
        func: Callable[..., Any],
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        kwargs = kwargs or {}
        if func is F.relu:
            inplace = bool(args[1]) if len(args) > 1 else bool(kwargs.get("inplace", False))
            return _GuidedReLU.apply(args[0], inplace)
        if func in _OUT_OF_PLACE:
            return _GuidedReLU.apply(args[0], False)
        if func in _IN_PLACE:
            return _GuidedReLU.apply(args[0], True)
        return func(*args, **kwargs)


def guided_backprop(model: nn.Module, images: Tensor, targets: Tensor | None = None) -> Tensor:
    """Guided-backprop gradient of each sample's target logit w.r.t. its input pixels.

    One forward and one backward for the whole batch; parameters frozen (no weight gradients)
    and the model in eval mode during the call, restored after.

    Args:
        model: images -> logits [B, C].
        images: float [B, 3, H, W] on the model's device.
        targets: long [B], or None for the predicted class.

    Returns:
        float32 [B, 3, H, W], signed, per colour channel. For a [B, H, W] saliency take
        ``.abs().amax(dim=1)``.
    """
    if not isinstance(images, Tensor) or images.dim() != 4:
        raise UsageError(
            f"images must be a float tensor [B, C, H, W]; got "
            f"{getattr(images, 'shape', type(images).__name__)}."
        )
    with eval_mode(model), frozen_parameters(model), torch.enable_grad():
        inputs = images.detach().requires_grad_()
        with _GuidedReLUMode():
            logits = model(inputs).float()
        explained = resolve_targets(logits, targets)
        score = logits.gather(1, explained[:, None]).sum()
        (gradient,) = torch.autograd.grad(score, inputs)
    return gradient.float()


def guided_gradcam(
    model: nn.Module,
    images: Tensor,
    targets: Tensor | None = None,
    layer: str | None = None,
    reshape: Callable[[Tensor], Tensor] | None = None,
) -> Tensor:
    """Guided Grad-CAM: guided backprop times the Grad-CAM map upsampled to the input.

    Two passes (one engine pass, one guided pass); the class explained by both is the same.

    Args:
        model, images, targets: as for ``guided_backprop``.
        layer: Grad-CAM target layer; None for the last 4-D feature map.
        reshape: as for ``CamEngine`` (token outputs).

    Returns:
        float32 [B, 3, H, W], signed.
    """
    with CamEngine(model, layer, methods=("gradcam",), reshape=reshape) as engine:
        out = engine(images, targets)
    coarse = out.maps["gradcam"][:, None]
    upsampled = F.interpolate(coarse, size=images.shape[-2:], mode="bilinear", align_corners=False)
    return guided_backprop(model, images, out.targets) * upsampled
