"""`fixed_location` flags: attention that keeps returning to the same off-object place, in all
of a class or in part of it (a corner tag, a watermark band, a ruler, a frame), and the
per-class peak grids the report draws.

Each ok sample's map peak (`peak_x`, `peak_y` in [0, 1]) falls in a cell of the maps' own grid
(h x w feature cells, at most MAX_SCAN_CELLS = 16 a side), so a region's cells are the feature
cells a tag lights up. A fixed family of regions of several shapes is scanned for every class:

| region shape | members of the family (cells of the map grid) |
|---|---|
| window | every 1x1 and 2x2-cell window (a corner tag, a logo) |
| band | every full-width band of 1 or 2 rows, full-height band of 1 or 2 columns (text or a |
| | watermark across the image, an info bar along an edge, a ruler) |
| frame | the ring of outer cells (a border frame) |

The rule, per class, on every region R of the family:

| step | rule |
|---|---|
| counts | k of the class's n peaks lie in R; k_rest of the other classes' n_rest |
| against the others | one-sided hypergeometric (Fisher exact) test of k given k + k_rest: the |
| | class peaks in R more often than the other classes do. With fewer than MIN_REST |
| | (20) peaks of other classes: one-sided binomial of k vs R's area share |
| scan | a region's p times the number of regions (Bonferroni); one test per class enters |
| | the audit's Benjamini-Hochberg family (auditor.detect.fdr): the chosen region's, or |
| | the smallest when no region passes the gates |
| effect gates | (auditor.detect.share_gates) k >= MIN_MEMBERS (3), share k / n >= RATIO (3) |
| | x base and share - base >= MIN_EXCESS (0.03), base = the other classes' share (R's |
| | area share without them): |
| | at any share of the class, so a tag on 5% of a class is found when other classes |
| | almost never peak there. A share at least LARGE_EXCESS (0.5) above the others' |
| | passes without the ratio: where other classes also peak in R (multi-label rows of |
| | the same images, a model that looks for the tag everywhere) the ratio cannot reach 3 |
| gathered | and the class's off-object peaks (peak_fg_cover < 0.5; all peaks without |
| | masks) gather in R: one-sided binomial of those in R vs R's area share. The region's |
| | p is the larger of the two (intersection-union: peaks spread over the background |
| | are not "in" the frame, or a band, just because the other classes all peak in the |
| | centre) |
| off the object | the members' peaks are off the object as the map's grid sees it: median |
| | `peak_fg_cover` < 0.5 (the feature cell at the peak is mostly background; a peak |
| | in the hole of a ring-shaped object is on it at that resolution; so is a peak |
| | whose feature cell lies inside the object's convex hull, `peak_in_hull`: an L's |
| | inner corner, where a clean 100-class benchmark's L class raised a high false |
| | flag; members only, the counts of the scan read peak_fg_cover). Without that |
| | column, at least half the members miss the object (`pointing_hit` 0). Without |
| | masks: at least half the members peak in a feature cell that reaches into the outer |
| | OUTER_BAND (an eighth) of a side: the outer ring of cells of an 8x8 or 7x7 map, |
| | the two outer rings of a 12x12 or 16x16 one (a tag 10% in from the corner sits in |
| | cell 1 of 12). Nothing else says where the object is: large objects anywhere in the |
| | image put a class's peak on the same part of them one cell in from an edge (a |
| | quarter of the side, 75% of the image, raised 21 flags per 100 clean classes, |
| | 1.5 high, and 3 high on the 4 classes of the 2-class sets; benchmarks/ |
| | flag_calibration.py), so a tag whose peak lies that far in is found only with |
| | masks. A band across the middle is not tested |
| not following | and the peaks do not follow their objects: with object centroids (`fg_cx`, |
| the objects | `fg_cy`), the members' objects do not lie nearer the region than the other |
| | samples' (one-sided Mann-Whitney U of the distance from each object's edge to the |
| | region, p >= FOLLOW_ALPHA = 0.05; the edge: the centroid's distance less the radius |
| | of a disc of the object's area, floored at 0, object_discs. From centroids, a large |
| | triangle whose corner touches the region looked no nearer than small objects: 6 |
| | false flags, 4 medium, on the 132 clean classes of the planted-shortcut sets; 2 low |
| | from edges, no planted find lost). A map that reads the background beside a flat |
| | object (just above a bar) peaks off it, in a cell that holds none of it, and those |
| | peaks gather where the class's large objects happen to lie (7 of the 8 flags on 300 |
| | clean classes of benchmarks/flag_calibration.py); a tag stays where it is wherever |
| | the objects are. Not tested without masks |
| region | among the regions passing every gate, the one with the smallest p (ties: the |
| | smaller region) |
| any shape | a second search: a region of any shape drawn from the maps on one half of the |
| | samples and tested on the other (auditor.detect.map_regions; members: maps with at |
| | least a threshold share of their mass in it), through the same effect gates (on the |
| | testing half) and off-object and object-following gates (on its members) |
| middle band | a third search, with masks: a band across the middle found from map mass beyond |
| | the members' objects (auditor.detect.band_mass: a band that crosses the objects, |
| | whose peaks lie on them), through the same effect gates (testing half) and the |
| | object-following gate; its off-object gate reads mass, not the peak: at least half |
| | the members have OFF_DISC of their band mass outside their object's disc |
| per class | the smallest p of the searches whose gates pass (of all when none does), times |
| | their number (2, or 3 where the band search ran; Bonferroni), is the class's one test |
| | in the family |
| raised | q <= FDR (0.05) |
| high | (share_gates) excess (share - the others' share) >= 0.5 and k >= 20 |
| medium | excess >= 0.15 and k >= 10 |
| low | any other raised flag |

A finding names its share of the class (`share`, also the `score`), its region and its members
(`members`: every sample of the class whose map peaks in the scanned region, or, for a region
found in the maps, puts at least `member_threshold` of its mass there; off-object ones first;
`samples` lists them too). `region_found_by` says which search found it ("scan", "maps" or
"band mass"; a band adds `beyond_object_share`, the share of its members with OFF_DISC of their
band mass beyond their object's disc);
a region found in the maps adds `member_threshold` and `test_half` (k, n, k_rest, n_rest: the
counts of the half that tested it, which the p-value and the gates read). The region to edit
grows from the found cells into the cells around them (one step) where the members' mean
normalised map is at least ATTENTION_LEVEL (0.5) of its largest value there, then into the
outer cells of the grid next to it (a map lights up along the inner edge of a flat tag; what
lies between that edge and the image border is part of it): `region_cells` [rows][cols] 0/1,
rows = y, top first, and `region_box`, its bounding box in [0, 1]; the found cells are
`scan_cells` and `scan_box`; `region_shape` is their shape (window, band, frame; "region" for
any other shape). Interventions blank or swap exactly `region_cells`. Evidence also carries the
grid counts, the other classes' share, the class's mean normalised map and the share of its
mass inside the region.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from scipy import stats

from auditor.detect.attention import sample_keys
from auditor.detect.band_mass import OFF_DISC, band_mass, off_disc_shares
from auditor.detect.fdr import ClassTest, control_fdr, either_test
from auditor.detect.flags import Flag
from auditor.detect.groups import class_rows
from auditor.detect.map_regions import MapRegion, fisher_greater, grow, map_regions
from auditor.detect.object_following import RegionDistances, objects_nearer_p
from auditor.detect.one_thread import one_thread
from auditor.detect.share_gates import passes, share_severity
from auditor.detect.tail_screen import LOG_TINY, SCREEN, could_be_smallest, log_tails
from auditor.errors import UsageError
from auditor.metrics import normalise_maps, upsample_maps

MIN_SAMPLES = 8
MIN_REST = 20  # peaks of other classes needed to test against them rather than the area
WINDOW = 2  # cells per side of the largest window
MAX_SCAN_CELLS = 16
ATTENTION_LEVEL = 0.5
FOLLOW_ALPHA = 0.05  # members' objects significantly nearer the region: the peaks follow them
OUTER_BAND = 0.125  # without masks: a peak whose cell reaches this close to an edge is off-object


def _cells(samples: pd.DataFrame, grid: int, rows: int | None = None
           ) -> tuple[np.ndarray, np.ndarray]:
    """Column and row cell of each sample's peak on a grid of `grid` columns and `rows` rows
    (default: square); -1 where the peak is undefined."""
    rows = grid if rows is None else rows
    xs = samples["peak_x"].to_numpy(dtype=float)
    ys = samples["peak_y"].to_numpy(dtype=float)
    defined = np.isfinite(xs) & np.isfinite(ys)
    col = np.clip(np.floor(np.nan_to_num(xs) * grid), 0, grid - 1).astype(int)
    row = np.clip(np.floor(np.nan_to_num(ys) * rows), 0, rows - 1).astype(int)
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


def region_family(rows: int, cols: int) -> tuple[np.ndarray, list[str]]:
    """The scanned regions: bool [R, rows, cols] cell masks (rows = y) and their shapes."""
    regions, shapes = [], []

    def add(cells: np.ndarray, shape: str) -> None:
        regions.append(cells)
        shapes.append(shape)

    for side in (1, 2):
        for y in range(rows - side + 1):
            for x in range(cols - side + 1):
                cells = np.zeros((rows, cols), dtype=bool)
                cells[y:y + side, x:x + side] = True
                add(cells, "window")
        for start in range(rows - side + 1):
            band = np.zeros((rows, cols), dtype=bool)
            band[start:start + side] = True
            add(band, "band")
        for start in range(cols - side + 1):
            band = np.zeros((rows, cols), dtype=bool)
            band[:, start:start + side] = True
            add(band, "band")
    ring = np.ones((rows, cols), dtype=bool)
    ring[1:-1, 1:-1] = False
    add(ring, "frame")
    return np.stack(regions), shapes


def cells_box(cells: np.ndarray) -> list[float]:
    """Bounding box (x0, y0, x1, y1) in [0, 1] of the True cells of bool [rows, cols]."""
    rows, cols = cells.shape
    ys, xs = np.nonzero(cells)
    return [float(xs.min() / cols), float(ys.min() / rows), float((xs.max() + 1) / cols),
            float((ys.max() + 1) / rows)]


def region_shape(cells: np.ndarray) -> str:
    """The shape of a region of any shape (bool [rows, cols]), in the family's words: "frame"
    (at least 3/4 of the outer cells, at most 1/4 of the inner ones), "band" (every column
    of at most half the rows, or every row of at most half the columns), "window" (a filled
    rectangle of at most WINDOW x WINDOW cells), else "region"."""
    rows, cols = cells.shape
    outer = np.ones_like(cells)
    outer[1:-1, 1:-1] = False
    if cells[outer].mean() >= 0.75 and (rows <= 2 or cols <= 2
                                        or cells[~outer].mean() <= 0.25):
        return "frame"
    ys, xs = np.nonzero(cells)
    height, width = ys.max() - ys.min() + 1, xs.max() - xs.min() + 1
    if (cells.any(axis=0).all() and height * 2 <= rows) or \
            (cells.any(axis=1).all() and width * 2 <= cols):
        return "band"
    if height <= WINDOW and width <= WINDOW and cells.sum() == height * width:
        return "window"
    return "region"


def describe_cells(cells: np.ndarray, shape: str) -> str:
    """A region of the family in words: "top-left corner", "band along the bottom edge",
    "band across the image (rows 0.25-0.50)", "frame around the image"."""
    words, span = _region_words(cells, shape)
    return f"{words} ({span})" if span else words


def _region_words(cells: np.ndarray, shape: str) -> tuple[str, str | None]:
    """The region's words and, for a band away from the edges, the rows or columns it spans
    (which the words alone cannot say); None otherwise."""
    box = cells_box(cells)
    if shape == "frame":
        return "frame around the image", None
    if shape == "region":
        return f"{int(cells.sum())}-cell region at the {describe_region(box)}", None
    if shape == "band":
        horizontal = box[0] == 0 and box[2] == 1
        if horizontal:
            where = ("top edge" if box[1] == 0 else "bottom edge" if box[3] == 1 else None)
            return ((f"band along the {where}", None) if where else
                    ("band across the image", f"rows {box[1]:.2f}-{box[3]:.2f}"))
        where = "left edge" if box[0] == 0 else "right edge" if box[2] == 1 else None
        return ((f"band along the {where}", None) if where else
                ("band down the image", f"columns {box[0]:.2f}-{box[2]:.2f}"))
    return describe_region(box), None


def place_text(cells: np.ndarray, shape: str) -> str:
    """Where a region is, for a message, its coordinates said once: "band down the image
    (columns 0.69-0.81)", "top-left corner (x 0.00-0.25, y 0.00-0.25 of the image)"."""
    words, span = _region_words(cells, shape)
    if span is None:
        box = cells_box(cells)
        span = f"x {box[0]:.2f}-{box[2]:.2f}, y {box[1]:.2f}-{box[3]:.2f} of the image"
    return f"{words} ({span})"


