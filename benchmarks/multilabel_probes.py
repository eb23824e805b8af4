"""One-vs-rest header probes of a multi-label set: false flags on clean data, power on a plant.

    python benchmarks/multilabel_probes.py [--sets 10] [--images 300] [--labels 14]

Each synthetic set has `--images` DICOM-like fingerprints and `--labels` labels of random
prevalence (5-40%, independent). Clean sets: every header tag (Manufacturer of 3, ViewPosition
AP/PA, KVP of 4 values, width/height of 3 sizes, file size) is drawn independently of the
labels, so any flag is false. Planted sets: the same, but label 0's images come from the
manufacturer "Portable" with probability q (the others with probability 1/3 like any maker).
Prints, per setting, the share of sets with a flag on a clean label (false flags, counted per
set and per label) and the share of planted sets where label 0 is flagged with
`dicom_Manufacturer` named.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

from auditor.detect.per_label import one_vs_rest_probes


def fingerprints(rng: np.random.Generator, n: int, has_first: np.ndarray, q: float) -> pd.DataFrame:
    makers = rng.choice(["Portable", "Fixed A", "Fixed B"], size=n)
    planted = has_first & (rng.random(n) < q)
    makers = np.where(planted, "Portable", makers)
    side = rng.choice([2048, 2500, 3000], size=n)
    return pd.DataFrame({
        "format": "DICOM", "width": side, "height": side, "aspect": 1.0,
        "file_size": side * side * 2 + rng.integers(300, 900, n),
        "dicom_Manufacturer": makers, "dicom_ViewPosition": rng.choice(["AP", "PA"], size=n),
        "dicom_KVP": rng.choice([90.0, 100.0, 110.0, 125.0], size=n),
    })


def one_set(seed: int, n: int, k: int, q: float | None) -> tuple[set[int], bool, float]:
    """(clean labels flagged, label 0 flagged naming the Manufacturer, label 0's prevalence)
    of one synthetic set."""
    rng = np.random.default_rng(seed)
    prevalence = rng.uniform(0.05, 0.4, size=k)
    members = rng.random((n, k)) < prevalence
    props = fingerprints(rng, n, members[:, 0], q or 0.0)
    label_sets = [tuple(np.flatnonzero(row)) for row in members]
    names = [f"L{i}" for i in range(k)]
    result = one_vs_rest_probes(props, label_sets, names, seed=seed)
    flagged = {names.index(f.class_name) for f in result.flags}
    found = any(f.class_name == "L0" and "dicom_Manufacturer" in f.message for f in result.flags)
    clean = flagged - ({0} if q else set())
    return clean, found, float(members[:, 0].mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", type=int, default=10)
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--labels", type=int, default=14)
    parser.add_argument("--q", type=float, nargs="+", default=[0.0, 0.3, 0.6, 0.9, 1.0],
                        help="plant strengths (0: clean sets)")
    args = parser.parse_args()
    for q in args.q:
        started = time.perf_counter()
        outcomes = [one_set(s, args.images, args.labels, q or None)
                    for s in range(args.sets)]
        clean_labels = args.labels - (1 if q else 0)
        false_sets = sum(bool(c) for c, _, _ in outcomes)
        false_labels = sum(len(c) for c, _, _ in outcomes)
        found = [f"{p:.0%}" for _, f, p in outcomes if f]
        missed = [f"{p:.0%}" for _, f, p in outcomes if not f]
        what = "clean" if not q else f"planted q={q}"
        print(f"{what:16} sets with a false flag {false_sets}/{args.sets}, false label flags "
              f"{false_labels}/{args.sets * clean_labels}"
              + ("" if not q else f", plant found {len(found)}/{args.sets} (label 0 "
                 f"prevalence found: {' '.join(found) or '-'}; missed: "
                 f"{' '.join(missed) or '-'})")
              + f" ({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
