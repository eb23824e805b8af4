"""The stakeholder report: plain data prepared from a run directory, rendered by the templates.

Only the run directory is read (no model), so `auditor report RUN_DIR` re-renders any finished
run. Every optional part of summary.json may be absent: its section then says "not run". The
output is one HTML file with images, CSS and JS inline; lists that grow with the data (gallery,
errors, per-class images) are capped and say how much was left out.
"""

from __future__ import annotations

import importlib.resources
import json
import math
import re
from pathlib import Path
from typing import Any

import jinja2
import numpy as np
import pandas as pd

from auditor.detect.categories import OTHER, category_strings
from auditor.detect.flags import MODEL_KINDS, flag_sort_key
from auditor.detect.flags import SEVERITIES as FLAG_SEVERITIES
from auditor.detect.suspicion import top_suspects
from auditor.errors import RunDirectoryError, UsageError
from auditor.map_methods import METHODS
from auditor.report import figures
from auditor.store import RunReader
from auditor.summary import DataFacts, Summary, read_summary, read_summary_json

TEMPLATE_PACKAGE = "auditor.reports_templates"

#: Longer side, in pixels, of the images embedded per sample (shown at 160 px, enlarged on click).
SAMPLE_SIDE = 224
#: Longer side of per-class images (mean image, mean map, cluster maps).
CLASS_SIDE = 160
#: Caps that bound the file size of big runs; each capped list states what it left out.
MAX_ERRORS_PER_KIND = 25
MAX_ERRORS = 200
MAX_CLASS_IMAGES = 48
MAX_CHART_CLASSES = 30
MAX_TABLE_CLASSES = 500
MAX_PROBE_TABLES = 6
MAX_PROBE_VALUES = 12
MAX_CLUSTER_CLASSES = 12
MAX_CLUSTER_THUMBS = 6
MAX_CLUSTER_PATHS = 12
MAX_FLAG_SAMPLES = 5
#: Share of unreadable files at and above which the verdict warns that the audit is partial.
ERROR_SHARE_WARNING = 0.05

#: Most severe first: the order the verdict counts are written in.
SEVERITIES = FLAG_SEVERITIES[::-1]
MEASURE_COLUMNS = ("fg_energy", "bg_energy", "border_energy", "border_lift", "pointing_hit",
                   "wsol_iou")

KIND_TITLES = {
    "background_attention": "Attention on the background",
    "border_attention": "Attention on the image border",
    "fixed_location": "Attention returns to a fixed place",
    "metadata_shortcut": "File properties predict the label",
    "border_pixels_shortcut": "Border pixels alone predict the label",
    "intervention_sensitive": "Predictions change when the context is edited",
    "degenerate_maps": "Attention maps carry no signal",
    "labels_permuted": "The class order looks permuted",
    "model_at_chance": "The model is no better than chance",
}
KIND_METHODS = {
    "background_attention": "the class's maps put less of their mass on the object than the "
                            "object's share of the image (foreground enrichment below 1, "
                            "tested against chance)",
    "border_attention": "the class's maps put more of their mass on the border band than its "
                        "area would give by chance (border lift)",
    "fixed_location": "the peaks of the class's maps fall in the same cell of a grid across "
                      "many images",
    "metadata_shortcut": "a classifier that sees only file properties (format, mode, size, "
                         "quality), never pixels, predicts the label above chance",
    "border_pixels_shortcut": "a classifier that sees only the border pixels predicts the "
                              "label above chance",
    "intervention_sensitive": "editing what another flag blames (the background, the border, "
                              "a fixed region or the file format) changed the model's "
                              "predictions more than the same edit on a control",
    "degenerate_maps": "a share of the maps is all zero, constant or undefined",
    "labels_permuted": "the model's outputs, mapped to other classes (the assignment that fits "
                       "the confusion matrix best), are far more accurate than read in the "
                       "given class order",
    "model_at_chance": "the model's accuracy is no better than predictions that ignore the "
                       "images, tested against chance",
}
STATISTIC_NAMES = {
    "cramers_v": "Cramér's V",
    "mutual_information": "mutual information (bits)",
}
KIND_SECTION = {
    "background_attention": "attention", "border_attention": "attention",
    "degenerate_maps": "attention", "fixed_location": "maps",
    "metadata_shortcut": "probes", "border_pixels_shortcut": "probes",
    "intervention_sensitive": "interventions",
    "labels_permuted": "facts", "model_at_chance": "facts",
}
PEAK_GRID = 4


# ------------------------------------------------------------------------- entry points


