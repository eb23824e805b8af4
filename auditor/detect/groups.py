"""Rows of each class, found once for the whole table (a hash grouping, not one scan per class).

A detector that loops over classes and compares every row's label with each class name costs
rows x classes: a million rows in a thousand classes is a billion comparisons. `class_rows`
groups once; each class then reads its own positions. `grouping` lays the rows out group by
group once, and the group reductions (quantiles, medians, means) read every group from it: one
numpy call per distinct group size, each group getting exactly the value numpy gives it alone.
`stratified_sample` draws a seeded subsample that keeps every class's share, in one sort.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

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


def class_codes(labels: Sequence[object] | np.ndarray | pd.Series,
                classes: Sequence[object]) -> np.ndarray:
    """int64 [N]: each row's position in `classes` (names, unique), -1 for a label that is not
    one of them. Labels may be names or indices, as for `class_rows`. The labels are factorised
    first (a string column stays in Arrow) and only their distinct values looked up."""
    found, uniques = pd.factorize(labels if isinstance(labels, pd.Series)
                                  else np.asarray(labels))
    position = np.append(pd.Index(list(classes)).get_indexer(uniques), -1)
    return position[found].astype(np.int64)  # found -1 (a missing label) takes the last: -1


@dataclass(frozen=True)
class Grouping:
    """The rows of G groups laid out once, group by group: group g's rows (ascending) are
    order[starts[g]:starts[g] + counts[g]], the groups one after another. The group reductions
    below read every group from this one layout instead of indexing the table once per
    group."""

    order: np.ndarray  # int64 [M]: positions of the grouped rows, by group, ascending within
    starts: np.ndarray  # int64 [G]
    counts: np.ndarray  # int64 [G]

    def rows(self, group: int) -> np.ndarray:
        """int64: positions of the rows of `group`, ascending."""
        return self.order[self.starts[group]:self.starts[group] + self.counts[group]]

    def within(self, keep: np.ndarray) -> Grouping:
        """The Grouping of the rows where `keep` (bool [N], by row position) holds: the same
        layout filtered, no new sort."""
        kept = keep[self.order]
        before = np.concatenate([[0], np.cumsum(kept)])
        counts = (before[self.starts + self.counts] - before[self.starts]).astype(np.int64)
        return Grouping(order=self.order[kept], starts=_starts(counts), counts=counts)


def _starts(counts: np.ndarray) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)


def stable_group_sort(codes: np.ndarray, n_groups: int) -> np.ndarray:
    """int64 [N]: the positions that sort `codes` (int [N] in [0, n_groups)) stably. numpy
    sorts 16-bit keys stably by radix sort, linear in the rows, so up to 32 767 groups the
    codes are sorted as such."""
    small = n_groups <= np.iinfo(np.int16).max
    return np.argsort(codes.astype(np.int16) if small else codes, kind="stable")


def grouping(codes: np.ndarray, n_groups: int) -> Grouping:
    """The Grouping of rows by `codes` (int [N]: each row's group in [0, n_groups), -1 for a
    row in none); one stable sort."""
    codes = np.asarray(codes, dtype=np.int64)
    used = np.flatnonzero(codes >= 0)
    order = used[stable_group_sort(codes[used], n_groups)]
    counts = np.bincount(codes[used], minlength=n_groups).astype(np.int64)
    return Grouping(order=order, starts=_starts(counts), counts=counts)


def _by_size(values: np.ndarray, groups: Grouping, reduce: Callable[[np.ndarray], np.ndarray],
             width: int, which: np.ndarray | None = None) -> np.ndarray:
    """float [width, G]: reduce(matrix) of the groups of each size stacked as the rows of one
    matrix [m, size] (reduce returns [width, m] or [m]); NaN for an empty group and for one
    not in `which` (bool [G]; all when None). numpy's reductions along the last axis give each
    row exactly what they give it alone, so the result equals one call per group, with one
    call per distinct group size."""
    out = np.full((width, groups.counts.size), np.nan)
    chosen = groups.counts > 0 if which is None else (groups.counts > 0) & which
    for size in np.unique(groups.counts[chosen]):
        members = np.flatnonzero(chosen & (groups.counts == size))
        rows = groups.order[groups.starts[members][:, None] + np.arange(size)]
        out[:, members] = np.reshape(reduce(values[rows]), (width, members.size))
    return out


def group_quantiles(values: np.ndarray, groups: Grouping, q: Sequence[float],
                    which: np.ndarray | None = None) -> np.ndarray:
    """float [len(q), G]: np.quantile(values[rows of g], q) of every group g (linear
    interpolation), to the bit; NaN for an empty group and one not in `which` (bool [G]; all
    when None). values: float [N], indexed by row."""
    return _by_size(np.asarray(values, dtype=np.float64), groups,
                    lambda matrix: np.quantile(matrix, q, axis=1), len(q), which)


def group_medians(values: np.ndarray, groups: Grouping) -> np.ndarray:
    """float [G]: np.median(values[rows of g]) of every group g, to the bit; NaN if empty."""
    return _by_size(np.asarray(values, dtype=np.float64), groups,
                    lambda matrix: np.median(matrix, axis=1), 1)[0]


def group_means(values: np.ndarray, groups: Grouping) -> np.ndarray:
    """float [G]: np.mean(values[rows of g]) of every group g (the same pairwise summation),
    to the bit; NaN if empty."""
    return _by_size(np.asarray(values, dtype=np.float64), groups,
                    lambda matrix: np.mean(matrix, axis=1), 1)[0]
