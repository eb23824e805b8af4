"""The clusters' eigen-solve by class size: dense LAPACK against sparse ARPACK.

    python benchmarks/cluster_solver.py [--sizes 20 50 100 ... 500] [--classes 20] [--json FILE]

`class_clusters.laplacian_spectrum` solves a class of at most `class_clusters.DENSE_MAX` maps
densely (the kNN affinity as an array, LAPACK's dsyevr for the few smallest eigenpairs) and a
larger one on the sparse kNN Laplacian (ARPACK). This times both on generated classes of each
size: 16x16 maps (a bump near the centre, 30% of them at the corner, noise, a random scale), pooled as
`cluster_maps` pools them; per class the affinity and the spectrum, CPU milliseconds on one
thread (as `cluster_maps` runs them). It prints both and the largest eigenvalue difference;
DENSE_MAX is the largest size where the dense solve is the faster one.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from auditor.detect import class_clusters, clusters

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", nargs="+", type=int,
                        default=[20, 50, 100, 150, 200, 250, 300, 400, 500])
    parser.add_argument("--classes", type=int, default=20, help="generated classes per size")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    rows = []
    with threadpool_limits(limits=1):
        for n in args.sizes:
            points = [clusters._pooled(class_maps(n, rng)).reshape(n, -1)
                      for _ in range(args.classes)]
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
