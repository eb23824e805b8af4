"""`fixed_location` flags: a class whose attention keeps returning to the same small place
(a corner tag, a watermark, a ruler), and the per-class peak grids the report draws.

Each ok sample's map peak (`peak_x`, `peak_y` in [0, 1]) falls in a cell of a `grid` x `grid`
grid. For each class the 2x2-cell window holding the most peaks is the candidate region (a tag
on a cell boundary still lands in one window). The rule:

| step | rule |
|---|---|
| share | k of the class's n peaks lie in the window: share = k / n |
| against spread | one-sided binomial test of k vs the window's area share (4 / grid**2), |
| | multiplied by the number of windows (Bonferroni): p |
| raised when | n >= 8, share >= 0.4, p < 0.001, and the region is off the object (below) |
| off the object, with masks | at least half of the window's samples with a mask miss the |
| | object with their peak (`pointing_hit` 0) |
| off the object, no masks | the window touches the image edge (an outer row or column of |
| | cells): the peak of a centred object never does |
| high | share >= 0.8 and n >= 20 |
| medium | share >= 0.6 |
| low | any other raised flag; at most medium when n < 20 |

"Without masks" applies when fewer than half of the window's samples have a defined
`pointing_hit`. `score` is the share. Evidence carries the grid counts (rows = y, top first), the
share other classes put in the same window, the class's mean normalised map and the share of its
mass inside the region.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import torch
from scipy import stats

from auditor.detect.attention import sample_keys
from auditor.detect.flags import Flag, Severity
from auditor.detect.groups import class_rows
from auditor.errors import UsageError
from auditor.metrics import normalise_maps, upsample_maps

MIN_SAMPLES = 8
MIN_SHARE = 0.4
ALPHA = 0.001
FULL_SEVERITY_SAMPLES = 20
WINDOW = 2  # cells per side of the candidate region


def _cells(samples: pd.DataFrame, grid: int) -> tuple[np.ndarray, np.ndarray]:
    """Column and row cell of each sample's peak; -1 where the peak is undefined."""
    xs = samples["peak_x"].to_numpy(dtype=float)
    ys = samples["peak_y"].to_numpy(dtype=float)
    defined = np.isfinite(xs) & np.isfinite(ys)
    col = np.clip(np.floor(np.nan_to_num(xs) * grid), 0, grid - 1).astype(int)
    row = np.clip(np.floor(np.nan_to_num(ys) * grid), 0, grid - 1).astype(int)
    return np.where(defined, col, -1), np.where(defined, row, -1)


def _grid_counts(col: np.ndarray, row: np.ndarray, grid: int) -> np.ndarray:
    """Int [grid, grid] histogram of peaks (rows = y); undefined peaks (-1) are left out."""
    keep = col >= 0
    counts = np.zeros((grid, grid), dtype=int)
    np.add.at(counts, (row[keep], col[keep]), 1)
    return counts


def peak_grid_counts(samples: pd.DataFrame, classes: list[str], grid: int = 8
                     ) -> dict[str, list[list[int]]]:
    """Per class, the number of ok samples whose map peaks in each cell (rows = y, top first)."""
    _check(samples, grid)
    ok = samples[samples["status"] == "ok"]
    col, row = _cells(ok, grid)
    positions = class_rows(ok["label"].to_numpy(), classes)
    return {name: _grid_counts(col[mine], row[mine], grid).tolist()
            for name, mine in positions.items()}


def _check(samples: pd.DataFrame, grid: int) -> None:
    missing = [c for c in ("label", "status", "peak_x", "peak_y") if c not in samples.columns]
    if missing:
        raise UsageError(f"samples table lacks column(s) {', '.join(missing)}; "
                         "pass the samples.parquet table written by the audit")
    if grid < WINDOW + 1:
        raise UsageError(f"grid must be at least {WINDOW + 1} cells per side, got {grid}")


def describe_region(box: list[float]) -> str:
    """Where a box (x0, y0, x1, y1 in [0, 1]) lies, in words: "top-left corner" only when it
    touches both of those image edges ("top-left area" otherwise), "left edge" when it touches
    that edge ("left side" otherwise), or "centre"."""
    x0, y0, x1, y1 = box
    x_mid, y_mid = (x0 + x1) / 2, (y0 + y1) / 2
    vertical = "top" if y_mid < 1 / 3 else "bottom" if y_mid > 2 / 3 else "middle"
    horizontal = "left" if x_mid < 1 / 3 else "right" if x_mid > 2 / 3 else "centre"
    touches = {"top": y0 <= 0, "bottom": y1 >= 1, "left": x0 <= 0, "right": x1 >= 1}
    if vertical == "middle" and horizontal == "centre":
        return "centre"
    if vertical == "middle" or horizontal == "centre":
        side = vertical if horizontal == "centre" else horizontal
        return f"{side} edge" if touches[side] else f"{side} side"
    at_corner = touches[vertical] and touches[horizontal]
    return f"{vertical}-{horizontal} {'corner' if at_corner else 'area'}"


def _severity(share: float, n: int) -> Severity:
    if share >= 0.8 and n >= FULL_SEVERITY_SAMPLES:
        return "high"
    if share >= 0.6:
        return "medium"
    return "low"


