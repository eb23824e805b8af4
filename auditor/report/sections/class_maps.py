"""Mean image and mean map per class, and the peak grids of fixed-location flags."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from auditor.report import figures
from auditor.report.formatting import fit_size, is_table

#: Longer side of per-class images (mean image, mean map, cluster maps).
CLASS_SIDE = 160
MAX_CLASS_IMAGES = 48
PEAK_GRID = 4


def class_maps_section(
    means: dict[str, np.ndarray] | None, classes: list[str], order: list[str],
    class_ids: dict[str, str],
) -> dict[str, Any] | None:
    if means is None or "mean_map" not in means:
        return None
    mean_map = means["mean_map"]
    mean_image = means.get("mean_image")
    shown = [c for c in order if classes.index(c) < len(mean_map)][:MAX_CLASS_IMAGES]
    items = []
    for name in shown:
        k = classes.index(name)
        cam = mean_map[k]
        empty = not np.isfinite(cam).any() or float(np.nanmax(cam)) <= 0
        item: dict[str, Any] = {"name": name, "id": f"map-{class_ids[name]}", "empty": empty}
        if not empty:
            if mean_image is not None and k < len(mean_image):
                image = figures.fit_within(mean_image[k], CLASS_SIDE)
                item["image"] = figures.jpeg_data_uri(image)
                item["overlay"] = figures.jpeg_data_uri(figures.overlay(image, cam))
            else:
                item["image"] = None
                item["overlay"] = figures.jpeg_data_uri(
                    figures.heat_image(cam, fit_size(cam.shape, CLASS_SIDE)))
        items.append(item)
    return {"items": items, "left_out": max(0, len(classes) - len(shown))}


def fixed_location_grids(flags: list[dict[str, Any]], ok: pd.DataFrame) -> dict[int, Any]:
    """Peak-location grids of the fixed_location flags, keyed by flag position. Taken from the
    flag's evidence (`grid_counts`, the 2-D list of counts detect.location writes), else
    counted from the class's peak_x, peak_y (fractions of width, height) on a PEAK_GRID x
    PEAK_GRID grid. The flagged region (`scan_cells`, the cells its peaks were counted in) is
    outlined when it has the grid's shape."""
    grids = {}
    for i, flag in enumerate(flags):
        if flag.get("kind") != "fixed_location":
            continue
        evidence = flag.get("evidence") or {}
        counts = evidence["grid_counts"] if is_table(evidence.get("grid_counts")) else None
        if counts is None and {"peak_x", "peak_y"} <= set(ok.columns):
            rows = ok[ok["label"] == flag.get("class")] if flag.get("class") is not None else ok
            counts = peak_grid(rows["peak_x"].to_numpy(float), rows["peak_y"].to_numpy(float))
        if counts is None:
            continue
        cells = evidence.get("scan_cells")
        grids[i] = {
            "id": f"fixed-{i}", "class": flag.get("class"), "message": flag.get("message", ""),
            "layout": figures.heat_grid_layout(counts, marked=cells if is_table(cells) else None),
        }
    return grids


def peak_grid(peak_x: np.ndarray, peak_y: np.ndarray, size: int = PEAK_GRID) -> list[list[int]]:
    """Counts [size][size] of map peaks per grid cell; peaks are fractions of width (x) and
    height (y) in [0, 1]; NaN peaks are skipped. Row 0 is the top of the image."""
    keep = np.isfinite(peak_x) & np.isfinite(peak_y)
    col = np.clip((peak_x[keep] * size).astype(int), 0, size - 1)
    row = np.clip((peak_y[keep] * size).astype(int), 0, size - 1)
    grid = np.zeros((size, size), dtype=int)
    np.add.at(grid, (row, col), 1)
    return grid.tolist()
