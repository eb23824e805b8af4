"""Association of each fingerprint property with the label, with a permutation p-value
(part 1 of `auditor.detect.probes`).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd

from auditor.detect.categories import OTHER
from auditor.detect.probe_encoding import (
    CATEGORICAL_PROPERTIES,
    NUMERIC_PROPERTIES,
    Column,
    encode_categorical,
    encode_numeric,
    validate_inputs,
)
from auditor.detect.stats import cramers_v, mutual_information

MAX_TABLE_VALUES = 20


_CELLS_PER_CHUNK = 1 << 20  # permutation table cells at once: 8 MB arrays, reused, not mapped anew


def property_association(
    values: pd.Series,
    labels: np.ndarray,
    classes: list[str],
    name: str | None = None,
    n_permutations: int = 200,
    seed: int = 0,
) -> dict[str, Any] | None:
    """Association of one property with the label, as in `ProbeResult.associations`.

    Args:
        values: the property, one entry per sample [N].
        labels: int [N] class indices into `classes`; -1 rows are left out.
        classes: class names.
        name: the fingerprint name; it picks the kind (and colour rounding for
            `border_dominant`). Unknown or None: numeric dtypes (not bool) are numeric.
        n_permutations: label shuffles for the p-value (0: p_value None).
        seed: seeds the shuffles.

    Returns:
        {property, kind, statistic, value, strength, p_value, n_levels, by_class}, or None when
        the property is constant or fewer than 2 classes have samples.
    """
    series = pd.Series(values).reset_index(drop=True)
    labels_arr = validate_inputs(series.to_frame(), labels, classes, None, 0.1, n_permutations)
    keep = labels_arr >= 0
    present, y = np.unique(labels_arr[keep], return_inverse=True)
    if len(present) < 2:
        return None
    series = series[keep].reset_index(drop=True)
    if name in CATEGORICAL_PROPERTIES:
        categorical = True
    elif name in NUMERIC_PROPERTIES:
        categorical = False
    else:
        categorical = pd.api.types.is_bool_dtype(series) or not pd.api.types.is_numeric_dtype(
            series
        )
    col = (
        encode_categorical(series, colour=name == "border_dominant")
        if categorical
        else encode_numeric(series)
    )
    if len(col.levels) < 2:
        return None
    perms = permutations(y, n_permutations, np.random.default_rng(seed))
    return association(name or str(series.name), col, y, [classes[i] for i in present], perms)


def permutations(y: np.ndarray, n_permutations: int, rng: np.random.Generator) -> np.ndarray:
    """[P, N] shuffles of y, shared by every property so their p-values are comparable."""
    if n_permutations == 0:
        return np.empty((0, len(y)), dtype=np.int64)
    # Shuffled in place in a row-major array: the same draws, row by row, as permuted() of the
    # broadcast view, which lays its copy out column-major; that layout scatters each row's
    # swaps across the whole array (2x slower at 100 000 rows) and every property's tables
    # read the shuffles by chunks of rows (6x slower strided).
    perms = np.empty((n_permutations, len(y)), dtype=np.int64)
    perms[...] = y
    return rng.permuted(perms, axis=1, out=perms)


def _tables(codes: np.ndarray, n_levels: int, ys: np.ndarray, n_classes: int) -> np.ndarray:
    """Contingency tables [P, R, K] of codes [N] against each label row of ys [P, N] (rows
    that are shuffles of one labelling)."""
    return next(_chunk_tables(codes, n_levels, ys, n_classes, len(ys)))


def _chunk_tables(codes: np.ndarray, n_levels: int, perms: np.ndarray, n_classes: int,
                  chunk: int) -> Iterator[np.ndarray]:
    """_tables of perms [P, N] (shuffles of one labelling) by chunks of `chunk` rows, in
    order: each table's cell (p, r, k) is the bin p * R * K + r * K + k of one bincount per
    chunk, whose bins for codes and rows (the same in every chunk) are added to the labels in
    one pass into one buffer. Where one level holds at least half the rows, only the other
    rows are counted: that level's row is each class's size less the other levels' counts
    (a shuffle keeps the class sizes), which makes a property that is nearly constant
    nearly free."""
    level_sizes = np.bincount(codes, minlength=n_levels)
    top = int(np.argmax(level_sizes)) if len(codes) else 0
    others = (np.flatnonzero(codes != top)
              if len(perms) and 2 * level_sizes[top] >= len(codes) else None)
    if others is not None:
        class_sizes = np.bincount(perms[0], minlength=n_classes)
        codes = codes[others]
    cells = n_levels * n_classes
    shift = codes * n_classes + (np.arange(min(chunk, len(perms))) * cells)[:, None]
    flat = np.empty_like(shift)
    for start in range(0, len(perms), chunk):
        ys = perms[start : start + chunk]
        if others is not None:
            ys = np.take(ys, others, axis=1)
        bins = np.add(ys, shift[: len(ys)], out=flat[: len(ys)])
        counts = np.bincount(bins.ravel(), minlength=len(ys) * cells)
        tables = counts.reshape(len(ys), n_levels, n_classes)
        if others is not None:
            tables[:, top] = class_sizes - tables.sum(axis=1)
        yield tables


def association(
    name: str, col: Column, y: np.ndarray, names: list[str], perms: np.ndarray,
    interval_seed: int | None = None,
) -> dict[str, Any]:
    """The association of one encoded property with the labels y (see property_association);
    with `interval_seed`, also `strength_ci`, the 95% bootstrap interval of the strength
    (strength_interval), for a strength measured on a subsample."""
    k = len(names)
    r = len(col.levels)
    observed = _tables(col.codes, r, y[None, :], k)[0]
    if col.kind == "categorical":
        statistic = "cramers_v"
        value = float(cramers_v(observed))
        # Permutations keep both margins, so uncorrected V ranks tables exactly as chi-square
        # does; the corrected V clips at 0 and its ties would push null p-values to 1.
        test_stat = functools.partial(cramers_v, bias_corrected=False)
    else:
        statistic, test_stat = "mutual_information", mutual_information
        value = float(mutual_information(observed))
    p_value = None
    if len(perms):
        threshold = float(test_stat(observed)) - 1e-12
        screen = NullScreen(observed, col.kind)
        chunk = max(1, _CELLS_PER_CHUNK // max(len(y), r * k))
        exceed = 0
        for tables in _chunk_tables(col.codes, r, perms, k, chunk):
            low, high = screen.bounds(tables)
            if np.any((low < threshold) & (high >= threshold)):
                # A table too near the threshold for the bounds to decide (ties): the exact
                # statistic of the whole chunk decides, as it always did.
                exceed += int((test_stat(tables) >= threshold).sum())
            else:
                exceed += int((low >= threshold).sum())
        p_value = (exceed + 1) / (len(perms) + 1)
    if col.kind == "categorical":
        strength = value
        by_class = categorical_table(observed, col.levels, names)
    else:
        class_p = observed.sum(axis=0) / observed.sum()
        h_label = float(-(class_p[class_p > 0] * np.log2(class_p[class_p > 0])).sum())
        strength = min(1.0, value / h_label) if h_label > 0 else 0.0
        by_class = numeric_summary(col.values, y, names)
    found = {
        "property": name,
        "kind": col.kind,
        "statistic": statistic,
        "value": value,
        "strength": strength,
        "p_value": p_value,
        "n_levels": r,
        "by_class": by_class,
    }
    if interval_seed is not None:
        found["strength_ci"] = strength_interval(observed, col.kind,
                                                 np.random.default_rng(interval_seed))
    return found


_ROUNDOFF = float(np.finfo(np.float64).eps) / 2


class NullScreen:
    """Bounds on the permutation test's statistic of tables that have the margins of
    `observed` (label shuffles keep both), from a formula that needs one pass over the cells,
    where the statistic itself (uncorrected Cramér's V, or mutual information) needs a dozen
    with logarithms. With both margins fixed,
    chi-square = n * sum(T^2 / (rows x cols)) - n and
    MI = (sum T log2 T - sum rows log2 rows - sum cols log2 cols + n log2 n) / n.
    The bounds are these values widened by 8x a rounding-error bound that covers both their
    own rounding and the statistic's (m cells: each sum is within m units of roundoff of its
    exact value, relative to the sum of its terms' magnitudes), so the statistic as
    `cramers_v` / `mutual_information` computes it lies between them to the bit."""

    def __init__(self, observed: np.ndarray, kind: str) -> None:
        self.kind = kind
        rows = observed.sum(axis=1)
        cols = observed.sum(axis=0)
        self.n = float(observed.sum())
        self.ulps = 8 * (observed.size + len(rows) + len(cols) + 16) * _ROUNDOFF
        if kind == "categorical":
            expected = np.outer(rows, cols) / max(self.n, 1.0)
            self.weights = np.divide(1.0, expected, out=np.zeros_like(expected),
                                     where=expected > 0).ravel()
            self.denom = float(min((rows > 0).sum(), (cols > 0).sum()) - 1)
        else:
            # x log2 x of every count a cell can hold (0 log 0 = 0)
            counts = np.arange(int(min(rows.max(), cols.max())) + 1, dtype=np.float64)
            self.xlogx = counts * np.log2(np.maximum(counts, 1.0))
            self.offset = _xlogx(rows) + _xlogx(cols) - _xlogx(np.array([self.n]))
            self.slack = self.ulps * (4 * np.log2(self.n + 2) + 4)

    def bounds(self, tables: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Low and high bounds [P] of the statistic of each table of `tables` [P, R, K]."""
        flat = tables.reshape(len(tables), -1)
        if self.kind == "categorical":
            if self.denom <= 0:  # V is 0 for every table
                zero = np.zeros(len(tables))
                return zero, zero
            terms = flat.astype(np.float64)
            np.square(terms, out=terms)
            terms *= self.weights  # T^2 / expected; not a BLAS product: its threads
            total = terms.sum(axis=1)  # wait on a busy machine; sum = chi-square + n
            slack = self.ulps * (total + self.n)
            return self._cramers_v(total - self.n - slack), self._cramers_v(total - self.n + slack)
        mi = (self.xlogx[flat].sum(axis=1) - self.offset) / max(self.n, 1.0)
        return np.maximum(mi - self.slack, 0.0), np.maximum(mi + self.slack, 0.0)

    def _cramers_v(self, chi2: np.ndarray) -> np.ndarray:
        """Uncorrected V of chi-square values with cramers_v's operations (each rounding is
        monotone, so bounds on chi-square give bounds on V as it computes it)."""
        v = np.sqrt(np.maximum(chi2, 0.0) / max(self.n, 1.0) / self.denom)
        return np.minimum(v, 1.0)


def _xlogx(counts: np.ndarray) -> float:
    c = np.asarray(counts, dtype=np.float64)
    return float((c * np.log2(np.maximum(c, 1.0))).sum())


BOOTSTRAP_TABLES = 200
_BOOTSTRAP_CELLS = 1 << 22  # bounds the resampled tables held at once


def table_strength(tables: np.ndarray, kind: str) -> np.ndarray:
    """Strength of contingency tables [..., R, K] (property levels x classes): bias-corrected
    Cramér's V for a categorical property, MI / H(label) clipped to 1 for a numeric one."""
    if kind == "categorical":
        return cramers_v(tables)
    t = np.asarray(tables, dtype=np.float64)
    class_p = t.sum(axis=-2) / np.maximum(t.sum(axis=(-2, -1)), 1)[..., None]
    logs = np.log2(np.where(class_p > 0, class_p, 1.0))
    h_label = -(class_p * logs).sum(axis=-1)
    ratio = mutual_information(t) / np.where(h_label > 0, h_label, 1.0)
    return np.where(h_label > 0, np.minimum(1.0, ratio), 0.0)


def strength_interval(observed: np.ndarray, kind: str,
                      rng: np.random.Generator) -> list[float]:
    """95% bootstrap interval [low, high] of the strength of the table `observed` [R, K]: the
    2.5th and 97.5th percentiles over BOOTSTRAP_TABLES tables drawn from the multinomial of
    its cell shares with its total (rows resampled with replacement, in one draw per table)."""
    n = int(observed.sum())
    shares = observed.ravel() / max(n, 1)
    chunk = max(1, _BOOTSTRAP_CELLS // max(shares.size, 1))
    strengths = []
    for start in range(0, BOOTSTRAP_TABLES, chunk):
        size = min(chunk, BOOTSTRAP_TABLES - start)
        tables = rng.multinomial(n, shares, size=size).reshape(size, *observed.shape)
        strengths.append(table_strength(tables, kind))
    low, high = np.quantile(np.concatenate(strengths), [0.025, 0.975])
    return [float(low), float(high)]


def categorical_table(observed: np.ndarray, levels: list[str], names: list[str]) -> dict[str, Any]:
    """Property-by-class counts and within-class fractions, top MAX_TABLE_VALUES values."""
    order = np.argsort(-observed.sum(axis=1), kind="stable")
    shown = order[:MAX_TABLE_VALUES]
    table = observed[shown]
    values = [levels[i] for i in shown]
    if len(order) > MAX_TABLE_VALUES:
        table = np.vstack([table, observed[order[MAX_TABLE_VALUES:]].sum(axis=0)])
        values.append(OTHER)
    class_n = np.maximum(observed.sum(axis=0), 1)

    def by_class(cells: np.ndarray) -> dict[str, dict[str, Any]]:
        # Python numbers by tolist, a class's column at a time, not a numpy scalar per cell.
        return {c: dict(zip(values, col, strict=True))
                for c, col in zip(names, cells.T.tolist(), strict=True)}

    return {"values": values, "counts": by_class(table), "fractions": by_class(table / class_n)}


def numeric_summary(values: np.ndarray, y: np.ndarray, names: list[str]) -> dict[str, Any]:
    """Per class: n, missing count, median, q25, q75 (NaN when the class has no value)."""
    frame = pd.DataFrame({"v": values, "y": y})
    grouped = frame.groupby("y")["v"]
    classes = range(len(names))
    # Whole columns, one per statistic (a lookup per class and statistic costs seconds at a
    # thousand classes); a class without rows gets n 0 and NaN quartiles.
    q = grouped.quantile([0.25, 0.5, 0.75]).unstack().reindex(index=classes,
                                                               columns=[0.25, 0.5, 0.75])
    counts = grouped.size()
    missing = (counts - grouped.count()).reindex(classes, fill_value=0).to_numpy()
    counts = counts.reindex(classes, fill_value=0).to_numpy()
    q25, median, q75 = (q[level].to_numpy(dtype=float).tolist() for level in (0.25, 0.5, 0.75))
    rows = zip(names, counts.astype(np.int64).tolist(), missing.astype(np.int64).tolist(),
               median, q25, q75, strict=True)
    return {c: {"n": n, "missing": m, "median": md, "q25": lo, "q75": hi}
            for c, n, m, md, lo, hi in rows}
