"""One class's clusters from its pooled maps: the kNN affinity, the Laplacian's spectrum, the
eigengap, the labels and the candidate rule (steps 3-5 and the table of `clusters`' docstring).

numpy and scipy only (no torch): `cluster_maps` may run classes in worker processes, which
import this module and nothing heavier.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy import linalg, sparse
from scipy.sparse import csgraph
from scipy.sparse.linalg import LinearOperator, eigsh
from threadpoolctl import threadpool_limits

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
MEASURES = ("fg_energy", "fg_enrichment", "border_energy", "border_lift")


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
    """Off-object rule on the members' measures (MEASURES name -> float [m], NaN if absent)."""
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


def cluster_class(
    index: np.ndarray, measures: dict[str, np.ndarray], pooled: np.ndarray, seed: int,
) -> list[dict[str, Any]]:
    """Clusters of one class (see `clusters`): index int [n] (the samples' `index`), measures
    (MEASURES name -> float [n], NaN where absent), pooled float [n, gh, gw] (pooled,
    max-normalised maps); seed for the tightness test's random subsets."""
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


def one_thread_worker() -> None:
    """A worker process's start: BLAS on one thread for its life (each class's matrices are
    too small to repay threads, and the workers share the CPUs)."""
    threadpool_limits(limits=1)
