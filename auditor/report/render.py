"""The stakeholder report: plain data prepared from a run directory, rendered by the templates.

Only the run directory is read (no model), so `auditor report RUN_DIR` re-renders any finished
run. Every optional part of summary.json may be absent: its section then says "not run". The
output is one HTML file with images, CSS and JS inline; lists that grow with the data (gallery,
errors, per-class images) are capped and say how much was left out. Each section's data comes
from its module in auditor.report.sections; this module joins them and writes the file.
"""

from __future__ import annotations

import functools
import importlib.resources
import json
from pathlib import Path
from typing import Any

import jinja2

from auditor.detect.matching import FlagKey, flag_key
from auditor.errors import RunDirectoryError, UsageError
from auditor.map_methods import METHODS
from auditor.report import figures
from auditor.report.formatting import fmt_count, fmt_identifier, fmt_number, fmt_percent
from auditor.report.sections.attention import attention_section
from auditor.report.sections.class_maps import class_maps_section, fixed_location_grids
from auditor.report.sections.classes import class_ids, classes_section
from auditor.report.sections.clusters import clusters_section
from auditor.report.sections.facts import facts_section
from auditor.report.sections.findings import finding_cards
from auditor.report.sections.gallery import gallery_section
from auditor.report.sections.interventions import interventions_section, sanity_section
from auditor.report.sections.probes import probes_section
from auditor.report.sections.unreadable import errors_section
from auditor.report.sections.verdict import executive_summary, verdict
from auditor.report.sections.withheld import withheld_section
from auditor.report.texts import KIND_METHODS, KIND_TITLES
from auditor.store import RunReader
from auditor.summary import DataFacts, Summary, read_summary, read_summary_json

TEMPLATE_PACKAGE = "auditor.reports_templates"


# ------------------------------------------------------------------------- entry points


def render_report(
    run_dir: str | Path, output: str | Path | None = None, gallery_size: int = 48,
    reader: RunReader | None = None,
) -> Path:
    """Render RUN_DIR/report.html (or `output`) from the run directory alone; returns the path.

    gallery_size: how many suspect samples the gallery shows (most suspicious first); reader:
    a RunReader of RUN_DIR whose table another step reads too (read once; None: its own)."""
    if gallery_size < 0:
        raise UsageError(f"gallery_size must be 0 or more, not {gallery_size}")
    run_dir = Path(run_dir)
    context = report_context(run_dir, gallery_size, reader)
    html = environment().get_template("report.html.j2").render(**context)
    path = Path(output) if output is not None else run_dir / "report.html"
    try:
        path.write_text(html, encoding="utf-8")
    except OSError as exc:
        raise RunDirectoryError(
            f"cannot write the report to {path}: {exc.strerror or exc}; choose another --output"
        ) from exc
    return path


def summary_json(run_dir: str | Path) -> str:
    """summary.json of a run as indented JSON text (`auditor report --format json`)."""
    return json.dumps(read_summary_json(run_dir), indent=2, ensure_ascii=False)


@functools.cache
def environment() -> jinja2.Environment:
    """The Jinja environment of the report templates: autoescape on for every template; one per
    process, so each template compiles once."""
    root = importlib.resources.files(TEMPLATE_PACKAGE)

    def load(name: str) -> str | None:
        item = root.joinpath(name)
        return item.read_text(encoding="utf-8") if item.is_file() else None

    env = jinja2.Environment(
        loader=jinja2.FunctionLoader(load), autoescape=True, undefined=jinja2.StrictUndefined,
        trim_blocks=True, lstrip_blocks=True,
    )
    env.filters.update(num=fmt_number, pct=fmt_percent, count=fmt_count, ident=fmt_identifier)
    return env



# ------------------------------------------------------------------------- context


def baseline_keys(summary: Summary) -> set[FlagKey] | None:
    """Keys (kind, class, region) of the flags new against the run's baseline; None when the
    run has no baseline."""
    if summary.baseline is None:
        return None
    return {(str(a.get("kind")), a.get("class"), a.get("region"))
            for a in summary.baseline.get("appeared") or [] if isinstance(a, dict)}


def report_context(
    run_dir: str | Path, gallery_size: int = 48, reader: RunReader | None = None
) -> dict[str, Any]:
    """Everything the report template shows, as plain data (strings, numbers, lists, dicts);
    reader: as render_report's."""
    reader = reader if reader is not None else RunReader(run_dir)
    # Every optional part may be absent (an older or a probe run): read_summary fills defaults.
    summary = read_summary(run_dir)
    samples = reader.samples()
    data = summary.data or DataFacts()
    classes = list(data.classes) or [str(c) for c in sorted(samples["label"].unique())]
    ids = class_ids(classes)
    flags = summary.flags
    new_keys = baseline_keys(summary)
    ok = samples[samples["status"] == "ok"]
    grids = fixed_location_grids(flags, ok)
    anchors = {flag_key(flags[i]): f"#{g['id']}" for i, g in grids.items()}
    findings = finding_cards(summary, ids, new_keys, anchors)
    table = classes_section(summary, classes, new_keys)
    flagged = {r["name"] for r in table["rows"] if r["kinds"]}
    # Classes with a flag come first wherever a list must be capped.
    order = [r["name"] for r in table["rows"]] + classes[len(table["rows"]):]
    primary = summary.primary or (summary.methods or ["gradcam"])[0]
    size = (summary.model.input_size if summary.model else None) or [224, 224]
    input_size = int(size[0]), int(size[1])
    means = reader.class_means()
    return {
        "title": (
            f"Data-set probe: {data.root}" if summary.model is None
            else f"Shortcut audit: {summary.model.spec or 'model'}"
        ),
        "verdict": verdict(summary, findings["n_findings"]),
        # Multi-label runs group by label: each (image, label) pair is a row of its label.
        "unit": "label" if data.multi_label else "class",
        "executive": executive_summary(summary, findings["cards"], findings["n_findings"]),
        "findings": findings,
        "withheld": withheld_section(summary),
        "baseline": _baseline(summary),
        "class_ids": ids,
        "classes": table,
        "facts": facts_section(summary, classes),
        "attention": attention_section(summary, ok, order, flagged),
        "class_maps": class_maps_section(means, classes, order, ids),
        "fixed_grids": list(grids.values()),
        "probes": probes_section(summary.probes, ok),
        "gallery": gallery_section(reader, ok, primary, input_size, gallery_size, ids,
                                   summary.suspect_methods),
        "suspect_methods": [
            (m, METHODS[m].description if m in METHODS else "") for m in summary.suspect_methods
        ],
        "suspect_errors": sorted(
            (str(m), str(e)) for m, e in summary.suspect_methods_errors.items()),
        "clusters": clusters_section(summary.clusters, reader, means, classes, input_size),
        "interventions": interventions_section(summary.interventions),
        "sanity": sanity_section(summary.sanity),
        "errors": errors_section(samples),
        "legend": figures.legend_stops(),
        "primary": primary,
        "border": summary.config.get("border"),
        "kind_titles": KIND_TITLES,
        "kind_methods": KIND_METHODS,
        "model_free": summary.model is None,
    }


def _baseline(summary: Summary) -> dict[str, Any] | None:
    baseline = summary.baseline
    if baseline is None:
        return None
    return {
        "run": str(baseline.get("run", "")),
        "appeared": [a for a in baseline.get("appeared") or [] if isinstance(a, dict)],
        "disappeared": [a for a in baseline.get("disappeared") or [] if isinstance(a, dict)],
        "n_persisting": int(baseline.get("n_persisting") or 0),
        "overlap": baseline.get("overlap"),
    }
