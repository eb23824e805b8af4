"""Attention per class: box plots of the measures (flagged classes first) and the medians over
the whole data set (the class table holds each class's numbers)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from auditor.report import figures
from auditor.report.formatting import finite
from auditor.summary import Summary

MAX_CHART_CLASSES = 30


def attention_section(
    summary: Summary, ok: pd.DataFrame, order: list[str], flagged: set[str],
) -> dict[str, Any]:
    """{overall, charts, chart_classes_shown, chart_classes_left_out, foreground_source}.

    order: class names, flagged first; flagged: the names of classes with a flag (hatched)."""
    overall = {
        "fg_energy_median": _median(ok, "fg_energy"),
        "bg_energy_median": _median(ok, "bg_energy"),
        "border_energy_median": _median(ok, "border_energy"),
        "border_lift_median": _median(ok, "border_lift"),
        "fg_enrichment_median": _median(ok, "fg_enrichment"),
        "pointing_hit_rate": _mean(ok, "pointing_hit"),
        "wsol_iou_mean": _mean(ok, "wsol_iou"),
        "n": None, "n_ok": len(ok),
    }
    charts = []
    chart_classes = order[:MAX_CHART_CLASSES]
    # Only the charted classes' rows of the charted columns: at 1 000 classes and a million
    # rows, splitting the whole table by class costs seconds.
    columns = [c for c in ("fg_energy", "border_energy", "border_lift") if c in ok.columns]
    shown = ok.loc[ok["label"].isin(chart_classes), ["label", *columns]]
    grouped = {name: g for name, g in shown.groupby("label", sort=False)}
    for column, title, domain in (
        ("fg_energy", "Foreground energy (share of the map on the object)", (0.0, 1.0)),
        ("border_energy", "Border energy (share of the map on the border band)", (0.0, 1.0)),
        ("border_lift", "Border lift (border energy ÷ border area; 1 = chance)", None),
    ):
        if column not in ok.columns or not np.isfinite(ok[column].to_numpy(float)).any():
            charts.append({"title": title, "empty": True})
            continue
        groups = [
            (c, grouped[c][column].to_numpy(float) if c in grouped else np.array([]),
             c in flagged)
            for c in chart_classes
        ]
        layout = figures.box_plot_layout(title, groups, ok[column].to_numpy(float), domain)
        charts.append({**layout, "empty": False})
    return {
        "overall": overall, "charts": charts,
        "chart_classes_shown": len(chart_classes),
        "chart_classes_left_out": max(0, len(order) - len(chart_classes)),
        "foreground_source": summary.data.foreground_source if summary.data else None,
    }


def _median(frame: pd.DataFrame, column: str) -> float | None:
    return finite(frame[column].median()) if column in frame.columns and len(frame) else None


def _mean(frame: pd.DataFrame, column: str) -> float | None:
    return finite(frame[column].mean()) if column in frame.columns and len(frame) else None
