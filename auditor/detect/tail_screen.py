"""Which of many one-sided hypergeometric (Fisher exact) tails can be the smallest of their
group, found without computing them all exactly.

scipy's `hypergeom.sf` (boost) costs tens of microseconds a value at tens of thousands of
samples, and a detector that only needs the smallest p of each group (a class's member
thresholds, a class's regions) would spend most of its time on values it then discards.
`log_upper_tail` is the same tail summed in log space (one log-gamma start and a cumulative
sum of the terms' ratios, every value at once): within APPROX_ERROR of the log of scipy's
value. So a value whose approximation lies more than SCREEN above its group's smallest
approximation cannot be the group's smallest, nor equal to it, and `could_be_smallest` keeps
the others; the caller computes those exactly (scipy, the same bits as before) and picks
among them with its own rule for ties. The values that could underflow (below LOG_TINY) are
always kept: scipy may round them to the same subnormal or zero.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy import special

#: Largest difference measured between log_upper_tail and the log of scipy's hypergeom.sf:
#: 7e-9 over 800 000 random arguments of up to 2 000 draws from up to 1 000 000
#: (tests/test_detect_tail_screen.py checks a sample of them against APPROX_ERROR).
APPROX_ERROR = 1e-8
#: Approximations further than this above their group's smallest are screened out: far beyond
#: twice the error, so no value that is, or equals, the group's smallest is left out.
SCREEN = 1e-4
#: log p below which double precision may round to a subnormal or to zero (log 1e-282).
LOG_TINY = -650.0
#: Rows of the tail matrix summed at once (memory: ROWS x the longest tail's terms).
ROWS = 4096
#: scipy's tail (boost) builds the pmf from a table of factorials up to this many items
#: (~0.2 us a value), then from the primes up to the number of items up to PRIME_TABLE_ITEMS
#: (the 10 000th prime; ~1.7 us a thousand items), beyond from Lanczos' gamma (~1 us).
FACTORIAL_TABLE_ITEMS = 170
PRIME_TABLE_ITEMS = 104_729
#: The approximation costs ~0.07 us a term of the tail: it replaces scipy's where a tail has
#: at most one term per this many items (and scipy would use its prime table), so it costs
#: well under what it saves.
ITEMS_PER_TERM = 100


def log_upper_tail(k: np.ndarray, n: np.ndarray, k_rest: np.ndarray, n_rest: np.ndarray
                   ) -> np.ndarray:
    """float [K]: ln P(X >= k), X hypergeometric (n draws from n + n_rest items of which
    k + k_rest are good): the log of map_regions.fisher_greater's p, within APPROX_ERROR; -inf
    where the tail is empty. All arguments int [K] (or broadcastable), k_rest <= n_rest."""
    k, n, k_rest, n_rest = (np.asarray(v, dtype=np.float64).ravel()
                            for v in np.broadcast_arrays(k, n, k_rest, n_rest))
    good = k + k_rest
    bad = n + n_rest - good
    start = np.maximum(k, np.maximum(n - bad, 0))  # the support starts at max(0, n - bad)
    top = np.minimum(n, good)
    terms = (top - start + 1).astype(np.int64)
    out = np.full(k.size, -np.inf)
    some = np.flatnonzero(terms > 0)
    # Rows of similar length together: little padding.
    order = some[np.argsort(terms[some], kind="stable")]
    for at in range(0, order.size, ROWS):
        rows = order[at:at + ROWS]
        first, last = start[rows], top[rows]
        draws, g, b = n[rows], good[rows], bad[rows]
        log_first = (_log_choose(g, first) + _log_choose(b, draws - first)
                     - _log_choose(g + b, draws))
        x = first[:, None] + np.arange(int(terms[rows[-1]]) - 1)
        inside = x < last[:, None]
        # P(x + 1) / P(x) = (good - x)(n - x) / ((x + 1)(bad - n + x + 1)).
        ratio = np.where(inside, (g[:, None] - x) * (draws[:, None] - x)
                         / ((x + 1) * (b[:, None] - draws[:, None] + x + 1)), 1.0)
        logs = np.where(inside, np.cumsum(np.log(ratio), axis=1), -np.inf)
        peak = np.maximum(logs.max(axis=1, initial=0.0), 0.0)
        out[rows] = log_first + peak + np.log(
            np.exp(-peak) + np.exp(logs - peak[:, None]).sum(axis=1))
    return out


def log_tails(k: np.ndarray, n: np.ndarray, k_rest: np.ndarray, n_rest: np.ndarray,
              exact: Callable[[np.ndarray], np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(log p, p) of many upper tails (log_upper_tail's arguments, int [K]): where scipy's tail
    costs less than the approximation (at most FACTORIAL_TABLE_ITEMS or more than
    PRIME_TABLE_ITEMS items, or more than a term per ITEMS_PER_TERM items)
    p is scipy's, exact(which) for the bool [K] `which`, and log p its log; elsewhere log p is
    log_upper_tail's and p NaN (to be computed exactly where could_be_smallest keeps it)."""
    k, n, k_rest, n_rest = np.broadcast_arrays(k, n, k_rest, n_rest)
    items = n + n_rest
    terms = np.minimum(n, k + k_rest) - np.maximum(k, np.maximum(n - (items - k - k_rest), 0))
    approximated = ((items > FACTORIAL_TABLE_ITEMS) & (items <= PRIME_TABLE_ITEMS)
                    & ((terms + 1) * ITEMS_PER_TERM <= items))
    p = np.full(k.shape, np.nan)
    log_p = np.empty(k.shape)
    direct = ~approximated
    p[direct] = exact(direct)
    with np.errstate(divide="ignore"):
        log_p[direct] = np.log(p[direct])
    log_p[approximated] = log_upper_tail(k[approximated], n[approximated],
                                         k_rest[approximated], n_rest[approximated])
    return log_p, p


def _log_choose(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return special.gammaln(a + 1) - special.gammaln(b + 1) - special.gammaln(a - b + 1)


def could_be_smallest(log_p: np.ndarray, group: np.ndarray, n_groups: int) -> np.ndarray:
    """bool [K]: the values (log_upper_tail's, log_p float [K]; group int [K] in
    [0, n_groups)) that can be their group's smallest exact p or equal to it (module rule)."""
    lowest = np.full(n_groups, np.inf)
    np.minimum.at(lowest, group, log_p)
    # NaN (never expected) keeps the value, and a NaN smallest its whole group.
    return ~(log_p > np.maximum(lowest[group] + SCREEN, LOG_TINY))
