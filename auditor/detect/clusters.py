"""Clusters of attention maps per class (Spectral Relevance Analysis, Lapuschkin et al. 2019).

A class whose samples are solved by two strategies (look at the horse / look at the copyright
tag) shows two groups of maps. Per class:

1. Readable samples with a usable map (finite, not all zero); at most `max_per_class`, a seeded
   choice.
2. Each map average-pooled to at most GRID x GRID cells (the map size when smaller), then divided
   by its own maximum, so clusters group *where* attention goes, not how strong it is.
3. Affinity: the sparse symmetric k-nearest-neighbour graph (Euclidean, k = ceil(log2 n), at
   least MIN_KNN, each point its own neighbour; A = (C + C^T) / 2 of the 0/1 connectivity C,
   as scikit-learn's `affinity="nearest_neighbors"` builds it). k grows like log n, so a
   group of more than about k samples (10 of 200, 5%) has all its neighbours inside and is
   cut off from the rest; k = n / 8 (the earlier rule) could not isolate a group below n / 8.
4. Number of clusters: the eigengap of the normalised Laplacian L = I - D^-1/2 A D^-1/2, its
   MAX_CLUSTERS + 1 smallest eigenvalues. A class of more than DENSE_MAX samples is solved on
   the sparse matrix (ARPACK `eigsh` on 2I - L, whose largest eigenvalues are 2 minus L's
   smallest; no n x n eigendecomposition, so a class of thousands of samples stays fast); a
   smaller one densely (the affinity as an array, LAPACK's dsyevr for those eigenpairs only),
   which below ~300 samples costs less than building and iterating on the sparse matrix
   (benchmarks/cluster_solver.py) and, unlike Lanczos, reports a repeated eigenvalue (duplicate
   maps) as often as it repeats. With eigenvalues
   l_0 <= l_1 <= ..., k maximises l_k - l_(k-1) over k in 1..MAX_CLUSTERS with
   l_(k-1) <= MAX_CUT. A small l_(k-1) means k almost disconnected groups; the cap stops a
   smooth spread of maps (attention shifting a little from sample to sample, whose small
   eigenvalues come in a slow ramp) from being cut into pieces.
5. Labels: the embedding u = D^-1/2 x of the k eigenvectors x of the same decomposition
   (no second eigensolve), each sample assigned by column-pivoted QR (Damle, Minden & Ying
   2019; scikit-learn's SpectralClustering with `assign_labels="cluster_qr"` does the same
   on its own, iterative and slower, solve of the same Laplacian: the labels depend only on
   the span of the k eigenvectors, which both solves find).

Classes with fewer than MIN_SAMPLES usable maps are not clustered: one cluster, with `reason`.

Each cluster (largest first, ids 0, 1, ...): `cluster`, `size`, `mean_map` (mean pooled,
max-normalised map, rounded lists [gh][gw]), `fg_energy_mean`, `border_energy_mean` (None when
undefined), `members` (up to MAX_MEMBERS sample `index` values, nearest the cluster centre
first), `candidate` and `candidate_reason`; on clustered classes also `eigenvalues` (the class's
smallest Laplacian eigenvalues, the evidence for k).

**Candidate** (a cluster worth a reviewer's look as a possible shortcut) when all three hold:

| condition | rule |
|---|---|
| small | MIN_CANDIDATE_SIZE <= size <= SMALL_SHARE x class samples clustered, and k >= 2 |
| tight | mean distance of members to their centre below the TIGHT_QUANTILE (1%) quantile of |
| | the same spread over RANDOM_SUBSETS (200) random subsets of the class of the same size |
| | (seeded): a random subset fails it 99 times in 100 |
| off-object | median fg_enrichment < 1 (less attention on the object than its area share) |
| (no foreground) | off-object instead: median border_lift >= BORDER_LIFT_OFF |
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from scipy import linalg, sparse
from scipy.sparse import csgraph
from scipy.sparse.linalg import LinearOperator, eigsh
from threadpoolctl import threadpool_limits

from auditor.detect.groups import class_rows
from auditor.errors import UsageError

GRID = 8
MIN_KNN = 3
MAX_CUT = 0.05
MAX_CLUSTERS = 8
MIN_SAMPLES = 10
MAX_MEMBERS = 8
SMALL_SHARE = 0.5
MIN_CANDIDATE_SIZE = 3
TIGHT_QUANTILE = 0.01
RANDOM_SUBSETS = 200
SUBSET_BLOCK = 25
DENSE_MAX = 250
BORDER_LIFT_OFF = 1.5
_MEASURES = ("fg_energy", "fg_enrichment", "border_energy", "border_lift")


def _pooled(maps: np.ndarray) -> np.ndarray:
    """maps float [n, h, w] -> pooled, max-normalised float64 [n, gh, gw] (GRID cells at most)."""
    tensor = torch.as_tensor(np.ascontiguousarray(maps), dtype=torch.float32)[:, None]
    size = (min(GRID, maps.shape[1]), min(GRID, maps.shape[2]))
    pooled = F.adaptive_avg_pool2d(tensor.clamp_min(0), size)[:, 0].double().numpy()
    peak = pooled.reshape(len(pooled), -1).max(axis=1)
    return pooled / peak[:, None, None]


def _neighbours(points: np.ndarray) -> np.ndarray:
    """Each point's k + 1 nearest points, itself included: points float [n, d] -> int
    [n, k + 1] (Euclidean, k = max(MIN_KNN, ceil(log2 n)), below n; in no particular order)."""
    n = len(points)
    k = min(max(MIN_KNN, math.ceil(math.log2(n))), n - 1)
    squared = (points**2).sum(axis=1)
    distance = squared[:, None] + squared[None, :] - 2.0 * points @ points.T
    np.fill_diagonal(distance, -np.inf)  # each point is its own nearest neighbour
    return np.argpartition(distance, k, axis=1)[:, : k + 1]


def _affinity(points: np.ndarray) -> sparse.csr_matrix:
    """Sparse symmetric kNN affinity [n, n] of points [n, d]: A = (C + C^T) / 2 of the 0/1
    connectivity C of `_neighbours`."""
    n = len(points)
    nearest = _neighbours(points)
    rows = np.repeat(np.arange(n), nearest.shape[1])
    connectivity = sparse.csr_matrix((np.ones(rows.size), (rows, nearest.ravel())), shape=(n, n))
    return ((connectivity + connectivity.T) * 0.5).tocsr()


def _dense_affinity(points: np.ndarray) -> np.ndarray:
    """`_affinity` as a dense float [n, n] array (the same 0, 0.5 and 1 entries), for classes
    of at most DENSE_MAX points, where building a sparse matrix costs more than the array."""
    connectivity = np.zeros((len(points), len(points)))
    np.put_along_axis(connectivity, _neighbours(points), 1.0, axis=1)
    return (connectivity + connectivity.T) * 0.5


def laplacian_spectrum(
    affinity: np.ndarray | sparse.spmatrix, max_clusters: int = MAX_CLUSTERS,
    dense: bool | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The max_clusters + 1 smallest eigenvalues (ascending, clipped to [0, 2]) of the
    normalised Laplacian L = I - D^-1/2 A D^-1/2 of an affinity [n, n] (sparse or dense),
    their eigenvectors float [n, count] and the square roots of the degrees float [n]
    (self-loops left out, as scipy's csgraph.laplacian does). Solved densely (LAPACK, the
    requested eigenvalues only) when n <= DENSE_MAX, else on the sparse matrix (ARPACK);
    `dense` forces one or the other. Both give the same eigenvalues to ~1e-10 and the same
    span of eigenvectors, which is all the labels depend on."""
    n = affinity.shape[0]
    count = min(max_clusters + 1, n - 1)
    if (n <= DENSE_MAX) if dense is None else dense:
        return _dense_spectrum(
            affinity.toarray() if sparse.issparse(affinity) else np.array(affinity, float), count)
    laplacian, root_degree = csgraph.laplacian(
        sparse.csr_matrix(affinity, dtype=np.float64), normed=True, return_diag=True)
    # The largest eigenvalues of 2I - L are 2 minus the smallest of L (ARPACK converges fast
    # on the largest; L's spectrum lies in [0, 2]). A seeded start vector keeps it repeatable.
    shifted = sparse.identity(n, format="csr") * 2.0 - laplacian
    # ARPACK asks for ~160 products at n = 500; the sparse matrix as an operator goes through
    # aslinearoperator's matmat/dot layers on each, which cost several times the product. This
    # operator calls the same product (csr_matvec, the same values) directly.
    operator = LinearOperator(shifted.shape, matvec=shifted.__matmul__, dtype=shifted.dtype)
    start = np.random.default_rng(0).uniform(0.5, 1.5, size=n)
    top, vectors = eigsh(operator, k=count, which="LA", v0=start, tol=1e-10)
    order = np.argsort(2.0 - top, kind="stable")
    return np.clip((2.0 - top)[order], 0.0, 2.0), vectors[:, order], root_degree


