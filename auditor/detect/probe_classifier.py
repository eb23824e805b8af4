"""The cross-validated probe: a seeded random forest on one group of features, its out-of-fold
accuracy against chance and whether it is well above chance (part 2 of
`auditor.detect.probes`; the rule is `auditor.detect.probe_rule`).

Above MAX_FOREST_CLASSES classes the probe is MANY_CLASS_TREES extremely randomized trees
(Geurts et al. 2006: each split at a random threshold of each candidate feature; every tree
grown on all training rows, no bootstrap; MIN_SPLIT_CANDIDATES candidate features per split,
all of them when there are fewer, sqrt(features) when that is more), grown on the
class number's two digits (`leaf_votes.class_digits`) and scored by the class shares of the
training rows in the leaves (`leaf_votes.leaf_class_votes`). A random forest's best-split
search costs (rows in the node) x (classes) for every feature at every node (22 CPU s a fit on
5 000 rows of 1 000 classes); a random split's impurity over 1 000 classes still costs 1 000
counts per candidate and node, over the digits 64. With 5 rows a class (the subsample keeps
5 of each of 1 000 classes) a split on a feature that does not tell the class scatters the
class's rows for good, so a shortcut in a few features needs many candidates per split; and
every tree sees every training row of the class. benchmarks/probe_many_classes.py measures
these trees against the 40 bootstrapped trees over the classes used before (sqrt(features)
candidates): figures in the README.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
from sklearn.ensemble import ExtraTreesClassifier, RandomForestClassifier
from sklearn.model_selection import StratifiedKFold

from auditor.detect.groups import class_rows
from auditor.detect.leaf_votes import class_digits, leaf_class_votes, vote_outcome
from auditor.detect.probe_rule import (
    CHANCE_MARGIN,
    MAX_FLAG_SAMPLES,
    MIN_CLASS_ROWS,
    MIN_LIFT,
    MIN_ROWS,
    probe_severity,
)
from auditor.detect.stats import wilson_interval

MAX_FOLDS = 5


LARGE_N_FOLDS = 3  # above LARGE_N rows three folds keep enough rows per fold and halve the fits


LARGE_N = 1000


FOREST_TREES = 40


MAX_CLASSIFIER_ROWS = 3000


MIN_SUBSAMPLE_CLASS_ROWS = 5


MAX_FOREST_CLASSES = 100


MANY_CLASS_TREES = 10


MIN_SPLIT_CANDIDATES = 32


def forest(n_classes: int, n_rows: int, n_features: int, seed: int, n_train: int | None = None
           ) -> RandomForestClassifier | ExtraTreesClassifier:
    """The probe's unfitted classifier for `n_classes` classes, `n_rows` rows and `n_features`
    features, to be fitted on `n_train` of the rows (None: all of them) (module docstring: a
    random forest, extremely randomized trees above MAX_FOREST_CLASSES)."""
    # Thread start-up costs more than it saves on small data sets.
    n_jobs = -1 if n_rows > LARGE_N else None
    if n_classes > MAX_FOREST_CLASSES:
        candidates = min(n_features, max(MIN_SPLIT_CANDIDATES, math.isqrt(n_features)))
        return ExtraTreesClassifier(n_estimators=MANY_CLASS_TREES, min_samples_leaf=3,
                                    max_features=candidates, n_jobs=n_jobs, random_state=seed)
    # Half-size bootstraps halve the fit time; the out-of-fold estimate stays unbiased. As a
    # count (what scikit-learn makes of 0.5), which it does not warn about on small sets.
    half = max((n_rows if n_train is None else n_train) // 2, 1)
    return RandomForestClassifier(n_estimators=FOREST_TREES, min_samples_leaf=3,
                                  max_features="sqrt", max_samples=half, n_jobs=n_jobs,
                                  random_state=seed)


def model_name(n_classes: int) -> str:
    """What `forest` builds, in words."""
    if n_classes > MAX_FOREST_CLASSES:
        return f"extremely randomized trees ({MANY_CLASS_TREES} trees, grown on class digits)"
    return f"random forest ({FOREST_TREES} trees)"


def subsample(y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Row positions: all rows, or a stratified subsample of about MAX_CLASSIFIER_ROWS."""
    if len(y) <= MAX_CLASSIFIER_ROWS:
        return np.arange(len(y))
    frac = MAX_CLASSIFIER_ROWS / len(y)
    picked = []
    # Each class's rows from one grouping (a scan per class costs rows x classes); the same
    # draws in the same order as a scan would make.
    for members in class_rows(y, np.unique(y)).values():
        take = min(len(members), max(MIN_SUBSAMPLE_CLASS_ROWS, round(len(members) * frac)))
        picked.append(rng.choice(members, size=take, replace=False))
    return np.sort(np.concatenate(picked))