def fixed_location_flags(samples: pd.DataFrame, maps: torch.Tensor | np.ndarray,
                         classes: list[str], grid: int = 8) -> list[Flag]:
    """`fixed_location` flags (module rule).

    Args:
        samples: the samples.parquet table (label, status, peak_x, peak_y, pointing_hit).
        maps: float [N, h, w], the raw maps of the ok rows (status == "ok") in table order.
        classes: class names to test.
        grid: cells per side of the peak grid.
    """
    _check(samples, grid)
    ok = samples[samples["status"] == "ok"]
    heat = torch.as_tensor(np.asarray(maps) if not isinstance(maps, torch.Tensor) else maps)
    if heat.dim() != 3 or heat.shape[0] != len(ok):
        raise UsageError(f"maps must be [N, h, w] with one map per ok sample (N = {len(ok)}), "
                         f"got shape {tuple(heat.shape)}")
    normalised = normalise_maps(heat.to(torch.float32))
    col, row = _cells(ok, grid)
    defined = col >= 0
    hits = (ok["pointing_hit"].to_numpy(dtype=float) if "pointing_hit" in ok.columns
            else np.full(len(ok), np.nan))
    keys = sample_keys(samples).loc[ok.index].to_numpy()
    n_windows = (grid - WINDOW + 1) ** 2
    area = WINDOW**2 / grid**2
    # Every class's rows at once, and the peaks of all classes (for the share of the rest).
    positions = class_rows(ok["label"].to_numpy(), classes)
    everyone = _grid_counts(col[defined], row[defined], grid)
    n_defined = int(defined.sum())

    flags = []
    for name in classes:
        mine = positions[name][defined[positions[name]]]
        n = int(mine.size)
        if n < MIN_SAMPLES:
            continue
        counts = _grid_counts(col[mine], row[mine], grid)
        windows = sum(counts[dy:grid - WINDOW + 1 + dy, dx:grid - WINDOW + 1 + dx]
                      for dy in range(WINDOW) for dx in range(WINDOW))
        wy, wx = np.unravel_index(int(np.argmax(windows)), windows.shape)
        k = int(windows[wy, wx])
        share = k / n
        p = min(1.0, float(stats.binom.sf(k - 1, n, area)) * n_windows)
        inside = ((col[mine] >= wx) & (col[mine] < wx + WINDOW) & (row[mine] >= wy)
                  & (row[mine] < wy + WINDOW))
        there = mine[inside]
        there_hits = hits[there]
        measured = np.isfinite(there_hits)
        if measured.sum() * 2 >= there.size:
            off_share = float((there_hits[measured] == 0).mean())
            off_object = off_share >= 0.5
        else:
            off_share = None
            off_object = wx == 0 or wy == 0 or wx + WINDOW == grid or wy + WINDOW == grid
        if not (share >= MIN_SHARE and p < ALPHA and off_object):
            continue

        n_rest = n_defined - n
        rest_inside = int(everyone[wy:wy + WINDOW, wx:wx + WINDOW].sum()) - k
        rest_share = rest_inside / n_rest if n_rest else None
        box = [wx / grid, wy / grid, (wx + WINDOW) / grid, (wy + WINDOW) / grid]
        mean_map = normalised[torch.from_numpy(mine)].mean(dim=0)
        fine = upsample_maps(mean_map[None], (grid * 4, grid * 4))[0]
        total = float(fine.sum())
        region = float(fine[wy * 4:(wy + WINDOW) * 4, wx * 4:(wx + WINDOW) * 4].sum())
        map_share = region / total if total > 0 else None
        # Samples that peak there, those whose peak misses the object first.
        order = np.argsort(np.where(there_hits == 0, 0, 1), kind="stable")
        listed = keys[there][order].tolist()
        severity = _severity(share, n)
        if n < FULL_SEVERITY_SAMPLES and severity == "high":
            severity = "medium"
        where = describe_region(box)
        rest_text = f"{rest_share:.0%} of other classes' maps and " if rest_share is not None \
            else ""
        message = (f"class {name}: {share:.0%} of its maps ({k} of {n}) peak in the same small "
                   f"region, the {where} (x {box[0]:.2f}-{box[2]:.2f}, y {box[1]:.2f}-"
                   f"{box[3]:.2f} of the image), vs {rest_text}{area:.0%} if peaks were spread "
                   "evenly")
        evidence: dict[str, Any] = {
            "rule": "most-populated 2x2-cell window of the peak grid; binomial test vs its area "
                    "share, Bonferroni over windows; off the object (see "
                    "auditor.detect.location)",
            "grid_size": grid,
            "grid_counts": counts.tolist(),
            "region_box": box,
            "n": n,
            "k": k,
            "share": share,
            "spread_share": area,
            "rest_share": rest_share,
            "p_value": p,
            "off_object_share": off_share,
            "mean_map": [[round(float(v), 4) for v in r] for r in mean_map.tolist()],
            "mean_map_share_in_region": map_share,
            "score_meaning": "share of the class's maps that peak in the region",
        }
        flags.append(Flag(kind="fixed_location", severity=severity, class_name=name,
                          score=share, message=message, evidence=evidence, samples=listed))
    return flags
