"""The probes' classifier at many classes: false flags on clean data and detection power on
planted shortcuts, over many seeds, for the classifier the probes use and the one before it.

    python benchmarks/probe_many_classes.py [--classes 1000] [--rows-per-class 5]
        [--clean-seeds 20] [--seeds 5] [--json FILE]

Above `probe_classifier.MAX_FOREST_CLASSES` classes the probes use extremely randomized trees
grown on class digits (`probe_classifier`'s docstring). This runs the probe's own
`cross_validated_probe` with that classifier ("now") and with the one used before it ("40
bootstrapped trees": 40 extremely randomized trees over the classes themselves, sqrt(features)
candidates per split, half-size bootstraps, predict_proba), on CLASSES classes with
ROWS-PER-CLASS rows each (the probes' subsample of a large data set keeps 5 rows of each of
1 000 classes):

- border probe, 16x16 thumbnails: noise everywhere (clean, CLEAN-SEEDS seeds); each class's own
  border colour (+-10) in the outer 2 pixels on 100%, 50%, 25%, 10% of its rows; one colour
  per group of 100 classes (it tells the group, not the class); each class's own colour in the
  top-left 2x2 pixels only (12 of the band's 336 features) (SEEDS seeds each);
- metadata probe, file properties drawn at random (format, extension, width, height, file
  size, JPEG quality): clean (CLEAN-SEEDS seeds); each class its own file size (1 000 bytes
  apart, +-100) on 100% and 50% of its rows, the other properties still random (SEEDS seeds
  each).

Prints one JSON line per run (accuracy, lift, severity: None is no flag, CPU s) and a Markdown
table per case and classifier: the share of seeds that raised the flag, the mean accuracy and
lift (min-max), the severities, and the mean CPU seconds of the three fits.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from unittest import mock

import numpy as np
import pandas as pd
from sklearn.ensemble import ExtraTreesClassifier

from auditor.detect import probe_classifier
from auditor.detect.probe_encoding import (
    border_pixel_features,
    encode_properties,
    property_features,
)

SIDE = 16

Features = Callable[[np.ndarray, np.random.Generator], tuple[np.ndarray, list[str]]]


def thumbnails(labels: np.ndarray, share: float, groups: int | None,
               rng: np.random.Generator, corner: bool = False) -> np.ndarray:
    """uint8 [N, 3, 16, 16] noise; a share of each class's rows carry its own border colour
    (or, with `groups`, the colour of its group of classes) in the outer 2 pixels (with
    `corner`, in the top-left 2x2 pixels only), +-10."""
    n = len(labels)
    thumbs = rng.integers(0, 256, (n, 3, SIDE, SIDE)).astype(np.int16)
    keys = labels % groups if groups else labels
    colours = rng.integers(0, 256, (int(keys.max()) + 1, 3))
    carrier = rng.random(n) < share
    band = np.zeros((SIDE, SIDE), dtype=bool)
    band[:2, :2] = True
    if not corner:
        band[:2, :] = band[-2:, :] = band[:, :2] = band[:, -2:] = True
    tinted = colours[keys][:, :, None, None] + rng.integers(-10, 11, (n, 3, SIDE, SIDE))
    thumbs = np.where(carrier[:, None, None, None] & band, tinted, thumbs)
    return np.clip(thumbs, 0, 255).astype(np.uint8)


def file_properties(labels: np.ndarray, share: float, rng: np.random.Generator
                    ) -> pd.DataFrame:
    """Fingerprints drawn at random; a share of each class's rows get its own file size
    (10 000 + 1 000 x class, +-100) instead of a random one (over the same range)."""
    n = len(labels)
    jpeg = rng.random(n) < 0.5
    size = rng.uniform(10_000, 10_000 + 1_000 * (int(labels.max()) + 1), n)
    carrier = rng.random(n) < share
    own = 10_000 + 1_000 * labels + rng.uniform(-100, 100, n)
    return pd.DataFrame({
        "format": np.where(jpeg, "JPEG", "PNG"),
        "extension": np.where(jpeg, rng.choice([".jpg", ".jpeg"], n), ".png"),
        "width": rng.choice([224, 256, 320, 512], n),
        "height": rng.choice([224, 256, 320, 512], n),
        "file_size": np.where(carrier, own, size),
        "jpeg_quality": np.where(jpeg, rng.integers(70, 96, n), np.nan),
    })


def former_forest(n_classes: int, n_rows: int, n_features: int, seed: int
                  ) -> ExtraTreesClassifier:
    """The classifier the probes used above 100 classes before the class-digit trees."""
    return ExtraTreesClassifier(
        n_estimators=40, min_samples_leaf=3, max_features="sqrt", bootstrap=True,
        max_samples=0.5, n_jobs=-1 if n_rows > probe_classifier.LARGE_N else None,
        random_state=seed)


def former() -> AbstractContextManager[object]:
    """The former classifier, through the probe's predict_proba path."""
    return mock.patch.multiple(probe_classifier, MAX_FOREST_CLASSES=10**9, forest=former_forest)


