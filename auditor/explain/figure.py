"""The picture of one explanation: the input and one overlay per method, titled, over a
colour-scale legend (uint8 RGB, drawn with OpenCV)."""

from __future__ import annotations

import cv2
import numpy as np

from auditor.errors import UsageError
from auditor.explain.records import Explanation
from auditor.report.figures import VIRIDIS, overlay

# Height in pixels of the title strip above each panel and of the legend strip below.
_HEADER_H = 18
_LEGEND_BAR_H = 10
_LEGEND_TEXT_H = 14
_FONT = cv2.FONT_HERSHEY_SIMPLEX
_MIN_FONT_SCALE = 0.3


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
