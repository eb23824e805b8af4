"""Target layers: discovery by one dry forward, and lookup by dotted name."""

from __future__ import annotations

import difflib

import torch
from torch import Tensor, nn

from auditor.errors import ModelLoadError

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


def find_target_layer(model: nn.Module, input_shape: tuple[int, ...] = (1, 3, 224, 224)) -> str:
    """Dotted name of the LAST module whose output is a 4-D feature map with h * w > 1.

    For a torchvision ResNet this is ``"layer4"``. Raises ModelLoadError when no module outputs
    such a map (e.g. a ViT, whose tokens need a layer name and ``reshape=vit_reshape``).
    """
    layers = feature_map_layers(model, input_shape)
    if not layers:
        raise ModelLoadError(
            f"no module of {type(model).__name__} outputs a 4-D feature map [B, K, h, w] with "
            f"h * w > 1 for input shape {tuple(input_shape)}; pass the target layer by name "
            "(for a vision transformer: a block's norm layer, with reshape=vit_reshape)."
        )
    return layers[-1][0]


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