def render_report(
    run_dir: str | Path, output: str | Path | None = None, gallery_size: int = 48
) -> Path:
    """Render RUN_DIR/report.html (or `output`) from the run directory alone; returns the path.

    gallery_size: how many suspect samples the gallery shows (most suspicious first)."""
    if gallery_size < 0:
        raise UsageError(f"gallery_size must be 0 or more, not {gallery_size}")
    run_dir = Path(run_dir)
    context = report_context(run_dir, gallery_size)
    html = environment().get_template("report.html.j2").render(**context)
    path = Path(output) if output is not None else run_dir / "report.html"
    try:
        path.write_text(html, encoding="utf-8")
    except OSError as exc:
        raise RunDirectoryError(
            f"cannot write the report to {path}: {exc.strerror or exc}; choose another --output"
        ) from exc
    return path


def write_samples_csv(run_dir: str | Path) -> Path:
    """Write RUN_DIR/samples.csv (UTF-8 with BOM, for spreadsheets) and return its path.

    Text cells that a spreadsheet would run as a formula (starting with = + - @ or a tab) are
    prefixed with an apostrophe: file names are user data."""
    run_dir = Path(run_dir)
    frame = RunReader(run_dir).samples().drop(columns=["map_part", "map_row"], errors="ignore")
    frame = frame.copy()
    for column in frame.columns:
        kind = frame[column].dtype
        if not (pd.api.types.is_numeric_dtype(kind) or pd.api.types.is_bool_dtype(kind)):
            frame[column] = frame[column].map(_csv_safe)
    path = run_dir / "samples.csv"
    try:
        frame.to_csv(path, index=False, encoding="utf-8-sig")
    except OSError as exc:
        raise RunDirectoryError(f"cannot write {path}: {exc.strerror or exc}") from exc
    return path


def _csv_safe(value: Any) -> Any:
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def summary_json(run_dir: str | Path) -> str:
    """summary.json of a run as indented JSON text (`auditor report --format json`)."""
    return json.dumps(read_summary_json(run_dir), indent=2, ensure_ascii=False)


def environment() -> jinja2.Environment:
    """The Jinja environment of the report templates: autoescape on for every template."""
    root = importlib.resources.files(TEMPLATE_PACKAGE)

    def load(name: str) -> str | None:
        item = root.joinpath(name)
        return item.read_text(encoding="utf-8") if item.is_file() else None

    env = jinja2.Environment(
        loader=jinja2.FunctionLoader(load), autoescape=True, undefined=jinja2.StrictUndefined,
        trim_blocks=True, lstrip_blocks=True,
    )
    env.filters.update(num=fmt_number, pct=fmt_percent, count=fmt_count)
    return env


# ------------------------------------------------------------------------- formatting


def _finite(value: Any) -> float | None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def fmt_number(value: Any, digits: int = 2) -> str:
    """A number with `digits` decimals; '–' for missing or non-finite values."""
    v = _finite(value)
    # "+ 0.0" turns a negative value that rounds to zero into "0.00", not "-0.00".
    return "–" if v is None else f"{round(v, digits) + 0.0:.{digits}f}"


def fmt_percent(value: Any, digits: int = 0) -> str:
    """A fraction as a percentage ('–' when missing)."""
    v = _finite(value)
    return "–" if v is None else f"{100 * v:.{digits}f}%"


def fmt_count(value: Any) -> str:
    """An integer with thousands separators ('–' when missing)."""
    v = _finite(value)
    return "–" if v is None else f"{round(v):,}"


def _parameters(value: Any) -> str:
    v = _finite(value)
    if v is None:
        return "–"
    return f"{v / 1e6:.2f} M" if v >= 1e6 else f"{round(v):,}"


# ------------------------------------------------------------------------- context