def cross_validated_probe(
    x: np.ndarray | Callable[[np.ndarray], np.ndarray],
    groups: list[str],
    y: np.ndarray,
    names: list[str],
    seed: int,
    notes: list[str],
) -> tuple[dict[str, Any], list[int]]:
    """Out-of-fold accuracy of a forest on x vs the majority baseline; most telling rows.

    x is float [N, F] (F = len(groups)), or a function from row positions int [M] to their
    float [M, F] features, so that features are built only for the rows the probe keeps
    (`subsample`)."""
    if not groups:
        return {"status": "skipped", "reason": "no usable (non-constant) features"}, []
    counts = np.bincount(y, minlength=len(names))
    small = [names[c] for c in np.flatnonzero((counts > 0) & (counts < MIN_CLASS_ROWS))]
    usable = np.flatnonzero(counts[y] >= MIN_CLASS_ROWS)
    if small:
        note = (
            f"classes with fewer than {MIN_CLASS_ROWS} samples left out of the probes: "
            + ", ".join(small)
        )
        if note not in notes:
            notes.append(note)
    n_classes = int((counts >= MIN_CLASS_ROWS).sum())
    if len(usable) < MIN_ROWS or n_classes < 2:
        reason = (
            f"too little data for a cross-validated probe: {len(usable)} rows in "
            f"{n_classes} classes with >= {MIN_CLASS_ROWS} samples; need >= {MIN_ROWS} rows "
            "in >= 2 classes"
        )
        return {"status": "skipped", "reason": reason}, []

    rng = np.random.default_rng(seed)
    rows = usable[subsample(y[usable], rng)]
    xs, ys = (x[rows] if isinstance(x, np.ndarray) else x(rows)), y[rows]
    most = MAX_FOLDS if len(rows) <= LARGE_N else LARGE_N_FOLDS
    folds = int(min(most, np.bincount(ys)[np.unique(ys)].min()))
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    true_proba = np.zeros(len(rows))
    correct = np.zeros(len(rows), dtype=bool)
    importance = np.zeros(len(groups))
    # Every class has >= folds rows, so every training fold holds every class.
    codes = np.unique(ys, return_inverse=True)[1]
    for train, test in splitter.split(xs, ys):
        model = forest(n_classes, len(rows), len(groups), seed, len(train))
        if n_classes > MAX_FOREST_CLASSES:
            model.fit(xs[train], class_digits(codes[train], n_classes))
            # Each tree's leaves are the same on any thread; starting threads for `apply`
            # costs more than the ten trees' look-ups.
            model.set_params(n_jobs=None)
            votes = leaf_class_votes(model, xs[train], codes[train], xs[test], n_classes)
            correct[test], true_proba[test] = vote_outcome(votes, codes[test],
                                                           len(model.estimators_))
        else:
            model.fit(xs[train], ys[train])
            # Threads add the trees' probabilities in the order they finish, so a near-tie
            # could go either way between runs; one thread adds them in tree order.
            model.set_params(n_jobs=None)
            proba = model.predict_proba(xs[test])
            col = np.searchsorted(model.classes_, ys[test])
            true_proba[test] = proba[np.arange(len(test)), col]
            correct[test] = model.classes_[proba.argmax(axis=1)] == ys[test]
        importance += model.feature_importances_ / folds

    n = len(rows)
    hits = int(correct.sum())
    majority = int(np.bincount(ys).max())
    accuracy = hits / n
    baseline = majority / n
    ci_low, ci_high = wilson_interval(hits, n)
    lift = (accuracy - baseline) / (1 - baseline)
    well_above = ci_low >= baseline + CHANCE_MARGIN and lift >= MIN_LIFT
    by_group = pd.Series(importance, index=groups).groupby(level=0, sort=False).sum()
    top = by_group.sort_values(ascending=False, kind="stable").head(5)
    order = np.lexsort((-true_proba, ~correct))
    telling = [int(rows[i]) for i in order[:MAX_FLAG_SAMPLES] if correct[i]]
    summary = {
        "status": "ok",
        "accuracy": accuracy,
        "ci_low": ci_low,
        "ci_high": ci_high,
        "baseline": baseline,
        "baseline_ci": list(wilson_interval(majority, n)),
        "lift": lift,
        "well_above_chance": bool(well_above),
        "severity": probe_severity(lift, n) if well_above else None,
        "n": n,
        "folds": folds,
        "model": f"{model_name(n_classes)}, stratified {folds}-fold, out-of-fold",
        "features": list(dict.fromkeys(groups)),
        "top_features": [{"feature": k, "importance": float(v)} for k, v in top.items()],
    }
    return summary, telling
