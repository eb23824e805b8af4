"""A band across the middle of the image, found from map mass beyond the members' objects
(a text line or watermark drawn over part of a class, crossing its objects).

The peak scan of auditor.detect.location cannot see such a band: it crosses the objects, so
the members' peaks often lie on them (or inside their hull), and the other classes' centred
objects peak in the same middle rows. What sets the band apart is where the members' map
MASS lies: along the whole band, most of it beyond their own object. This search is
auditor.detect.map_regions' cross-fitted test on a fixed family of middle bands, with an
off-object criterion read from mass instead of the peak:

| step | rule |
|---|---|
| bands | full-width bands of 1 or 2 rows and full-height bands of 1 or 2 columns lying in |
| | the middle half of the grid (rows, or columns, gh // 4 to gh - gh // 4); bands at |
| | and one cell in from an edge are the scan's (large objects put a class's mass |
| | one cell in from an edge wherever they lie, auditor.detect.location) |
| beyond the object | a sample's off-disc share in a band: the share of its map mass in the |
| | band that lies outside a disc of its object's area around its centroid |
| | (location.object_discs); NaN without a mask |
| members | a class's samples whose share of map mass in the band is at least a threshold t, |
| | chosen on one half (map_regions.choose_threshold: at least MIN_LIFT x the band's |
| | area share), among thresholds whose members are mostly (at least half) beyond |
| | their objects: off-disc share >= OFF_DISC (0.5) |
| band | on the choosing half, the band whose members give the smallest Fisher p |
| test | on the other half, one-sided Fisher exact test of the members against the other |
| | classes' samples reaching t; the smaller p of the two directions, times 2 |

A clean class's maps sit on its objects: their mass in any middle band lies mostly inside
the disc (an L's inner corner, a ring's hole and a bar's sides are within a disc of the
object's area), so the off-disc criterion stops them; without it, this search flagged clean
classes in 9 of 12 planted-shortcut runs at a 20% share. auditor.detect.location applies the
effect, off-disc and object-following gates to the members and makes it a third search.
"""

from __future__ import annotations

import numpy as np

from auditor.detect.groups import class_rows
from auditor.detect.map_regions import (
    MAX_POOL,
    MIN_HALF,
    Candidates,
    MapRegion,
    better_direction,
    fisher_greater,
    halves,
    mass_shares,
    pick_thresholds,
    rest_reaching,
    threshold_candidates,
)

OFF_DISC = 0.5  # a member's band mass beyond its object's disc: at least this share
DISC_STEPS = 4  # points per map cell side where the disc's cover of a cell is measured
BLOCK = 4096  # samples whose disc cover is computed at once (bounds memory)