def report_context(run_dir: str | Path, gallery_size: int = 48) -> dict[str, Any]:
    """Everything the report template shows, as plain data (strings, numbers, lists, dicts)."""
    reader = RunReader(run_dir)
    summary = read_summary(run_dir)
    samples = reader.samples()
    data = summary.data or DataFacts()
    classes = [str(c) for c in data.classes or sorted(samples["label"].unique())]
    class_ids = {name: f"class-{k}" for k, name in enumerate(classes)}
    flags = sorted(summary.flags, key=_severity_rank)
    flagged_classes = [f.get("class") for f in flags if f.get("class") is not None]
    # Classes with a flag come first wherever a list must be capped.
    order = list(dict.fromkeys([c for c in flagged_classes if c in class_ids] + classes))
    ok = samples[samples["status"] == "ok"]
    primary = str(summary.primary or (summary.methods or ["gradcam"])[0])
    input_size = _input_size(summary)
    means = reader.class_means()
    grids = _fixed_location_grids(flags, ok)
    suspect_methods = summary.suspect_methods
    suspect_errors = summary.suspect_methods_errors
    return {
        "title": (
            f"Data-set probe: {data.root}" if summary.model is None
            else f"Shortcut audit: {summary.model.spec}"
        ),
        "verdict": verdict(summary),
        # Multi-label runs group by label: each (image, label) pair is a row of its label.
        "unit": "label" if summary.data and summary.data.multi_label else "class",
        "flag_items": [_flag_item(f, i, class_ids, grids, summary) for i, f in enumerate(flags)],
        "facts": _facts(summary, classes),
        "attention": _attention(summary, ok, order, class_ids, set(flagged_classes)),
        "class_maps": _class_maps(means, classes, order, class_ids),
        "fixed_grids": list(grids.values()),
        "probes": _probes(summary.probes, samples),
        "gallery": _gallery(reader, ok, primary, input_size, gallery_size, class_ids,
                            suspect_methods),
        "suspect_methods": [
            (m, METHODS[m].description if m in METHODS else "") for m in suspect_methods
        ],
        "suspect_errors": sorted((str(m), str(e)) for m, e in suspect_errors.items()),
        "clusters": _clusters(summary.clusters, reader, means, classes, input_size),
        "interventions": _interventions(summary.interventions),
        "sanity": _sanity(summary.sanity),
        "errors": _errors(samples),
        "legend": figures.legend_stops(),
        "primary": primary,
        "border": summary.config.get("border"),
        "kind_titles": KIND_TITLES,
        "kind_methods": KIND_METHODS,
        "model_free": summary.model is None,
    }


def _severity_rank(flag: dict[str, Any]) -> tuple[bool, int, float]:
    return flag_sort_key(flag.get("severity"), _finite(flag.get("score")), flag.get("kind"))


def _input_size(summary: Summary) -> tuple[int, int]:
    size = (summary.model.input_size if summary.model else None) or [224, 224]
    return int(size[0]), int(size[1])


def verdict(summary: Summary) -> dict[str, Any]:
    """The one-sentence verdict, its traffic-light level and the error count, as plain data.

    level: 'high' | 'medium' | 'low' (worst flag), 'ok' (no flag), 'none' (nothing audited)."""
    data = summary.data or DataFacts()
    flags = summary.flags
    n = int(_finite(data.n_samples) or 0)
    n_ok = int(_finite(data.n_ok) or 0)
    n_errors = int(_finite(data.n_errors) or max(n - n_ok, 0))
    n_classes = len(data.classes)
    counts = {s: sum(1 for f in flags if f.get("severity") == s) for s in SEVERITIES}
    model_flags = [f for f in flags if f.get("kind") in MODEL_KINDS]
    if n_ok == 0:
        level = "none"
        sentence = (f"Nothing was audited: none of the {n:,} files could be read, so this "
                    "report cannot say whether the model uses a shortcut.")
    elif model_flags:
        level = "high"
        sentence = _model_verdict(model_flags[0], len(summary.withheld_flags),
                                  len(flags) - len(model_flags))
    elif flags:
        level = next(s for s in SEVERITIES if counts[s]) if any(counts.values()) else "low"
        parts = ", ".join(f"{counts[s]} {s}" for s in SEVERITIES if counts[s])
        noun = "sign" if len(flags) == 1 else "signs"
        before = ("before a model is trained on this data" if summary.model is None
                  else "before this model ships")
        sentence = (f"{len(flags)} {noun} of shortcut learning found ({parts}): review the "
                    f"evidence below {before}.")
    else:
        level = "ok"
        sentence = (f"No shortcut was flagged in the {n_ok:,} audited images of {n_classes} "
                    "classes (no flag is not proof: see Method).")
    share = n_errors / n if n else 0.0
    accuracy = (summary.accuracy or {}).get("overall")
    return {
        "level": level, "sentence": sentence, "counts": counts, "n_samples": n, "n_ok": n_ok,
        "n_errors": n_errors, "error_share": share, "accuracy": accuracy,
        "partial": n_errors > 0 and share >= ERROR_SHARE_WARNING,
    }


