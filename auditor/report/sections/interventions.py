"""Interventions: one row per (class, edit) and the flip and probability-drop charts."""

from __future__ import annotations

from typing import Any

from auditor.report import figures
from auditor.report.formatting import finite, fmt_number, fmt_percent


def interventions_section(records: Any) -> dict[str, Any] | None:
    if not isinstance(records, list):
        return None
    # One row per (class, edit): the same edit on the same samples can test several flags.
    grouped: dict[tuple[str, str], dict[str, Any]] = {}
    for rec in records:
        if not isinstance(rec, dict):
            continue
        key = (str(rec.get("class", "all")), str(rec.get("edit", "?")))
        row = grouped.setdefault(key, {**rec, "tests": []})
        if rec.get("confirms") and rec["confirms"] not in row["tests"]:
            row["tests"].append(rec["confirms"])
        row["confirmed"] = bool(row.get("confirmed")) or bool(rec.get("confirmed"))
    rows = list(grouped.values())
    labels = [f"{cls} · {edit}" for cls, edit in grouped]
    flip = figures.bar_chart_layout(
        "Share of predictions that flip",
        [(lab, [finite(r.get("flip_rate")), finite(r.get("control_flip_rate"))])
         for lab, r in zip(labels, rows, strict=True)],
        ["edit", "control"], domain=(0.0, 1.0), value_text=fmt_percent,
    ) if rows else None
    drops = [(lab, [finite(r.get("prob_drop_mean")), finite(r.get("control_prob_drop_mean"))])
             for lab, r in zip(labels, rows, strict=True)]
    # A probability drop lies in [-1, 1]: the axis runs to 1, and below 0 only when one rose.
    lowest = min([0.0, *(v for _, pair in drops for v in pair if v is not None)])
    drop = figures.bar_chart_layout(
        "Mean drop in the true class's probability", drops, ["edit", "control"],
        domain=(lowest, 1.0), value_text=fmt_number,
    ) if rows else None
    return {"rows": rows, "flip_chart": flip, "drop_chart": drop}


def sanity_section(sanity: Any) -> list[dict[str, Any]] | None:
    if not isinstance(sanity, dict):
        return None
    return [
        {"method": str(method), "passed": bool((rec or {}).get("passed")),
         "layers": [layer for layer in (rec or {}).get("layers") or [] if isinstance(layer, dict)]}
        for method, rec in sanity.items()
    ]
