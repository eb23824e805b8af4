"""``compute_maps``: any registered map methods for one batch, by name.

The one dispatcher from method names (``auditor.map_methods``) to maps [B, h, w], used by
``auditor explain``, the sanity check and the report's suspect maps. The one-pass methods
share ONE ``CamEngine`` forward + backward; each separate-pass method runs through its
function below, all of one call shape: ``(model, images, targets, layer, options) -> maps``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from torch import Tensor, nn

from auditor.cams.engine import CamEngine
from auditor.cams.guided import guided_backprop, guided_gradcam
from auditor.cams.perturbation import occlusion, scorecam
from auditor.errors import UsageError
from auditor.map_methods import METHODS, needs_target_layer, validate_names
from auditor.models.layers import find_target_layer


@dataclass(frozen=True)
class MapOptions:
    """Settings of the separate-pass methods.

    Attributes:
        occlusion_patch: occlusion patch side in pixels (stride = patch); None: an eighth of
            the shorter image side.
        scorecam_channels: Score-CAM keeps the k most active channels; None keeps all.
        reshape: token output -> [B, K, h, w] (vision transformers).
        batch_size: perturbed images per forward of Score-CAM and occlusion.
    """

    occlusion_patch: int | None = None
    scorecam_channels: int | None = None
    reshape: Callable[[Tensor], Tensor] | None = None
    batch_size: int = 64


def default_occlusion_patch(image_size: tuple[int, int]) -> int:
    """Occlusion patch side in pixels: an eighth of the shorter image side (at least 1)."""
    return max(1, min(image_size) // 8)


def scorecam_map(
    model: nn.Module, images: Tensor, targets: Tensor, layer: str | None, options: MapOptions
) -> Tensor:
    """Score-CAM on ``layer``: [B, h, w] at the layer's grid."""
    assert layer is not None  # the dispatcher finds one for methods that need a layer
    return scorecam(model, images, targets, layer, max_channels=options.scorecam_channels,
                    batch_size=options.batch_size, reshape=options.reshape)


def occlusion_map(
    model: nn.Module, images: Tensor, targets: Tensor, layer: str | None, options: MapOptions
) -> Tensor:
    """Occlusion: the signed probability drop per patch, [B, h, w] at the patch grid."""
    patch = options.occlusion_patch or default_occlusion_patch(tuple(images.shape[-2:]))
    return occlusion(model, images, targets, patch=patch, batch_size=options.batch_size)


def guided_backprop_map(
    model: nn.Module, images: Tensor, targets: Tensor, layer: str | None, options: MapOptions
) -> Tensor:
    """Guided backprop: max over colour channels of |gradient|, [B, H, W] input pixels."""
    return guided_backprop(model, images, targets).abs().amax(dim=1)


def guided_gradcam_map(
    model: nn.Module, images: Tensor, targets: Tensor, layer: str | None, options: MapOptions
) -> Tensor:
    """Guided Grad-CAM: max over colour channels of |value|, [B, H, W] input pixels."""
    return guided_gradcam(model, images, targets, layer, reshape=options.reshape).abs().amax(dim=1)


def _single_layer(method: str, target_layer: str | Sequence[str] | None) -> str | None:
    if target_layer is None or isinstance(target_layer, str):
        return target_layer
    layers = list(target_layer)
    if len(layers) != 1:
        raise UsageError(
            f"method {method!r} takes one target layer, got {layers}; pass a single "
            "--target-layer (several layers are averaged only by the one-pass methods)."
        )
    return layers[0]


def compute_maps(
    model: nn.Module,
    images: Tensor,
    targets: Tensor,
    methods: Sequence[str],
    target_layer: str | Sequence[str] | None = None,
    occlusion_patch: int | None = None,
    scorecam_channels: int | None = None,
    reshape: Callable[[Tensor], Tensor] | None = None,
    batch_size: int = 64,
) -> dict[str, Tensor]:
    """Maps of every requested method for one batch.

    Args:
        model: images -> logits [B, C].
        images: float [B, 3, H, W], normalised, on the model's device.
        targets: long [B], the class each map explains (the same for every method).
        methods: names from ``auditor.map_methods.METHODS``.
        target_layer: dotted name(s) for the CAM methods; None finds the last feature map.
        occlusion_patch, scorecam_channels, reshape, batch_size: see ``MapOptions``.

    Returns:
        method -> float32 [B, h, w] at the method's native resolution: the target layer's grid
        for the CAM methods, the patch grid for occlusion (probability drop, signed), the input
        pixels for the guided methods (max over colour channels of |gradient|).
    """
    names = validate_names(methods)
    if target_layer is None and needs_target_layer(names):
        target_layer = find_target_layer(model, (1, *images.shape[1:]), reshape)
    options = MapOptions(occlusion_patch, scorecam_channels, reshape, batch_size)
    maps: dict[str, Tensor] = {}
    one_pass = [name for name in names if not METHODS[name].separate]
    if one_pass:
        with CamEngine(model, target_layer, methods=one_pass, reshape=reshape) as engine:
            maps.update(engine(images, targets).maps)
    for name in names:
        method = METHODS[name]
        if not method.separate:
            continue
        layer = _single_layer(name, target_layer) if method.single_layer else None
        maps[name] = method.function(model, images, targets, layer, options)
    return {name: maps[name].float() for name in names}