def _model_verdict(flag: dict[str, Any], n_withheld: int, n_other: int) -> str:
    """The verdict when the model itself failed its check (detect/model_check.py)."""
    evidence = flag.get("evidence") or {}
    if flag.get("kind") == "labels_permuted":
        order = evidence.get("classes_order")
        fix = (f"rerun with --classes {','.join(order)}" if order
               else "give --classes in the model's output order")
        sentence = ("The model's outputs fit another class order far better than the one "
                    f"given: {fix}.")
    else:
        sentence = (f"The model is no better than chance (accuracy "
                    f"{fmt_percent(evidence.get('accuracy'), 1)} against "
                    f"{fmt_percent(evidence.get('chance'), 1)}): its maps say nothing about the "
                    "data; fix the model first.")
    if n_withheld:
        sentence += (f" {n_withheld} class-level attention "
                     f"{'flag was' if n_withheld == 1 else 'flags were'} withheld.")
    if n_other:
        sentence += f" {n_other} other {'finding' if n_other == 1 else 'findings'} below."
    return sentence


def _flag_item(
    flag: dict[str, Any], i: int, class_ids: dict[str, str], grids: dict[int, Any],
    summary: Summary,
) -> dict[str, Any]:
    kind = str(flag.get("kind", ""))
    cls = flag.get("class")
    section = KIND_SECTION.get(kind, "attention")
    if section == "attention" and cls in class_ids:
        anchor = f"#{class_ids[cls]}"
    elif section == "maps" and i in grids:
        anchor = f"#{grids[i]['id']}"
    else:
        anchor = f"#{section}"
    checks = _cross_checks(kind, cls, summary)
    evidence = flag.get("evidence") or {}
    samples = [str(s) for s in flag.get("samples") or []]
    return {
        "id": f"flag-{i}", "kind": kind, "title": KIND_TITLES.get(kind, kind),
        "severity": flag.get("severity") if flag.get("severity") in SEVERITIES else "low",
        "class": None if cls is None else str(cls), "score": flag.get("score"),
        "message": str(flag.get("message", "")), "method": KIND_METHODS.get(kind, ""),
        "checks": checks, "anchor": anchor,
        # Tables (grids, mean maps) are drawn in their sections, not printed here.
        "evidence": [(str(k), _evidence_text(v)) for k, v in evidence.items()
                     if not _is_table(v)],
        "samples": samples[:MAX_FLAG_SAMPLES],
        "samples_left_out": max(0, len(samples) - MAX_FLAG_SAMPLES),
    }


def _evidence_text(value: Any) -> str:
    if isinstance(value, float):
        return fmt_number(value, 3)
    if isinstance(value, list | dict):
        text = json.dumps(value, ensure_ascii=False)
        return text if len(text) <= 160 else text[:159] + "…"
    return str(value)


def _cross_checks(kind: str, cls: Any, summary: Summary) -> list[str]:
    """Independent evidence for a flag found elsewhere in the run (plain sentences): the
    interventions that tested this flag, and the model-free probe behind it."""
    checks = []
    for rec in summary.interventions or []:
        if rec.get("confirms") != kind or (cls is not None and rec.get("class") != cls):
            continue
        flip, control = _finite(rec.get("flip_rate")), _finite(rec.get("control_flip_rate"))
        if flip is None or control is None:
            continue
        where = f" on class {rec.get('class')}" if cls is None else ""
        verdict = "confirms" if rec.get("confirmed") else "does not confirm"
        edit = rec.get("description") or rec.get("edit")
        checks.append(f"intervention ({edit}){where} flips {fmt_percent(flip)} of "
                      f"predictions (control edit: {fmt_percent(control)}): {verdict}")
    probes = summary.probes or {}
    probe = {"metadata_shortcut": "metadata_classifier",
             "border_pixels_shortcut": "border_classifier"}.get(kind)
    if probe and isinstance(probes.get(probe), dict):
        p = probes[probe]
        checks.append(f"probe accuracy {fmt_number(p.get('accuracy'))} (95% interval "
                      f"{fmt_number(p.get('ci_low'))}–{fmt_number(p.get('ci_high'))}) against "
                      f"chance {fmt_number(p.get('baseline'))}")
    return checks