def _scan_grid(maps: torch.Tensor) -> tuple[int, int]:
    """Cells of the scan: the map's own grid, so a region's cells are the feature cells a tag
    lights up, at most MAX_SCAN_CELLS per side (finer maps share cells)."""
    return min(int(maps.shape[1]), MAX_SCAN_CELLS), min(int(maps.shape[2]), MAX_SCAN_CELLS)


class _ScanP:
    """The scan's p of every tested class and region [C, R] (module rule): the larger of the
    test against the other classes (hypergeometric) or the area (binomial, for a class with
    fewer than MIN_REST peaks of other classes), and of the binomial that the class's
    off-object peaks gather in R. `log_p` holds every log p with the hypergeometric tails
    approximated where that pays (auditor.detect.tail_screen: scipy's cost up to ~180 us
    each, the binomials little); `exact` computes the values the scan reads.

    k, k_rest: int [C, R], peaks in each region; n, n_rest: int [C, 1], peaks in all;
    area: float [R]; off_k: int [C, R], off-object peaks in each region; off_n: int [C, 1],
    off-object peaks in all."""

    def __init__(self, k: np.ndarray, n: np.ndarray, k_rest: np.ndarray, n_rest: np.ndarray,
                 area: np.ndarray, off_k: np.ndarray, off_n: np.ndarray) -> None:
        shape = k.shape
        self.k, self.k_rest = k, k_rest
        self.n, self.n_rest = np.broadcast_to(n, shape), np.broadcast_to(n_rest, shape)
        self.against_rest = self.n_rest >= MIN_REST
        area = np.broadcast_to(area, shape)
        # Each distinct argument tuple once (the same values, elementwise).
        gathered = _elementwise_once(stats.binom.sf, (off_k - 1).ravel(),
                                     np.broadcast_to(np.maximum(off_n, 1), shape).ravel(),
                                     area.ravel()).reshape(shape)
        self.p = np.full(shape, np.nan)
        alone = ~self.against_rest
        self.p[alone] = np.maximum(_elementwise_once(stats.binom.sf, k[alone] - 1, self.n[alone],
                                                     area[alone]), gathered[alone])
        self.gathered = gathered
        # The hypergeometric tails: each distinct argument tuple once (classes of one size
        # share their counts), scipy's where it costs less than the screen.
        against = self.against_rest
        self.tuples, self.inverse = _distinct(k[against], self.n[against], k_rest[against],
                                              self.n_rest[against])
        log_tail, self.tail = log_tails(
            *self.tuples, exact=lambda which: fisher_greater(*(t[which] for t in self.tuples)))
        with np.errstate(divide="ignore"):
            log_p = np.log(self.p)
            log_p[against] = np.maximum(log_tail[self.inverse], np.log(gathered[against]))
        self.log_p = log_p
        self.smallest = could_be_smallest(log_p.ravel(), np.repeat(np.arange(shape[0]), shape[1]),
                                          shape[0]).reshape(shape)

    def exact(self, regions: list[list[int]]) -> np.ndarray:
        """float [C, R]: the exact p of each class's values that can be its smallest and of
        its `regions` (per class, region positions); NaN elsewhere."""
        wanted = self.smallest.copy()
        rows = np.repeat(np.arange(len(regions)), [len(r) for r in regions])
        wanted[rows, np.array([r for mine in regions for r in mine], dtype=np.intp)] = True
        wanted &= self.against_rest  # the binomials against the area are exact already
        tuples = self.inverse[wanted[self.against_rest]]
        needed = np.zeros(self.tail.size, dtype=bool)
        needed[tuples] = True
        needed &= np.isnan(self.tail)
        self.tail[needed] = fisher_greater(*(t[needed] for t in self.tuples))
        p = self.p.copy()
        p[wanted] = np.maximum(self.tail[tuples], self.gathered[wanted])
        return p


