"""Rows of each class, found once for the whole table (a hash grouping, not one scan per class).

A detector that loops over classes and compares every row's label with each class name costs
rows x classes: a million rows in a thousand classes is a billion comparisons. `class_rows`
groups once; each class then reads its own positions. `stratified_sample` draws a seeded
subsample that keeps every class's share, in one sort.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd


def class_rows(labels: Sequence[object] | np.ndarray | pd.Series,
               classes: Sequence[object]) -> dict[object, np.ndarray]:
    """Positions (int64, ascending) of the rows of each class in `labels`, for every name in
    `classes` (an empty array for a class without rows). Labels may be names or indices."""
    values = pd.Series(np.asarray(labels))
    found = values.groupby(values, sort=False).indices if len(values) else {}
    empty = np.zeros(0, dtype=np.int64)
    return {name: np.asarray(found.get(name, empty), dtype=np.int64) for name in classes}


def stratified_sample(labels: np.ndarray, n: int, rng: np.random.Generator,
                      min_per_class: int = 5) -> np.ndarray:
    """Positions (int64, ascending) of a random subsample of about `n` rows that keeps every
    class's share: round(count x n / N) rows of each class, at least `min_per_class` (or all
    it has). All rows when there are at most `n`. labels: int [N]; one sort, no loop."""
    labels = np.asarray(labels, dtype=np.int64)
    if len(labels) <= n:
        return np.arange(len(labels))
    _, codes, counts = np.unique(labels, return_inverse=True, return_counts=True)
    take = np.minimum(counts, np.maximum(min_per_class, np.rint(counts * n / len(labels))))
    order = np.lexsort((rng.random(len(labels)), codes))  # by class, randomly within it
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank = np.arange(len(labels)) - starts[codes[order]]
    return np.sort(order[rank < take[codes[order]]])
