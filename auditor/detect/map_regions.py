"""Class-specific attention regions of any shape, found from the maps themselves and tested on
samples that did not choose them (cross-fitting).

The fixed scan of auditor.detect.location tests windows, bands and a frame of set sizes. A
shortcut's footprint need not be one of them (a text band whose peaks wander along and out of
its rows, an L-shaped ruler, a logo between cells). This rule lets the maps draw the region:

| step | rule |
|---|---|
| halves | every class's ok samples with a defined map are split in two halves, alternately in |
| | table order (position 0, 2, 4 ... and 1, 3, 5 ...); half A chooses, half B tests, |
| | then the other way round |
| hot cells | a sample's map (max-normalised, average-pooled to the scan grid) is hot in a cell |
| | at least HOT_LEVEL (0.5) of its largest cell |
| contrast | per cell, the share of the class's choosing half that is hot there minus the share |
| | of the other classes' choosing half (a corner, a band, a frame or any other shape |
| | lit by part of the class and not by the others) |
| region | cells whose contrast is at least REGION_LEVEL (0.5) of the largest, the |
| | 8-connected component of the largest; none when the largest contrast is under |
| | MIN_CONTRAST (0.05) or the region covers more than MAX_AREA (half) of the grid |
| in the region | a sample's statistic is the share of its map's mass in the region |
| members | samples whose share is at least a threshold t; t is chosen on the choosing half |
| | among the class's quantiles in steps of 2.5% (the smallest Fisher p below), at least |
| | MIN_LIFT (2) x the region's share of the grid (a member's map is at least twice as |
| | dense there as a flat map: attention gathered there, not spread over it), |
| | with at least half of the members' peaks off the object (a minority shortcut's |
| | carriers, not the class's own objects where those sit near the region) |
| test | on the testing half, one-sided hypergeometric (Fisher exact) test: the class's |
| | samples reach t in the region more often than the other classes' samples do |
| p | the smaller of the two directions' p, times 2 (Bonferroni) |

The region and t are chosen without the testing half, so the test's p-value is valid as it
stands: the search over shapes and thresholds costs nothing on clean data (where a region drawn
from noise on one half does not repeat on the other), and no correction for the number of
shapes is needed. The finding's region and threshold are those of the direction with the
smaller p; its members are every sample of the class (both halves) that reaches t there.
auditor.detect.location combines this test with its scan (one p per class) and applies the
same effect and off-object gates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

from auditor.detect.groups import class_rows
from auditor.detect.tail_screen import could_be_smallest, log_tails

HOT_LEVEL = 0.5
REGION_LEVEL = 0.5
MIN_CONTRAST = 0.05
MAX_AREA = 0.5
THRESHOLD_QUANTILES = np.arange(1, 40) / 40  # every 2.5% of the class
MIN_HALF = 8  # samples of the class per half: fewer and the class is not tested
#: A member's map is at least this many times as dense in the region as a flat map (the
#: lift suspicion calls attention on the border band: auditor.detect.suspicion.BORDER_LIFT).
MIN_LIFT = 2.0
#: Other classes' samples per half a class is compared with (evenly spaced beyond that): the
#: test's power is set by the class's own samples, and this bounds time and memory at
#: O(classes x (class size + MAX_POOL) x cells) on large data sets.
MAX_POOL = 8192
CLASS_BLOCK = 64  # regions whose pooled shares are computed in one product


@dataclass
class MapRegion:
    """A class-specific region found on one half of the samples and tested on the other."""

    cells: np.ndarray  # bool [gh, gw], rows = y, top first
    threshold: float  # share of a map's mass in `cells` that makes a sample a member
    p_value: float  # both directions, Bonferroni
    members: np.ndarray  # int: rows of the class (both halves) reaching the threshold
    rest_share: float  # share of the other classes' (pooled) samples reaching it
    k: int  # class members in the testing half
    n: int  # class samples in the testing half
    k_rest: int  # other classes' samples reaching the threshold in the testing half
    n_rest: int  # other classes' samples in the testing half


def halves(class_index: np.ndarray) -> np.ndarray:
    """bool [N]: True for the first half (A) of each class's samples, alternately in order
    (positions 0, 2, 4 ... of the class); class_index int [N], -1 = not used."""
    first = np.zeros(class_index.size, dtype=bool)
    order = np.argsort(class_index, kind="stable")
    sorted_classes = class_index[order]
    starts = np.searchsorted(sorted_classes, sorted_classes, side="left")
    first[order] = (np.arange(class_index.size) - starts) % 2 == 0
    return first & (class_index >= 0)


def hot_cells(grid_maps: np.ndarray) -> np.ndarray:
    """bool [N, gh, gw]: cells at least HOT_LEVEL of the sample's largest cell (none for an
    all-zero map)."""
    top = grid_maps.reshape(len(grid_maps), -1).max(axis=1)
    return (grid_maps >= HOT_LEVEL * top[:, None, None]) & (top[:, None, None] > 0)


def contrast_regions(hot: np.ndarray, class_index: np.ndarray, n_classes: int
                     ) -> list[np.ndarray | None]:
    """Per class, the region (module rule) from the hot cells bool [N, gh, gw] of the samples
    given (class_index int [N], -1 = not used): bool [gh, gw], or None when no cell stands
    out. Every class at once: the hot counts from one sort by class, the largest contrast's
    8-connected component grown from its cell inside the cells above REGION_LEVEL (the
    component scipy's ndimage.label would give it)."""
    shape, size = hot.shape[1:], math.prod(hot.shape[1:])
    used = np.flatnonzero(class_index >= 0)
    order = used[np.argsort(class_index[used], kind="stable")]
    counts = np.bincount(class_index[used], minlength=n_classes)
    # Hot samples per class and cell: integer sums (exact in any order) of each class's rows.
    sums = np.zeros((n_classes, size))
    present = np.flatnonzero(counts)
    if present.size:
        sums[present] = np.add.reduceat(hot.reshape(-1, size)[order],
                                        (np.cumsum(counts) - counts)[present], axis=0,
                                        dtype=np.int64)
    counts = counts.astype(float)
    total, n_total = sums.sum(axis=0), counts.sum()
    others = n_total - counts
    with np.errstate(divide="ignore", invalid="ignore"):
        contrast = sums / counts[:, None] - (total - sums) / others[:, None]
    top = contrast.max(axis=1, initial=-np.inf)
    found = (counts > 0) & (others > 0) & (top >= MIN_CONTRAST)
    contrast, top = contrast[found], top[found]
    lit = (contrast >= REGION_LEVEL * top[:, None]).reshape(-1, *shape)
    region = np.zeros_like(lit)
    region.reshape(-1, size)[np.arange(len(region)), np.argmax(contrast, axis=1)] = True
    while True:
        grown = grow(region) & lit
        if np.array_equal(grown, region):
            break
        region = grown
    small = region.reshape(-1, size).mean(axis=1) <= MAX_AREA
    regions: list[np.ndarray | None] = [None] * n_classes
    for c, cells, keep in zip(np.flatnonzero(found), region, small, strict=True):
        regions[c] = cells if keep else None
    return regions


def grow(cells: np.ndarray) -> np.ndarray:
    """bool [..., h, w]: the cells and their 8 neighbours on each grid (a binary dilation by a
    3x3 square, no cells beyond the edge; scipy's costs more to call than to compute on a
    small grid)."""
    h, w = cells.shape[-2:]
    padded = np.zeros((*cells.shape[:-2], h + 2, w + 2), dtype=bool)
    padded[..., 1:-1, 1:-1] = cells
    out = np.zeros(cells.shape, dtype=bool)
    for dy in range(3):
        for dx in range(3):
            out |= padded[..., dy:dy + h, dx:dx + w]
    return out


def _mass(grid_maps: np.ndarray) -> np.ndarray:
    """float32 [N, cells]: each map's share of its mass per cell (NaN rows for all-zero maps)."""
    flat = grid_maps.reshape(len(grid_maps), -1).astype(np.float32)
    total = flat.sum(axis=1, keepdims=True)
    return np.divide(flat, total, out=np.full_like(flat, np.nan), where=total > 0)


def mass_shares(grid_maps: np.ndarray, regions: np.ndarray) -> np.ndarray:
    """float [N, R]: each sample's share of map mass in each region (grid_maps float
    [N, gh, gw] >= 0, regions bool [R, gh, gw]); NaN for an all-zero map."""
    return _mass(grid_maps) @ regions.reshape(len(regions), -1).T.astype(np.float32)


def pooled_rows(rows: np.ndarray) -> np.ndarray:
    """At most MAX_POOL of the row indices `rows`, evenly spaced (all of them when fewer)."""
    if rows.size <= MAX_POOL:
        return rows
    return rows[np.linspace(0, rows.size - 1, MAX_POOL).astype(int)]


def fisher_greater(k: np.ndarray | int, n: int, k_rest: np.ndarray | int, n_rest: int
                   ) -> np.ndarray:
    """One-sided hypergeometric p that k of n exceeds what k + k_rest of n + n_rest gives."""
    k = np.asarray(k)
    return stats.hypergeom.sf(k - 1, n + n_rest, k + k_rest, n)


@dataclass
class Candidates:
    """Member thresholds of many problems (a class's shares in one region each), flattened in
    problem order and, within a problem, ascending."""

    problem: np.ndarray  # int [K]: the problem each candidate belongs to
    value: np.ndarray  # [K], the values' dtype: the threshold
    k: np.ndarray  # int [K]: the problem's class values at least the threshold


def threshold_candidates(values: np.ndarray, problem: np.ndarray, n_problems: int,
                         off: np.ndarray, area: np.ndarray) -> Candidates:
    """The class side of choose_threshold's rule for many problems at once: per problem, its
    finite values' THRESHOLD_QUANTILES (method "lower", distinct), those at least MIN_LIFT x
    its area whose reaching values are mostly off the object.

    values: float [M], each problem's class values (NaN never reaches a threshold); problem:
    int [M] in [0, n_problems); off: bool [M]; area: float [n_problems], the region's share of
    the grid. One sort of (problem, value) replaces a quantile, a unique and a sort per
    problem; each step computes what numpy does for one problem (the quantile's index
    floor((n - 1) q), the lift bound rounded to the values' dtype as a Python float is when
    compared with them)."""
    if not values.size:
        empty = np.zeros(0, dtype=np.intp)
        return Candidates(problem=empty, value=values[:0], k=empty)
    order = np.lexsort((values, problem))
    ordered, owner, ordered_off = values[order], problem[order], off[order]
    size = np.bincount(problem, minlength=n_problems)
    start = np.cumsum(size) - size
    finite = np.bincount(problem[np.isfinite(values)], minlength=n_problems)  # NaN sort last
    index = np.floor((finite[:, None] - 1) * THRESHOLD_QUANTILES).astype(np.intp)
    # [S, Q] sorted places (clipped where a problem has no finite value: never kept).
    place = np.minimum(start[:, None] + np.maximum(index, 0), ordered.size - 1)
    value = ordered[place]
    distinct = np.ones(place.shape, dtype=bool)
    distinct[:, 1:] = value[:, 1:] != value[:, :-1]
    bound = (MIN_LIFT * np.asarray(area, dtype=np.float64)).astype(values.dtype)
    keep = (finite > 0)[:, None] & distinct & (value >= bound[:, None])
    # Values reaching a candidate: from the first sorted place of its value to the problem's
    # last finite one (the start of its run of equal values).
    new_run = np.ones(ordered.size, dtype=bool)
    new_run[1:] = (ordered[1:] != ordered[:-1]) | (owner[1:] != owner[:-1])
    run_start = np.maximum.accumulate(np.where(new_run, np.arange(ordered.size), 0))
    first = run_start[place]
    end = (start + finite)[:, None]
    reach = end - first
    off_before = np.concatenate([[0], np.cumsum(ordered_off)])
    off_share = (off_before[end] - off_before[first]) / np.maximum(reach, 1)
    keep &= off_share >= 0.5
    rows, columns = np.nonzero(keep)
    return Candidates(problem=rows, value=value[rows, columns], k=reach[rows, columns])


def pick_thresholds(candidates: Candidates, k_rest: np.ndarray, n: np.ndarray,
                    n_rest: np.ndarray, n_problems: int) -> tuple[np.ndarray, np.ndarray]:
    """Per problem, the candidate whose Fisher p (fisher_greater of its k of n against k_rest
    [K] of n_rest; n, n_rest int [n_problems]) is smallest, the first (smaller) of equals:
    (position in `candidates`, -1 where the problem has none; its p, NaN there). Only the
    candidates that can be their problem's smallest are computed exactly (tail_screen)."""
    args = (candidates.k, n[candidates.problem], k_rest, n_rest[candidates.problem])
    log_p, p = log_tails(*args, exact=lambda which: fisher_greater(*(a[which] for a in args)))
    near = could_be_smallest(log_p, candidates.problem, n_problems)
    todo = near & np.isnan(p)
    p[todo] = fisher_greater(*(a[todo] for a in args))
    p[~near] = np.inf
    best = np.full(n_problems, -1)
    if p.size:
        order = np.lexsort((np.arange(p.size), p, candidates.problem))
        owner = candidates.problem[order]
        leads = np.ones(order.size, dtype=bool)
        leads[1:] = owner[1:] != owner[:-1]
        best[owner[leads]] = order[leads]
    chosen = np.full(n_problems, np.nan)
    chosen[best >= 0] = p[best[best >= 0]]
    return best, chosen


def choose_threshold(share_class: np.ndarray, share_rest: np.ndarray, area: float,
                     off_class: np.ndarray) -> float | None:
    """The member threshold (module rule): among the class's shares (finite ones) at its
    THRESHOLD_QUANTILES, those at least MIN_LIFT x `area` (the region's share of the grid:
    what a flat map puts there) that make members mostly off the object (off_class bool: the
    sample's peak is off it), the one whose Fisher p is smallest (ties: the smaller, which
    keeps every member of an equally good split); None when there is none. One problem of
    threshold_candidates and pick_thresholds."""
    found = threshold_candidates(share_class, np.zeros(share_class.size, dtype=np.intp), 1,
                                 off_class, np.array([area]))
    best, _ = pick_thresholds(found, rest_reaching(share_rest, found.value),
                              np.array([share_class.size]), np.array([share_rest.size]), 1)
    return None if best[0] < 0 else float(found.value[best[0]])


def rest_reaching(share_rest: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """int [T]: the values of share_rest (NaN never reaching) at least each threshold."""
    rest = np.sort(share_rest[np.isfinite(share_rest)])
    return rest.size - np.searchsorted(rest, thresholds, side="left")


def _one_way(mass: np.ndarray, hot: np.ndarray, class_index: np.ndarray, off: np.ndarray,
             groups: list[np.ndarray], choose: np.ndarray, tested: np.ndarray
             ) -> list[MapRegion | None]:
    """Regions and thresholds chosen on the `choose` samples, tested on the others, for the
    classes `tested` (bool [C]); p-values of this direction alone. The other classes are
    represented by at most MAX_POOL samples of each half (`pooled_rows`): a class's rest is
    its half's pool without the class's own pooled samples."""
    n_classes = len(groups)
    regions = contrast_regions(hot, np.where(choose, class_index, -1), n_classes)
    found: list[MapRegion | None] = [None] * n_classes
    wanted = [c for c in range(n_classes) if tested[c] and regions[c] is not None]
    used = class_index >= 0
    pools = {half: pooled_rows(np.flatnonzero(used & (choose if half else ~choose)))
             for half in (True, False)}
    pool_mass = {half: mass[rows] for half, rows in pools.items()}
    # Each class's rows in each half's pool, found once for every block.
    pool_own = {half: class_rows(class_index[rows], range(n_classes))
                for half, rows in pools.items()}
    for start in range(0, len(wanted), CLASS_BLOCK):
        block = wanted[start:start + CLASS_BLOCK]
        cells = np.stack([regions[c] for c in block]).reshape(len(block), -1)
        pooled = {half: values @ cells.T.astype(np.float32) for half, values in pool_mass.items()}
        rest = {half: _PoolCounts(values, [pool_own[half][c] for c in block])
                for half, values in pooled.items()}
        share = [mass[groups[c]] @ cells[column].astype(np.float32)
                 for column, c in enumerate(block)]
        picked = [choose[groups[c]] for c in block]
        candidates = threshold_candidates(
            np.concatenate([s[pick] for s, pick in zip(share, picked, strict=True)]),
            np.repeat(np.arange(len(block)), [int(pick.sum()) for pick in picked]), len(block),
            np.concatenate([off[groups[c]][pick] for c, pick in zip(block, picked, strict=True)]),
            cells.mean(axis=1))
        k_rest = rest[True].reaching(candidates.problem, candidates.value)
        best, _ = pick_thresholds(
            candidates, k_rest, np.array([int(pick.sum()) for pick in picked]), rest[True].size,
            len(block))
        chosen = np.flatnonzero(best >= 0)
        thresholds = candidates.value[best[chosen]]
        reach = [share[column] >= threshold for column, threshold in
                 zip(chosen, thresholds, strict=True)]
        k = np.array([int(r[~picked[column]].sum()) for column, r in
                      zip(chosen, reach, strict=True)])
        n = np.array([int((~picked[column]).sum()) for column in chosen])
        k_test = rest[False].reaching(chosen, thresholds)
        p = fisher_greater(k, n, k_test, rest[False].size[chosen])
        for i, column in enumerate(chosen):
            c = block[column]
            all_rest = rest[True].size[column] + rest[False].size[column]
            found[c] = MapRegion(
                cells=regions[c], threshold=float(thresholds[i]), p_value=float(p[i]),
                members=groups[c][reach[i]],
                rest_share=(int(k_rest[best[column]] + k_test[i]) / int(all_rest)
                            if all_rest else 0.0),
                k=int(k[i]), n=int(n[i]), k_rest=int(k_test[i]),
                n_rest=int(rest[False].size[column]))
    return found


class _PoolCounts:
    """A half's pooled shares in each region of a block (float [P, B]) and the pooled rows of
    each region's class (int, positions in the pool): counts over the pool without one
    class's own rows."""

    def __init__(self, values: np.ndarray, own: list[np.ndarray]) -> None:
        self.by_region = np.ascontiguousarray(values.T)  # [B, P]: a region's shares in a row
        self.own = own  # the pool's rows of each region's own class (a few of the pool)
        self.size = len(values) - np.array([own.size for own in self.own], dtype=np.int64)

    def reaching(self, columns: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
        """int [T]: the rest's values in column columns[i] at least thresholds[i] (NaN never
        reaches). Compared directly, a column's thresholds at once (a class has a few
        candidates, fewer than a sort of the pool costs per value): the whole pool's count
        less its own class's rows'."""
        out = np.zeros(len(columns), dtype=np.int64)
        if not out.size:
            return out
        order = np.argsort(columns, kind="stable")
        ordered = columns[order]
        starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
        for start, end in zip(starts, np.r_[starts[1:], ordered.size], strict=True):
            at = order[start:end]
            column = int(ordered[start])
            values, wanted = self.by_region[column], thresholds[at, None]
            out[at] = (np.count_nonzero(values >= wanted, axis=1)
                       - np.count_nonzero(values[self.own[column]] >= wanted, axis=1))
        return out


def map_regions(grid_maps: np.ndarray, class_index: np.ndarray, off: np.ndarray,
                n_classes: int) -> list[MapRegion | None]:
    """The cross-fitted region test (module rule) of every class.

    Args:
        grid_maps: float [N, gh, gw], max-normalised maps pooled to the scan grid.
        class_index: int [N], each sample's class in [0, n_classes); -1 leaves the sample out
            (a degenerate map, a label not audited).
        off: bool [N], the sample's map peaks off its object (auditor.detect.location says
            how that is judged with masks, boxes or neither).
        n_classes: number of classes.
    Returns, per class, the region of the direction with the smaller p (p doubled for the two
    directions), or None when the class has fewer than MIN_HALF samples in a half, the others
    fewer than 2 x MIN_HALF, or neither direction finds a region.
    """
    first = halves(class_index)
    used = class_index >= 0
    counts_first = np.bincount(class_index[first], minlength=n_classes)
    counts_second = np.bincount(class_index[used & ~first], minlength=n_classes)
    rest = used.sum() - counts_first - counts_second
    tested = (np.minimum(counts_first, counts_second) >= MIN_HALF) & (rest >= 2 * MIN_HALF)
    order = np.argsort(class_index, kind="stable")
    bounds = np.searchsorted(class_index[order], np.arange(n_classes + 1), side="left")
    groups = [order[bounds[c]:bounds[c + 1]] for c in range(n_classes)]
    hot, mass = hot_cells(grid_maps), _mass(grid_maps)
    ways = [_one_way(mass, hot, class_index, off, groups, choose, tested)
            for choose in (first, used & ~first)]
    return [better_direction(pair) for pair in zip(*ways, strict=True)]


def better_direction(pair: tuple[MapRegion | None, ...]) -> MapRegion | None:
    """Of a class's regions found in each direction (None where none was), the one with the
    smaller p, its p doubled (Bonferroni over the two directions); None when neither."""
    tried = [found for found in pair if found is not None]
    if not tried:
        return None
    best = min(tried, key=lambda found: found.p_value)
    best.p_value = min(1.0, 2 * best.p_value)
    return best
