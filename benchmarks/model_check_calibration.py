"""How often the model check raises its flags, on simulated predictions (no images, no model).

For K classes and n labelled samples (labels uniform at random), a model right with
probability `lift` and otherwise uniformly random (lift 0: random predictions; 0.2: weak but
real; 0.9: good), optionally with its outputs permuted (a wrong --classes order). Printed per
(K, n): the share of --runs runs raising `model_at_chance` / `labels_permuted`.

    python benchmarks/model_check_calibration.py --runs 100
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd

from auditor.detect.model_check import check_model


def simulated(rng: np.random.Generator, k: int, n: int, lift: float,
              permutation: np.ndarray | None = None) -> pd.DataFrame:
    """A samples table of n readable rows with labels and the predictions of such a model."""
    labels = rng.integers(0, k, n)
    preds = np.where(rng.random(n) < lift, labels, rng.integers(0, k, n))
    if permutation is not None:
        preds = permutation[preds]
    return pd.DataFrame({"rel_path": "x", "status": "ok", "label_index": labels,
                         "pred_index": preds})


def shares(rng: np.random.Generator, k: int, n: int, lift: float, runs: int,
           permuted: bool = False) -> tuple[float, float]:
    """(share raising model_at_chance, share raising labels_permuted) over `runs` runs."""
    classes = [f"c{i}" for i in range(k)]
    raised = []
    for _ in range(runs):
        permutation = None
        while permuted and (permutation is None or (permutation == np.arange(k)).all()):
            permutation = rng.permutation(k)
        check = check_model(simulated(rng, k, n, lift, permutation), classes, k)
        raised.append({f.kind for f in check.flags})
    return (float(np.mean(["model_at_chance" in r for r in raised])),
            float(np.mean(["labels_permuted" in r for r in raised])))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    print("| classes | n | random: at chance | random: permuted | lift 0.2: at chance | "
          "lift 0.2: permuted | lift 0.9: any flag | lift 0.9, outputs permuted: permuted |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for k in (2, 10, 100):
        for n in (50, 500, 5000):
            if n < 5 * k:
                continue
            random = shares(rng, k, n, 0.0, args.runs)
            weak = shares(rng, k, n, 0.2, args.runs)
            good = shares(rng, k, n, 0.9, args.runs)
            swapped = shares(rng, k, n, 0.9, args.runs, permuted=True)
            print(f"| {k} | {n} | {random[0]:.0%} | {random[1]:.0%} | {weak[0]:.0%} | "
                  f"{weak[1]:.0%} | {max(good):.0%} | {swapped[1]:.0%} |")


if __name__ == "__main__":
    main()