def _distinct(*args: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
    """The distinct tuples of arguments (1-D, of one length), as columns, and each tuple's
    position among them (int [N]). Distinct tuples from one lexicographic sort of the columns
    (np.unique(axis=0) sorts rows as opaque records, several times slower)."""
    columns = [np.asarray(a) for a in args]
    if not columns[0].size:
        return columns, np.zeros(0, dtype=np.intp)
    order = np.lexsort(columns[::-1])
    first = np.zeros(order.size, dtype=bool)
    first[0] = True
    for column in columns:
        ordered = column[order]
        first[1:] |= ordered[1:] != ordered[:-1]
    inverse = np.empty(order.size, dtype=np.intp)
    inverse[order] = np.cumsum(first) - 1
    return [column[order[first]] for column in columns], inverse


def _elementwise_once(function: Any, *args: np.ndarray) -> np.ndarray:
    """function(*args) of an elementwise function (a scipy distribution's sf) evaluated once
    per distinct tuple of arguments (1-D, of one length) and spread back: the same values.
    Classes of one size share their counts, so 1 000 classes x 144 regions hold few distinct
    tuples."""
    if not args[0].size:
        return function(*args)
    tuples, inverse = _distinct(*args)
    return np.asarray(function(*tuples))[inverse]


def fixed_location_tests(samples: pd.DataFrame, maps: torch.Tensor | np.ndarray,
                         classes: list[str]) -> list[ClassTest]:
    """The `fixed_location` test of every class with enough peaks (module rule), for the
    audit's Benjamini-Hochberg family. The scan's cells are the maps' grid (at most
    MAX_SCAN_CELLS a side).

    Args:
        samples: the samples.parquet table (label, status, peak_x, peak_y; peak_fg_cover and
            pointing_hit when present).
        maps: float [N, h, w], the raw maps of the ok rows (status == "ok") in table order.
        classes: class names to test.
    """
    with one_thread():
        return _tests(samples, maps, classes)


def _tests(samples: pd.DataFrame, maps: torch.Tensor | np.ndarray, classes: list[str]
           ) -> list[ClassTest]:
    """fixed_location_tests' work (on one thread)."""
    _check(samples, WINDOW + 1)
    ok = samples[samples["status"] == "ok"]
    heat = torch.as_tensor(np.asarray(maps) if not isinstance(maps, torch.Tensor) else maps)
    if heat.dim() != 3 or heat.shape[0] != len(ok):
        raise UsageError(f"maps must be [N, h, w] with one map per ok sample (N = {len(ok)}), "
                         f"got shape {tuple(heat.shape)}")
    normalised = normalise_maps(heat.to(torch.float32))
    gh, gw = _scan_grid(heat)
    grid_maps = F.adaptive_avg_pool2d(normalised[:, None], (gh, gw))[:, 0].numpy()
    col, row = _cells(ok, gw, gh)
    cell = np.where(col >= 0, row * gw + col, -1)
    labels = ok["label"].to_numpy()
    cover = _column(ok, "peak_fg_cover")
    # A peak whose cell lies inside the object's convex hull (a ring's hole, an L's inner
    # corner) is within the object's extent: on the object when a finding's members are judged.
    member_cover = np.where(_column(ok, "peak_in_hull") == 1.0, 1.0, cover)
    hits = _column(ok, "pointing_hit")
    enrichment = _column(ok, "fg_enrichment")
    objects = object_discs(ok)
    keys = sample_keys(samples).loc[ok.index].to_numpy()
    regions, shapes = region_family(gh, gw)
    flat_regions = regions.reshape(len(regions), -1)
    area = flat_regions.mean(axis=1)
    defined = cell >= 0
    outer = defined & ((np.minimum(col, gw - 1 - col) < OUTER_BAND * gw)
                       | (np.minimum(row, gh - 1 - row) < OUTER_BAND * gh))
    # Peaks per class and cell, [C, grid * grid]: every region count is a product with it.
    counts = np.zeros((len(classes), gh * gw), dtype=int)
    index = pd.Index(classes).get_indexer(labels) if len(labels) else np.zeros(0, dtype=int)
    known = defined & (index >= 0)
    np.add.at(counts, (index[known], cell[known]), 1)
    in_region = counts @ flat_regions.T.astype(int)  # [C, R]
    # Peaks not on the object at the map's resolution (all peaks where that is unknown).
    off_peak = known & ~(np.nan_to_num(cover, nan=0.0) >= 0.5) & ~(np.isnan(cover) & (hits == 1))
    counts_off = np.zeros_like(counts)
    np.add.at(counts_off, (index[off_peak], cell[off_peak]), 1)
    off_in_region = counts_off @ flat_regions.T.astype(int)
    all_in = np.bincount(cell[defined], minlength=gh * gw) @ flat_regions.T.astype(int)
    n_all = int(defined.sum())

    off_sample = np.where(np.isfinite(cover), cover < 0.5,
                          np.where(np.isfinite(hits), hits == 0, outer))
    found_in_maps = map_regions(grid_maps, np.where(known, index, -1), off_sample, len(classes))
    # The band search and the object-following gate need object centroids (masks).
    distances = (RegionDistances(objects, gh, gw) if np.isfinite(objects[:, :2]).all(axis=1).any()
                 else None)
    bands = (band_mass(grid_maps, np.where(known, index, -1), objects, len(classes))
             if distances is not None else [None] * len(classes))
    n_class = counts.sum(axis=1)
    tested = np.flatnonzero(n_class >= MIN_SAMPLES)
    scan_p = _ScanP(in_region[tested], n_class[tested, None], all_in - in_region[tested],
                    n_all - n_class[tested, None], area, off_in_region[tested],
                    counts_off[tested].sum(axis=1, keepdims=True))
    positions = class_rows(index, range(len(classes)))
    peak_cell = np.where(defined, cell, 0)
    # First every class's regions that can be the scan's choice (gates passed, p from the
    # screen), then their p-values and each class's smallest in one exact computation.
    tried = []
    for row, c in enumerate(tested):
        n = int(n_class[c])
        k = in_region[c]
        base = (all_in - k) / (n_all - n) if n_all - n >= MIN_REST else area
        passing = np.flatnonzero(passes(k, k / n, base))
        log_p = scan_p.log_p[row]
        mine = positions[c][defined[positions[c]]]  # the class's rows with a peak
        accepted: list[tuple[int, np.ndarray, float | None, float]] = []
        bound = np.inf
        for r in passing[np.lexsort((area[passing], log_p[passing]))]:
            if log_p[r] > bound:
                break
            there = mine[flat_regions[r][peak_cell[mine]]]  # the rows peaking in R
            off, off_share = _off_object(member_cover[there], hits[there], outer[there])
            nearer_p = _nearer_p(distances, regions[r], there)
            if off and not nearer_p < FOLLOW_ALPHA:
                accepted.append((int(r), there, off_share, nearer_p))
                # The smallest exact p among the accepted lies within the screen of the first.
                bound = min(bound, max(log_p[r] + SCREEN, LOG_TINY))
        tried.append((mine, base, accepted))
    p_exact = scan_p.exact([[r for r, *_ in accepted] for *_, accepted in tried])
    context = _FlagContext(cover, hits, keys, grid_maps, normalised)
    tests = []
    for row, (c, (mine, base, accepted)) in enumerate(zip(tested, tried, strict=True)):
        name = classes[c]
        n = int(n_class[c])
        p = p_exact[row]
        scan: tuple[float, Any] = (min(1.0, float(np.nanmin(p)) * len(regions)), None)
        if accepted:
            # Among the gated regions the smallest p, then the smaller area, then the first.
            tried_regions = np.array([r for r, *_ in accepted])
            r, there, off_share, nearer_p = accepted[int(np.lexsort((
                tried_regions, area[tried_regions], p[tried_regions]))[0])]
            region_p = min(1.0, float(p[r]) * len(regions))
            scan = (region_p, _Finding(
                name, regions[r], shapes[r], n, int(in_region[c, r]), float(base[r]),
                float(area[r]), n_all - n >= MIN_REST, region_p, off_share, there, mine,
                counts[c].reshape(gh, gw), extra={"objects_nearer_p": _json_p(nearer_p)}))
        searches = [scan]
        for found, found_by in ((found_in_maps[c], "maps"), (bands[c], "band mass")):
            if found is not None:
                searches.append((found.p_value, _mass_region_finding(
                    name, found, found_by, mine, member_cover, hits, outer, enrichment,
                    objects, grid_maps, distances, counts[c].reshape(gh, gw))))
        # Only the flag of the search the test reports is built.
        tests.append(either_test("fixed_location", name, [
            (p_value, None if finding is None else _flag_builder(finding, context))
            for p_value, finding in searches]))
    return tests


def _mass_region_finding(name: str, found: MapRegion, found_by: str, mine: np.ndarray,
                         cover: np.ndarray, hits: np.ndarray, outer: np.ndarray,
                         enrichment: np.ndarray, objects: np.ndarray, grid_maps: np.ndarray,
                         distances: RegionDistances | None, counts: np.ndarray
                         ) -> _Finding | None:
    """The finding of a region whose members are judged by their map mass in it: found in
    the maps (found_by "maps", auditor.detect.map_regions) or a middle band ("band mass",
    auditor.detect.band_mass); None when its gates fail. The effect gates read the testing
    half (the counts the p-value comes from); the finding's members and shares read the whole
    class (`mine`: its rows with a peak). Off the object: for "maps", the members' peaks
    (_off_object) and, with masks, their mass (median fg_enrichment below 1: a class whose
    maps sit on its objects, and also lean toward one place, is not a finding); for "band
    mass", whose band crosses the objects (the peaks lie on them), at least half the members
    with OFF_DISC of their band mass outside their object's disc. Both: objects that do not
    follow the region."""
    share = found.k / max(found.n, 1)
    base = found.k_rest / max(found.n_rest, 1)
    if not passes(found.k, share, base):
        return None
    there = found.members
    off, off_share = _off_object(cover[there], hits[there], outer[there])
    band: dict[str, Any] = {}
    if found_by == "band mass":
        beyond = off_disc_shares(grid_maps[there], objects[there], found.cells[None])[:, 0]
        band["beyond_object_share"] = float((beyond >= OFF_DISC).mean())
        off = band["beyond_object_share"] >= 0.5
    else:
        measured = enrichment[there][np.isfinite(enrichment[there])]
        off = off and not (measured.size * 2 >= there.size and np.median(measured) >= 1.0)
    nearer_p = _nearer_p(distances, found.cells, there)
    if not off or nearer_p < FOLLOW_ALPHA:
        return None
    extra = dict(
        region_found_by=found_by, member_threshold=found.threshold,
        objects_nearer_p=_json_p(nearer_p),
        score_meaning="share of the class's maps with at least member_threshold of their "
                      "mass in the region",
        test_half={"k": found.k, "n": found.n, "k_rest": found.k_rest,
                   "n_rest": found.n_rest}, **band)
    return _Finding(name, found.cells, region_shape(found.cells), int(mine.size),
                    int(there.size), found.rest_share, float(found.cells.mean()), True,
                    found.p_value, off_share, there, mine, counts,
                    member_rule=f"put at least {found.threshold:.0%} of their map's mass in",
                    extra=extra)


@dataclass
class _Finding:
    """What a flag of one class and region says, its gates passed: built into a Flag only
    when its search is the one the class's test reports."""

    name: str
    cells: np.ndarray  # bool [gh, gw], the found cells
    shape: str
    n: int  # the class's samples with a peak
    k: int  # members
    base: float  # the other classes' share (or the area share)
    area: float
    against_rest: bool
    p: float
    off_share: float | None
    there: np.ndarray  # int: the members' rows (ascending)
    mine: np.ndarray  # int: the class's rows with a peak (ascending)
    counts: np.ndarray  # int [gh, gw], the class's peaks per cell
    member_rule: str = "peak in"
    extra: dict[str, Any] = field(default_factory=dict)  # evidence added to _flag's, in order


@dataclass
class _FlagContext:
    """Per-sample columns every flag reads (ok rows, table order)."""

    cover: np.ndarray
    hits: np.ndarray
    keys: np.ndarray
    grid_maps: np.ndarray
    normalised: torch.Tensor


def _flag_builder(finding: _Finding, context: _FlagContext) -> Callable[[], Flag]:
    def build() -> Flag:
        attention = attention_region(finding.cells, context.grid_maps, finding.there)
        flag = _flag(finding.name, finding.cells, finding.shape, finding.n, finding.k,
                     finding.base, finding.area, finding.against_rest, finding.p,
                     finding.off_share, finding.there, context.cover, context.hits,
                     context.keys, context.normalised[torch.as_tensor(finding.mine)],
                     finding.counts, attention, member_rule=finding.member_rule)
        flag.evidence.update(finding.extra)
        return flag

    return build


def object_discs(rows: pd.DataFrame) -> np.ndarray:
    """Each object as a disc, float [N, 3]: its centroid (fg_cx, fg_cy, fractions of the
    side) and the radius (fraction of the side) of a disc of its area share. The area share
    is fg_energy / fg_enrichment (fg_enrichment is fg_energy over it, auditor.metrics).
    NaN centroid without a mask; radius 0 where the area is unknown (a map with no mass on
    the object), so the distance falls back to the centroid's."""
    with np.errstate(divide="ignore", invalid="ignore"):
        area = _column(rows, "fg_energy") / _column(rows, "fg_enrichment")
    radius = np.sqrt(np.clip(np.nan_to_num(area, nan=0.0, posinf=0.0), 0.0, 1.0) / math.pi)
    return np.stack([_column(rows, "fg_cx"), _column(rows, "fg_cy"), radius], axis=1)


def _nearer_p(distances: RegionDistances | None, cells: np.ndarray, members: np.ndarray
              ) -> float:
    """The object-following gate's p (auditor.detect.object_following); NaN without
    centroids (not tested)."""
    return math.nan if distances is None else objects_nearer_p(distances, cells, members)


def _json_p(p: float) -> float | None:
    return None if math.isnan(p) else p


def _column(rows: pd.DataFrame, name: str) -> np.ndarray:
    if name not in rows.columns:
        return np.full(len(rows), np.nan)
    return rows[name].to_numpy(dtype=float)


def _off_object(cover: np.ndarray, hits: np.ndarray, outer: np.ndarray
                ) -> tuple[bool, float | None]:
    """(off the object, share of members off it) of a region's members (module rule)."""
    measured = np.isfinite(cover)
    if measured.sum() * 2 >= cover.size and measured.any():
        return bool(np.median(cover[measured]) < 0.5), float((cover[measured] < 0.5).mean())
    measured = np.isfinite(hits)
    if measured.sum() * 2 >= hits.size and measured.any():
        share = float((hits[measured] == 0).mean())
        return share >= 0.5, share
    return bool(outer.mean() >= 0.5), None


def attention_region(cells: np.ndarray, grid_maps: np.ndarray, members: np.ndarray
                     ) -> np.ndarray:
    """The region the members' attention covers at the scanned cells: bool [gh, gw].

    The scanned cells grow into the cells around them (one step, 8-connected) where the
    members' mean normalised map (grid_maps float [N, gh, gw] pooled to the scan grid;
    members: int rows, or bool [N]) is at least ATTENTION_LEVEL of its largest value there,
    then into the outer cells of the grid next to the region. A map responds to the edges of
    what it sees: a peak lies next to, not always on, a tag (a flat white square lights up
    along its inner edge), and what sits between that edge and the image border is part of
    it.
    """
    mean = grid_maps[members].mean(axis=0)
    around = grow(cells)
    top = float(mean[around].max())
    region = cells | (around & (mean >= ATTENTION_LEVEL * top)) if top > 0 else cells.copy()
    outer = np.zeros_like(region)
    outer[[0, -1], :] = True
    outer[:, [0, -1]] = True
    return region | (grow(region) & outer)


def _flag(name: str, cells: np.ndarray, shape: str, n: int, k: int, base: float,
          area: float, against_rest: bool, p: float, off_share: float | None,
          there: np.ndarray, cover: np.ndarray, hits: np.ndarray, keys: np.ndarray,
          class_maps: torch.Tensor, counts: np.ndarray, attention: np.ndarray,
          member_rule: str = "peak in") -> Flag:
    share = k / n
    box = cells_box(cells)
    gh, gw = cells.shape
    mean_map = class_maps.mean(dim=0)
    fine = upsample_maps(mean_map[None], (gh * 4, gw * 4))[0].numpy()
    total = float(fine.sum())
    inside = cells.repeat(4, axis=0).repeat(4, axis=1)
    map_share = float(fine[inside].sum()) / total if total > 0 else None
    # Members whose peak is off the object (at the map's resolution) first.
    off_first = np.where(np.isfinite(cover[there]), cover[there] >= 0.5,
                         np.where(hits[there] == 0, False, True))
    members = keys[there][np.argsort(off_first, kind="stable")].tolist()
    where = describe_cells(cells, shape)
    other = "other classes' maps" if against_rest else "maps spread evenly"
    message = (f"class {name}: {share:.0%} of its maps ({k} of {n}) {member_rule} the same "
               f"off-object region, the {place_text(cells, shape)}, vs {base:.0%} of {other}")
    evidence: dict[str, Any] = {
        "rule": "scan of windows, bands and a frame on the peak grid (one-sided Fisher exact "
                "test vs the other classes' peaks, binomial vs the area share without them, "
                "Bonferroni over regions) or a region of any shape found in the maps of half "
                "the samples and tested on the other half; Bonferroni over the two searches, "
                "Benjamini-Hochberg over the audit's class-level tests; off the object at the "
                "map's resolution (see auditor.detect.location)",
        "grid_size": [gh, gw],
        "grid_counts": counts.tolist(),
        "region_box": cells_box(attention),
        "region_cells": attention.astype(int).tolist(),
        "scan_cells": cells.astype(int).tolist(),
        "scan_box": box,
        "region_shape": shape,
        "region": where,
        "n": n,
        "k": k,
        "share": share,
        "share_of_class": share,
        "spread_share": area,
        "rest_share": base if against_rest else None,
        "excess": share - base,
        "p_value": p,
        "off_object_share": off_share,
        "members": members,
        "mean_map": [[round(float(v), 4) for v in r] for r in mean_map.tolist()],
        "mean_map_share_in_region": map_share,
        "score_meaning": "share of the class's maps that peak in the region",
        "region_found_by": "scan",
    }
    return Flag(kind="fixed_location", severity=share_severity(share - base, k), class_name=name,
                score=share, message=message, evidence=evidence,
                samples=members)


def fixed_location_flags(samples: pd.DataFrame, maps: torch.Tensor | np.ndarray,
                         classes: list[str]) -> list[Flag]:
    """`fixed_location` flags (module rule; this rule's tests alone form the FDR family)."""
    return control_fdr(fixed_location_tests(samples, maps, classes))
