"""The class table: one row per class with its files, accuracy, attention measures and
findings, sorted and filtered in the page by report.js (no external script).

Rows are ordered worst finding first, then by name; every class is listed up to MAX_ROWS.
Numbers are printed once and the script sorts by their text, so the table adds no data
attributes per cell (about 0.5 KB per class).
"""

from __future__ import annotations

from typing import Any

from auditor.detect.flags import SEVERITY_RANK
from auditor.detect.matching import FlagKey, flag_key
from auditor.report.texts import KIND_TITLES
from auditor.summary import DataFacts, Summary

MAX_ROWS = 5000
#: (key in class_stats, column title, format): "num" two decimals, "pct" a percentage.
COLUMNS = (
    ("fg_energy_median", "Foreground energy", "num"),
    ("bg_energy_median", "Background energy", "num"),
    ("border_energy_median", "Border energy", "num"),
    ("border_lift_median", "Border lift", "num"),
    ("fg_enrichment_median", "Foreground enrichment", "num"),
    ("pointing_hit_rate", "Pointing-game hits", "pct"),
    ("wsol_iou_mean", "Localisation IoU", "num"),
)

#: A multi-label run's per-label scores (summary.json accuracy.per_label) in the class table.
MULTI_LABEL_QUALITY = (("precision", "Precision", "pct"), ("recall", "Recall", "pct"),
                       ("auroc", "AUROC", "num"))


def class_ids(classes: list[str]) -> dict[str, str]:
    """The HTML id of each class's row ('class-<k>', k its index): safe for any class name."""
    return {name: f"class-{k}" for k, name in enumerate(classes)}


def classes_section(
    summary: Summary, classes: list[str], new_keys: set[FlagKey] | None = None,
) -> dict[str, Any]:
    """{rows, quality, columns, kinds [(code, title)], left_out, n}: the class table as plain
    data. `quality` names the columns of each row's `scores`: accuracy, or for a multi-label
    run each label's precision, recall and AUROC."""
    data = summary.data or DataFacts()
    stats = summary.class_stats or {}
    accuracy = summary.accuracy or {}
    per_class_acc = accuracy.get("per_class") or {}
    per_label = accuracy.get("per_label") or {}
    quality = (MULTI_LABEL_QUALITY if accuracy.get("multi_label") else
               (("accuracy", "Accuracy", "pct"),))
    ids = class_ids(classes)
    kinds: dict[str, list[str]] = {}
    worst: dict[str, int] = {}
    new: set[str] = set()
    for flag in summary.flags:
        cls = flag.get("class")
        if cls is None:
            continue
        cls = str(cls)
        kinds.setdefault(cls, [])
        if flag.get("kind") not in kinds[cls]:
            kinds[cls].append(str(flag.get("kind")))
        worst[cls] = max(worst.get(cls, 0), SEVERITY_RANK.get(str(flag.get("severity")), 1))
        if new_keys is not None and flag_key(flag) in new_keys:
            new.add(cls)
    order = sorted(classes, key=lambda c: -worst.get(c, 0))  # stable: names keep their order
    rows = []
    for name in order[:MAX_ROWS]:
        s = stats.get(name) or {}
        rank = worst.get(name, 0)
        rows.append({
            "name": name, "id": ids[name],
            "files": data.counts.get(name, s.get("n")),
            "readable": s.get("n_ok", data.counts_ok.get(name)),
            "scores": [(per_label.get(name) or {}).get(key) if key != "accuracy"
                       else per_class_acc.get(name, s.get("accuracy")) for key, _, _ in quality],
            "values": [s.get(key) for key, _, _ in COLUMNS],
            "kinds": kinds.get(name, []),
            "severity": next((k for k, v in SEVERITY_RANK.items() if v == rank), None),
            "rank": rank, "new": name in new,
        })
    present = list(dict.fromkeys(k for r in rows for k in r["kinds"]))
    return {
        "rows": rows, "columns": [(title, fmt) for _, title, fmt in COLUMNS],
        "quality": [(title, fmt) for _, title, fmt in quality],
        "kinds": [(k, KIND_TITLES.get(k, k)) for k in present],
        "left_out": max(0, len(classes) - len(rows)), "n": len(classes),
        "has_baseline": new_keys is not None,
    }
