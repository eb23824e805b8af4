"""Run facts: the model, the data, the run, and its notes."""

from __future__ import annotations

from typing import Any

from auditor.report.formatting import fmt_count, fmt_number, fmt_parameters, fmt_percent
from auditor.summary import DataFacts, Summary


def facts_section(summary: Summary, classes: list[str]) -> dict[str, Any]:
    """{model, data, run: [(key, value)], command, notes}: the run's facts as text."""
    model = summary.model
    data = summary.data or DataFacts()
    accuracy = summary.accuracy or {}
    multi_label = bool(accuracy.get("multi_label"))
    overall = (("Mean AUROC over labels", fmt_number(accuracy.get("macro_auroc")))
               if multi_label else
               ("Overall accuracy", fmt_percent(accuracy.get("overall"), 1)))
    model_rows = [("Model", "none: a model-free probe (auditor probe)")]
    return {
        "model": model_rows if model is None else [
            ("Model", model.spec or "–"),
            ("Parameters", fmt_parameters(model.parameters)),
            ("Weights", str(model.weights or ("none: random initial weights"
                                              if model.random_weights
                                              else "none (random or built-in)"))),
            ("Weights SHA-256", str(model.weights_sha256 or "–")),
            ("Target layer", (", ".join(str(x) for x in model.target_layers) or "–")
             + ("" if model.target_layers_given else " (chosen automatically)")),
            ("Methods", ", ".join(summary.methods) or "–"),
            ("Primary method (shown)", summary.primary or "–"),
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
            ("auditor", summary.versions.get("auditor") or summary.auditor_version or "–"),
            *[(name, str(v)) for name, v in summary.versions.items() if name != "auditor"],
            ("Time taken", " · ".join(f"{k} {fmt_number(v, 1)} s"
                                      for k, v in summary.timings.items()) or "–"),
        ],
        "command": summary.command,
        "multi_label": multi_label,
        "threshold": accuracy.get("threshold"),
        "notes": [str(n)[:1].upper() + str(n)[1:]
                  for n in (*(model.warnings if model else []), *data.warnings)],
    }