MODELS: dict[str, Callable[[], AbstractContextManager[object]]] = {
    "40 bootstrapped trees (before)": former,
    "now": nullcontext,
}


def cases(n_classes: int, clean_seeds: int, seeds: int) -> list[tuple[str, str, int, Features]]:
    """(probe, case, number of seeds, features(labels, rng) -> (x, feature groups))."""
    group = max(n_classes // 100, 2)

    def border(share: float, groups: int | None = None, corner: bool = False) -> Features:
        return lambda labels, rng: border_pixel_features(
            thumbnails(labels, share, groups, rng, corner), 0.1)

    def metadata(share: float) -> Features:
        def features(labels: np.ndarray, rng: np.random.Generator
                     ) -> tuple[np.ndarray, list[str]]:
            columns, _ = encode_properties(file_properties(labels, share, rng))
            return property_features(len(labels), columns, border_group=False)
        return features

    found = [("border", "clean (noise)", clean_seeds, border(0.0))]
    found += [("border", f"own colour on {s:.0%}", seeds, border(s)) for s in (1.0, 0.5, 0.25,
                                                                               0.1)]
    found.append(("border", "one colour per 100 classes", seeds, border(1.0, group)))
    found.append(("border", "own colour in one 2x2 corner", seeds, border(1.0, corner=True)))
    found.append(("metadata", "clean (random properties)", clean_seeds, metadata(0.0)))
    found += [("metadata", f"own file size on {s:.0%}", seeds, metadata(s)) for s in (1.0, 0.5)]
    return found


def run(n_classes: int, per_class: int, clean_seeds: int, seeds: int
        ) -> list[dict[str, object]]:
    labels = np.repeat(np.arange(n_classes), per_class)
    names = [f"c{c}" for c in range(n_classes)]
    results = []
    for number, (probe, case, n_seeds, features) in enumerate(cases(n_classes, clean_seeds,
                                                                    seeds)):
        for seed in range(n_seeds):
            x, groups = features(labels, np.random.default_rng([seed, number]))
            for model, context in MODELS.items():
                started = time.process_time()
                with context():
                    found, _ = probe_classifier.cross_validated_probe(
                        x, groups, labels, names, seed, [])
                results.append({
                    "probe": probe, "case": case, "seed": seed, "model": model,
                    "accuracy": round(found["accuracy"], 4), "lift": round(found["lift"], 4),
                    "severity": found["severity"],
                    "cpu_s": round(time.process_time() - started, 2)})
                print(json.dumps(results[-1]), flush=True)
    return results


def table(results: list[dict[str, object]]) -> str:
    """Markdown: per probe, case and classifier the flag rate, accuracy, lift, severities and
    CPU s."""
    frame = pd.DataFrame(results)
    lines = ["| probe | case | classifier | seeds flagged | accuracy | lift (min-max) | "
             "severities | CPU s |", "|---|---|---|---|---|---|---|---|"]
    for (probe, case, model), rows in frame.groupby(["probe", "case", "model"], sort=False):
        severities = ", ".join(f"{k} {v}" for k, v in rows["severity"].value_counts().items())
        lines.append(
            f"| {probe} | {case} | {model} | {int(rows['severity'].notna().sum())}/{len(rows)} "
            f"| {rows['accuracy'].mean():.2%} | {rows['lift'].mean():.3f} "
            f"({rows['lift'].min():.3f}-{rows['lift'].max():.3f}) | {severities or '-'} | "
            f"{rows['cpu_s'].mean():.2f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--rows-per-class", type=int, default=5)
    parser.add_argument("--clean-seeds", type=int, default=20)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    results = run(args.classes, args.rows_per_class, args.clean_seeds, args.seeds)
    print(table(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
