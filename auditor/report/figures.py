"""Figures of the report: the colour map, overlays, embedded images and chart layouts.

Images come back as `data:` URIs (the report makes no request to any host). Charts come back
as plain data (coordinates in SVG user units, label strings); the templates draw them, so every
label is escaped by Jinja's autoescape and no SVG markup lives in Python.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Callable, Sequence
from typing import Any

import cv2
import numpy as np

from auditor.errors import UsageError

# Degree-7 least-squares polynomial fit, per channel, of matplotlib's 256-entry viridis table
# (CC0); largest error 2.7 / 255. Coefficients are in increasing power of t in [0, 1].
_VIRIDIS_COEFFS = np.array(
    [
        [0.256623, 1.16178, -14.7894, 76.3146, -217.08, 326.814, -238.181, 66.4996],
        [0.00395448, 1.50367, -1.25597, 2.47064, -8.55365, 19.0038, -19.0286, 6.7629],
        [0.322928, 1.96226, -7.80398, 24.8852, -65.2504, 110.516, -100.802, 36.3069],
    ]
)


def _viridis_lut() -> np.ndarray:
    t = np.linspace(0.0, 1.0, 256)
    rgb = np.stack([np.polynomial.polynomial.polyval(t, c) for c in _VIRIDIS_COEFFS], axis=1)
    return np.clip(np.round(rgb * 255.0), 0, 255).astype(np.uint8)


#: uint8 [256, 3] RGB: viridis, perceptually uniform, readable in grey and by colour-blind readers.
VIRIDIS: np.ndarray = _viridis_lut()


def hex_colour(rgb: Sequence[int] | np.ndarray) -> str:
    """'#rrggbb' of one RGB triple (0..255)."""
    r, g, b = (int(v) for v in rgb)
    return f"#{r:02x}{g:02x}{b:02x}"


def colour_of(value: float) -> str:
    """Hex viridis colour of a value in [0, 1] (clipped; NaN gives the lowest colour)."""
    v = 0.0 if not math.isfinite(value) else min(max(value, 0.0), 1.0)
    return hex_colour(VIRIDIS[round(v * 255)])


def legend_stops(n: int = 9) -> list[dict[str, str]]:
    """Gradient stops of the colour map for an SVG legend: [{'offset': '0%', 'colour': '#..'}]."""
    return [
        {"offset": f"{100 * i / (n - 1):.0f}%", "colour": colour_of(i / (n - 1))} for i in range(n)
    ]


def colorize(values: np.ndarray) -> np.ndarray:
    """Viridis colours of values [H, W] in [0, 1] (clipped, NaN -> 0): uint8 [H, W, 3] RGB."""
    v = np.nan_to_num(np.asarray(values, dtype=np.float32), nan=0.0, posinf=1.0, neginf=0.0)
    return VIRIDIS[np.round(np.clip(v, 0.0, 1.0) * 255.0).astype(np.intp)]


def normalise_map(cam: np.ndarray) -> np.ndarray:
    """A map [h, w] divided by its max, float32 in [0, 1]; all zeros when the max is not a
    positive finite number (an all-zero or undefined map shows no attention)."""
    m = np.nan_to_num(np.asarray(cam, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    m = np.maximum(m, 0.0)
    peak = float(m.max()) if m.size else 0.0
    return m / peak if peak > 0 else np.zeros_like(m)


def upsample(cam: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear upsampling (pixel centres aligned, as torch align_corners=False) of a map
    [h, w] to size (H, W): float32 [H, W]."""
    height, width = int(size[0]), int(size[1])
    # cv2 takes the destination as (width, height): the classic swap on non-square images.
    return cv2.resize(
        np.asarray(cam, dtype=np.float32), (width, height), interpolation=cv2.INTER_LINEAR
    )


