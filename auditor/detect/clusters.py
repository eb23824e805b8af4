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

Steps 3-5 and the candidate rule, with their constants, are `class_clusters.py` (numpy and scipy
only); with POOL_MIN_CPUS or more CPUs and enough maps the classes run in spawned worker
processes (`cluster_maps`' `workers`), with the same results.

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

import logging
import multiprocessing
import os
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from auditor.detect.class_clusters import MEASURES, cluster_class, one_thread_worker
from auditor.detect.groups import class_rows
from auditor.detect.one_thread import one_thread
from auditor.errors import UsageError

GRID = 8
#: Maps each worker process must have to cluster, else fewer workers (none below twice this):
#: a worker's start (a fresh interpreter importing numpy and scipy) and the transfer of its
#: classes cost more than a smaller share of the work saves (benchmarks/cluster_solver.py).
WORKER_MIN_MAPS = 25_000
#: CPUs this process may use below which the classes stay in it unless --workers asks for
#: more: on the 2-core machine, shared, two workers took longer than one process (see README).
POOL_MIN_CPUS = 4
#: Classes handed to the workers ahead of the results taken back, per worker (bounds the
#: pooled maps held in flight).
POOL_AHEAD = 4
#: Maps pooled in one call (bounds the pooled float64 copies held at once: 32 MiB at 8 x 8).
POOL_ROWS = 65_536

log = logging.getLogger(__name__)


def _pooled(maps: np.ndarray) -> np.ndarray:
    """maps float [n, h, w] -> pooled, max-normalised float64 [n, gh, gw] (GRID cells at most)."""
    tensor = torch.as_tensor(np.ascontiguousarray(maps), dtype=torch.float32)[:, None]
    size = (min(GRID, maps.shape[1]), min(GRID, maps.shape[2]))
    pooled = F.adaptive_avg_pool2d(tensor.clamp_min(0), size)[:, 0].double().numpy()
    peak = pooled.reshape(len(pooled), -1).max(axis=1)
    return pooled / peak[:, None, None]


def cluster_maps(
    samples: pd.DataFrame,
    maps: np.ndarray,
    classes: list[str],
    max_per_class: int = 500,
    seed: int = 0,
    workers: int | None = None,
) -> dict[str, list[dict[str, Any]]]:
    """Cluster each class's attention maps; JSON-ready for summary.json["clusters"].

    Args:
        samples: the samples.parquet table (columns index, label, status; fg_energy,
            fg_enrichment, border_energy, border_lift when present).
        maps: float [N, h, w], >= 0, one per row of samples[samples.status == "ok"], in order.
        classes: class names; every one gets a key (an empty list when it has no usable map).
        max_per_class: at most this many maps per class (a seeded choice).
        seed: for the choice and the clustering.
        workers: worker processes for the classes (`_worker_count`): None, one per CPU this
            process may use where it has POOL_MIN_CPUS, while each gets WORKER_MIN_MAPS maps;
            0 or 1, none; N, at most N. The clusters are the same either way (each class is
            seeded alone, in order).

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
                else np.full(len(ok), np.nan) for name in MEASURES}
    positions = class_rows(ok["label"].to_numpy(), classes)
    chosen = []
    for name in classes:
        rows = positions[name][usable[positions[name]]]
        if rows.size > max_per_class:
            rows = np.sort(rng.choice(rows, size=max_per_class, replace=False))
        chosen.append(rows)
    named = [(name, rows) for name, rows in zip(classes, chosen, strict=True) if rows.size]

    def tasks() -> Iterator[tuple[Any, ...]]:
        # The maps of consecutive classes pooled together (each map alone, the same values):
        # one torch call per POOL_ROWS maps, not per class.
        for block in _blocks([rows.size for _, rows in named], POOL_ROWS):
            block_rows = [named[i][1] for i in block]
            pooled = np.split(_pooled(maps[np.concatenate(block_rows)]),
                              np.cumsum([rows.size for rows in block_rows])[:-1])
            for rows, class_pooled in zip(block_rows, pooled, strict=True):
                yield (index[rows], {m: v[rows] for m, v in measures.items()}, class_pooled,
                       seed)

    count = _worker_count(workers, sum(rows.size for _, rows in named))
    out: dict[str, list[dict[str, Any]]] = {name: [] for name in classes}
    with one_thread():
        try:
            found = list(_clustered(tasks(), count))
        except (OSError, BrokenProcessPool) as error:
            log.warning("clustering in %d worker processes failed (%s); clustering in this "
                        "process instead", count, error)
            found = list(_clustered(tasks(), 0))
    out.update((name, clusters) for (name, _), clusters in zip(named, found, strict=True))
    return out


def _blocks(sizes: list[int], most: int) -> Iterator[range]:
    """Consecutive positions of `sizes` in blocks whose sizes add up to at most `most` (a
    larger one alone)."""
    start, total = 0, 0
    for end, size in enumerate(sizes):
        if total + size > most and end > start:
            yield range(start, end)
            start, total = end, 0
        total += size
    if start < len(sizes):
        yield range(start, len(sizes))


def _worker_count(requested: int | None, n_maps: int) -> int:
    """Worker processes to cluster n_maps maps: at most `requested` (None: one per usable CPU
    where there are POOL_MIN_CPUS, else none), at most one per usable CPU, and only as many as
    get WORKER_MIN_MAPS each; 0 (the classes run in this process) below 2."""
    cpus = (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
            else os.cpu_count() or 1)
    limit = requested if requested is not None else cpus if cpus >= POOL_MIN_CPUS else 0
    count = min(limit, cpus, n_maps // WORKER_MIN_MAPS)
    return count if count >= 2 else 0


def _clustered(tasks: Iterable[tuple[Any, ...]], workers: int) -> Iterator[list[dict[str, Any]]]:
    """`cluster_class(*task)` of each task, in order: in this process, or in `workers` (>= 2)
    spawned processes (fresh interpreters, as the loader's workers: not forked from a process
    whose torch and OpenMP threads may hold locks), each on one BLAS thread."""
    if workers < 2:
        yield from (cluster_class(*task) for task in tasks)
        return
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=context, initializer=one_thread_worker) as pool:
        pending: deque[Any] = deque()
        for task in tasks:
            pending.append(pool.submit(cluster_class, *task))
            if len(pending) > POOL_AHEAD * workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
