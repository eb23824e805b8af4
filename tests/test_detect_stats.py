"""Groups of one pooled sample against the rest, from one ranking (auditor.detect.stats)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from auditor.detect.stats import (
    group_vs_rest_mannwhitneyu,
    pooled_sample,
    rest_median,
    wilcoxon_signed_rank,
)


def test_hand_derived_group_against_the_rest():
    pooled = pooled_sample(np.array([4.0, 1.0, 3.0, 2.0, 2.0]))
    # Midranks: 1 -> 1, the two 2s -> 2.5, 3 -> 4, 4 -> 5; one tie group of two: 2**3 - 2 = 6.
    assert pooled.ranks.tolist() == [5.0, 1.0, 4.0, 2.5, 2.5]
    assert pooled.tie_term == 6.0
    assert pooled.has_ties
    group = np.array([1, 3])  # values 1 and 2; rest 4, 3, 2
    u, _ = group_vs_rest_mannwhitneyu(pooled, group, "less")
    # Pairs where the group value is larger: 2 vs 2 is a tie (half); nothing else.
    assert u == 0.5
    assert rest_median(pooled, group) == 3.0
    assert rest_median(pooled, np.array([0])) == 2.0  # rest 1, 3, 2, 2: (2 + 2) / 2


@pytest.mark.parametrize("rounded", [False, True], ids=["distinct", "ties"])
@pytest.mark.parametrize("alternative", ["less", "greater", "two-sided"])
def test_equal_to_scipy_and_numpy_on_the_split_sample(rounded, alternative):
    rng = np.random.default_rng(3)
    for _ in range(60):
        n = int(rng.integers(2, 200))
        values = rng.normal(size=n)
        if rounded:
            values = np.round(values, 1)
        pooled = pooled_sample(values)
        # Group sizes from 1 (scipy's exact distribution) to all but one.
        group = np.sort(rng.choice(n, size=int(rng.integers(1, n)), replace=False))
        rest = np.delete(values, group)
        expected = stats.mannwhitneyu(values[group], rest, alternative=alternative)
        u, p = group_vs_rest_mannwhitneyu(pooled, group, alternative)
        assert (u, p) == (float(expected.statistic), float(expected.pvalue))
        assert rest_median(pooled, group) == float(np.median(rest))


def test_a_shifted_group_is_significant_and_a_random_one_is_not():
    rng = np.random.default_rng(0)
    values = rng.normal(size=2000)
    values[:100] -= 1.0
    pooled = pooled_sample(values)
    _, p_shifted = group_vs_rest_mannwhitneyu(pooled, np.arange(100), "less")
    _, p_random = group_vs_rest_mannwhitneyu(pooled, np.arange(1000, 1100), "less")
    assert p_shifted < 1e-12
    assert p_random > 0.01


def test_signed_rank_with_ties_enumerates_every_sign_flip():
    # |x| all tied: ranks 2, 2, 2, R+ = 4; the 8 flips give R+ = 0, 2, 4, 6 (1, 3, 3, 1 times).
    assert wilcoxon_signed_rank(np.array([1.0, 1.0, -1.0]), "greater") == (4.0, 0.5)
    assert wilcoxon_signed_rank(np.array([1.0, 1.0, -1.0]), "less") == (4.0, 7 / 8)
    # A zero is dropped from the ranks but still flipped (it stays zero): 16 flips, p the same.
    assert wilcoxon_signed_rank(np.array([1.0, 1.0, -1.0, 0.0]), "greater") == (4.0, 0.5)


@pytest.mark.parametrize("alternative", ["less", "greater", "two-sided"])
def test_signed_rank_equal_to_scipy(alternative):
    rng = np.random.default_rng(3)
    cases = [rng.integers(-3, 4, n).astype(float) for n in range(1, 11)]  # ties and zeros
    cases += [np.round(rng.normal(size=n), 1) for n in range(1, 11)]
    cases += [rng.normal(size=n) for n in (5, 12, 30)]  # no ties: scipy's exact branch
    cases += [np.round(rng.normal(size=40), 1)]  # ties above 13: normal approximation
    for x in cases:
        if not np.any(x != 0):
            continue
        expected = stats.wilcoxon(x, alternative=alternative)
        assert wilcoxon_signed_rank(x, alternative) == (float(expected.statistic),
                                                        float(expected.pvalue))
