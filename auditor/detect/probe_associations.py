"""Association of each fingerprint property with the label, with a permutation p-value
(part 1 of `auditor.detect.probes`).
"""

from __future__ import annotations

import functools
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
    # permuted() lays the shuffles out column-major (from the broadcast view's strides); one
    # row-major copy makes each chunk of rows contiguous for every property's tables (6x).
    return np.ascontiguousarray(
        rng.permuted(np.broadcast_to(y, (n_permutations, len(y))), axis=1))


def _tables(codes: np.ndarray, n_levels: int, ys: np.ndarray, n_classes: int) -> np.ndarray:
    """Contingency tables [P, R, K] of codes [N] against each label row of ys [P, N]."""
    cells = n_levels * n_classes
    flat = ys + codes * n_classes  # [P, N], one array of P x N (then in place)
    flat += (np.arange(len(ys)) * cells)[:, None]
    counts = np.bincount(flat.ravel(), minlength=len(ys) * cells)
    return counts.reshape(len(ys), n_levels, n_classes)


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
        observed_stat = float(test_stat(observed))
        chunk = max(1, _CELLS_PER_CHUNK // max(len(y), r * k))
        exceed = 0
        for start in range(0, len(perms), chunk):
            null = test_stat(_tables(col.codes, r, perms[start : start + chunk], k))
            exceed += int((null >= observed_stat - 1e-12).sum())
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
    return {
        "values": values,
        "counts": {
            c: {v: int(table[i, j]) for i, v in enumerate(values)} for j, c in enumerate(names)
        },
        "fractions": {
            c: {v: float(table[i, j] / class_n[j]) for i, v in enumerate(values)}
            for j, c in enumerate(names)
        },
    }


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
    q25, median, q75 = (q[level].to_numpy(dtype=float) for level in (0.25, 0.5, 0.75))
    return {c: {"n": int(counts[j]), "missing": int(missing[j]), "median": float(median[j]),
                "q25": float(q25[j]), "q75": float(q75[j])} for j, c in enumerate(names)}
