"""Target layers: discovery by one dry forward, and lookup by dotted name."""

from __future__ import annotations

import difflib
from collections.abc import Callable

import torch
from torch import Tensor, nn

from auditor.errors import AuditorError, ModelLoadError

# How many layer names an error message lists before it says "... and N more".
_MAX_LISTED = 15


def _dummy_input(model: nn.Module, input_shape: tuple[int, ...]) -> Tensor:
    """Zeros of ``input_shape`` on the model's device, in its floating dtype."""
    reference = next(
        (t for t in (*model.parameters(), *model.buffers()) if t.is_floating_point()), None
    )
    if reference is None:
        return torch.zeros(input_shape)
    return torch.zeros(input_shape, device=reference.device, dtype=reference.dtype)


def feature_map_layers(
    model: nn.Module, input_shape: tuple[int, ...] = (1, 3, 224, 224)
) -> list[tuple[str, tuple[int, ...]]]:
    """Modules whose output is a 4-D feature map with more than one spatial position.

    One forward of a zero batch of ``input_shape`` (N, C, H, W), without gradients and with
    every module in eval mode; the hooks are removed and each module's mode restored after.

    Returns:
        (dotted name, output shape) pairs in the order the modules finished their forward
        (a container finishes after its children); a module run several times is listed at
        its last run.
    """
    finished: dict[str, tuple[int, ...]] = {}

    def record(name: str, output: object) -> None:
        is_map = isinstance(output, Tensor) and output.dim() == 4
        if is_map and output.shape[2] * output.shape[3] > 1:
            finished.pop(name, None)
            finished[name] = tuple(output.shape)

    modes = [(module, module.training) for module in model.modules()]
    handles = [
        module.register_forward_hook(lambda _m, _i, out, name=name: record(name, out))
        for name, module in model.named_modules()
        if name
    ]
    try:
        model.eval()
        with torch.no_grad():
            model(_dummy_input(model, input_shape))
    finally:
        for handle in handles:
            handle.remove()
        for module, training in modes:
            module.training = training
    return list(finished.items())


def find_target_layer(
    model: nn.Module,
    input_shape: tuple[int, ...] = (1, 3, 224, 224),
    reshape: Callable[[Tensor], Tensor] | None = None,
) -> str:
    """Dotted name of the default target layer.

    Without ``reshape``: the LAST module whose output is a 4-D feature map with h * w > 1 (for
    a torchvision ResNet, ``"layer4"``). With ``reshape`` (token models, e.g. ``vit_reshape``):
    ``find_token_layer``. Raises ModelLoadError when there is no such layer.
    """
    if reshape is not None:
        return find_token_layer(model, input_shape, reshape)
    layers = feature_map_layers(model, input_shape)
    if not layers:
        raise ModelLoadError(
            f"no module of {type(model).__name__} outputs a 4-D feature map [B, K, h, w] with "
            f"h * w > 1 for input shape {tuple(input_shape)}; pass the target layer by name "
            "(for a vision transformer: a block's norm layer, with --reshape vit)."
        )
    return layers[-1][0]


def find_token_layer(
    model: nn.Module,
    input_shape: tuple[int, ...],
    reshape: Callable[[Tensor], Tensor],
) -> str:
    """Dotted name of the last normalisation layer (LayerNorm, RMSNorm) whose token output
    passes gradient from the top logit back to its patch tokens.

    One forward and one backward of a seeded random batch of ``input_shape`` in eval mode. In a
    class-token ViT only the class token of the last block's output reaches the head, so this
    is the last block's first norm (torchvision ``encoder.layers.encoder_layer_{L-1}.ln_1``,
    timm ``blocks.{L-1}.norm1``); in an average-pooled one it is the final norm. Outputs that
    ``reshape`` cannot lay out as [B, K, h, w] are skipped.
    """
    norms = (nn.LayerNorm, nn.RMSNorm)
    outputs: dict[str, Tensor] = {}

    def record(name: str, output: object) -> None:
        if isinstance(output, Tensor) and output.dim() == 3 and output.requires_grad:
            outputs.pop(name, None)
            outputs[name] = output

    modes = [(module, module.training) for module in model.modules()]
    handles = [
        module.register_forward_hook(lambda _m, _i, out, name=name: record(name, out))
        for name, module in model.named_modules()
        if name and isinstance(module, norms)
    ]
    reference = _dummy_input(model, input_shape)
    generator = torch.Generator(device=reference.device).manual_seed(0)
    probe = torch.randn(input_shape, generator=generator, device=reference.device,
                        dtype=reference.dtype).requires_grad_(True)
    try:
        model.eval()
        with torch.enable_grad():
            logits = model(probe)
            names = list(outputs)
            grads = torch.autograd.grad(logits.max(dim=1).values.sum(),
                                        [outputs[n] for n in names], allow_unused=True)
    finally:
        for handle in handles:
            handle.remove()
        for module, training in modes:
            module.training = training
    reaching = [name for name, grad in zip(names, grads, strict=True)
                if grad is not None and _patch_gradient(grad, reshape)]
    if not reaching:
        raise ModelLoadError(
            f"no LayerNorm of {type(model).__name__} gives a token output [B, N, C] whose patch "
            "tokens the prediction depends on; pass the target layer by name (a block's norm "
            "layer) and check --reshape."
        )
    return reaching[-1]


def _patch_gradient(grad: Tensor, reshape: Callable[[Tensor], Tensor]) -> bool:
    """True when ``reshape`` lays the gradient out as [B, K, h, w] and any of it is non-zero."""
    try:
        laid_out = reshape(grad)
    except AuditorError:
        return False
    return laid_out.dim() == 4 and bool(laid_out.abs().sum() > 0)


def _relevant_names(model: nn.Module) -> list[str]:
    """Names of conv layers and of the containers holding them, shallow ones first.

    Falls back to every named module for models without convolutions.
    """
    conv_types = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
    named = [(name, module) for name, module in model.named_modules() if name]
    relevant = [
        name
        for name, module in named
        if any(isinstance(sub, conv_types) for sub in module.modules())
    ]
    names = relevant or [name for name, _ in named]
    return sorted(names, key=lambda name: name.count("."))


def get_module(model: nn.Module, name: str) -> nn.Module:
    """The sub-module at dotted path ``name`` (e.g. ``"layer4"``, ``"features.29"``).

    Also resolves through wrappers that forward attributes (``torch.compile``'s OptimizedModule).
    Raises ModelLoadError naming the closest matches and the relevant layers of the model.
    """
    try:
        return model.get_submodule(name)
    except AttributeError:
        raise ModelLoadError(_not_found(model, name)) from None


def _not_found(model: nn.Module, name: str) -> str:
    all_names = [n for n, _ in model.named_modules() if n]
    close = difflib.get_close_matches(name, all_names, n=3)
    relevant = _relevant_names(model)
    listed = ", ".join(relevant[:_MAX_LISTED])
    more = f" ... and {len(relevant) - _MAX_LISTED} more" if len(relevant) > _MAX_LISTED else ""
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    return (
        f"layer {name!r} not found in {type(model).__name__}.{hint} Available layers: "
        f"{listed}{more}. Pass a dotted name as listed by model.named_modules()."
    )