def _facts(summary: Summary, classes: list[str]) -> dict[str, Any]:
    model = summary.model
    data = summary.data or DataFacts()
    accuracy = summary.accuracy or {}
    per_class_acc = accuracy.get("per_class") or {}
    per_label = accuracy.get("per_label") or {}
    stats = summary.class_stats or {}
    counts = data.counts
    rows = [
        {"name": c, "files": counts.get(c, (stats.get(c) or {}).get("n")),
         "readable": (stats.get(c) or {}).get("n_ok", data.counts_ok.get(c)),
         "accuracy": per_class_acc.get(c), **(per_label.get(c) or {})}
        for c in classes[:MAX_TABLE_CLASSES]
    ]
    multi_label = bool(accuracy.get("multi_label"))
    overall = (("Mean AUROC over labels", fmt_number(accuracy.get("macro_auroc")))
               if multi_label else
               ("Overall accuracy", fmt_percent(accuracy.get("overall"), 1)))
    timings = summary.timings
    model_rows = [("Model", "none: a model-free probe (auditor probe)")]
    return {
        "model": model_rows if model is None else [
            ("Model", model.spec or "–"),
            ("Parameters", _parameters(model.parameters)),
            ("Weights", str(model.weights or ("none: random initial weights"
                                              if model.random_weights
                                              else "none (random or built-in)"))),
            ("Weights SHA-256", str(model.weights_sha256 or "–")),
            ("Target layer", (", ".join(str(x) for x in model.target_layers) or "–")
             + ("" if model.target_layers_given else " (chosen automatically)")),
            ("Methods", ", ".join(summary.methods) or "–"),
            ("Primary method (shown)", str(summary.primary or "–")),
            ("Input size (H × W)", " × ".join(str(x) for x in model.input_size) or "–"),
        ],
        "data": [
            ("Data root", data.root or "–"),
            ("Source", data.source or "–"),
            ("Classes", fmt_count(len(classes))),
            ("Files", fmt_count(data.n_samples)),
            ("Audited (readable)", fmt_count(data.n_ok)),
            ("Could not be read", fmt_count(data.n_errors)),
            ("Foreground from", data.foreground_source),
            overall,
        ],
        "run": [
            ("Created", summary.created or "–"),
            ("auditor", str(summary.versions.get("auditor") or summary.auditor_version or "–")),
            *[(name, str(v)) for name, v in summary.versions.items() if name != "auditor"],
            ("Time taken", " · ".join(f"{k} {fmt_number(v, 1)} s" for k, v in timings.items())
             or "–"),
        ],
        "command": summary.command,
        "notes": [str(n)[:1].upper() + str(n)[1:]
                  for n in (*(model.warnings if model else []), *data.warnings)],
        "class_rows": rows,
        "class_rows_left_out": max(0, len(classes) - MAX_TABLE_CLASSES),
        "multi_label": multi_label,
        "threshold": accuracy.get("threshold"),
    }


def _attention(
    summary: Summary, ok: pd.DataFrame, order: list[str], class_ids: dict[str, str],
    flagged: set[Any],
) -> dict[str, Any]:
    stats = summary.class_stats or {}
    shown = order[:MAX_TABLE_CLASSES]
    rows = [{"name": c, "id": class_ids[c], "flagged": c in flagged, **(stats.get(c) or {})}
            for c in shown]
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
    grouped = {name: g for name, g in ok.groupby("label", sort=False)} if len(ok) else {}
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
        "rows": rows, "overall": overall, "charts": charts,
        "rows_left_out": max(0, len(order) - len(shown)),
        "chart_classes_shown": len(chart_classes),
        "chart_classes_left_out": max(0, len(order) - len(chart_classes)),
        "foreground_source": summary.data.foreground_source if summary.data else None,
    }


def _median(frame: pd.DataFrame, column: str) -> float | None:
    return _finite(frame[column].median()) if column in frame.columns and len(frame) else None


def _mean(frame: pd.DataFrame, column: str) -> float | None:
    return _finite(frame[column].mean()) if column in frame.columns and len(frame) else None


def _class_maps(
    means: dict[str, np.ndarray] | None, classes: list[str], order: list[str],
    class_ids: dict[str, str],
) -> dict[str, Any] | None:
    if means is None or "mean_map" not in means:
        return None
    mean_map = means["mean_map"]
    mean_image = means.get("mean_image")
    shown = [c for c in order if classes.index(c) < len(mean_map)][:MAX_CLASS_IMAGES]
    items = []
    for name in shown:
        k = classes.index(name)
        cam = mean_map[k]
        empty = not np.isfinite(cam).any() or float(np.nanmax(cam)) <= 0
        item: dict[str, Any] = {"name": name, "id": f"map-{class_ids[name]}", "empty": empty}
        if not empty:
            if mean_image is not None and k < len(mean_image):
                image = figures.fit_within(mean_image[k], CLASS_SIDE)
                item["image"] = figures.jpeg_data_uri(image)
                item["overlay"] = figures.jpeg_data_uri(figures.overlay(image, cam))
            else:
                item["image"] = None
                item["overlay"] = figures.jpeg_data_uri(
                    figures.heat_image(cam, _fit_size(cam.shape, CLASS_SIDE)))
        items.append(item)
    return {"items": items, "left_out": max(0, len(classes) - len(shown))}


def _fit_size(shape: tuple[int, ...], side: int) -> tuple[int, int]:
    h, w = shape[:2]
    scale = side / max(h, w)
    return max(1, round(h * scale)), max(1, round(w * scale))


