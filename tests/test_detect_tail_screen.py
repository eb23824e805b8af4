import math

import numpy as np
from scipy import stats

from auditor.detect import map_regions, tail_screen


def _scipy_log_tail(k, n, k_rest, n_rest):
    with np.errstate(divide="ignore"):
        return np.log(stats.hypergeom.sf(np.asarray(k) - 1, n + n_rest, k + k_rest, n))


def test_the_log_tail_by_hand():
    # 3 draws from 5 items, 2 good: P(X >= 2) = C(2,2) C(3,1) / C(5,3) = 3/10; P(X >= 1) =
    # 1 - C(3,3) / C(5,3) = 9/10; P(X >= 0) = 1. 3 good: P(X >= 3) = 1 / C(5,3). P(X >= 4) = 0
    # (3 draws).
    got = tail_screen.log_upper_tail(np.array([2, 1, 0, 3, 4]), np.array([3, 3, 3, 3, 3]),
                                     np.array([0, 1, 2, 0, 0]), np.array([2, 2, 2, 2, 2]))
    assert np.allclose(got[:4], [math.log(0.3), math.log(0.9), 0.0, math.log(0.1)],
                       atol=1e-12)
    assert got[4] == -np.inf
    # All 4 draws must include at least 2 good ones when only 2 of 6 are bad: P(X >= 1) = 1.
    assert abs(tail_screen.log_upper_tail(np.array([1]), np.array([4]), np.array([3]),
                                          np.array([2]))[0]) < 1e-12


def test_the_log_tail_is_within_its_stated_error_of_scipy():
    rng = np.random.default_rng(11)
    for draws, rest in ((20, 100), (60, 9_000), (600, 100_000), (500, 1_000_000)):
        size = 3000
        n = rng.integers(1, draws, size)
        n_rest = rng.integers(0, rest, size)
        k = (rng.random(size) * (n + 1)).astype(int)
        k_rest = np.minimum((rng.random(size) ** rng.uniform(0.5, 8) * (n_rest + 1)).astype(int),
                            n_rest)
        got = tail_screen.log_upper_tail(k, n, k_rest, n_rest)
        expected = _scipy_log_tail(k, n, k_rest, n_rest)
        normal = expected > -690  # scipy's value is a normal double
        assert normal.sum() > size // 2
        assert np.abs(got[normal] - expected[normal]).max() < tail_screen.APPROX_ERROR
        # Where scipy's value is (nearly) subnormal or zero, the approximation says so.
        assert (got[~normal] < tail_screen.LOG_TINY).all()


def test_the_screen_keeps_every_value_equal_to_its_group_smallest():
    # Group 0: three candidates with the same counts (an exact tie) after a larger p; group 1:
    # p so small scipy rounds both to 0 (a tie at zero, though their logs differ by 1 000);
    # group 2: one candidate.
    k = np.array([3, 9, 9, 9, 400, 500, 1])
    n = np.array([20, 20, 20, 20, 500, 500, 5])
    k_rest = np.array([50, 2, 2, 2, 0, 0, 3])
    n_rest = np.array([1000, 1000, 1000, 1000, 1_000_000, 1_000_000, 30])
    group = np.array([0, 0, 0, 0, 1, 1, 2])
    exact = stats.hypergeom.sf(k - 1, n + n_rest, k + k_rest, n)
    assert exact[4] == exact[5] == 0.0
    kept = tail_screen.could_be_smallest(tail_screen.log_upper_tail(k, n, k_rest, n_rest),
                                         group, 3)
    assert kept.tolist() == [False, True, True, True, True, True, True]


def test_screened_picks_equal_picks_among_every_candidate_computed_exactly():
    rng = np.random.default_rng(5)
    n_problems = 400
    count = rng.integers(1, 12, n_problems)
    problem = np.repeat(np.arange(n_problems), count)
    n = rng.choice([3, 8, 15, 40, 400], n_problems)
    n_rest = rng.choice([20, 500, 8192, 200_000], n_problems)
    # Few distinct counts per problem: many exact ties, and some p that round to zero.
    k = np.minimum(rng.integers(1, 6, problem.size) * rng.choice([1, 10], problem.size),
                   n[problem])
    whole = rng.random(problem.size) < 0.1
    k[whole] = n[problem][whole]
    k_rest = np.minimum(rng.integers(0, 4, problem.size) * rng.choice([1, 50], problem.size),
                        n_rest[problem])
    candidates = map_regions.Candidates(problem=problem, value=np.zeros(problem.size), k=k)
    best, p = map_regions.pick_thresholds(candidates, k_rest, n, n_rest, n_problems)
    exact = map_regions.fisher_greater(k, n[problem], k_rest, n_rest[problem])
    starts = np.r_[0, np.cumsum(count)[:-1]]
    for i in range(n_problems):
        mine = exact[starts[i]:starts[i] + count[i]]
        assert best[i] == starts[i] + int(np.argmin(mine))  # the first of equals
        assert p[i] == mine.min()  # scipy's value, to the bit
    assert (p == 0).any()
    assert len(set(exact.tolist())) < exact.size / 2  # many ties


def test_log_tails_are_scipy_s_where_scipy_costs_less_and_approximated_elsewhere():
    rng = np.random.default_rng(2)
    size = 4000
    n = rng.choice([5, 15, 60, 400], size)
    n_rest = rng.choice([100, 8_000, 30_000, 500_000], size)
    k = (rng.random(size) * (n + 1)).astype(int)
    k_rest = (rng.random(size) ** 3 * n_rest).astype(int)
    asked = []

    def exact(which):
        asked.append(int(which.sum()))
        return map_regions.fisher_greater(k[which], n[which], k_rest[which], n_rest[which])

    log_p, p = tail_screen.log_tails(k, n, k_rest, n_rest, exact)
    expected = map_regions.fisher_greater(k, n, k_rest, n_rest)
    direct = np.isfinite(p)
    assert asked == [int(direct.sum())]  # one call for every tail scipy computes
    assert np.array_equal(p[direct], expected[direct])
    # Beyond boost's prime table (500 000 items) and within its factorials scipy's tail is
    # cheaper.
    assert direct[n_rest == 500_000].all()
    assert direct[n + n_rest <= tail_screen.FACTORIAL_TABLE_ITEMS].all()
    assert 0.2 < direct.mean() < 0.8
    with np.errstate(divide="ignore"):
        logs = np.log(expected)
    normal = ~direct & (logs > -690)
    assert np.abs(log_p[normal] - logs[normal]).max() < tail_screen.APPROX_ERROR
    assert np.array_equal(log_p[direct], logs[direct])