def _dense_spectrum(affinity: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray,
                                                                np.ndarray]:
    """`laplacian_spectrum` of a dense affinity float [n, n] (overwritten): the Laplacian as
    csgraph.laplacian(normed=True) builds it (diagonal dropped, an isolated point's row 0),
    its `count` smallest eigenpairs from LAPACK's dsyevr."""
    np.fill_diagonal(affinity, 0.0)
    degree = affinity.sum(axis=0)
    isolated = degree == 0
    root_degree = np.where(isolated, 1.0, np.sqrt(degree))
    laplacian = affinity
    laplacian /= root_degree
    laplacian /= root_degree[:, None]
    laplacian *= -1.0
    np.fill_diagonal(laplacian, 1.0 - isolated)
    values, vectors = linalg.eigh(laplacian, subset_by_index=[0, count - 1], driver="evr",
                                  check_finite=False)
    return np.clip(values, 0.0, 2.0), vectors, root_degree


def eigengap(values: np.ndarray, max_clusters: int = MAX_CLUSTERS) -> int:
    """k maximising the gap l_k - l_(k-1) over the k in 1..max_clusters with l_(k-1) <=
    MAX_CUT (values: the Laplacian's smallest eigenvalues, ascending): only splits into
    groups that are almost disconnected count; 1 when none is allowed."""
    gaps = np.diff(values)
    allowed = [k for k in range(1, min(len(values), max_clusters + 1)) if values[k - 1] <= MAX_CUT]
    return max(allowed, key=lambda c: gaps[c - 1]) if allowed else 1


