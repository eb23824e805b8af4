"""CamEngine: ONE forward and ONE backward per batch for every gradient method together.

The parameters are frozen and a forward hook hands the target layer's output on as a leaf that
requires grad, so autograd records only the part of the network after the target layer and no
weight gradient is ever computed; ``torch.autograd.grad`` then returns G = d(score)/dA for the
whole batch at once (samples are independent in eval mode). The methods are pure functions of
(A, G) in ``auditor.cams.methods``,
described in the registry ``auditor.map_methods``.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, ExitStack, contextmanager, nullcontext
from dataclasses import dataclass
from functools import partial
from types import TracebackType

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from auditor.cams.methods import HeadWeights, one_pass_map
from auditor.errors import AuditorError, UsageError
from auditor.map_methods import METHODS, validate_one_pass
from auditor.models.layers import find_target_layer, get_module

logger = logging.getLogger(__name__)

Targets = Tensor | Callable[[Tensor], Tensor] | None
"""LongTensor [B] of classes, None (the predicted class), or logits [B, C] -> scores [B]."""

# Relative tolerance when checking that a Linear's input is the spatial mean of the target
# layer (CAM's GAP+linear head); under autocast (bfloat16: ~3 significant digits) a looser one.
_GAP_RTOL = 1e-4
_GAP_RTOL_AUTOCAST = 3e-2


@dataclass
class CamOutput:
    """What one engine call returns.

    Attributes:
        maps: method name -> float32 [B, h, w], >= 0, unnormalised, at the grid of the target
            layer (the largest grid when several layers are fused).
        logits: float32 [B, C].
        targets: long [B], the explained class of each sample. For a callable target it is
            the argmax class of the logits (the callable's score itself is what was explained).
        layers: the target layers used, by dotted name.
    """

    maps: dict[str, Tensor]
    logits: Tensor
    targets: Tensor
    layers: list[str]


def warn_train_mode(model: nn.Module) -> None:
    """Warn (and log) that a model in train mode is being switched to eval mode."""
    message = (
        f"{type(model).__name__} was in train mode; switched to eval mode for the maps "
        "(batch-norm/dropout in train mode would make the maps depend on the batch)."
    )
    warnings.warn(message, UserWarning, stacklevel=4)
    logger.warning(message)


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Run ``model`` in eval mode (warning if it was training); restore each module's mode.

    Batch-norm in train mode would mix the samples of a batch and update running statistics,
    so no map is ever computed in train mode.
    """
    modes = [(module, module.training) for module in model.modules()]
    if any(training for _, training in modes):
        warn_train_mode(model)
    model.eval()
    try:
        yield model
    finally:
        for module, training in modes:
            module.training = training


@contextmanager
def frozen_parameters(model: nn.Module) -> Iterator[nn.Module]:
    """Set requires_grad False on every parameter; restore the original flags after."""
    flags = [(param, param.requires_grad) for param in model.parameters()]
    for param, _ in flags:
        param.requires_grad_(False)
    try:
        yield model
    finally:
        for param, requires_grad in flags:
            param.requires_grad_(requires_grad)


def resolve_targets(logits: Tensor, targets: Tensor | None) -> Tensor:
    """The explained class per sample: ``targets`` checked, or the argmax of logits [B, C].

    A target of -1 explains that sample's argmax class (a multi-label image with no finding
    shares its batch with labelled ones).
    """
    batch, classes = logits.shape
    if targets is None:
        return logits.argmax(dim=1)
    if not isinstance(targets, Tensor) or targets.is_floating_point() or targets.is_complex():
        raise UsageError(
            f"targets must be an integer tensor [B] of class indices (or None), got "
            f"{type(targets).__name__} {getattr(targets, 'dtype', '')}."
        )
    if targets.shape != (batch,):
        raise UsageError(
            f"targets has shape {tuple(targets.shape)}; expected ({batch},), one class per image."
        )
    targets = targets.to(device=logits.device, dtype=torch.long)
    if batch and (int(targets.min()) < -1 or int(targets.max()) >= classes):
        raise UsageError(
            f"target classes must lie in [0, {classes}) or be -1 (the predicted class); got "
            f"values from {int(targets.min())} to {int(targets.max())}."
        )
    return torch.where(targets >= 0, targets, logits.argmax(dim=1))


def fuse_layer_maps(maps: Sequence[Tensor]) -> Tensor:
    """Average maps [B, h_l, w_l] of several layers on the largest grid (bilinear upsampling)."""
    if len(maps) == 1:
        return maps[0]
    size = max((m.shape[-2:] for m in maps), key=lambda s: s[0] * s[1])
    resized = [
        m if m.shape[-2:] == size
        else F.interpolate(m[:, None], size=tuple(size), mode="bilinear", align_corners=False)[:, 0]
        for m in maps
    ]
    return torch.stack(resized).mean(dim=0)


class CamEngine(AbstractContextManager["CamEngine"]):
    """Grad-CAM family maps for a batch from one forward and one backward pass.

    Use as a context manager (hooks, frozen parameters and eval mode are undone on exit, also
    after an exception), or call ``close()`` yourself::

        with CamEngine(model, "layer4", methods=("gradcam", "layercam")) as engine:
            out = engine(images, targets)   # out.maps["gradcam"]: float32 [B, h, w]

    Args:
        model: the classifier; images -> logits [B, C].
        target_layer: dotted name, several names (maps averaged on the largest grid), or None
            for the last module that outputs a 4-D feature map (found by one extra dry
            forward at the first call).
        methods: names from ``auditor.map_methods.ONE_PASS_METHODS``.
        amp_dtype: e.g. torch.bfloat16 to run the forward under torch.autocast; activations
            and gradients are cast to float32 before the methods.
        reshape: maps a layer output to [B, K, h, w], e.g. ``vit_reshape`` for token outputs.
        head: the GAP+linear head for 'cam'; found automatically when None.
    """

    def __init__(
        self,
        model: nn.Module,
        target_layer: str | Sequence[str] | None = None,
        methods: Sequence[str] = ("gradcam",),
        amp_dtype: torch.dtype | None = None,
        reshape: Callable[[Tensor], Tensor] | None = None,
        head: HeadWeights | None = None,
    ) -> None:
        self.model = model
        self.methods = validate_one_pass(methods)
        self.amp_dtype = amp_dtype
        self.reshape = reshape
        self._needs_grad = any(METHODS[name].needs_gradients for name in self.methods)
        self._needs_head = any(METHODS[name].needs_head for name in self.methods)
        self._given_head = head
        self._heads: dict[str, HeadWeights] = {}
        self.layers: list[str] | None = None
        if target_layer is not None:
            names = [target_layer] if isinstance(target_layer, str) else list(target_layer)
            if not names:
                raise UsageError("target_layer is an empty list; give at least one layer name.")
            for name in names:
                get_module(model, name)
            self.layers = names
        self._stack: ExitStack | None = None
        self._capturing = False
        self._activations: dict[str, Tensor] = {}
        self._linear_inputs: dict[str, tuple[nn.Linear, Tensor]] = {}

    # -- lifecycle -----------------------------------------------------------------------------

    def _open(self, input_shape: tuple[int, ...]) -> None:
        if self._stack is not None:
            return
        if self.layers is None:
            self.layers = [find_target_layer(self.model, (1, *input_shape[1:]), self.reshape)]
        stack = ExitStack()
        try:
            stack.enter_context(eval_mode(self.model))
            stack.enter_context(frozen_parameters(self.model))
            for name in self.layers:
                handle = get_module(self.model, name).register_forward_hook(
                    partial(self._layer_hook, name)
                )
                stack.callback(handle.remove)
            if self._needs_head and self._given_head is None:
                for name, module in self.model.named_modules():
                    if isinstance(module, nn.Linear):
                        handle = module.register_forward_pre_hook(partial(self._linear_hook, name))
                        stack.callback(handle.remove)
        except BaseException:
            stack.close()
            raise
        self._stack = stack

    def close(self) -> None:
        """Remove every hook, restore requires_grad flags and module modes. Idempotent."""
        if self._stack is not None:
            stack, self._stack = self._stack, None
            stack.close()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # -- hooks ---------------------------------------------------------------------------------

    def _layer_hook(self, name: str, module: nn.Module, inputs: object, output: object) -> object:
        if not self._capturing:
            return None
        if not isinstance(output, Tensor):
            raise AuditorError(
                f"target layer {name!r} returns {type(output).__name__}, not a tensor; choose a "
                "layer whose output is a feature map (or tokens, with "
                "reshape=vit_reshape_for(model, (H, W)); --reshape vit)."
            )
        if name in self._activations:
            raise AuditorError(
                f"target layer {name!r} ran more than once in one forward pass (a shared "
                "module); choose a module that runs once, e.g. its enclosing block."
            )
        if not (self._needs_grad and torch.is_grad_enabled()):
            self._activations[name] = output.detach()
        elif output.requires_grad:
            # Downstream of an earlier target layer's leaf: keep the graph whole, so that
            # layer's gradient still flows through this one.
            self._activations[name] = output
        else:
            output = output.detach().requires_grad_()
            self._activations[name] = output
        # A clone goes on, so an in-place op after the layer (ReLU(inplace=True)) can neither
        # fail on the leaf nor overwrite the activations the maps are made of.
        return output.clone()

    def _linear_hook(self, name: str, module: nn.Module, inputs: tuple[Tensor, ...]) -> None:
        if self._capturing and inputs and isinstance(inputs[0], Tensor):
            self._linear_inputs.pop(name, None)
            self._linear_inputs[name] = (module, inputs[0].detach())

    # -- the pass ------------------------------------------------------------------------------

    def _autocast(self, device: torch.device) -> AbstractContextManager[object]:
        if self.amp_dtype is None:
            return nullcontext()
        return torch.autocast(device_type=device.type, dtype=self.amp_dtype)

    def __call__(self, images: Tensor, targets: Targets = None) -> CamOutput:
        """Maps for a batch.

        Args:
            images: float [B, 3, H, W], normalised, on the model's device.
            targets: LongTensor [B] (-1: that sample's predicted class), None (the predicted
                class of every sample), or a callable
                logits [B, C] -> scores [B] (e.g. a multi-label sum); each score must depend
                on its own sample only. The score explained is the pre-softmax logit.

        Returns:
            CamOutput with one float32 [B, h, w] map per method.
        """
        if not isinstance(images, Tensor) or images.dim() != 4:
            raise UsageError(
                f"images must be a float tensor [B, C, H, W]; got "
                f"{getattr(images, 'shape', type(images).__name__)}."
            )
        if torch.is_inference_mode_enabled():
            raise UsageError(
                "CamEngine needs autograd: call it outside torch.inference_mode() "
                "(it freezes the parameters itself, so no weight gradient is computed)."
            )
        self._open(tuple(images.shape))
        assert self.layers is not None  # set by _open
        if self.model.training:
            # Switched back to train mode while the engine was open; close() restores it.
            warn_train_mode(self.model)
            self.model.eval()
        # Detached, so autograd starts at the target layer even if the caller's images
        # require grad.
        images = images.detach()
        self._activations, self._linear_inputs = {}, {}
        self._capturing = True
        try:
            grad_mode = torch.enable_grad() if self._needs_grad else torch.no_grad()
            with grad_mode, self._autocast(images.device):
                logits = self.model(images)
        finally:
            self._capturing = False
        activations, linear_inputs = self._activations, self._linear_inputs
        self._activations, self._linear_inputs = {}, {}
        if not isinstance(logits, Tensor) or logits.dim() != 2:
            raise AuditorError(
                f"the model must return logits [B, C]; got "
                f"{getattr(logits, 'shape', type(logits).__name__)}."
            )
        missing = [name for name in self.layers if name not in activations]
        if missing:
            raise AuditorError(
                f"target layer(s) {missing} did not run in the forward pass; choose layers the "
                "model actually calls."
            )
        logits32 = logits.float()
        scores = None
        if callable(targets) and not isinstance(targets, Tensor):
            scores = targets(logits32)
            if not isinstance(scores, Tensor) or scores.shape != (logits.shape[0],):
                raise UsageError(
                    f"a callable target must map logits [B, C] to scores [B]; got "
                    f"{getattr(scores, 'shape', type(scores).__name__)}."
                )
            explained = logits32.argmax(dim=1)
        else:
            explained = resolve_targets(logits32, targets)
            scores = logits32.gather(1, explained[:, None])[:, 0]

        gradients = self._gradients(scores, activations) if self._needs_grad else {}
        per_layer: dict[str, list[Tensor]] = {name: [] for name in self.methods}
        for layer in self.layers:
            acts = self._as_feature_map(layer, activations[layer].detach().float())
            grads = gradients.get(layer)
            grads = None if grads is None else self._as_feature_map(layer, grads.float())
            head = self._head(layer, acts, linear_inputs) if self._needs_head else None
            for name in self.methods:
                per_layer[name].append(one_pass_map(name, acts, grads, explained, head))
        maps = {name: fuse_layer_maps(layer_maps) for name, layer_maps in per_layer.items()}
        return CamOutput(maps, logits32.detach(), explained, list(self.layers))

    def _gradients(self, scores: Tensor, activations: dict[str, Tensor]) -> dict[str, Tensor]:
        assert self.layers is not None
        if not scores.requires_grad:
            raise AuditorError(
                f"the target score does not depend differentiably on layer(s) {self.layers} "
                "(detached or non-differentiable path to the logits); choose an earlier layer "
                "or an activation-only method such as 'eigencam'."
            )
        leaves = [activations[name] for name in self.layers]
        grads = torch.autograd.grad(scores.sum(), leaves, allow_unused=True)
        unused = [name for name, grad in zip(self.layers, grads, strict=True) if grad is None]
        if unused:
            raise AuditorError(
                f"the logits do not depend on target layer(s) {unused}; choose a layer on the "
                "path from the input to the logits."
            )
        return dict(zip(self.layers, grads, strict=True))

    def _as_feature_map(self, layer: str, tensor: Tensor) -> Tensor:
        if self.reshape is not None:
            tensor = self.reshape(tensor)
        if tensor.dim() != 4:
            raise AuditorError(
                f"target layer {layer!r} gives a {tensor.dim()}-D output of shape "
                f"{tuple(tensor.shape)}; the methods need [B, K, h, w]. For token outputs pass "
                "reshape=vit_reshape_for(model, (H, W)) (--reshape vit)."
            )
        return tensor

    def _head(
        self, layer: str, acts: Tensor, linear_inputs: dict[str, tuple[nn.Linear, Tensor]]
    ) -> HeadWeights:
        """The GAP+linear head on ``layer``: the last Linear whose input is mean_ij(A)."""
        if self._given_head is not None:
            return self._given_head
        if layer in self._heads:
            return self._heads[layer]
        pooled = acts.mean(dim=(2, 3))
        channels = acts.shape[1]
        seen = []
        rtol = _GAP_RTOL if self.amp_dtype is None else _GAP_RTOL_AUTOCAST
        for name, (module, features) in reversed(linear_inputs.items()):
            if module.in_features != channels:
                continue
            seen.append(name)
            if features.shape != pooled.shape:
                continue
            error = (features.float() - pooled).norm() / pooled.norm().clamp_min(1e-12)
            if error <= rtol:
                bias = None if module.bias is None else module.bias.detach().float()
                head = HeadWeights(module.weight.detach().float(), bias)
                self._heads[layer] = head
                return head
        reason = (
            f"the nn.Linear layer(s) {seen} with in_features={channels} do not take the spatial "
            f"mean of {layer!r} as input"
            if seen
            else f"no nn.Linear with in_features={channels} (the channels of {layer!r}) runs "
            "after it"
        )
        raise AuditorError(
            f"method 'cam' needs a global-average-pooling + linear head on the target layer: "
            f"{reason}. Use 'gradcam' (equal to CAM on such heads), pick the layer that feeds "
            "the pooled head, or pass head=HeadWeights(weight, bias)."
        )
