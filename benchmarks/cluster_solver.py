"""The clusters' eigen-solve by class size (dense LAPACK against sparse ARPACK), and classes
clustered in worker processes against one process.

    python benchmarks/cluster_solver.py [--sizes 20 50 ... 500] [--classes 20] [--json FILE]
    python benchmarks/cluster_solver.py --pool [--classes 200] [--workers 2]

Solver mode. `class_clusters.laplacian_spectrum` solves a class of at most
`class_clusters.DENSE_MAX` maps densely (the kNN affinity as an array, LAPACK's dsyevr for the
few smallest eigenpairs) and a larger one on the sparse kNN Laplacian (ARPACK). This times both
on generated classes of each size: 16x16 maps (a bump near the centre, 30% of them at the
corner, noise, a random scale), pooled as `cluster_maps` pools them; per class the affinity and
the spectrum, CPU milliseconds on one thread (as `cluster_maps` runs them). It prints both and
the largest eigenvalue difference; DENSE_MAX is the largest size where the dense solve is the
faster one.

Pool mode. `cluster_maps` on CLASSES generated classes of 500 maps, in this process
(`workers=0`) and in WORKERS spawned worker processes (default: the usable CPUs), whatever the
automatic rule would choose (it is printed): wall seconds, CPU seconds of this process and of
the workers, and whether the clusters are the same.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time
from pathlib import Path

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from auditor.detect import class_clusters

SIDE = 16


def class_maps(n: int, rng: np.random.Generator) -> np.ndarray:
    """float32 [n, 16, 16]: a Gaussian bump near the centre, at the corner for 30% of them,
    uniform noise, a random scale."""
    centre = np.where(rng.uniform(size=n) < 0.3, 0.0, (SIDE - 1) / 2)
    cy = centre + rng.normal(0.0, 1.5, n)
    cx = centre + rng.normal(0.0, 1.5, n)
    yy, xx = np.mgrid[0:SIDE, 0:SIDE].astype(np.float32)
    bump = np.exp(-((yy - cy[:, None, None]) ** 2 + (xx - cx[:, None, None]) ** 2) / 4.0)
    noise = rng.uniform(0.0, 0.1, bump.shape)
    return ((bump + noise) * rng.uniform(0.5, 3.0, (n, 1, 1))).astype(np.float32)


def _cpu_ms(points: list[np.ndarray], dense: bool) -> tuple[float, list[np.ndarray]]:
    """CPU ms per class of the affinity and the spectrum, and the eigenvalues."""
    build = class_clusters._dense_affinity if dense else class_clusters._affinity
    started = time.process_time()
    values = [class_clusters.laplacian_spectrum(build(p), dense=dense)[0] for p in points]
    return (time.process_time() - started) / len(points) * 1e3, values


def pool(n_classes: int, workers: int) -> dict[str, object]:
    """`cluster_maps` on n_classes generated classes of 500 maps, in this process and in
    `workers` processes: wall and CPU seconds, the same clusters or not."""
    rng = np.random.default_rng(1)
    maps = np.concatenate([class_maps(500, rng) for _ in range(n_classes)])
    samples = pd.DataFrame({"index": np.arange(len(maps)), "status": "ok",
                            "label": np.repeat([f"c{c}" for c in range(n_classes)], 500),
                            "fg_enrichment": rng.uniform(0.0, 3.0, len(maps))})
    classes = [f"c{c}" for c in range(n_classes)]
    # Imported here: spawned workers import this main module again, and torch (which clusters
    # imports) at its top would be charged to each worker's start; the auditor CLI's is not.
    from auditor.detect import clusters
    clusters.WORKER_MIN_MAPS = 1  # the count asked for, whatever the work
    result: dict[str, object] = {"classes": n_classes, "maps": len(maps), "workers": workers,
                                 "automatic_workers": clusters._worker_count(None, len(maps))}
    found = []
    for count in (0, workers):
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu, wall = time.process_time(), time.perf_counter()
        found.append(repr(clusters.cluster_maps(samples, maps, classes, workers=count)))
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        result[f"workers_{count}"] = {
            "wall_s": round(time.perf_counter() - wall, 2),
            "cpu_s": round(time.process_time() - cpu, 2),
            "worker_cpu_s": round(after.ru_utime + after.ru_stime - children.ru_utime
                                  - children.ru_stime, 2)}
        print(f"{count} workers: {result[f'workers_{count}']}", flush=True)
    result["same_clusters"] = found[0] == found[1]
    print(f"same clusters: {result['same_clusters']}; the automatic rule would use "
          f"{result['automatic_workers']} workers; load average {os.getloadavg()[0]:.1f}")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", nargs="+", type=int,
                        default=[20, 50, 100, 150, 200, 250, 300, 400, 500])
    parser.add_argument("--classes", type=int, default=None,
                        help="generated classes per size (20), or in all with --pool (200)")
    parser.add_argument("--pool", action="store_true", help="time worker processes instead")
    parser.add_argument("--workers", type=int, default=None, help="with --pool (usable CPUs)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if args.pool:
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        result = pool(args.classes or 200, args.workers or cpus or 1)
        if args.json:
            args.json.write_text(json.dumps(result, indent=1))
        return
    from auditor.detect.clusters import _pooled
    rng = np.random.default_rng(0)
    rows = []
    with threadpool_limits(limits=1):
        for n in args.sizes:
            points = [_pooled(class_maps(n, rng)).reshape(n, -1)
                      for _ in range(args.classes or 20)]
            _cpu_ms(points[:2], True), _cpu_ms(points[:2], False)  # warm-up
            dense_ms, dense_values = _cpu_ms(points, True)
            sparse_ms, sparse_values = _cpu_ms(points, False)
            gap = max(float(np.abs(a - b).max())
                      for a, b in zip(dense_values, sparse_values, strict=True))
            rows.append({"n": n, "dense_ms": round(dense_ms, 3), "sparse_ms": round(sparse_ms, 3),
                         "max_eigenvalue_difference": gap})
            print(f"n {n:5d}: dense {dense_ms:8.3f} ms, sparse {sparse_ms:8.3f} ms a class "
                  f"(CPU, one thread); eigenvalues differ by at most {gap:.1e}", flush=True)
    faster = [r["n"] for r in rows if r["dense_ms"] < r["sparse_ms"]]
    print(f"dense faster up to n = {max(faster) if faster else None}; "
          f"class_clusters.DENSE_MAX = {class_clusters.DENSE_MAX}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
