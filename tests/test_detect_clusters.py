"""Attention-map clusters: two planted strategies in one class are found, with the right members,
and the off-object one is the candidate."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest

from auditor.detect.class_clusters import eigengap_clusters
from auditor.detect.clusters import cluster_maps
from auditor.errors import UsageError

H, W = 12, 12


def _blob(y: float, x: float, sigma: float) -> np.ndarray:
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    return np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / (2 * sigma**2))


@pytest.fixture
def two_strategies() -> tuple[pd.DataFrame, np.ndarray, set[int]]:
    """Class "horse": 30 centre-blob maps (on the object) + 12 top-left-corner maps (tag);
    class "cat": 20 centre maps; 2 unreadable rows in between (no map)."""
    rng = np.random.default_rng(0)
    rows, maps, corner_indices = [], [], set()
    index = 0
    for label, n_centre, n_corner in (("horse", 30, 12), ("cat", 20, 0)):
        kinds = ["centre"] * n_centre + ["corner"] * n_corner
        rng.shuffle(kinds)
        for kind in kinds:
            if index in (5, 17):
                rows.append({"index": index, "label": label, "status": "error",
                             "fg_energy": np.nan, "fg_enrichment": np.nan,
                             "border_energy": np.nan, "border_lift": np.nan})
                index += 1
            if kind == "centre":
                centre = rng.uniform(5, 6.5, size=2)
                m = _blob(centre[0], centre[1], 2.0)
                fg, enrich, border = 0.8, 2.5, 0.05
            else:
                m = _blob(rng.uniform(0, 1), rng.uniform(0, 1), 1.5)
                fg, enrich, border = 0.05, 0.15, 0.7
                corner_indices.add(index)
            maps.append(m * rng.uniform(0.5, 4.0) + rng.uniform(0, 0.03, size=(H, W)))
            rows.append({"index": index, "label": label, "status": "ok", "fg_energy": fg,
                         "fg_enrichment": enrich, "border_energy": border,
                         "border_lift": border / 0.36})
            index += 1
    return pd.DataFrame(rows), np.stack(maps).astype(np.float32), corner_indices



def test_two_strategies_give_two_clusters_with_the_right_members(two_strategies):
    samples, maps, corner = two_strategies
    out = cluster_maps(samples, maps, ["horse", "cat", "dog"])
    horse = out["horse"]
    assert [c["size"] for c in horse] == [30, 12]
    assert set(horse[1]["members"]) <= corner
    assert not set(horse[0]["members"]) & corner
    assert out["dog"] == []


def test_corner_cluster_is_the_only_candidate(two_strategies):
    samples, maps, _ = two_strategies
    horse = cluster_maps(samples, maps, ["horse"])["horse"]
    assert [c["candidate"] for c in horse] == [False, True]
    assert horse[1]["fg_energy_mean"] == pytest.approx(0.05)
    assert horse[1]["border_energy_mean"] == pytest.approx(0.7)
    mean_map = np.asarray(horse[1]["mean_map"])
    assert mean_map.shape == (8, 8)
    assert np.unravel_index(mean_map.argmax(), mean_map.shape) == (0, 0)


def test_same_corner_cluster_without_foreground_is_candidate_by_border_lift(two_strategies):
    samples, maps, _ = two_strategies
    samples = samples.drop(columns=["fg_energy", "fg_enrichment"])
    horse = cluster_maps(samples, maps, ["horse"])["horse"]
    assert [c["candidate"] for c in horse] == [False, True]
    assert "border_lift" in horse[1]["candidate_reason"]


def test_one_strategy_gives_one_cluster(two_strategies):
    samples, maps, _ = two_strategies
    cat = cluster_maps(samples, maps, ["cat"])["cat"]
    assert len(cat) == 1
    assert cat[0]["size"] == 20
    assert cat[0]["candidate"] is False


def test_tiny_class_is_one_cluster_with_a_reason():
    samples = pd.DataFrame({"index": [0, 1, 2], "label": ["a"] * 3, "status": ["ok"] * 3})
    maps = np.stack([_blob(1, 1, 1), _blob(9, 9, 1), _blob(5, 5, 1)])
    out = cluster_maps(samples, maps, ["a"])["a"]
    assert len(out) == 1
    assert out[0]["size"] == 3
    assert "not clustered" in out[0]["reason"]
    assert out[0]["fg_energy_mean"] is None


def test_degenerate_maps_are_left_out():
    samples = pd.DataFrame({"index": [0, 1, 2], "label": ["a"] * 3, "status": ["ok"] * 3})
    maps = np.stack([np.zeros((H, W)), np.full((H, W), np.nan), _blob(5, 5, 1)])
    assert cluster_maps(samples, maps, ["a"])["a"][0]["members"] == [2]


def test_eigengap_counts_disconnected_groups():
    block = np.ones((5, 5))
    affinity = np.zeros((15, 15))
    for start in (0, 5, 10):
        affinity[start:start + 5, start:start + 5] = block
    k, values = eigengap_clusters(affinity)
    assert k == 3
    assert values[:3] == pytest.approx([0, 0, 0], abs=1e-9)


def test_maps_must_align_with_readable_rows(two_strategies):
    samples, maps, _ = two_strategies
    with pytest.raises(UsageError, match="readable samples"):
        cluster_maps(samples, maps[:-1], ["horse"])


def test_500_maps_cluster_in_under_a_second():
    rng = np.random.default_rng(1)
    n = 500
    centres = np.where(rng.random(n)[:, None] < 0.3, 0.5, 6.0) + rng.normal(0, 0.5, size=(n, 2))
    maps = np.stack([_blob(cy, cx, 1.5) for cy, cx in centres]).astype(np.float32)
    samples = pd.DataFrame({"index": range(n), "label": ["a"] * n, "status": ["ok"] * n})
    seconds = []
    for _ in range(3):  # best of 3, CPU time: first-call imports and other processes excluded
        started = time.process_time()
        out = cluster_maps(samples, maps, ["a"])["a"]
        seconds.append(time.process_time() - started)
    assert min(seconds) < 1.0
    assert len(out) == 2


def test_a_corner_group_of_10_in_200_is_its_own_candidate_cluster():
    rng = np.random.default_rng(3)
    n, corner = 200, set(range(0, 200, 20))  # 10 of 200, spread through the table
    maps, rows = [], []
    for i in range(n):
        if i in corner:
            m = _blob(rng.uniform(0, 1), rng.uniform(0, 1), 1.5)
            enrich = 0.15
        else:
            m = _blob(*rng.uniform(4, 7.5, size=2), 2.0)
            enrich = 2.5
        maps.append(m + rng.uniform(0, 0.03, size=(H, W)))
        rows.append({"index": i, "label": "horse", "status": "ok", "fg_enrichment": enrich})
    out = cluster_maps(pd.DataFrame(rows), np.stack(maps).astype(np.float32), ["horse"])
    candidates = [c for c in out["horse"] if c["candidate"]]
    assert len(candidates) == 1
    assert candidates[0]["size"] == 10
    assert set(candidates[0]["members"]) <= corner


def test_a_random_subset_is_not_tight_and_a_compact_group_is():
    from auditor.detect.class_clusters import tight
    rng = np.random.default_rng(4)
    points = rng.normal(size=(200, 16))
    points[:10] = 5.0 + 0.1 * rng.normal(size=(10, 16))
    random_subset = rng.choice(np.arange(10, 200), size=10, replace=False)
    assert not tight(points, random_subset, np.random.default_rng(0))[0]
    assert tight(points, np.arange(10), np.random.default_rng(0))[0]


@pytest.mark.parametrize("dense", [False, True])
def test_both_solvers_match_a_full_lapack_solve_of_the_laplacian(dense):
    from scipy.linalg import eigh
    from scipy.sparse import csgraph

    from auditor.detect.class_clusters import _affinity, laplacian_spectrum
    rng = np.random.default_rng(5)
    points = np.concatenate([rng.normal(0, 1, (60, 8)), rng.normal(6, 1, (15, 8))])
    affinity = _affinity(points)
    assert hasattr(affinity, "tocsr")  # sparse, O(n k) entries
    assert affinity.nnz <= len(points) * 2 * (int(np.ceil(np.log2(len(points)))) + 1)
    values = laplacian_spectrum(affinity, dense=dense)[0]
    full = eigh(csgraph.laplacian(affinity.toarray(), normed=True), eigvals_only=True)
    assert values == pytest.approx(full[:len(values)], abs=1e-9)
    assert eigengap_clusters(affinity)[0] == 2


def test_the_dense_and_sparse_solves_span_the_same_space_and_give_the_same_labels():
    from auditor.detect.class_clusters import _affinity, laplacian_spectrum, spectral_labels
    rng = np.random.default_rng(6)
    points = np.concatenate([rng.normal(0, 1, (80, 8)), rng.normal(5, 1, (30, 8)),
                             rng.normal(-5, 1, (20, 8))])
    affinity = _affinity(points)
    (v1, x1, r1), (v2, x2, r2) = (laplacian_spectrum(affinity, dense=d) for d in (True, False))
    assert np.allclose(v1, v2, atol=1e-9)
    assert np.array_equal(r1, r2)
    k = 3
    # the projector onto the first k eigenvectors: the same whatever basis each solver chose
    assert np.allclose(x1[:, :k] @ x1[:, :k].T, x2[:, :k] @ x2[:, :k].T, atol=1e-8)
    labels = spectral_labels(x1[:, :k], r1)
    assert np.array_equal(labels, spectral_labels(x2[:, :k], r2))
    assert sorted(np.bincount(labels).tolist()) == [20, 30, 80]


def test_the_dense_affinity_is_the_sparse_one_as_an_array():
    from auditor.detect.class_clusters import _affinity, _dense_affinity
    points = np.random.default_rng(7).random((40, 16))
    assert np.array_equal(_dense_affinity(points), _affinity(points).toarray())


def test_the_dense_solve_reports_a_repeated_eigenvalue_as_often_as_it_repeats():
    from auditor.detect.class_clusters import laplacian_spectrum
    # The complete graph on 6 points: L = I - (J - I) / 5, eigenvalues 0 once and 6/5 five
    # times (hand-derived); the affinity's diagonal (self-loops) is left out.
    values, vectors, root_degree = laplacian_spectrum(np.ones((6, 6)), max_clusters=4,
                                                      dense=True)
    assert values == pytest.approx([0.0, 1.2, 1.2, 1.2, 1.2], abs=1e-12)
    assert root_degree == pytest.approx(np.full(6, np.sqrt(5.0)))
    assert np.abs(vectors[:, 0]) == pytest.approx(np.full(6, 1 / np.sqrt(6)))


def test_an_isolated_point_has_its_row_zero_as_csgraph_builds_it():
    from scipy.linalg import eigh
    from scipy.sparse import csgraph

    from auditor.detect.class_clusters import laplacian_spectrum
    affinity = np.zeros((7, 7))
    affinity[:6, :6] = np.ones((6, 6))  # point 6 has no neighbour
    values, _, root_degree = laplacian_spectrum(affinity, max_clusters=4, dense=True)
    full = eigh(csgraph.laplacian(affinity, normed=True), eigvals_only=True)
    assert values == pytest.approx(full[:5], abs=1e-12)
    assert values == pytest.approx([0.0, 0.0, 1.2, 1.2, 1.2], abs=1e-12)
    assert root_degree[6] == 1.0


@pytest.mark.parametrize("m", [1, 3, 57, 199, 200])
def test_the_random_subsets_are_each_rows_smallest_keys_in_ascending_order(m):
    from auditor.detect.class_clusters import smallest
    keys = np.random.default_rng(m).random((40, 200))
    assert np.array_equal(smallest(keys, m), np.argsort(keys, axis=1)[:, :m])
    # hand case: the 2 smallest of each row, smallest first
    assert smallest(np.array([[0.5, 0.1, 0.9, 0.3], [0.2, 0.8, 0.05, 0.6]]), 2).tolist() == \
        [[1, 3], [2, 0]]


def _classes_table(seed: int) -> tuple[pd.DataFrame, np.ndarray, list[str]]:
    """Six classes of 3-70 maps (two strategies in some), unusable maps, an unreadable row."""
    rng = np.random.default_rng(seed)
    rows, maps = [], []
    for c, (n, corner) in enumerate([(70, 12), (45, 0), (3, 0), (30, 8), (60, 30), (12, 2)]):
        for i in range(n):
            at = (rng.uniform(0, 1, 2) if i < corner else rng.uniform(4, 7.5, 2))
            m = _blob(at[0], at[1], 1.5) * rng.uniform(0.5, 3) + rng.uniform(0, 0.03, (H, W))
            if i == 5:
                m = np.zeros((H, W)) if c % 2 else np.full((H, W), np.nan)
            maps.append(m)
            rows.append({"index": len(rows), "label": f"c{c}", "status": "ok",
                         "fg_enrichment": 0.2 if i < corner else 2.0,
                         "border_lift": rng.uniform(0.5, 3.0)})
    rows.append({"index": len(rows), "label": "c0", "status": "error"})
    return pd.DataFrame(rows), np.stack(maps).astype(np.float32), [f"c{c}" for c in range(7)]


def test_classes_clustered_in_worker_processes_equal_those_clustered_here(monkeypatch):
    from auditor.detect import clusters
    samples, maps, classes = _classes_table(8)
    here = cluster_maps(samples, maps, classes, max_per_class=50, workers=0)
    monkeypatch.setattr(clusters, "WORKER_MIN_MAPS", 1)
    monkeypatch.setattr(clusters, "POOL_AHEAD", 1)  # results taken back while classes go out
    monkeypatch.setattr(clusters.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    assert clusters._worker_count(2, 200) == 2
    pooled = cluster_maps(samples, maps, classes, max_per_class=50, workers=2)
    assert repr(pooled) == repr(here)
    assert here["c6"] == []
    assert sum(len(v) >= 2 for v in here.values()) >= 2  # the pool had real clusters to find


def test_a_pool_that_cannot_start_falls_back_to_this_process(monkeypatch, caplog):
    from auditor.detect import clusters
    samples, maps, classes = _classes_table(9)
    here = cluster_maps(samples, maps, classes, workers=0)

    def broken(*args, **kwargs):
        raise OSError("no semaphores here")

    monkeypatch.setattr(clusters, "WORKER_MIN_MAPS", 1)
    monkeypatch.setattr(clusters, "ProcessPoolExecutor", broken)
    assert repr(cluster_maps(samples, maps, classes, workers=2)) == repr(here)
    assert "no semaphores here" in caplog.text


@pytest.mark.parametrize(("requested", "cpus", "n_maps", "expected"), [
    (None, 2, 500_000, 0),   # below POOL_MIN_CPUS: this process
    (None, 4, 99_999, 3),    # as many as get WORKER_MIN_MAPS each
    (None, 4, 49_999, 0),    # one worker is no pool
    (None, 16, 500_000, 16),  # at most one a CPU
    (0, 16, 500_000, 0),     # the off switch
    (1, 16, 500_000, 0),
    (3, 16, 500_000, 3),
    (2, 2, 500_000, 2),      # asked for: on 2 CPUs too
    (8, 2, 500_000, 2),
])
def test_the_worker_count_follows_the_cpus_and_the_work(monkeypatch, requested, cpus, n_maps,
                                                        expected):
    from auditor.detect import clusters
    monkeypatch.setattr(clusters, "WORKER_MIN_MAPS", 25_000)
    monkeypatch.setattr(clusters, "POOL_MIN_CPUS", 4)
    monkeypatch.setattr(clusters.os, "sched_getaffinity", lambda pid: set(range(cpus)),
                        raising=False)
    assert clusters._worker_count(requested, n_maps) == expected


def _exact_spreads(points: np.ndarray, keys: np.ndarray, m: int) -> np.ndarray:
    from auditor.detect.class_clusters import _spreads, smallest
    return _spreads(points[smallest(keys, m)])


@pytest.mark.parametrize("seed", range(12))
def test_the_subsets_quantile_is_the_exact_spreads_quantile_to_the_bit(seed):
    from auditor.detect.class_clusters import RANDOM_SUBSETS, TIGHT_QUANTILE, subset_spreads
    rng = np.random.default_rng(seed)
    n = int(rng.integers(20, 400))
    m = int(rng.integers(3, n // 2 + 1))
    d = [16, 64][seed % 2]
    if seed % 3 == 0:  # duplicate maps: one-hot 4x4 maps, the spreads of many subsets 0
        points = np.eye(d)[rng.integers(0, 3, n)]
    elif seed % 3 == 1:  # a tight group inside a spread class
        points = rng.random((n, d))
        points[: n // 3] = points[0] + 1e-9 * rng.random((n // 3, d))
    else:
        points = rng.random((n, d)) * rng.uniform(0.1, 1.0)
    keys = rng.random((RANDOM_SUBSETS, n))
    exact = _exact_spreads(points, keys, m)
    fast = subset_spreads(points, keys, m)
    assert np.quantile(fast, TIGHT_QUANTILE) == np.quantile(exact, TIGHT_QUANTILE)
    assert np.abs(fast - exact).max() < 1e-5
    read = np.argsort(exact, kind="stable")[:3]  # the order statistics the quantile reads
    assert fast[read].tolist() == exact[read].tolist()


def test_the_subsets_spreads_by_hand():
    from auditor.detect.class_clusters import subset_spreads
    # the corners of a unit square and a far point: row 0's 4 smallest keys choose the square
    # (every corner 1/sqrt 2 from its centre), row 1's three corners and the far point
    points = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0], [9.0, 9.0]])
    keys = np.array([[0.1, 0.2, 0.3, 0.4, 0.9], [0.9, 0.1, 0.2, 0.8, 0.3]])
    spreads = subset_spreads(points, keys, 4)
    centre = np.array([11.0, 11.0]) / 4  # points 1, 2, 3, 4
    by_hand = np.linalg.norm(points[[1, 2, 3, 4]] - centre, axis=1).mean()
    assert spreads == pytest.approx([np.sqrt(0.5), by_hand], abs=1e-12)


def test_maps_pooled_in_blocks_of_classes_give_the_clusters_of_each_class_pooled_alone(
        monkeypatch):
    from auditor.detect import clusters
    samples, maps, classes = _classes_table(10)
    together = cluster_maps(samples, maps, classes, workers=0)
    monkeypatch.setattr(clusters, "POOL_ROWS", 1)  # every class alone
    assert repr(cluster_maps(samples, maps, classes, workers=0)) == repr(together)
    monkeypatch.setattr(clusters, "POOL_ROWS", 100)  # blocks of two or three classes
    assert repr(cluster_maps(samples, maps, classes, workers=0)) == repr(together)
    assert [list(b) for b in clusters._blocks([3, 4, 10, 1, 1, 20, 2], 8)] == [
        [0, 1], [2], [3, 4], [5], [6]]
    assert list(clusters._blocks([], 8)) == []
