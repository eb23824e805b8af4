"""Target layers: discovery by a dry forward (for transformers, a forward and a backward), and
lookup by dotted name."""

from __future__ import annotations

import difflib
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from auditor.errors import AuditorError, ModelLoadError, TokenGridError

# How many layer names an error message lists before it says "... and N more".
_MAX_LISTED = 15
_NORMS = (nn.LayerNorm, nn.RMSNorm)

log = logging.getLogger(__name__)


def _dummy_input(model: nn.Module, input_shape: tuple[int, ...]) -> Tensor:
    """Zeros of ``input_shape`` on the model's device, in its floating dtype."""
    reference = next(
        (t for t in (*model.parameters(), *model.buffers()) if t.is_floating_point()), None
    )
    if reference is None:
        return torch.zeros(input_shape)
    return torch.zeros(input_shape, device=reference.device, dtype=reference.dtype)


def plausible_map(size: tuple[int, int], input_size: tuple[int, int]) -> bool:
    """Whether (h, w) can be the spatial size of a feature map of an (H, W) input: more than
    one position, no larger than the input, and the input's aspect ratio within a factor of 2.

    This rejects the channels-last maps [B, h, w, C] of a Swin (read as h = w_true, w = C) and
    attention tensors [B, heads, N, d], which are 4-D but not maps.
    """
    (h, w), (height, width) = size, input_size
    if h * w <= 1 or h > height or w > width:
        return False
    stretch = (h / w) / (height / width)
    return 0.5 <= stretch <= 2.0


def feature_map_layers(
    model: nn.Module, input_shape: tuple[int, ...] = (1, 3, 224, 224)
) -> list[tuple[str, tuple[int, ...]]]:
    """Modules whose output is a 4-D feature map [B, K, h, w] (``plausible_map``).

    One forward of a zero batch of ``input_shape`` (N, C, H, W), without gradients and with
    every module in eval mode; the hooks are removed and each module's mode restored after.

    Returns:
        (dotted name, output shape) pairs in the order the modules finished their forward
        (a container finishes after its children); a module run several times is listed at
        its last run.
    """
    finished: dict[str, tuple[int, ...]] = {}
    input_size = (input_shape[2], input_shape[3])

    def record(name: str, output: object) -> None:
        is_map = isinstance(output, Tensor) and output.dim() == 4
        if is_map and plausible_map((output.shape[2], output.shape[3]), input_size):
            finished.pop(name, None)
            finished[name] = tuple(output.shape)

    with _hooked(model, _produces, record), torch.no_grad():
        model(_dummy_input(model, input_shape))
    return list(finished.items())


def _produces(name: str, module: nn.Module) -> bool:
    """Modules whose output can be a feature map: not the root, not a pass-through (identity,
    dropout in eval mode) that hands on whatever the module before it made, and not a softmax
    (probabilities; in a Swin, attention matrices [B, heads, N, N])."""
    not_features = (nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d,
                    nn.AlphaDropout, nn.Softmax)
    return bool(name) and not isinstance(module, not_features)


@contextmanager
def _hooked(model: nn.Module, select: Callable[[str, nn.Module], bool],
            record: Callable[[str, object], None]) -> Iterator[None]:
    """Forward hooks calling ``record(name, output)`` on the selected modules, with the model
    in eval mode; on exit the hooks are removed and every module's mode restored."""
    modes = [(module, module.training) for module in model.modules()]
    handles = [
        module.register_forward_hook(lambda _m, _i, out, name=name: record(name, out))
        for name, module in model.named_modules()
        if select(name, module)
    ]
    try:
        model.eval()
        yield
    finally:
        for handle in handles:
            handle.remove()
        for module, training in modes:
            module.training = training


def find_target_layer(
    model: nn.Module,
    input_shape: tuple[int, ...] = (1, 3, 224, 224),
    reshape: Callable[[Tensor], Tensor] | None = None,
) -> str:
    """Dotted name of the default target layer (``default_target_layer``); its warning, if any,
    is logged."""
    name, warning = default_target_layer(model, input_shape, reshape)
    if warning:
        log.warning("%s", warning)
    return name


def default_target_layer(
    model: nn.Module,
    input_shape: tuple[int, ...] = (1, 3, 224, 224),
    reshape: Callable[[Tensor], Tensor] | None = None,
) -> tuple[str, str | None]:
    """(dotted name of the default target layer, a warning for the user or None).

    Without ``reshape``: the LAST module whose output is a 4-D feature map (``feature_map_layers``;
    for a torchvision ResNet, ``"layer4"``), with ``target_layer_warning`` when transformer
    layers come after it (a ViT without ``--reshape vit``). With ``reshape`` (``vit_reshape``,
    ``nhwc_reshape``): ``find_reshaped_layer``, no warning. Raises ModelLoadError when there is
    no such layer.
    """
    if reshape is not None:
        return find_reshaped_layer(model, input_shape, reshape), None
    layers = feature_map_layers(model, input_shape)
    if not layers:
        raise ModelLoadError(
            f"no module of {type(model).__name__} outputs a 4-D feature map [B, K, h, w] for "
            f"input shape {tuple(input_shape)}; pass the target layer by name, and for a "
            "vision transformer --reshape vit (tokens) or --reshape nhwc (Swin)."
        )
    chosen = layers[-1][0]
    return chosen, target_layer_warning(model, input_shape, chosen)


