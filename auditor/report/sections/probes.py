"""Model-free probes: classifier accuracies, property associations, property-by-class tables."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from auditor.detect.categories import OTHER, category_strings
from auditor.report import figures
from auditor.report.formatting import finite, fmt_number
from auditor.report.texts import STATISTIC_NAMES

MAX_PROBE_TABLES = 6
MAX_PROBE_VALUES = 12
#: Classes per property table: those with a distinctive value first, then by size.
MAX_PROBE_ROWS = 40
#: What a numeric property's table shows of each class: min, quartiles, max.
QUANTILES = (0.0, 0.25, 0.5, 0.75, 1.0)


def _per_label_probes(probes: dict[str, Any]) -> dict[str, Any]:
    """A multi-label run's one-vs-rest probes as one probe record: each label's associations
    and classifiers, named "label: ..." (the tables then compare that label with the rest)."""
    merged: dict[str, Any] = {"associations": []}
    for label, result in (probes.get("per_label") or {}).items():
        if not isinstance(result, dict):
            continue
        merged["associations"] += [{**a, "label": label} for a in result.get("associations")
                                   or [] if isinstance(a, dict)]
        for name, rec in result.items():
            if isinstance(rec, dict) and ("accuracy" in rec or rec.get("status") == "skipped"):
                merged[f"{label}: {name}"] = rec
    return merged


def _not_run(probes: dict[str, Any]) -> list[dict[str, Any]]:
    """The probe classifiers that did not run, grouped by reason: [{labels, reason}]."""
    by_reason: dict[str, list[str]] = {}
    for name, rec in probes.items():
        if isinstance(rec, dict) and rec.get("status") == "skipped":
            by_reason.setdefault(str(rec.get("reason", "")), []).append(name.replace("_", " "))
    return [{"labels": labels, "reason": reason} for reason, labels in by_reason.items()]


def probes_section(probes: Any, ok: pd.DataFrame) -> dict[str, Any] | None:
    """{associations, tables, classifiers, chart, not_run, subsample}: the model-free probes
    (None: not run at all), their property tables counted over `ok`, the readable samples;
    `not_run` names the probe classifiers that were skipped and why; `subsample` says what a
    probe run above probe_run.PROBE_ROWS rows ran on."""
    if not isinstance(probes, dict):
        return None
    subsample = _subsample_note((probes.get("settings") or {}).get("subsample"))
    if probes.get("multi_label"):
        probes = _per_label_probes(probes)
    associations = [a for a in probes.get("associations") or [] if isinstance(a, dict)]
    associations.sort(key=lambda a: (finite(a.get("p_value")) is None,
                                     finite(a.get("p_value")) or 0.0,
                                     -(finite(a.get("value")) or 0.0)))
    tables = []
    for assoc in associations[:MAX_PROBE_TABLES]:
        table = property_table(ok, str(assoc.get("property", "")))
        if table is not None:
            tables.append({**table, "statistic": assoc.get("statistic"),
                           "value": assoc.get("value"), "p_value": assoc.get("p_value")})
    classifiers = []
    for name, rec in probes.items():
        if isinstance(rec, dict) and "accuracy" in rec:
            classifiers.append({
                "label": name.replace("_", " "), "value": rec.get("accuracy"),
                "low": rec.get("ci_low"), "high": rec.get("ci_high"),
                "chance": rec.get("baseline"),
            })
    chart = (figures.interval_chart_layout("Probe accuracy with 95% interval", classifiers)
             if classifiers else None)
    not_run = _not_run(probes)
    return {
        "associations": [
            {"property": (f"{a['label']}: " if "label" in a else "")
                         + str(a.get("property", "")),
             "kind": str(a.get("kind", "")),
             "statistic": STATISTIC_NAMES.get(str(a.get("statistic", "")),
                                              str(a.get("statistic", ""))),
             "value": a.get("value"),
             "p_value": a.get("p_value")}
            for a in associations
        ],
        "tables": tables, "classifiers": classifiers, "chart": chart,
        "not_run": not_run, "subsample": subsample,
    }


def _subsample_note(subsample: Any) -> str | None:
    """The sentence on a subsampled probe run ({rows, of} in the probes' settings), or None."""
    if not isinstance(subsample, dict):
        return None
    rows, total = finite(subsample.get("rows")), finite(subsample.get("of"))
    if rows is None or total is None:
        return None
    return (f"Run on a seeded subsample of {rows:,.0f} of the {total:,.0f} readable rows "
            "(each class keeps its share): the statistics and p-values are the subsample's, "
            "the tables below count every row; each accuracy has its 95% interval in the "
            "chart, each association's strength its 95% bootstrap interval in summary.json "
            "(strength_ci).")


def property_table(ok: pd.DataFrame, prop: str) -> dict[str, Any] | None:
    """The property-by-class table of one file property: for a categorical property, counts
    and row shares per (class, value), a cell `distinctive` when the value covers at least half
    the class and 30 points more than its share of the whole data set; for a numeric property
    with many values, per-class quartiles. None when the property is not a column (looked up as
    given, then with the 'file_' prefix). At most MAX_PROBE_ROWS classes (`left_out` says how
    many more): for a categorical property those with a distinctive cell first."""
    column = prop if prop in ok.columns else f"file_{prop}"
    if column not in ok.columns or ok.empty:
        return None
    values = ok[column]
    numeric = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
    if numeric and values.nunique() > MAX_PROBE_VALUES:
        labels = ok["label"].unique()
        # Quartiles of the shown classes only: each class's come from its own rows.
        shown = ok["label"].isin(labels[:MAX_PROBE_ROWS]).to_numpy()
        stats = values[shown].groupby(ok["label"][shown], sort=False).quantile(QUANTILES)
        rows = [{"label": str(label), "cells": [fmt_number(stats[(label, q)], 1)
                                                for q in QUANTILES]}
                for label in labels[:MAX_PROBE_ROWS]]
        return {"property": prop, "numeric": True,
                "columns": ["min", "lower quartile", "median", "upper quartile", "max"],
                "rows": rows, "left_out": max(0, len(labels) - len(rows))}
    text = category_strings(values)
    top = text.value_counts().index[:MAX_PROBE_VALUES].tolist()
    text = text.where(text.isin(top), OTHER)
    table = crosstab(ok["label"], text)
    columns = [c for c in top if c in table.columns] + ([OTHER] if OTHER in table else [])
    counts = table[columns].to_numpy()  # [classes, values]
    totals = counts.sum(axis=1)
    overall = counts.sum(axis=0) / max(int(totals.sum()), 1)
    shares = counts / np.maximum(totals, 1)[:, None]
    distinctive = (shares >= 0.5) & (shares - overall[None, :] >= 0.3)
    order = np.argsort(~distinctive.any(axis=1), kind="stable")[:MAX_PROBE_ROWS]
    rows = [{"label": str(table.index[k]), "total": int(totals[k]),
             "cells": [{"count": int(counts[k, j]), "share": float(shares[k, j]),
                        "distinctive": bool(distinctive[k, j])} for j in range(len(columns))]}
            for k in order]
    return {"property": prop, "numeric": False, "columns": [str(c) for c in columns],
            "rows": rows, "left_out": max(0, len(table) - len(rows))}


def crosstab(rows: pd.Series, columns: pd.Series) -> pd.DataFrame:
    """pd.crosstab(rows, columns): int64 counts of each (row value, column value) pair, the
    values that occur sorted on each axis, pairs with a missing value left out; from one
    bincount (crosstab aggregates group by group in Python: 3-5x slower at 1 000 classes)."""
    row_codes, row_values = pd.factorize(rows, sort=True)
    column_codes, column_values = pd.factorize(columns, sort=True)
    known = (row_codes >= 0) & (column_codes >= 0)
    width = len(column_values)
    counts = np.bincount(row_codes[known] * width + column_codes[known],
                         minlength=len(row_values) * width).reshape(len(row_values), width)
    used_rows, used_columns = counts.sum(axis=1) > 0, counts.sum(axis=0) > 0
    return pd.DataFrame(counts[used_rows][:, used_columns], index=row_values[used_rows],
                        columns=column_values[used_columns])