def _fixed_location_grids(flags: list[dict[str, Any]], ok: pd.DataFrame) -> dict[int, Any]:
    """Peak-location grids of the fixed_location flags, keyed by flag position. Taken from the
    flag's evidence (a 2-D list of counts under "grid_counts"), else counted from the
    class's peak_x, peak_y (fractions of width, height) on a PEAK_GRID x PEAK_GRID grid."""
    grids = {}
    for i, flag in enumerate(flags):
        if flag.get("kind") != "fixed_location":
            continue
        evidence = flag.get("evidence") or {}
        counts = evidence["grid_counts"] if _is_table(evidence.get("grid_counts")) else None
        if counts is None and {"peak_x", "peak_y"} <= set(ok.columns):
            rows = ok[ok["label"] == flag.get("class")] if flag.get("class") is not None else ok
            counts = peak_grid(rows["peak_x"].to_numpy(float), rows["peak_y"].to_numpy(float))
        if counts is None:
            continue
        grids[i] = {
            "id": f"fixed-{i}", "class": flag.get("class"), "message": flag.get("message", ""),
            "layout": figures.heat_grid_layout(counts),
        }
    return grids


def _is_table(value: Any) -> bool:
    return (isinstance(value, list) and bool(value)
            and all(isinstance(r, list) and r for r in value))


def peak_grid(peak_x: np.ndarray, peak_y: np.ndarray, size: int = PEAK_GRID) -> list[list[int]]:
    """Counts [size][size] of map peaks per grid cell; peaks are fractions of width (x) and
    height (y) in [0, 1]; NaN peaks are skipped. Row 0 is the top of the image."""
    keep = np.isfinite(peak_x) & np.isfinite(peak_y)
    col = np.clip((peak_x[keep] * size).astype(int), 0, size - 1)
    row = np.clip((peak_y[keep] * size).astype(int), 0, size - 1)
    grid = np.zeros((size, size), dtype=int)
    np.add.at(grid, (row, col), 1)
    return grid.tolist()


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
            if isinstance(rec, dict) and "accuracy" in rec:
                merged[f"{label}: {name}"] = rec
    return merged


def _probes(probes: Any, samples: pd.DataFrame) -> dict[str, Any] | None:
    if not isinstance(probes, dict):
        return None
    if probes.get("multi_label"):
        probes = _per_label_probes(probes)
    associations = [a for a in probes.get("associations") or [] if isinstance(a, dict)]
    associations.sort(key=lambda a: (_finite(a.get("p_value")) is None,
                                     _finite(a.get("p_value")) or 0.0,
                                     -(_finite(a.get("value")) or 0.0)))
    ok = samples[samples["status"] == "ok"]
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
    }


def property_table(ok: pd.DataFrame, prop: str) -> dict[str, Any] | None:
    """The property-by-class table of one file property: for a categorical property, counts
    and row shares per (class, value), a cell `distinctive` when the value covers at least half
    the class and 30 points more than its share of the whole data set; for a numeric property
    with many values, per-class quartiles. None when the property is not a column (looked up as
    given, then with the 'file_' prefix)."""
    column = prop if prop in ok.columns else f"file_{prop}"
    if column not in ok.columns or ok.empty:
        return None
    values = ok[column]
    numeric = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
    if numeric and values.nunique() > MAX_PROBE_VALUES:
        stats = values.groupby(ok["label"], sort=False).quantile([0.0, 0.25, 0.5, 0.75, 1.0])
        rows = [{"label": str(label), "cells": [fmt_number(stats[(label, q)], 1)
                                                for q in (0.0, 0.25, 0.5, 0.75, 1.0)]}
                for label in ok["label"].unique()]
        return {"property": prop, "numeric": True,
                "columns": ["min", "lower quartile", "median", "upper quartile", "max"],
                "rows": rows}
    text = category_strings(values)
    top = text.value_counts().index[:MAX_PROBE_VALUES].tolist()
    text = text.where(text.isin(top), OTHER)
    table = pd.crosstab(ok["label"], text)
    columns = [c for c in top if c in table.columns] + ([OTHER] if OTHER in table else [])
    overall = table.sum(axis=0) / max(int(table.to_numpy().sum()), 1)
    rows = []
    for label, counts in table.iterrows():
        total = int(counts.sum())
        cells = []
        for c in columns:
            share = counts[c] / total if total else 0.0
            cells.append({"count": int(counts[c]), "share": float(share),
                          "distinctive": bool(share >= 0.5 and share - overall[c] >= 0.3)})
        rows.append({"label": str(label), "cells": cells, "total": total})
    return {"property": prop, "numeric": False, "columns": [str(c) for c in columns],
            "rows": rows}