def eigengap_clusters(
    affinity: np.ndarray | sparse.spmatrix, max_clusters: int = MAX_CLUSTERS
) -> tuple[int, list[float]]:
    """(k, the smallest eigenvalues) of the normalised Laplacian of an affinity [n, n] (sparse
    or dense; eigenvalues from the sparse matrix): `eigengap` of `laplacian_spectrum`."""
    values, _, _ = laplacian_spectrum(affinity, max_clusters)
    return eigengap(values, max_clusters), [round(float(v), 4) for v in values]


def spectral_labels(vectors: np.ndarray, root_degree: np.ndarray) -> np.ndarray:
    """Cluster of each sample (int [n], values in 0..k-1) from the k smallest eigenvectors
    float [n, k] of the normalised Laplacian and the square roots of the degrees [n]: the
    embedding u = D^-1/2 x, assigned by column-pivoted QR (Damle, Minden & Ying 2019). The
    result depends only on the span of the eigenvectors (any rotation or sign of them gives
    the same labels)."""
    embedding = vectors / root_degree[:, None]
    k = embedding.shape[1]
    _, _, pivots = linalg.qr(embedding.T, pivoting=True)
    left, _, right = linalg.svd(embedding[pivots[:k], :].T)
    return np.abs(embedding @ (left @ right)).argmax(axis=1)


