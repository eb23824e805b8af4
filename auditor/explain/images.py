"""Explain image files: decode, batch, compute every requested map (``auditor.cams.compute``,
the one dispatcher from method names to maps) and fill one ``Explanation`` per file."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from auditor.cams.compute import compute_maps, default_occlusion_patch
from auditor.cams.engine import eval_mode
from auditor.config import IMAGENET_MEAN, IMAGENET_STD
from auditor.data import decode_image
from auditor.data.dataset import resize_image
from auditor.errors import DecodeError, UsageError
from auditor.explain.records import Explanation, map_peak
from auditor.map_methods import needs_target_layer, validate_names
from auditor.models.layers import find_target_layer
from auditor.runtime import normalise_images


def resolve_target(
    target: int | str | None, classes: Sequence[str] | None, num_classes: int
) -> int | None:
    """A --target value as a class index: an int, a digit string, or a class name.

    None stays None (each image's predicted class). UsageError when the name is unknown, no
    class names were given for a name, or the index is outside [0, num_classes).
    """
    if target is None:
        return None
    if isinstance(target, str) and not target.strip().lstrip("-").isdigit():
        if classes is None:
            raise UsageError(
                f"--target {target!r} is a class name, but no class names are known; pass "
                "--classes a,b,... in the model's output order, or give the class index."
            )
        if target not in classes:
            raise UsageError(
                f"--target {target!r} is not one of the classes {list(classes)}; give a listed "
                "name or a class index."
            )
        return list(classes).index(target)
    index = int(target)
    if not 0 <= index < num_classes:
        raise UsageError(
            f"--target {index} is outside the model's classes [0, {num_classes}); give an index "
            f"from 0 to {num_classes - 1}."
        )
    return index


def _model_device(model: nn.Module) -> torch.device:
    reference = next((t for t in (*model.parameters(), *model.buffers())), None)
    return reference.device if reference is not None else torch.device("cpu")


def _read_input(path: str, image_size: tuple[int, int]) -> np.ndarray:
    return resize_image(decode_image(path).rgb, image_size)


def explain_images(
    paths: Sequence[str | Path],
    model: nn.Module,
    methods: Sequence[str] = ("gradcam",),
    target: int | str | None = None,
    classes: Sequence[str] | None = None,
    target_layer: str | Sequence[str] | None = None,
    image_size: tuple[int, int] = (224, 224),
    mean: tuple[float, float, float] = IMAGENET_MEAN,
    std: tuple[float, float, float] = IMAGENET_STD,
    batch_size: int = 16,
    occlusion_patch: int | None = None,
    scorecam_channels: int | None = None,
    reshape: Callable[[Tensor], Tensor] | None = None,
) -> list[Explanation]:
    """Explain image files with every requested method, in batches on the model's device.

    Args:
        paths: image files; one that cannot be decoded gives an Explanation with ``error``.
        model: images -> logits [B, C] (it is not moved: put it on the device first).
        methods: names from ``auditor.map_methods.METHODS``.
        target: class index or name (names need ``classes``); None: each predicted class.
        classes: class names in the model's output order (must match C).
        target_layer, occlusion_patch, scorecam_channels, reshape: see
            ``auditor.cams.compute.compute_maps``.
        image_size: (H, W) model input; images are resized without cropping.
        mean, std: normalisation, RGB in [0, 1] units.
        batch_size: images per batch.

    Returns:
        One Explanation per path, in order.
    """
    names = validate_names(methods)
    if batch_size < 1:
        raise UsageError(f"batch_size must be at least 1, got {batch_size}.")
    size = (int(image_size[0]), int(image_size[1]))
    device = _model_device(model)
    class_list = list(classes) if classes is not None else None
    results: list[Explanation] = []
    patch = occlusion_patch or default_occlusion_patch(size)
    if target_layer is None and needs_target_layer(names):
        target_layer = find_target_layer(model, (1, 3, *size), reshape)
    for start in range(0, len(paths), batch_size):
        chunk = [str(p) for p in paths[start : start + batch_size]]
        inputs: dict[int, np.ndarray] = {}
        records = [Explanation(path=p, classes=class_list) for p in chunk]
        for i, path in enumerate(chunk):
            try:
                inputs[i] = _read_input(path, size)
            except DecodeError as exc:
                records[i].error = str(exc)
        if inputs:
            _explain_batch(model, device, records, inputs, names, target, class_list,
                           target_layer, size, mean, std, patch, scorecam_channels, reshape)
        results.extend(records)
    return results


def _explain_batch(
    model: nn.Module,
    device: torch.device,
    records: list[Explanation],
    inputs: dict[int, np.ndarray],
    names: tuple[str, ...],
    target: int | str | None,
    classes: list[str] | None,
    target_layer: str | Sequence[str] | None,
    size: tuple[int, int],
    mean: tuple[float, float, float],
    std: tuple[float, float, float],
    patch: int,
    scorecam_channels: int | None,
    reshape: Callable[[Tensor], Tensor] | None,
) -> None:
    """Fill the records at ``inputs``' positions with probabilities, targets, maps, peaks."""
    positions = sorted(inputs)
    stacked = np.stack([inputs[i] for i in positions])
    uint8 = torch.from_numpy(np.ascontiguousarray(stacked.transpose(0, 3, 1, 2)))
    images = normalise_images(uint8, mean, std, device)
    with eval_mode(model), torch.no_grad():
        logits = model(images).float()
    num_classes = logits.shape[1]
    if classes is not None and len(classes) != num_classes:
        raise UsageError(
            f"--classes names {len(classes)} classes but the model outputs {num_classes}; "
            "give one name per output, in the model's order."
        )
    fixed = resolve_target(target, classes, num_classes)
    predicted = logits.argmax(dim=1)
    targets = predicted if fixed is None else torch.full_like(predicted, fixed)
    maps = compute_maps(model, images, targets, names, target_layer, patch, scorecam_channels,
                        reshape)
    probabilities = torch.softmax(logits, dim=1).cpu().numpy()
    host_maps = {name: m.cpu().numpy().astype(np.float32) for name, m in maps.items()}
    for row, position in enumerate(positions):
        record = records[position]
        record.image = inputs[position]
        record.probabilities = probabilities[row]
        record.predicted = int(predicted[row])
        record.target = int(targets[row])
        record.maps = {name: host_maps[name][row] for name in names}
        record.peaks = {name: map_peak(record.maps[name], name, size, patch) for name in names}
