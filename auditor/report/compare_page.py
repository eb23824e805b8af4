"""compare.html: one self-contained page of what changed between two runs, in the report's
style: what got better, what got worse, accuracy, per-class deltas (sortable, filterable) and
the samples that changed most with their maps side by side (A | B)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from auditor.compare import Comparison
from auditor.errors import RunDirectoryError
from auditor.report import figures
from auditor.report.formatting import finite, fit_size
from auditor.report.render import environment
from auditor.report.sections.classes import class_ids
from auditor.report.sections.gallery import SAMPLE_SIDE, load_maps
from auditor.report.texts import KIND_TITLES
from auditor.store import RunReader, write_json

#: Measures shown per class: (samples column, title).
SHOWN = (("fg_energy", "Foreground energy"), ("border_energy", "Border energy"),
         ("suspicion", "Suspicion"))
#: A per-class change counts as significant below this p-value (paired Wilcoxon test).
ALPHA = 0.05
MAX_CLASS_ROWS = 5000


def write_comparison(comparison: Comparison, out: str | Path) -> tuple[Path, Path]:
    """Write OUT/compare.json and OUT/compare.html; returns their paths."""
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunDirectoryError(f"cannot create {out}: {exc.strerror or exc}") from exc
    json_path = out / "compare.json"
    write_json(json_path, comparison.to_dict())
    return json_path, render_compare(comparison, out)


def render_compare(comparison: Comparison, out: str | Path) -> Path:
    """Write OUT/compare.html for a comparison and return its path."""
    out = Path(out)
    html = environment().get_template("compare.html.j2").render(**compare_context(comparison))
    path = out / "compare.html"
    try:
        out.mkdir(parents=True, exist_ok=True)
        path.write_text(html, encoding="utf-8")
    except OSError as exc:
        raise RunDirectoryError(f"cannot write {path}: {exc.strerror or exc}") from exc
    return path


def _flag_rows(flags: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"kind": str(f.get("kind")), "title": KIND_TITLES.get(str(f.get("kind")),
                                                                 str(f.get("kind"))),
             "class": f.get("class"), "severity": f.get("severity", "low"),
             "message": str(f.get("message", "")), "before": f.get("severity_before")}
            for f in flags]


def compare_context(comparison: Comparison) -> dict[str, Any]:
    """Everything compare.html shows, as plain data."""
    data = comparison.to_dict()
    names = sorted(comparison.classes)
    ids = class_ids(names)
    rows, better, worse = [], [], []
    for name in names[:MAX_CLASS_ROWS]:
        entry = comparison.classes[name]
        cells = []
        changed = False
        for column, _ in SHOWN:
            test = entry["measures"].get(column) or {}
            p = finite(test.get("p_value"))
            significant = p is not None and p < ALPHA
            changed = changed or significant
            cells.append({**test, "significant": significant})
            diff = finite(test.get("difference"))
            if column == "fg_energy" and significant and diff is not None:
                (better if diff > 0 else worse).append(
                    f"{name}: foreground energy {diff:+.2f} (p = {p:.2g})")
        rows.append({"name": name, "id": ids[name], "n": entry["n"],
                     "accuracy_a": entry.get("accuracy_a"), "accuracy_b": entry.get("accuracy_b"),
                     "cells": cells, "changed": changed})
    appeared, gone = data["appeared"], data["disappeared"]
    level = "high" if appeared else ("ok" if gone else "none")
    return {
        "title": "What changed between two audits",
        "run_a": comparison.run_a, "run_b": comparison.run_b,
        "overlap": data["overlap"]["description"],
        "level": level,
        "appeared": _flag_rows(appeared), "disappeared": _flag_rows(gone),
        "persisting": _flag_rows(data["persisting"]),
        "better_classes": better, "worse_classes": worse,
        "accuracy": comparison.accuracy,
        "columns": [title for _, title in SHOWN],
        "rows": rows, "rows_left_out": max(0, len(names) - len(rows)),
        "alpha": ALPHA,
        "changed": [{**card, "class_id": ids.get(card["label"])}
                    for card in _changed_cards(comparison)],
        "legend": figures.legend_stops(),
        "primary": comparison.primary,
    }


def _changed_cards(comparison: Comparison) -> list[dict[str, Any]]:
    """The changed samples with the image (from either run's thumbnails) and its map in A
    and in B, each over the image when it is stored, else alone."""
    if not comparison.changed:
        return []
    reader_a, reader_b = RunReader(comparison.run_a), RunReader(comparison.run_b)
    maps_a = load_maps(reader_a, [c["index_a"] for c in comparison.changed],
                       comparison.primary.get("a", "gradcam"))
    maps_b = load_maps(reader_b, [c["index_b"] for c in comparison.changed],
                       comparison.primary.get("b", "gradcam"))
    cards = []
    for i, change in enumerate(comparison.changed):
        thumb = reader_a.thumb(change["index_a"])
        if thumb is None:
            thumb = reader_b.thumb(change["index_b"])
        small = figures.fit_within(thumb, SAMPLE_SIDE) if thumb is not None else None
        pictures = []
        for maps in (maps_a, maps_b):
            cam = maps[i] if maps is not None and np.isfinite(maps[i]).any() else None
            if cam is None:
                pictures.append(None)
            elif small is not None:
                pictures.append(figures.jpeg_data_uri(figures.overlay(small, cam)))
            else:
                pictures.append(figures.jpeg_data_uri(
                    figures.heat_image(cam, fit_size(cam.shape, SAMPLE_SIDE))))
        cards.append({**change, "image": figures.jpeg_data_uri(small) if small is not None
                      else None, "map_a": pictures[0], "map_b": pictures[1],
                      "map_only": small is None})
    return cards
