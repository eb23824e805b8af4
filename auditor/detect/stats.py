"""Statistics the probes use: the Wilson interval of a proportion, Cramér's V and mutual
information of contingency tables (batched over tables). Pure functions of numbers.
"""

from __future__ import annotations

import math

import numpy as np
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
    expected = rows[..., :, None] * cols[..., None, :] / np.maximum(n, 1)[..., None, None]
    safe = np.where(expected > 0, expected, 1.0)
    chi2 = np.where(expected > 0, (t - expected) ** 2 / safe, 0.0).sum(axis=(-2, -1))
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
