"""Statistics the detectors use: the Wilson interval of a proportion, Cramér's V and mutual
information of contingency tables (batched over tables), and each group of one pooled sample
against the rest of it (Mann-Whitney U, median of the rest) from one ranking of the whole
sample. Pure functions of numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import special, stats
from scipy.stats import norm

from auditor.errors import UsageError


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion successes / n, as (low, high) in [0, 1].

    Unlike the normal approximation it stays inside [0, 1] and is sensible at 0% and 100%.
    """
    if n <= 0:
        raise UsageError(f"wilson_interval needs n > 0 trials, got n={n}")
    if not 0 <= successes <= n:
        raise UsageError(f"wilson_interval needs 0 <= successes <= n, got {successes} of {n}")
    if not 0 < confidence < 1:
        raise UsageError(f"confidence must be in (0, 1), got {confidence}; use e.g. 0.95")
    z = float(norm.ppf(0.5 + confidence / 2))
    p = successes / n
    z2n = z * z / n
    centre = (p + z2n / 2) / (1 + z2n)
    half = z / (1 + z2n) * math.sqrt(p * (1 - p) / n + z2n / (4 * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def cramers_v(table: np.ndarray, bias_corrected: bool = True) -> np.ndarray:
    """Cramér's V of contingency tables.

    Args:
        table: counts [..., R, C] (any leading batch dims); empty rows/columns are ignored.
        bias_corrected: Bergsma's (2013) correction, which makes V of independent data ~0
            instead of growing with the number of cells.

    Returns:
        V [...] in [0, 1]; 0 where a table has fewer than 2 non-empty rows or columns.
    """
    t = np.asarray(table, dtype=np.float64)
    n = t.sum(axis=(-2, -1))
    rows = t.sum(axis=-1)
    cols = t.sum(axis=-2)
    expected = rows[..., :, None] * cols[..., None, :]
    expected /= np.maximum(n, 1)[..., None, None]
    # (t - expected)^2 / expected, 0 in empty cells; in place (the probes' permutation tables
    # are millions of cells): the same operations, so the same values, as out of place.
    empty = ~(expected > 0)
    cells = t - expected
    np.square(cells, out=cells)
    expected[empty] = 1.0
    cells /= expected
    cells[empty] = 0.0
    chi2 = cells.sum(axis=(-2, -1))
    phi2 = chi2 / np.maximum(n, 1)
    r = (rows > 0).sum(axis=-1).astype(np.float64)
    c = (cols > 0).sum(axis=-1).astype(np.float64)
    if bias_corrected:
        m = np.maximum(n - 1, 1)
        phi2 = np.maximum(0.0, phi2 - (r - 1) * (c - 1) / m)
        r = r - (r - 1) ** 2 / m
        c = c - (c - 1) ** 2 / m
    denom = np.minimum(r, c) - 1
    v = np.sqrt(phi2 / np.where(denom > 0, denom, 1.0))
    return np.where(denom > 0, np.minimum(v, 1.0), 0.0)


def mutual_information(table: np.ndarray) -> np.ndarray:
    """Plug-in mutual information, in bits, of contingency tables [..., R, C] -> [...]."""
    t = np.asarray(table, dtype=np.float64)
    n = np.maximum(t.sum(axis=(-2, -1)), 1)[..., None, None]
    p = t / n
    outer = p.sum(axis=-1, keepdims=True) * p.sum(axis=-2, keepdims=True)
    ratio = np.where(p > 0, p / np.where(outer > 0, outer, 1.0), 1.0)
    return np.maximum((p * np.log2(ratio)).sum(axis=(-2, -1)), 0.0)


@dataclass(frozen=True)
class PooledSample:
    """A sample ranked once, so that each of many groups of its rows can be compared with the
    rest (`group_vs_rest_mannwhitneyu`, `rest_median`) without ranking the whole sample again
    per group: a thousand classes of a million rows would otherwise sort a million values a
    thousand times."""

    values: np.ndarray  # float64 [N], input order
    sorted_values: np.ndarray  # float64 [N], ascending
    sort_position: np.ndarray  # int64 [N]: where each input row lands in sorted_values
    ranks: np.ndarray  # float64 [N]: midranks (1-based, ties averaged), input order
    tie_term: float  # sum of t**3 - t over the groups of t tied values
    has_ties: bool


def pooled_sample(values: np.ndarray) -> PooledSample:
    """Rank `values` (float [N], finite) once: midranks and tie counts exactly as
    scipy.stats.mannwhitneyu computes them for the pooled sample."""
    x = np.asarray(values, dtype=np.float64)
    n = x.size
    order = np.argsort(x, kind="stable")
    ordered = x[order]
    first = np.concatenate([[True], ordered[:-1] != ordered[1:]]) if n else np.zeros(0, bool)
    starts = np.flatnonzero(first)
    counts = np.diff(starts, append=n)
    mid = (starts + 1) + (counts.astype(np.float64) - 1) / 2
    ranks = np.empty(n, dtype=np.float64)
    ranks[order] = np.repeat(mid, counts)
    position = np.empty(n, dtype=np.int64)
    position[order] = np.arange(n)
    # Same layout as scipy's tie array (counts at each group's first sorted place, zeros
    # elsewhere), so the float sum is the same to the last bit.
    ties = np.zeros(n, dtype=np.float64)
    ties[first] = counts
    return PooledSample(values=x, sorted_values=ordered, sort_position=position, ranks=ranks,
                        tie_term=float(np.sum(ties ** 3 - ties)),
                        has_ties=bool(np.any(counts > 1)))


def group_vs_rest_mannwhitneyu(pooled: PooledSample, positions: np.ndarray,
                               alternative: str) -> tuple[float, float]:
    """(U, p) of the group `positions` (int, ascending, non-empty) of the pooled sample against
    all its other rows: equal to scipy.stats.mannwhitneyu(group, rest, alternative=alternative)
    with its defaults (U counts pairs where the group value is larger, ties half; normal
    approximation with tie and continuity correction; scipy's exact distribution where scipy
    would use it: a side of at most 8 values and no ties). The rest must be non-empty."""
    n1 = int(positions.size)
    n2 = pooled.values.size - n1
    if (n1 <= 8 or n2 <= 8) and not pooled.has_ties:
        result = stats.mannwhitneyu(pooled.values[positions],
                                    np.delete(pooled.values, positions), alternative=alternative)
        return float(result.statistic), float(result.pvalue)
    u1 = pooled.ranks[positions].sum() - n1 * (n1 + 1) / 2
    u2 = n1 * n2 - u1
    u, factor = {"greater": (u1, 1), "less": (u2, 1),
                 "two-sided": (max(u1, u2), 2)}[alternative]
    n = n1 + n2
    s = np.sqrt(n1 * n2 / 12 * ((n + 1) - pooled.tie_term / (n * (n - 1))))
    with np.errstate(divide="ignore", invalid="ignore"):
        z = (u - n1 * n2 / 2 - 0.5) / s
    p = float(np.clip(special.ndtr(-z) * factor, 0.0, 1.0))
    return float(u1), p


def rest_median(pooled: PooledSample, positions: np.ndarray) -> float:
    """Median of the pooled sample without the rows `positions` (int, ascending): equal to
    np.median(np.delete(values, positions)), from the sorted sample (no sort per group)."""
    taken = np.sort(pooled.sort_position[positions])
    m = pooled.values.size - taken.size
    if m <= 0:
        return math.nan
    # The k-th (0-based) untaken sorted place lies after the c taken places whose number of
    # untaken places before them (place - index) is at most k.
    untaken_before = taken - np.arange(taken.size)
    ks = [(m - 1) // 2, m // 2] if m % 2 == 0 else [(m - 1) // 2]
    places = [k + int(np.searchsorted(untaken_before, k, side="right")) for k in ks]
    return float(np.mean(pooled.sorted_values[places]))


#: Largest sample whose signed-rank null scipy enumerates (2**n sign flips <= its 9 999
#: resamples) when the sample has ties or zeros.
_ENUMERATED_SIGNED_RANK = 13


def wilcoxon_signed_rank(x: np.ndarray, alternative: str) -> tuple[float, float]:
    """(statistic, p) of the Wilcoxon signed-rank test of `x` (float [n], finite, at least one
    non-zero) against 0: equal to scipy.stats.wilcoxon(x, alternative=alternative) with its
    defaults, to the bit.

    Where scipy enumerates the null distribution (n <= 13 with ties or zeros) it calls its
    generic permutation test, which evaluates the statistic once per sign flip in Python (1.5 s
    for 2**13 flips); here the 2**n statistics are one product of the flips with the ranks,
    and the p-value is counted as scipy counts it. Every other case is scipy's own call."""
    x = np.asarray(x, dtype=np.float64)
    n = x.size
    if n > _ENUMERATED_SIGNED_RANK or alternative not in ("less", "greater", "two-sided"):
        result = stats.wilcoxon(x, alternative=alternative)
        return float(result.statistic), float(result.pvalue)
    nonzero = x != 0
    ranks = np.zeros(n)
    ranks[nonzero] = stats.rankdata(np.abs(x[nonzero]))  # zeros are dropped (zero_method wilcox)
    ties = np.unique(np.abs(x[nonzero]), return_counts=True)[1]
    if nonzero.all() and not (ties > 1).any():
        result = stats.wilcoxon(x, alternative=alternative)
        return float(result.statistic), float(result.pvalue)
    # Every sign flip of the n values (a zero stays zero): R+ of each, exact in float64
    # (sums of half-integers).
    flips = (np.arange(2**n)[:, None] >> np.arange(n)) & 1
    positive = np.where(flips.astype(bool), x < 0, x > 0)
    null = positive.astype(np.float64) @ ranks
    observed = float(np.sum((x > 0).astype(np.float64) * ranks))
    gamma = abs(np.finfo(np.float64).eps * 100 * observed)
    less = np.count_nonzero(null <= observed + gamma) / float(2**n)
    greater = np.count_nonzero(null >= observed - gamma) / float(2**n)
    p = {"less": less, "greater": greater, "two-sided": min(less, greater) * 2}[alternative]
    if alternative == "two-sided":  # scipy's statistic is then the smaller of R+ and R-
        observed = min(observed, float(np.sum((x < 0).astype(np.float64) * ranks)))
    return observed, float(np.clip(p, 0.0, 1.0))
