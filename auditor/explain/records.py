"""What `auditor explain` finds for one image: the ``Explanation`` record, its maps' ``Peak``s
and its JSON form."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from auditor.cams.compute import default_occlusion_patch

#: Classes listed in an explanation's JSON, most probable first.
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