def _gallery(
    reader: RunReader, ok: pd.DataFrame, primary: str, input_size: tuple[int, int],
    gallery_size: int, class_ids: dict[str, str], suspect_methods: list[str],
) -> dict[str, Any]:
    if "suspicion" not in ok.columns:  # a model-free probe run has no attention measures
        ok = ok.iloc[:0].assign(suspicion=[])
    top = top_suspects(ok, gallery_size)
    maps = _load_maps(reader, top["index"].tolist(), primary)
    cards = []
    for i, row in enumerate(top.itertuples(index=False)):
        rec = row._asdict()
        thumb = reader.thumb(int(rec["index"]))
        cam = maps[i] if maps is not None and np.isfinite(maps[i]).any() else None
        image = overlay = outline = None
        if thumb is not None:
            small = figures.fit_within(thumb, SAMPLE_SIDE)
            image = figures.jpeg_data_uri(small)
            if cam is not None:
                overlay = figures.jpeg_data_uri(figures.overlay(small, cam))
            mask = reader.thumb_mask(int(rec["index"]))
            if mask is not None:
                outline = figures.png_data_uri(figures.mask_outline(small, mask))
        elif cam is not None:
            size = _fit_size(input_size, SAMPLE_SIDE)
            overlay = figures.jpeg_data_uri(figures.heat_image(cam, size))
        extra = _suspect_overlays(reader, int(rec["index"]), suspect_methods, thumb, input_size)
        codes = [c for c in str(rec.get("flags") or "").split(",") if c]
        label = str(rec.get("label", ""))
        cards.append({
            "index": int(rec["index"]), "rel_path": str(rec.get("rel_path", "")),
            "label": label, "class_id": class_ids.get(label, "class-unknown"),
            "pred": str(rec.get("pred") or "–"), "correct": bool(rec.get("correct")),
            "confidence": rec.get("confidence"), "suspicion": rec.get("suspicion"),
            "flags": codes, "image": image, "overlay": overlay, "outline": outline,
            "extra_maps": extra,
            "map_only": thumb is None and overlay is not None,
            "foreground_source": str(rec.get("foreground_source") or "none"),
            "measures": [(name, rec.get(name)) for name in MEASURE_COLUMNS if name in rec],
        })
    class_filters = list(dict.fromkeys((c["class_id"], c["label"]) for c in cards))
    flag_filters = sorted({code for c in cards for code in c["flags"]})
    shown = [m for m in suspect_methods if any(e["method"] == m for c in cards
                                               for e in c["extra_maps"])]
    return {
        "cards": cards, "class_filters": class_filters, "flag_filters": flag_filters,
        "n_readable": len(ok), "left_out": max(0, len(ok) - len(cards)),
        "extra_methods": shown,
        "n_with_extra": sum(1 for c in cards if c["extra_maps"]),
    }


def _suspect_overlays(
    reader: RunReader, index: int, methods: list[str], thumb: np.ndarray | None,
    input_size: tuple[int, int],
) -> list[dict[str, Any]]:
    """[{method, src, map_only}] for the maps stored for this suspect by --suspect-methods
    (none stored: an empty list).

    Each map is upsampled from its own grid (target layer, occlusion patches or input pixels)
    to the shown image, so every method's overlay lines up with the input."""
    out = []
    for method in methods:
        try:
            cam = reader.suspect_map(index, method)
        except (OSError, ValueError):
            cam = None  # a damaged file: the card shows the other maps
        if cam is None or cam.ndim != 2 or not np.isfinite(cam).any():
            continue
        if thumb is not None:
            rgb = figures.overlay(figures.fit_within(thumb, SAMPLE_SIDE), cam)
        else:
            rgb = figures.heat_image(cam, _fit_size(input_size, SAMPLE_SIDE))
        out.append({"method": method, "src": figures.jpeg_data_uri(rgb),
                    "map_only": thumb is None})
    return out


def _load_maps(reader: RunReader, indices: list[int], method: str) -> np.ndarray | None:
    if not indices:
        return None
    try:
        maps = reader.load_maps(indices, method)
    except (OSError, ValueError, KeyError):
        # A missing or damaged shard: show the samples without overlays rather than no report.
        return None
    return maps if maps.ndim == 3 and maps.shape[1] > 0 else None


