"""Groups of one pooled sample against the rest, from one ranking (auditor.detect.stats)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from auditor.detect.groups import grouping
from auditor.detect.stats import (
    group_vs_rest_mannwhitneyu,
    pooled_sample,
    rest_median,
    wilcoxon_signed_rank,
    wilcoxon_signed_ranks,
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


def test_signed_ranks_of_groups_by_hand():
    # Group 0: 1, 2, 3 all positive, no ties: R+ = 6; exact null of 3 values: P(R+ >= 6) =
    # 1/8. Group 1: -1, 2, 0: the zero is dropped, ranks 1 and 2: R+ = 2, R- = 1; 8 sign flips
    # of (-1, 2, 0) give R+ = 0, 1, 2, 3 twice each: P(R+ >= 2) = 4/8. Group 2: all zero.
    x = np.array([1.0, -1.0, 0.0, 2.0, 2.0, 3.0, 0.0])
    groups = grouping(np.array([0, 1, 2, 0, 1, 0, 1]), 3)
    tests = wilcoxon_signed_ranks(x, groups, "greater")
    assert tests.r_plus.tolist() == [6.0, 2.0, 0.0]
    assert tests.r_minus.tolist() == [0.0, 1.0, 0.0]
    assert tests.p[:2].tolist() == [1 / 8, 4 / 8]
    assert tests.statistic[:2].tolist() == [6.0, 2.0]
    assert np.isnan(tests.p[2])
    assert np.isnan(tests.statistic[2])


@pytest.mark.parametrize("alternative", ["less", "greater", "two-sided"])
def test_signed_ranks_of_groups_equal_to_scipy_per_group(alternative):
    # Every branch of scipy's choice: exact (<= 50 values, no ties or zeros; 50 and 51 on
    # either side of the limit), every sign flip (<= 13 with ties or zeros), the normal
    # approximation (> 13 with ties or zeros, > 50); the groups' rows interleaved.
    rng = np.random.default_rng(7)
    sizes = rng.choice([1, 2, 5, 8, 13, 14, 30, 50, 51, 200], 90)
    kinds = rng.integers(0, 4, sizes.size)
    parts = [rng.normal(size=s) if k == 0 else rng.integers(-3, 4, s).astype(float) if k == 1
             else np.round(rng.normal(size=s), 1) if k == 2 else rng.normal(size=s) + 0.7
             for s, k in zip(sizes, kinds, strict=True)]
    codes = rng.permutation(np.repeat(np.arange(sizes.size), sizes))
    x = np.empty(codes.size)
    for g, part in enumerate(parts):
        x[codes == g] = part
    tests = wilcoxon_signed_ranks(x, grouping(codes, sizes.size), alternative)
    for g, part in enumerate(parts):
        if not np.any(part != 0):
            assert np.isnan(tests.p[g])
            continue
        expected = stats.wilcoxon(part, alternative=alternative)
        assert (tests.statistic[g], tests.p[g]) == (float(expected.statistic),
                                                    float(expected.pvalue))
