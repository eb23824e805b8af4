"""Statistics the detectors use: the Wilson interval of a proportion, Cramér's V and mutual
information of contingency tables (batched over tables), each group of one pooled sample
against the rest of it (Mann-Whitney U, median of the rest) from one ranking of the whole
sample, and the Wilcoxon signed-rank test of many groups at once. Pure functions of numbers.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
from scipy import special, stats
from scipy.stats import norm

from auditor.detect.groups import Grouping, grouping, stable_group_sort
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
#: Largest sample for which scipy uses the exact null distribution (no ties, no zeros).
_EXACT_SIGNED_RANK = 50
_ALTERNATIVES = ("less", "greater", "two-sided")


@dataclass(frozen=True)
class SignedRankTests:
    """The Wilcoxon signed-rank test of each of G groups against 0 (`wilcoxon_signed_ranks`).
    NaN statistic and p for a group without a non-zero value."""

    statistic: np.ndarray  # float [G]: R+ (one-sided) or min(R+, R-) (two-sided), as scipy's
    p: np.ndarray  # float [G]
    r_plus: np.ndarray  # float [G]: sum of the ranks of |x| of the positive values
    r_minus: np.ndarray  # float [G]: of the negative values (zeros are not ranked)


def wilcoxon_signed_ranks(x: np.ndarray, groups: Grouping, alternative: str
                          ) -> SignedRankTests:
    """The Wilcoxon signed-rank test of x[rows of g] (x float [N], finite) against 0 for every
    group g at once, each equal to scipy.stats.wilcoxon(x[rows of g], alternative=alternative)
    with its defaults, to the bit.

    scipy's own choice of null distribution per group, computed here across groups: zeros are
    dropped from the ranks (zero_method "wilcox"); more than 50 values, or more than 13 with
    ties or zeros: the normal approximation with the tie correction, no continuity
    correction; at most 50 values without ties or zeros: the exact distribution of R+, which
    depends only on n (built once per n, `_exact_tails`); at most 13 with ties or zeros: every
    one of the 2**n sign flips (scipy's permutation test, which evaluates the statistic once
    per flip in Python: 1.5 s for 2**13), its p counted as scipy counts it."""
    if alternative not in _ALTERNATIVES:
        raise UsageError(f"alternative must be one of {', '.join(_ALTERNATIVES)}, "
                         f"got {alternative!r}")
    n_groups = groups.counts.size
    values = np.asarray(x, dtype=np.float64)[groups.order]
    group = np.repeat(np.arange(n_groups), groups.counts)
    nonzero = values != 0
    ranks = np.zeros(values.size)  # zeros are not ranked
    ranks[nonzero], tie_term, has_ties = _group_ranks(np.abs(values[nonzero]), group[nonzero],
                                                      n_groups)
    # Exact sums in any order: half-integers far below 2**53.
    r_plus = np.bincount(group, weights=ranks * (values > 0), minlength=n_groups)
    r_minus = np.bincount(group, weights=ranks * (values < 0), minlength=n_groups)
    n = groups.counts
    count = np.bincount(group[nonzero], minlength=n_groups).astype(np.float64)
    statistic = np.minimum(r_plus, r_minus) if alternative == "two-sided" else r_plus.copy()
    p = np.full(n_groups, np.nan)
    plain = ~has_ties & (count == n)
    asymptotic = (count > 0) & ((n > _EXACT_SIGNED_RANK)
                                | (~plain & (n > _ENUMERATED_SIGNED_RANK)))
    exact = (count > 0) & plain & (n <= _EXACT_SIGNED_RANK)
    enumerated = (count > 0) & ~plain & (n <= _ENUMERATED_SIGNED_RANK)
    # The normal approximation, in scipy's order of operations.
    mean = count * (count + 1.0) * 0.25
    var = count * (count + 1.0) * (2.0 * count + 1.0)
    se = np.sqrt((var - tie_term / 2) / 24)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = (r_plus - mean) / se
    tail = {"less": lambda: special.ndtr(z), "greater": lambda: special.ndtr(-z),
            "two-sided": lambda: 2 * special.ndtr(-np.abs(z))}[alternative]()
    p[asymptotic] = tail[asymptotic]
    for size in np.unique(n[exact]):
        members = np.flatnonzero(exact & (n == size))
        cdf, sf = _exact_tails(int(size))
        low = cdf[np.ceil(r_plus[members]).astype(np.int64)]
        high = sf[np.floor(r_plus[members]).astype(np.int64)]
        p[members] = {"less": low, "greater": high,
                      "two-sided": np.clip(2 * np.minimum(high, low), 0, 1)}[alternative]
    for size in np.unique(n[enumerated]):
        members = np.flatnonzero(enumerated & (n == size))
        rows = groups.starts[members][:, None] + np.arange(size)
        p[members] = _enumerated_p(values[rows], ranks[rows], r_plus[members], alternative)
    return SignedRankTests(statistic=np.where(count > 0, statistic, np.nan), p=p,
                           r_plus=r_plus, r_minus=r_minus)


def _group_ranks(values: np.ndarray, group: np.ndarray, n_groups: int
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ranks of values float [M] within each group (group int [M], ascending), from one
    sort: (midranks float [M], 1-based with ties averaged as scipy's rankdata gives them
    within the group alone; sum of t**3 - t over the group's runs of t equal values float [G];
    whether the group has a run longer than one, bool [G])."""
    # By group, then value: the stable sort by group keeps the value order within each (the
    # order among equal values changes no rank).
    by_value = np.argsort(values)
    order = by_value[stable_group_sort(group[by_value], n_groups)]
    ordered, owner = values[order], group[order]
    first = np.ones(values.size, dtype=bool)
    first[1:] = (ordered[1:] != ordered[:-1]) | (owner[1:] != owner[:-1])
    starts = np.flatnonzero(first)
    counts = np.diff(starts, append=values.size)
    group_start = np.concatenate([[0], np.cumsum(np.bincount(group, minlength=n_groups))[:-1]])
    place = starts - group_start[owner[starts]]
    t = counts.astype(np.float64)
    ranks = np.empty(values.size)
    ranks[order] = np.repeat((place + 1).astype(np.float64) + (t - 1) / 2, counts)
    tie_term = np.bincount(owner[starts], weights=t ** 3 - t, minlength=n_groups)
    return ranks, tie_term, np.bincount(owner[starts], weights=counts > 1,
                                        minlength=n_groups) > 0


