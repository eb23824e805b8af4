"""The border-pixel probe at many classes: a random forest against extremely randomized trees.

    python benchmarks/probe_many_classes.py [--classes 1000] [--rows-per-class 5] [--json FILE]

Above `probe_classifier.MAX_FOREST_CLASSES` classes the probe's trees split at random
thresholds (a random forest's best-split search costs rows x classes per feature and node).
This compares both classifiers, through the probe's own `cross_validated_probe`, on 16x16
thumbnails of CLASSES classes with ROWS-PER-CLASS rows each (the probes' subsample of a large
data set keeps 5 rows of each of 1 000 classes): noise everywhere (clean); each class's own
border colour on a share of its rows (planted: 100%, 50%, 25%, 10%); a border colour shared by
groups of 100 classes (it tells the group, not the class). Prints each classifier's out-of-fold
accuracy, its 95% Wilson interval, the majority baseline, the lift, the severity the probe's
rule gives (None: no flag) and the CPU seconds of the three fits.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from unittest import mock

import numpy as np

from auditor.detect import probe_classifier
from auditor.detect.probe_encoding import border_pixel_features

SIDE = 16


def thumbnails(labels: np.ndarray, share: float, groups: int | None,
               rng: np.random.Generator) -> np.ndarray:
    """uint8 [N, 3, 16, 16] noise; a share of each class's rows carry its own border colour
    (or, with `groups`, the colour of its group of classes) in the outer 2 pixels, +-10."""
    n = len(labels)
    thumbs = rng.integers(0, 256, (n, 3, SIDE, SIDE)).astype(np.int16)
    keys = labels % groups if groups else labels
    colours = rng.integers(0, 256, (int(keys.max()) + 1, 3))
    carrier = rng.random(n) < share
    band = np.ones((SIDE, SIDE), dtype=bool)
    band[2:-2, 2:-2] = False
    tinted = colours[keys][:, :, None, None] + rng.integers(-10, 11, (n, 3, SIDE, SIDE))
    thumbs = np.where(carrier[:, None, None, None] & band, tinted, thumbs)
    return np.clip(thumbs, 0, 255).astype(np.uint8)


def run(n_classes: int, per_class: int, seed: int = 0) -> list[dict[str, object]]:
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(n_classes), per_class)
    names = [f"c{c}" for c in range(n_classes)]
    cases = [("clean", 0.0, None)] + [(f"planted {s:.0%}", s, None) for s in (1.0, 0.5, 0.25,
                                                                              0.1)]
    cases.append(("colour per 100 classes", 1.0, max(n_classes // 100, 2)))
    results = []
    for case, share, groups in cases:
        x, feature_groups = border_pixel_features(thumbnails(labels, share, groups, rng), 0.1)
        for model, limit in (("random forest", 10**9), ("extremely randomized trees", 0)):
            started = time.process_time()
            with mock.patch.object(probe_classifier, "MAX_FOREST_CLASSES", limit):
                probe, _ = probe_classifier.cross_validated_probe(
                    x, feature_groups, labels, names, seed, [])
            results.append({
                "case": case, "model": model, "accuracy": round(probe["accuracy"], 4),
                "ci": [round(probe["ci_low"], 4), round(probe["ci_high"], 4)],
                "baseline": round(probe["baseline"], 4), "lift": round(probe["lift"], 4),
                "severity": probe["severity"],
                "cpu_s": round(time.process_time() - started, 1)})
            print(json.dumps(results[-1]), flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--rows-per-class", type=int, default=5)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    results = run(args.classes, args.rows_per_class)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