def tight(points: np.ndarray, members: np.ndarray, rng: np.random.Generator) -> tuple[bool,
                                                                                     float]:
    """(tight, threshold): the members' mean distance to their centre lies below the
    TIGHT_QUANTILE quantile of that spread over RANDOM_SUBSETS random subsets of the same size
    (points float [n, d]; members int [m])."""
    draws = smallest(rng.random((RANDOM_SUBSETS, len(points))), members.size)
    # A block of subsets [SUBSET_BLOCK, m, d] at a time stays in cache: the same values as all
    # R at once (each subset's sums run in the same order), a third of the time at m = 200.
    spreads = np.concatenate([_spreads(points[draws[start:start + SUBSET_BLOCK]])
                              for start in range(0, RANDOM_SUBSETS, SUBSET_BLOCK)])
    threshold = float(np.quantile(spreads, TIGHT_QUANTILE))
    own = points[members]
    spread = float(np.linalg.norm(own - own.mean(axis=0), axis=1).mean())
    return spread < threshold, threshold


def smallest(keys: np.ndarray, m: int) -> np.ndarray:
    """Positions of each row's m smallest keys, ascending: keys float [r, n] -> int [r, m], the
    same as np.argsort(keys, axis=1)[:, :m] for distinct keys (random floats tie with chance
    ~1e-11 a row) at a partition of n plus a sort of m, not a sort of n."""
    part = np.argpartition(keys, m - 1, axis=1)[:, :m]
    order = np.argsort(np.take_along_axis(keys, part, axis=1), axis=1)
    return np.take_along_axis(part, order, axis=1)


def _spreads(subsets: np.ndarray) -> np.ndarray:
    """Mean distance of each subset's points to their centre: subsets float [b, m, d] -> [b].
    np.linalg.norm's own sum of squares, in place (no copy per step)."""
    offsets = subsets - subsets.mean(axis=1, keepdims=True)
    offsets *= offsets
    return np.sqrt(offsets.sum(axis=2)).mean(axis=1)


def _mean(values: np.ndarray) -> float | None:
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if finite.size else None


def _median(values: np.ndarray) -> float:
    finite = values[np.isfinite(values)]
    return float(np.median(finite)) if finite.size else math.nan


def _off_object(measures: dict[str, np.ndarray]) -> tuple[bool, str]:
    """Off-object rule on the members' measures (_MEASURES name -> float [m], NaN if absent)."""
    enrichment = _median(measures["fg_enrichment"])
    if math.isfinite(enrichment):
        return enrichment < 1.0, f"median fg_enrichment {enrichment:.2f} (chance 1.0)"
    lift = _median(measures["border_lift"])
    if math.isfinite(lift):
        return lift >= BORDER_LIFT_OFF, f"no foreground; median border_lift {lift:.2f}"
    return False, "no foreground or border measure"


def _describe(
    index: np.ndarray, measures: dict[str, np.ndarray], points: np.ndarray, pooled: np.ndarray,
    members: np.ndarray,
) -> dict[str, Any]:
    """Plain data for one cluster (without id and candidate fields)."""
    centre = points[members].mean(axis=0)
    distance = np.linalg.norm(points[members] - centre, axis=1)
    nearest = members[np.argsort(distance, kind="stable")][:MAX_MEMBERS]
    return {
        "size": int(members.size),
        "mean_map": np.round(pooled[members].mean(axis=0), 4).tolist(),
        "fg_energy_mean": _mean(measures["fg_energy"][members]),
        "border_energy_mean": _mean(measures["border_energy"][members]),
        "members": [int(i) for i in index[nearest]],
        "_spread": float(distance.mean()),
    }