@functools.cache
def _exact_tails(n: int) -> tuple[np.ndarray, np.ndarray]:
    """(P(R+ <= k), P(R+ >= k)) for k = 0 .. n(n+1)/2 under the exact null of n values without
    ties or zeros, each summed as scipy's WilcoxonDistribution sums it (the shorter tail of
    the probabilities, 1 minus the other past the mean), so the same floats."""
    pmf = np.ones(1)
    for k in range(1, n + 1):  # scipy's recurrence (_get_wilcoxon_distr)
        previous = pmf
        pmf = np.zeros(k * (k + 1) // 2 + 1)
        pmf[:previous.size] = previous * 0.5
        pmf[-previous.size:] += previous * 0.5
    mean = n * (n + 1) / 4
    cdf = np.array([pmf[:k + 1].sum() if k <= mean else 1 - pmf[k + 1:].sum()
                    for k in range(pmf.size)])
    sf = np.array([pmf[k:].sum() if k <= mean else 1 - pmf[:k].sum()
                   for k in range(pmf.size)])
    return cdf, sf


def _enumerated_p(values: np.ndarray, ranks: np.ndarray, r_plus: np.ndarray,
                  alternative: str) -> np.ndarray:
    """float [m]: the p of R+ (r_plus float [m]) of each of m samples of n values (values,
    ranks float [m, n]; a zero has rank 0 and stays zero when flipped) against all 2**n sign
    flips, counted as scipy's permutation_test counts it (its 100-eps tolerance, no +1 for an
    exact null)."""
    n = values.shape[1]
    flips = ((np.arange(2**n)[:, None] >> np.arange(n)) & 1).astype(np.float64)
    # R+ of every flip of every sample: flipped values count if negative, the others if
    # positive. Exact in float64 (sums of half-integers).
    null = (flips @ (ranks * (values < 0)).T + (1 - flips) @ (ranks * (values > 0)).T).T
    gamma = np.abs(np.finfo(np.float64).eps * 100 * r_plus)[:, None]
    less = np.count_nonzero(null <= r_plus[:, None] + gamma, axis=1) / float(2**n)
    greater = np.count_nonzero(null >= r_plus[:, None] - gamma, axis=1) / float(2**n)
    p = {"less": less, "greater": greater,
         "two-sided": np.minimum(less, greater) * 2}[alternative]
    return np.clip(p, 0.0, 1.0)


def wilcoxon_signed_rank(x: np.ndarray, alternative: str) -> tuple[float, float]:
    """(statistic, p) of the Wilcoxon signed-rank test of `x` (float [n], finite, at least one
    non-zero) against 0: equal to scipy.stats.wilcoxon(x, alternative=alternative) with its
    defaults, to the bit (`wilcoxon_signed_ranks` with one group)."""
    x = np.asarray(x, dtype=np.float64)
    tests = wilcoxon_signed_ranks(x, grouping(np.zeros(x.size, dtype=np.int64), 1),
                                  alternative)
    return float(tests.statistic[0]), float(tests.p[0])