def heat_image(cam: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The map alone, normalised to its max, upsampled to size (H, W), coloured: uint8 [H,W,3]."""
    return colorize(np.clip(upsample(normalise_map(cam), size), 0.0, 1.0))


def overlay(image: np.ndarray, cam: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """Map over image: (1 - alpha) * image + alpha * viridis(map / max(map)).

    image: uint8 [H, W, 3] RGB; cam: [h, w] >= 0 at any resolution (upsampled bilinearly to
    H x W). Returns uint8 [H, W, 3] RGB.
    """
    img = np.asarray(image)
    if img.ndim != 3 or img.shape[2] != 3:
        raise UsageError(f"overlay needs an RGB image [H, W, 3], got shape {img.shape}")
    if not 0.0 <= alpha <= 1.0:
        raise UsageError(f"overlay alpha must be in [0, 1], got {alpha}")
    heat = heat_image(cam, img.shape[:2]).astype(np.float32)
    mixed = (1.0 - alpha) * img.astype(np.float32) + alpha * heat
    return np.clip(np.round(mixed), 0, 255).astype(np.uint8)


#: Outline colour of foreground masks: magenta, distinct from every viridis colour.
OUTLINE_RGB = (230, 0, 230)


def mask_outline(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The image with the boundary of `mask` drawn on it.

    image: uint8 [H, W, 3] RGB; mask: bool [h, w] at any resolution (resized nearest-neighbour
    to H x W). Returns uint8 [H, W, 3]; boundary pixels in OUTLINE_RGB, 1 px (2 px above 160 px).
    """
    img = np.array(image, dtype=np.uint8, copy=True)
    height, width = img.shape[:2]
    fg = cv2.resize(
        np.asarray(mask, dtype=np.uint8), (width, height), interpolation=cv2.INTER_NEAREST
    )
    thickness = 2 if max(height, width) > 160 else 1
    kernel = np.ones((2 * thickness + 1, 2 * thickness + 1), np.uint8)
    edge = (fg > 0) & (cv2.erode(fg, kernel, borderType=cv2.BORDER_CONSTANT, borderValue=0) == 0)
    img[edge] = OUTLINE_RGB
    return img


def fit_within(image: np.ndarray, max_side: int) -> np.ndarray:
    """Shrink uint8 [H, W, C] so its longer side is at most max_side (area filter); aspect kept."""
    height, width = image.shape[:2]
    scale = max_side / max(height, width)
    if scale >= 1.0:
        return image
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def _encode(rgb: np.ndarray, ext: str, params: list[int]) -> str:
    arr = np.ascontiguousarray(rgb, dtype=np.uint8)
    if arr.ndim == 3:
        arr = cv2.cvtColor(arr, cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(ext, arr, params)
    if not ok:
        raise UsageError(f"cannot encode an image of shape {rgb.shape} as {ext}")
    return base64.b64encode(buf.tobytes()).decode("ascii")


def jpeg_data_uri(rgb: np.ndarray, quality: int = 82) -> str:
    """data:image/jpeg URI of uint8 [H, W, 3] RGB (photos and overlays)."""
    return "data:image/jpeg;base64," + _encode(rgb, ".jpg", [cv2.IMWRITE_JPEG_QUALITY, quality])


def png_data_uri(rgb: np.ndarray) -> str:
    """data:image/png URI of uint8 [H, W, 3] RGB or [H, W] grey (lossless: flat charts)."""
    return "data:image/png;base64," + _encode(rgb, ".png", [cv2.IMWRITE_PNG_COMPRESSION, 9])


# ---------------------------------------------------------------- chart layouts (plain data)


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round tick values (1, 2, 2.5 or 5 times a power of ten) covering [lo, hi]."""
    if not hi > lo:
        return [lo]
    raw = (hi - lo) / max(count - 1, 1)
    power = 10.0 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1.0, 2.0, 2.5, 5.0, 10.0) if m * power >= raw)
    first = math.ceil(lo / step - 1e-9)
    last = math.floor(hi / step + 1e-9)
    return [round(k * step, 10) for k in range(first, last + 1)]


def _fmt(value: float) -> str:
    return "–" if value is None or not math.isfinite(value) else f"{value:.3g}"


class _Scale:
    """Linear map from a data domain to SVG x coordinates."""

    def __init__(self, lo: float, hi: float, x0: float, x1: float) -> None:
        if not hi > lo:
            hi = lo + 1.0
        self.lo, self.hi, self.x0, self.x1 = lo, hi, x0, x1

    def __call__(self, value: float) -> float:
        v = min(max(value, self.lo), self.hi)
        return round(self.x0 + (v - self.lo) / (self.hi - self.lo) * (self.x1 - self.x0), 1)

    def axis(self) -> list[dict[str, Any]]:
        return [{"x": self(t), "label": f"{t:g}"} for t in nice_ticks(self.lo, self.hi)]


def box_stats(values: np.ndarray) -> dict[str, float] | None:
    """Tukey box of the finite values: quartiles (linear interpolation), whiskers at the most
    extreme values within 1.5 IQR of the box. None when no value is finite."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return None
    q1, med, q3 = np.percentile(v, [25, 50, 75])
    reach = 1.5 * (q3 - q1)
    inside = v[(v >= q1 - reach) & (v <= q3 + reach)]
    return {
        "n": int(v.size),
        "q1": float(q1),
        "median": float(med),
        "q3": float(q3),
        "lo": float(inside.min()),
        "hi": float(inside.max()),
    }


_LABEL_W, _PLOT_W, _TEXT_W, _ROW_H, _AXIS_H = 200.0, 330.0, 95.0, 22.0, 26.0
# Room for a box plot's "0.00252 (n=1,000,000)" at the chart font.
_BOX_TEXT_W = 160.0


def _short(label: str, limit: int = 30) -> str:
    """The label cut to `limit` characters (about _LABEL_W at the 11 px chart font)."""
    return label if len(label) <= limit else label[: limit - 1] + "…"


def box_plot_layout(
    title: str,
    groups: Sequence[tuple[str, np.ndarray, bool]],
    baseline: np.ndarray,
    domain: tuple[float, float] | None = None,
) -> dict[str, Any]:
    """Horizontal box plots, one row per (label, values, flagged) group, with the data-set-wide
    median of `baseline` as a dashed line. domain: the x range, or None to fit the whiskers."""
    stats = [(label, box_stats(vals), flagged) for label, vals, flagged in groups]
    base = box_stats(baseline)
    if domain is None:
        ends = [s[k] for _, s, _ in stats if s for k in ("lo", "hi")]
        lo, hi = (min(0.0, *ends), max(ends)) if ends else (0.0, 1.0)
        domain = (lo, hi + 0.05 * (hi - lo or 1.0))
    x0 = _LABEL_W
    scale = _Scale(domain[0], domain[1], x0, x0 + _PLOT_W)
    rows = []
    for i, (label, s, flagged) in enumerate(stats):
        y = round(i * _ROW_H + 4.0, 1)
        row: dict[str, Any] = {
            "y": y,
            "mid": round(y + _ROW_H / 2 - 2, 1),
            "label": _short(label),
            "full_label": label,
            "flagged": flagged,
            "empty": s is None,
        }
        if s is not None:
            row.update(
                q1=scale(s["q1"]),
                median=scale(s["median"]),
                q3=scale(s["q3"]),
                lo=scale(s["lo"]),
                hi=scale(s["hi"]),
                n=s["n"],
                text=_fmt(s["median"]),
            )
        rows.append(row)
    plot_h = len(rows) * _ROW_H + 8.0
    return {
        "title": title,
        "width": _LABEL_W + _PLOT_W + _BOX_TEXT_W,
        "height": plot_h + _AXIS_H,
        "plot_x0": x0,
        "plot_x1": x0 + _PLOT_W,
        "plot_h": plot_h,
        "text_x": x0 + _PLOT_W + 8,
        "row_h": _ROW_H,
        "ticks": scale.axis(),
        "rows": rows,
        "baseline": None
        if base is None
        else {"x": scale(base["median"]), "text": f"all classes: median {_fmt(base['median'])}"},
    }


def bar_chart_layout(
    title: str,
    rows: Sequence[tuple[str, Sequence[float | None]]],
    series: Sequence[str],
    domain: tuple[float, float] | None = None,
    value_text: Callable[[float], str] | None = None,
) -> dict[str, Any]:
    """Grouped horizontal bars: one group per (label, values), one bar per series value
    (None: not measured). Bars start at 0; negative values extend left of the zero line.
    value_text writes each bar's value (default: 3 significant digits)."""
    value_text = value_text or _fmt
    values = [v for _, vals in rows for v in vals if v is not None and math.isfinite(v)]
    if domain is None:
        lo, hi = min([0.0, *values]), max([0.0, *values])
        domain = (lo, hi if hi > lo else lo + 1.0)
    scale = _Scale(domain[0], domain[1], _LABEL_W, _LABEL_W + _PLOT_W)
    zero = scale(0.0)
    bar_h = 12.0
    group_h = bar_h * len(series) + 10.0
    groups = []
    for i, (label, vals) in enumerate(rows):
        y = round(i * group_h + 4.0, 1)
        bars = []
        for k, v in enumerate(vals):
            by = round(y + k * bar_h, 1)
            if v is None or not math.isfinite(v):
                bars.append({"series": k, "y": by, "empty": True, "text": "not measured"})
                continue
            x = scale(v)
            bars.append(
                {
                    "series": k,
                    "y": by,
                    "empty": False,
                    "x": min(x, zero),
                    "w": abs(x - zero),
                    "text": f"{series[k]} {value_text(v)}",
                    "text_x": max(x, zero) + 4,
                }
            )
        groups.append({"y": y, "label": _short(label), "full_label": label, "bars": bars})
    plot_h = len(rows) * group_h + 8.0
    return {
        "title": title,
        "width": _LABEL_W + _PLOT_W + 2 * _TEXT_W,
        "height": plot_h + _AXIS_H,
        "plot_x0": _LABEL_W,
        "plot_x1": _LABEL_W + _PLOT_W,
        "plot_h": plot_h,
        "zero": zero,
        "bar_h": bar_h,
        "ticks": scale.axis(),
        "groups": groups,
        "series": list(series),
    }


def interval_chart_layout(
    title: str, items: Sequence[dict[str, Any]], domain: tuple[float, float] = (0.0, 1.0)
) -> dict[str, Any]:
    """Point estimates with intervals against a chance level, one row each.

    items: {'label', 'value', 'low', 'high', 'chance'} (floats or None)."""
    scale = _Scale(domain[0], domain[1], _LABEL_W, _LABEL_W + _PLOT_W)
    rows = []
    for i, item in enumerate(items):
        y = round(i * 30.0 + 15.0, 1)

        def at(key: str, item: dict[str, Any] = item) -> float | None:
            v = item.get(key)
            return scale(float(v)) if v is not None and math.isfinite(float(v)) else None

        rows.append(
            {
                "y": y,
                "label": _short(str(item["label"])),
                "full_label": str(item["label"]),
                "x": at("value"),
                "low": at("low"),
                "high": at("high"),
                "chance": at("chance"),
                "text": (
                    f"{_fmt(_num(item.get('value')))} (chance {_fmt(_num(item.get('chance')))})"
                ),
            }
        )
    plot_h = len(rows) * 30.0 + 6.0
    return {
        "title": title,
        "width": _LABEL_W + _PLOT_W + 2 * _TEXT_W,
        "height": plot_h + _AXIS_H,
        "plot_x0": _LABEL_W,
        "plot_x1": _LABEL_W + _PLOT_W,
        "plot_h": plot_h,
        "text_x": _LABEL_W + _PLOT_W + 8,
        "ticks": scale.axis(),
        "rows": rows,
    }


def _num(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def heat_grid_layout(counts: Sequence[Sequence[float]], cell: float = 28.0,
                     marked: Sequence[Sequence[bool]] | None = None) -> dict[str, Any]:
    """A grid of cells [rows][cols] coloured by count / max count, each labelled with its count
    (readable without colour); text is white on dark cells and black on light ones. `marked`
    (bool [rows][cols], row 0 at the top) adds `outline`: the edges [x1, y1, x2, y2] between a
    marked cell and an unmarked one or the grid's edge, the region's border to draw."""
    grid = np.asarray(counts, dtype=np.float64)
    if grid.ndim != 2 or grid.size == 0:
        raise UsageError(f"a heat grid needs a 2-D table of counts, got shape {grid.shape}")
    top = float(np.nanmax(grid)) if np.isfinite(grid).any() else 0.0
    cells = []
    for (r, c), v in np.ndenumerate(grid):
        share = v / top if top > 0 and math.isfinite(v) else 0.0
        cells.append(
            {
                "x": round(c * cell, 1),
                "y": round(r * cell, 1),
                "fill": colour_of(share),
                "ink": "#000000" if share > 0.55 else "#ffffff",
                "text": f"{v:g}" if math.isfinite(v) else "–",
            }
        )
    return {
        "cell": cell,
        "width": grid.shape[1] * cell,
        "height": grid.shape[0] * cell,
        "rows": grid.shape[0],
        "cols": grid.shape[1],
        "cells": cells,
        "max": f"{top:g}",
        "outline": region_outline(np.asarray(marked, dtype=bool), cell)
        if marked is not None and np.shape(marked) == grid.shape else [],
    }


def region_outline(marked: np.ndarray, cell: float) -> list[list[float]]:
    """The border of the marked cells (bool [rows, cols]) as edges [x1, y1, x2, y2] in grid
    units of `cell`: every side of a marked cell whose neighbour is unmarked or off the grid."""
    padded = np.pad(marked, 1)
    inside = padded[1:-1, 1:-1]
    edges = []
    for dr, dc, (x1, y1, x2, y2) in ((-1, 0, (0, 0, 1, 0)), (1, 0, (0, 1, 1, 1)),
                                      (0, -1, (0, 0, 0, 1)), (0, 1, (1, 0, 1, 1))):
        neighbour = padded[1 + dr:padded.shape[0] - 1 + dr, 1 + dc:padded.shape[1] - 1 + dc]
        for r, c in zip(*np.nonzero(inside & ~neighbour), strict=True):
            edges.append([round((c + x1) * cell, 1), round((r + y1) * cell, 1),
                          round((c + x2) * cell, 1), round((r + y2) * cell, 1)])
    return edges