def _cluster_class(
    index: np.ndarray, measures: dict[str, np.ndarray], maps: np.ndarray, seed: int,
) -> list[dict[str, Any]]:
    """Clusters of one class: index int [n] (the samples' `index`), measures (_MEASURES name ->
    float [n], NaN where absent), maps float [n, h, w]."""
    pooled = _pooled(maps)
    points = pooled.reshape(len(pooled), -1)
    n = len(index)
    if n < MIN_SAMPLES:
        only = _describe(index, measures, points, pooled, np.arange(n))
        only.pop("_spread")
        return [{"cluster": 0, **only, "candidate": False, "candidate_reason": "",
                 "reason": f"only {n} usable maps (< {MIN_SAMPLES}): not clustered"}]
    affinity = _dense_affinity(points) if n <= DENSE_MAX else _affinity(points)
    values, vectors, root_degree = laplacian_spectrum(affinity)
    k = eigengap(values)
    eigenvalues = [round(float(v), 4) for v in values]
    labels = (np.zeros(n, dtype=int) if k == 1
              else spectral_labels(vectors[:, :k], root_degree))
    found = [np.flatnonzero(labels == c) for c in np.unique(labels)]
    found.sort(key=lambda m: (-m.size, int(m[0])))
    rng = np.random.default_rng(seed)
    clusters = []
    for cid, members in enumerate(found):
        entry = _describe(index, measures, points, pooled, members)
        spread = entry.pop("_spread")
        small = len(found) >= 2 and MIN_CANDIDATE_SIZE <= members.size <= SMALL_SHARE * n
        is_tight, threshold = tight(points, members, rng) if small else (False, math.nan)
        off, why = _off_object({name: column[members] for name, column in measures.items()})
        candidate = small and is_tight and off
        reason = (f"{members.size} of {n} maps, spread {spread:.2f} vs {threshold:.2f} "
                  f"for 99 in 100 random subsets of that size, {why}")
        clusters.append({"cluster": cid, **entry, "candidate": bool(candidate),
                         "candidate_reason": reason, "eigenvalues": eigenvalues})
    return clusters


def cluster_maps(
    samples: pd.DataFrame,
    maps: np.ndarray,
    classes: list[str],
    max_per_class: int = 500,
    seed: int = 0,
) -> dict[str, list[dict[str, Any]]]:
    """Cluster each class's attention maps; JSON-ready for summary.json["clusters"].

    Args:
        samples: the samples.parquet table (columns index, label, status; fg_energy,
            fg_enrichment, border_energy, border_lift when present).
        maps: float [N, h, w], >= 0, one per row of samples[samples.status == "ok"], in order.
        classes: class names; every one gets a key (an empty list when it has no usable map).
        max_per_class: at most this many maps per class (a seeded choice).
        seed: for the choice and the clustering.

    Returns:
        {class: [cluster dict, ...]}, clusters largest first (see the module docstring).
    """
    for column in ("index", "label", "status"):
        if column not in samples.columns:
            raise UsageError(f"samples table lacks column {column!r}; pass samples.parquet")
    ok = samples[samples["status"] == "ok"].reset_index(drop=True)
    maps = np.asarray(maps)
    if maps.ndim != 3 or len(maps) != len(ok):
        raise UsageError(f"maps must be [N, h, w] with N = {len(ok)} readable samples; got shape "
                         f"{maps.shape}. Load them with RunReader.load_maps(ok indices).")
    if max_per_class < 1:
        raise UsageError(f"max_per_class must be at least 1, got {max_per_class}")
    # A map with a non-finite value has a NaN (or infinite) maximum: not usable either way.
    flat = maps.reshape(len(maps), -1)
    usable = np.isfinite(flat).all(axis=1) & (flat.max(axis=1) > 0) \
        if flat.size else np.zeros(len(maps), dtype=bool)
    rng = np.random.default_rng(seed)
    # Each class's rows from one grouping, and the columns a cluster reads as arrays: a scan
    # of every label per class costs rows x classes, a pandas slice per class and cluster
    # costs more than the numbers in it.
    index = ok["index"].to_numpy()
    measures = {name: ok[name].to_numpy(dtype=float) if name in ok.columns
                else np.full(len(ok), np.nan) for name in _MEASURES}
    positions = class_rows(ok["label"].to_numpy(), classes)
    out: dict[str, list[dict[str, Any]]] = {}
    with _one_thread():
        for name in classes:
            rows = positions[name][usable[positions[name]]]
            if rows.size > max_per_class:
                rows = np.sort(rng.choice(rows, size=max_per_class, replace=False))
            out[name] = (_cluster_class(index[rows], {m: v[rows] for m, v in measures.items()},
                                        maps[rows], seed) if rows.size else [])
    return out


@contextmanager
def _one_thread() -> Iterator[None]:
    """BLAS, OpenMP and torch on one thread. A class's matrices are at most max_per_class x
    GRID**2: threads start and spin for longer than such products take (measured: a third of
    the CPU time and of the wall time on a busy 2-core machine, the same clusters)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(limits=1):
            yield
    finally:
        torch.set_num_threads(threads)
