"""`auditor explain`: every map method on a few images, side by side, with the raw maps.

``explain_images`` decodes image files, explains them in batches (maps from
``auditor.cams.compute.compute_maps``, the one dispatcher from method names to maps) and returns
plain ``Explanation`` records; ``write_explanations`` turns them into a PNG, one ``.npy`` per
method and a JSON per image.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch import Tensor, nn

from auditor.cams.compute import compute_maps, default_occlusion_patch
from auditor.cams.engine import eval_mode
from auditor.config import IMAGENET_MEAN, IMAGENET_STD
from auditor.data import decode_image
from auditor.data.dataset import resize_image
from auditor.errors import DecodeError, RunDirectoryError, UsageError
from auditor.map_methods import needs_target_layer, validate_names
from auditor.models.layers import find_target_layer
from auditor.report.figures import VIRIDIS, overlay
from auditor.runtime import normalise_images

# Height in pixels of the title strip above each panel and of the legend strip below.
_HEADER_H = 18
_LEGEND_BAR_H = 10
_LEGEND_TEXT_H = 14
_FONT = cv2.FONT_HERSHEY_SIMPLEX
_MIN_FONT_SCALE = 0.3
_TOP_K = 5


@dataclass(frozen=True)
class Peak:
    """Where a map is largest.

    Attributes:
        row, col: the map cell (0-based, at the map's native resolution).
        y, x: the cell's centre in model-input pixels (for occlusion: the patch centre).
        value: the map value there.
    """

    row: int
    col: int
    y: float
    x: float
    value: float


@dataclass
class Explanation:
    """The maps of one image file, or why there are none.

    Attributes:
        path: the image file.
        error: why it could not be explained; "" when it was.
        image: uint8 [H, W, 3] RGB, the model input (resized, not normalised); None on error.
        probabilities: float32 [C], softmax of the logits; None on error.
        predicted: argmax class; -1 on error.
        target: the explained class; -1 on error.
        maps: method -> float32 [h, w] at the method's native resolution.
        peaks: method -> Peak.
        classes: class names in the model's output order, or None.
    """

    path: str
    error: str = ""
    image: np.ndarray | None = None
    probabilities: np.ndarray | None = None
    predicted: int = -1
    target: int = -1
    maps: dict[str, np.ndarray] = field(default_factory=dict)
    peaks: dict[str, Peak] = field(default_factory=dict)
    classes: list[str] | None = None

    @property
    def ok(self) -> bool:
        """True when the image was read and explained."""
        return not self.error

    def class_name(self, index: int) -> str:
        """The name of class ``index`` when classes are known, else its index as text."""
        if self.classes is not None and 0 <= index < len(self.classes):
            return self.classes[index]
        return str(index)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: predicted and target class, top-5 probabilities, per-method shape/peak."""
        if not self.ok:
            return {"path": self.path, "status": "error", "error": self.error}
        assert self.probabilities is not None  # set together with ok
        assert self.image is not None
        order = np.argsort(-self.probabilities, kind="stable")[:_TOP_K]
        return {
            "path": self.path,
            "status": "ok",
            "input_size": [int(self.image.shape[0]), int(self.image.shape[1])],
            "predicted": {"index": self.predicted, "name": self.class_name(self.predicted)},
            "target": {"index": self.target, "name": self.class_name(self.target)},
            "top5": [
                {"index": int(k), "name": self.class_name(int(k)),
                 "probability": float(self.probabilities[k])}
                for k in order
            ],
            "methods": {
                name: {
                    "shape": [int(v) for v in cam.shape],
                    "peak": {"row": self.peaks[name].row, "col": self.peaks[name].col,
                             "y": self.peaks[name].y, "x": self.peaks[name].x,
                             "value": self.peaks[name].value},
                }
                for name, cam in self.maps.items()
            },
        }


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


def map_peak(cam: np.ndarray, method: str, input_size: tuple[int, int],
             occlusion_patch: int | None = None) -> Peak:
    """The largest value of a map [h, w] and where it lies, in map cells and input pixels.

    CAM grids cover the input uniformly, so cell (r, c) is centred at ((r + 0.5) H / h,
    (c + 0.5) W / w); an occlusion cell is a patch whose top-left is (r, c) * stride.
    """
    height, width = input_size
    flat = np.nan_to_num(cam, nan=-np.inf).argmax()
    row, col = (int(v) for v in np.unravel_index(flat, cam.shape))
    if method == "occlusion":
        patch = occlusion_patch or default_occlusion_patch(input_size)
        y, x = row * patch + patch / 2, col * patch + patch / 2
    else:
        y = (row + 0.5) * height / cam.shape[0]
        x = (col + 0.5) * width / cam.shape[1]
    return Peak(row, col, float(y), float(x), float(cam[row, col]))


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


def _fitted_text(text: str, width: int) -> tuple[str, float]:
    """``text`` and a Hershey font scale at which it fits ``width`` pixels (shortened if the
    smallest scale is still too wide)."""
    scale = 0.45
    while scale > _MIN_FONT_SCALE and cv2.getTextSize(text, _FONT, scale, 1)[0][0] > width - 4:
        scale -= 0.05
    while len(text) > 1 and cv2.getTextSize(text, _FONT, scale, 1)[0][0] > width - 4:
        text = text[:-1]
    return text, scale


def _titled(panel: np.ndarray, title: str) -> np.ndarray:
    """A panel uint8 [H, W, 3] with a white title strip of _HEADER_H pixels above it."""
    width = panel.shape[1]
    header = np.full((_HEADER_H, width, 3), 255, dtype=np.uint8)
    text, scale = _fitted_text(title, width)
    cv2.putText(header, text, (2, _HEADER_H - 5), _FONT, scale, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([header, panel], axis=0)


def _legend(width: int) -> np.ndarray:
    """The colour scale: viridis from 0 (left) to each map's own max (right), uint8 RGB."""
    ramp = VIRIDIS[np.round(np.linspace(0, 255, width)).astype(np.intp)]
    bar = np.repeat(ramp[None], _LEGEND_BAR_H, axis=0)
    text_row = np.full((_LEGEND_TEXT_H, width, 3), 255, dtype=np.uint8)
    cv2.putText(text_row, "0", (2, _LEGEND_TEXT_H - 3), _FONT, 0.35, (0, 0, 0), 1, cv2.LINE_AA)
    label, scale = _fitted_text("each map / its max = 1", max(width - 14, 8))
    label_w = cv2.getTextSize(label, _FONT, scale, 1)[0][0]
    cv2.putText(text_row, label, (max(12, width - label_w - 2), _LEGEND_TEXT_H - 3), _FONT,
                scale, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([bar, text_row], axis=0)


def explanation_figure(explanation: Explanation) -> np.ndarray:
    """The input and one overlay per method side by side, titled, over a colour-scale legend.

    Returns uint8 [_HEADER_H + H + legend, (1 + methods) * W, 3] RGB; each overlay shows
    its map divided by its own max (signed maps: negative parts shown as 0).
    """
    if not explanation.ok or explanation.image is None:
        raise UsageError(f"no figure for {explanation.path}: {explanation.error}")
    image = explanation.image
    panels = [_titled(image, "input")]
    panels += [_titled(overlay(image, cam), name) for name, cam in explanation.maps.items()]
    row = np.concatenate(panels, axis=1)
    return np.concatenate([row, _legend(row.shape[1])], axis=0)


def _unique_stems(explanations: Sequence[Explanation]) -> list[str]:
    """File stems, with -2, -3, ... added where two images share a name."""
    seen: dict[str, int] = {}
    stems = []
    for explanation in explanations:
        stem = Path(explanation.path).stem or "image"
        count = seen.get(stem, 0) + 1
        seen[stem] = count
        stems.append(stem if count == 1 else f"{stem}-{count}")
    return stems


def write_explanations(explanations: Sequence[Explanation], out: str | Path) -> list[Path]:
    """Write ``<stem>.png``, ``<stem>.<method>.npy`` and ``<stem>.json`` per explained image.

    Images that failed get no files. Returns the JSON paths written, in order.
    """
    out_dir = Path(out)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunDirectoryError(f"cannot create the output folder {out_dir}: {exc}") from exc
    written = []
    for explanation, stem in zip(explanations, _unique_stems(explanations), strict=True):
        if not explanation.ok:
            continue
        figure = cv2.cvtColor(explanation_figure(explanation), cv2.COLOR_RGB2BGR)
        if not cv2.imwrite(str(out_dir / f"{stem}.png"), figure):
            raise RunDirectoryError(f"cannot write {out_dir / f'{stem}.png'}; check the folder.")
        record = explanation.to_dict()
        record["figure"] = f"{stem}.png"
        for name, cam in explanation.maps.items():
            np.save(out_dir / f"{stem}.{name}.npy", cam.astype(np.float32))
            record["methods"][name]["file"] = f"{stem}.{name}.npy"
        path = out_dir / f"{stem}.json"
        path.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        written.append(path)
    return written