def _clusters(
    clusters: Any, reader: RunReader, means: dict[str, np.ndarray] | None, classes: list[str],
    input_size: tuple[int, int],
) -> dict[str, Any] | None:
    if not isinstance(clusters, dict):
        return None
    samples = reader.samples().set_index("index")
    groups = []
    for name, items in list(clusters.items())[:MAX_CLUSTER_CLASSES]:
        background = None
        if means is not None and name in classes and "mean_image" in means:
            k = classes.index(name)
            if k < len(means["mean_image"]):
                background = figures.fit_within(means["mean_image"][k], CLASS_SIDE)
        entries = []
        for item in items or []:
            cam = np.asarray(item.get("mean_map") or [[0.0]], dtype=np.float32)
            if background is not None:
                picture = figures.overlay(background, cam)
            else:
                picture = figures.heat_image(cam, _fit_size(input_size, CLASS_SIDE))
            members = [int(m) for m in item.get("members") or []]
            thumbs = []
            for m in members[:MAX_CLUSTER_THUMBS]:
                t = reader.thumb(m)
                if t is not None:
                    thumbs.append({"src": figures.jpeg_data_uri(figures.fit_within(t, 96)),
                                   "alt": _rel_path(samples, m)})
            paths = [_rel_path(samples, m) for m in members[:MAX_CLUSTER_PATHS]]
            entries.append({
                "cluster": item.get("cluster"), "size": item.get("size", len(members)),
                "fg_energy_mean": item.get("fg_energy_mean"),
                "border_energy_mean": item.get("border_energy_mean"),
                "map": figures.jpeg_data_uri(picture), "thumbs": thumbs, "paths": paths,
                "paths_left_out": max(0, len(members) - len(paths)),
            })
        groups.append({"class": str(name), "clusters": entries})
    return {"groups": groups, "left_out": max(0, len(clusters) - len(groups))}


def _rel_path(samples: pd.DataFrame, index: int) -> str:
    if index in samples.index and "rel_path" in samples.columns:
        return str(samples.at[index, "rel_path"])
    return f"sample {index}"


def _interventions(records: Any) -> dict[str, Any] | None:
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
        [(lab, [_finite(r.get("flip_rate")), _finite(r.get("control_flip_rate"))])
         for lab, r in zip(labels, rows, strict=True)],
        ["edit", "control"], domain=(0.0, 1.0), value_text=fmt_percent,
    ) if rows else None
    drops = [(lab, [_finite(r.get("prob_drop_mean")), _finite(r.get("control_prob_drop_mean"))])
             for lab, r in zip(labels, rows, strict=True)]
    # A probability drop lies in [-1, 1]: the axis runs to 1, and below 0 only when one rose.
    lowest = min([0.0, *(v for _, pair in drops for v in pair if v is not None)])
    drop = figures.bar_chart_layout(
        "Mean drop in the true class's probability", drops, ["edit", "control"],
        domain=(lowest, 1.0), value_text=fmt_number,
    ) if rows else None
    return {"rows": rows, "flip_chart": flip, "drop_chart": drop}


def _sanity(sanity: Any) -> list[dict[str, Any]] | None:
    if not isinstance(sanity, dict):
        return None
    return [
        {"method": str(method), "passed": bool((rec or {}).get("passed")),
         "layers": [layer for layer in (rec or {}).get("layers") or [] if isinstance(layer, dict)]}
        for method, rec in sanity.items()
    ]


_ERROR_KIND = re.compile(r"^\s*([^:(\n]{1,60}?)\s*[:(]")


def error_kind(reason: str) -> str:
    """The kind of a decode error: its text before the first ':' or '(', else its first four
    words (e.g. 'cannot identify image file: x.png' -> 'cannot identify image file')."""
    text = str(reason).strip()
    match = _ERROR_KIND.match(text)
    if match and match.group(1).strip():
        return match.group(1).strip()
    return " ".join(text.split()[:4]) or "unknown error"


def _errors(samples: pd.DataFrame) -> dict[str, Any]:
    bad = samples[samples["status"] != "ok"]
    if bad.empty:
        return {"n": 0, "groups": [], "left_out": 0}
    reasons = bad["error"].fillna("").astype(str) if "error" in bad else pd.Series("", bad.index)
    kinds = reasons.map(error_kind)
    groups, shown = [], 0
    for kind, idx in sorted(kinds.groupby(kinds).groups.items(), key=lambda kv: -len(kv[1])):
        room = min(MAX_ERRORS_PER_KIND, MAX_ERRORS - shown)
        rows = bad.loc[idx[:max(room, 0)]]
        files = [{"path": str(r.get("rel_path") or r.get("path", "")),
                  "reason": str(r.get("error", ""))} for r in rows.to_dict("records")]
        shown += len(files)
        groups.append({"kind": kind, "n": len(idx), "files": files,
                       "left_out": len(idx) - len(files)})
    return {"n": len(bad), "groups": groups, "left_out": len(bad) - shown}