def target_layer_warning(model: nn.Module, input_shape: tuple[int, ...], layer: str) -> str | None:
    """A sentence for the user when normalised transformer outputs (tokens [B, N, C] or
    channels-last maps [B, h, w, C]) come after ``layer``: the model is probably a vision
    transformer audited without ``--reshape``, at a layer (e.g. the patch embedding) whose maps
    say little. None otherwise."""
    if not _later_norm_outputs(model, input_shape, layer):
        return None
    return (f"the target layer {layer} is followed by transformer layers (token or "
            "channels-last outputs), so its maps may say little about the prediction: for a "
            "vision transformer pass --reshape vit, for a Swin --reshape nhwc, and the layer is "
            "chosen among those")


def _later_norm_outputs(model: nn.Module, input_shape: tuple[int, ...], chosen: str) -> bool:
    """Whether a LayerNorm/RMSNorm finishes after module ``chosen`` with an output that looks
    like transformer tokens [B, N > 1, C] or a channels-last map [B, h, w, C]."""
    order: list[str] = []
    input_size = (input_shape[2], input_shape[3])

    def record(name: str, output: object) -> None:
        if not isinstance(output, Tensor):
            return
        tokens = output.dim() == 3 and output.shape[1] > 1
        channels_last = output.dim() == 4 and plausible_map(tuple(output.shape[1:3]), input_size)
        if name == chosen or tokens or channels_last:
            order.append(name)

    def select(name: str, module: nn.Module) -> bool:
        return name == chosen or _is_norm(name, module)

    with _hooked(model, select, record), torch.no_grad():
        model(_dummy_input(model, input_shape))
    last = max((i for i, name in enumerate(order) if name == chosen), default=len(order))
    return any(name != chosen for name in order[last + 1:])


def _is_norm(_name: str, module: nn.Module) -> bool:
    return isinstance(module, _NORMS)


def find_reshaped_layer(
    model: nn.Module,
    input_shape: tuple[int, ...],
    reshape: Callable[[Tensor], Tensor],
) -> str:
    """Dotted name of the last normalisation layer (LayerNorm, RMSNorm) whose output
    ``reshape`` lays out as a feature map (``plausible_map``) and whose map positions get
    gradient from the top logit.

    One forward and one backward of a seeded random batch of ``input_shape`` in eval mode. In a
    class-token ViT only the class token of the last block's output reaches the head, so this
    is the last block's first norm (torchvision ``encoder.layers.encoder_layer_{L-1}.ln_1``,
    timm ``blocks.{L-1}.norm1``); in an average-pooled ViT or a Swin it is a later norm.
    """
    input_size = (input_shape[2], input_shape[3])
    outputs: dict[str, Tensor] = {}

    def record(name: str, output: object) -> None:
        if isinstance(output, Tensor) and output.requires_grad:
            outputs.pop(name, None)
            outputs[name] = output

    reference = _dummy_input(model, input_shape)
    generator = torch.Generator(device=reference.device).manual_seed(0)
    probe = torch.randn(input_shape, generator=generator, device=reference.device,
                        dtype=reference.dtype).requires_grad_(True)
    with _hooked(model, _is_norm, record), torch.enable_grad():
        logits = model(probe)
    names = list(outputs)
    grads = torch.autograd.grad(logits.max(dim=1).values.sum(), [outputs[n] for n in names],
                                allow_unused=True) if names else []
    reaching = [name for name, grad in zip(names, grads, strict=True)
                if grad is not None and _map_gradient(grad, reshape, input_size)]
    if not reaching:
        raise ModelLoadError(
            f"no LayerNorm of {type(model).__name__} gives an output that the --reshape option "
            "lays out as a feature map whose positions (patch tokens) the prediction depends "
            "on; pass the target layer by name (a block's norm layer) and check --reshape."
        )
    return reaching[-1]


def _map_gradient(grad: Tensor, reshape: Callable[[Tensor], Tensor],
                  input_size: tuple[int, int]) -> bool:
    """True when ``reshape`` lays the gradient out as a plausible [B, K, h, w] map and any of
    it is non-zero."""
    try:
        laid_out = reshape(grad)
    except TokenGridError:
        raise  # the user must say the grid: every token layer of the model has the same count
    except AuditorError:
        return False
    return (laid_out.dim() == 4 and plausible_map(tuple(laid_out.shape[2:]), input_size)
            and bool(laid_out.abs().sum() > 0))


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