def middle_bands(gh: int, gw: int) -> np.ndarray:
    """bool [R, gh, gw]: the full-width bands of 1 or 2 rows within rows gh // 4 to
    gh - gh // 4 and the full-height ones of 1 or 2 columns within the middle columns."""
    bands = []
    for side in (1, 2):
        for start in range(gh // 4, gh - gh // 4 - side + 1):
            band = np.zeros((gh, gw), dtype=bool)
            band[start:start + side] = True
            bands.append(band)
        for start in range(gw // 4, gw - gw // 4 - side + 1):
            band = np.zeros((gh, gw), dtype=bool)
            band[:, start:start + side] = True
            bands.append(band)
    return np.stack(bands) if bands else np.zeros((0, gh, gw), dtype=bool)


def off_disc_shares(grid_maps: np.ndarray, discs: np.ndarray, regions: np.ndarray
                    ) -> np.ndarray:
    """float [N, R]: the share of each sample's map mass in each region lying outside its
    object's disc (grid_maps float [N, gh, gw] >= 0; discs float [N, 3]: centroid x, y and
    radius, fractions of the side, location.object_discs; regions bool [R, gh, gw]). NaN
    without a centroid, or with no mass in the region."""
    n, gh, gw = grid_maps.shape
    flat_regions = regions.reshape(len(regions), -1).astype(np.float32)
    ys = (np.arange(gh * DISC_STEPS) + 0.5) / (gh * DISC_STEPS)
    xs = (np.arange(gw * DISC_STEPS) + 0.5) / (gw * DISC_STEPS)
    mass = mass_shares(grid_maps, np.eye(gh * gw, dtype=bool).reshape(-1, gh, gw))
    out = np.full((n, len(regions)), np.nan)
    for start in range(0, n, BLOCK):
        part = slice(start, start + BLOCK)
        cx, cy, radius = (discs[part, i, None, None] for i in range(3))
        inside = (xs[None, None, :] - cx) ** 2 + (ys[None, :, None] - cy) ** 2 <= radius ** 2
        # Share of each cell outside the disc, [n, gh * gw]: its points inside counted in
        # uint8 (at most DISC_STEPS ** 2 = 16), rows of points first (contiguous runs): the
        # same values as a float mean over both axes, 6x faster.
        cells = inside.reshape(-1, gh, DISC_STEPS, gw, DISC_STEPS)
        counts = cells.sum(axis=2, dtype=np.uint8).sum(axis=3, dtype=np.uint8)
        outside = 1.0 - counts / DISC_STEPS ** 2
        outside = outside.reshape(-1, gh * gw).astype(np.float32)
        in_region = mass[part] @ flat_regions.T
        beyond = (mass[part] * outside) @ flat_regions.T
        with np.errstate(divide="ignore", invalid="ignore"):
            share = np.where(in_region > 0, beyond / in_region, np.nan)
        known = np.isfinite(discs[part, :2]).all(axis=1)
        out[part] = np.where(known[:, None], share, np.nan)
    return out


def band_mass(grid_maps: np.ndarray, class_index: np.ndarray, discs: np.ndarray,
              n_classes: int) -> list[MapRegion | None]:
    """The cross-fitted middle-band test (module rule) of every class.

    Args:
        grid_maps: float [N, gh, gw], max-normalised maps pooled to the scan grid.
        class_index: int [N], each sample's class in [0, n_classes); -1 leaves it out.
        discs: float [N, 3], each object's disc (location.object_discs); NaN without masks.
        n_classes: number of classes.
    Returns, per class, the band of the direction with the smaller p (doubled), or None when
    no band's members are mostly beyond their objects, or the class has fewer than
    map_regions.MIN_HALF samples in a half.
    """
    regions = middle_bands(*grid_maps.shape[1:])
    used = (class_index >= 0) & np.isfinite(discs[:, :2]).all(axis=1)
    if not len(regions) or not used.any():
        return [None] * n_classes
    index = np.where(used, class_index, -1)
    off_disc = off_disc_shares(grid_maps, discs, regions)
    beyond = off_disc >= OFF_DISC
    # A sample's statistic: its share of map mass in the band, 0 where most of that lies on
    # its own object (its object's mass does not make it a member).
    share = np.where(beyond, mass_shares(grid_maps, regions), 0.0)  # [N, R]
    area = regions.reshape(len(regions), -1).mean(axis=1)
    first = halves(index)
    rows = class_rows(index, range(n_classes))
    second = (index >= 0) & ~first
    tested = np.minimum(np.bincount(index[first], minlength=n_classes),
                        np.bincount(index[second], minlength=n_classes)) >= MIN_HALF
    # Every used row of each half: the first half chooses and the second tests, then back.
    halves_rows = (np.flatnonzero(first), np.flatnonzero(second))
    ways = [_one_way(share, beyond, area, regions, index, rows, tested, chooses, pools)
            for chooses, pools in ((first, halves_rows), (second, halves_rows[::-1]))]
    return [better_direction(pair) if tested[c] else None
            for c, pair in enumerate(zip(*ways, strict=True))]


def pooled_rest(half: np.ndarray, mine: np.ndarray) -> np.ndarray:
    """`pooled_rows` of the rows of `half` (ascending) that are not in `mine` (ascending, a
    subset of `half`), without building that difference: O(MAX_POOL log rows) a class, not
    O(rows)."""
    size = half.size - mine.size
    if size <= MAX_POOL:
        return np.setdiff1d(half, mine, assume_unique=True)
    wanted = np.linspace(0, size - 1, MAX_POOL).astype(int)
    # The i-th row of `mine` would sit at position skipped[i] of the difference; a wanted
    # position moves right by the number of `mine` rows at or before it.
    skipped = np.searchsorted(half, mine) - np.arange(mine.size)
    return half[wanted + np.searchsorted(skipped, wanted, side="right")]


def _one_way(share: np.ndarray, beyond: np.ndarray, area: np.ndarray, regions: np.ndarray,
             index: np.ndarray, rows: dict[object, np.ndarray], tested: np.ndarray,
             choose: np.ndarray, pools: tuple[np.ndarray, np.ndarray]
             ) -> list[MapRegion | None]:
    """Per class (`tested`, bool [C]), the band and threshold chosen on its `choose` rows
    (smallest Fisher p among bands with a threshold; the first of equals), tested on its other
    rows; this direction's p alone (None where no band has a threshold). share, beyond:
    [N, R]; index: int [N], the class (-1 not used); rows: each class's rows (ascending);
    pools: every used row of the choosing half and of the testing half. Every class's
    candidates of one band come from one sort (threshold_candidates); the other classes'
    pools are drawn only for classes with a candidate."""
    n_classes, n_bands = len(tested), len(regions)
    picked = np.flatnonzero(choose & tested[np.maximum(index, 0)] & (index >= 0))
    owner = index[picked]
    n_pick = np.bincount(owner, minlength=n_classes)
    found = [threshold_candidates(share[picked, r], owner, n_classes, beyond[picked, r],
                                  np.full(n_classes, area[r])) for r in range(n_bands)]
    # Problem c x R + r: class c in band r; ordered by problem (each one's candidates stay
    # ascending).
    problem = np.concatenate([f.problem * n_bands + r for r, f in enumerate(found)])
    order = np.argsort(problem, kind="stable")
    candidates = Candidates(problem=problem[order],
                            value=np.concatenate([f.value for f in found])[order],
                            k=np.concatenate([f.k for f in found])[order])
    problems, starts = np.unique(candidates.problem, return_index=True)
    # The other classes' rows of the choosing half for the classes that have a candidate.
    chosen_rows = {int(c): rows[c][choose[rows[c]]] for c in np.unique(problems // n_bands)}
    rest_choose = {c: pooled_rest(pools[0], mine) for c, mine in chosen_rows.items()}
    k_rest = np.zeros(candidates.value.size, dtype=np.int64)
    ends = np.append(starts[1:], candidates.value.size)[:starts.size]
    for problem_id, start, end in zip(problems, starts, ends, strict=True):
        c, r = divmod(int(problem_id), n_bands)
        k_rest[start:end] = rest_reaching(share[rest_choose[c], r], candidates.value[start:end])
    n_rest = np.zeros(n_classes * n_bands, dtype=np.int64)
    for c, rest in rest_choose.items():
        n_rest[c * n_bands:(c + 1) * n_bands] = rest.size
    best, p = pick_thresholds(candidates, k_rest, np.repeat(n_pick, n_bands), n_rest,
                              n_classes * n_bands)
    out: list[MapRegion | None] = [None] * n_classes
    for c in chosen_rows:
        bands_p = p[c * n_bands:(c + 1) * n_bands]
        if np.isnan(bands_p).all():
            continue
        r = int(np.argmin(np.where(np.isnan(bands_p), np.inf, bands_p)))
        at = best[c * n_bands + r]
        threshold = float(candidates.value[at])
        mine = rows[c]
        test = mine[~choose[mine]]
        rest_test = pooled_rest(pools[1], test)
        k, k_test = int((share[test, r] >= threshold).sum()), int(
            (share[rest_test, r] >= threshold).sum())
        all_rest = rest_choose[c].size + rest_test.size
        out[c] = MapRegion(cells=regions[r], threshold=threshold,
                           p_value=float(fisher_greater(k, test.size, k_test, rest_test.size)),
                           members=mine[share[mine, r] >= threshold],
                           rest_share=(int(k_rest[at]) + k_test) / all_rest if all_rest
                           else float("nan"), k=k, n=int(test.size),
                           k_rest=k_test, n_rest=int(rest_test.size))
    return out
