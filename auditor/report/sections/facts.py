"""Run facts: the model, the data, the run, and its notes."""

from __future__ import annotations

from typing import Any

from auditor.report.formatting import fmt_count, fmt_number, fmt_parameters, fmt_percent


def facts_section(summary: dict[str, Any], classes: list[str]) -> dict[str, Any]:
    """{model, data, run: [(key, value)], command, notes}: the run's facts as text."""
    model = summary.get("model") or {}
    data = summary.get("data") or {}
    accuracy = summary.get("accuracy") or {}
    multi_label = bool(accuracy.get("multi_label"))
    overall = (("Mean AUROC over labels", fmt_number(accuracy.get("macro_auroc")))
               if multi_label else
               ("Overall accuracy", fmt_percent(accuracy.get("overall"), 1)))
    timings = summary.get("timings") or {}
    model_rows = [("Model", "none: a model-free probe (auditor probe)")]
    return {
        "model": model_rows if summary.get("model") is None else [
            ("Model", str(model.get("spec", "–"))),
            ("Parameters", fmt_parameters(model.get("parameters"))),
            ("Weights", str(model.get("weights") or ("none: random initial weights"
                                                     if model.get("random_weights")
                                                     else "none (random or built-in)"))),
            ("Weights SHA-256", str(model.get("weights_sha256") or "–")),
            ("Target layer", (", ".join(str(x) for x in model.get("target_layers") or []) or "–")
             + ("" if model.get("target_layers_given", True) else " (chosen automatically)")),
            ("Methods", ", ".join(str(m) for m in summary.get("methods") or []) or "–"),
            ("Primary method (shown)", str(summary.get("primary") or "–")),
            ("Input size (H × W)", " × ".join(str(x) for x in model.get("input_size") or [])
             or "–"),
        ],
        "data": [
            ("Data root", str(data.get("root", "–"))),
            ("Source", str(data.get("source", "–"))),
            ("Classes", fmt_count(len(classes))),
            ("Files", fmt_count(data.get("n_samples"))),
            ("Audited (readable)", fmt_count(data.get("n_ok"))),
            ("Could not be read", fmt_count(data.get("n_errors"))),
            ("Foreground from", str(data.get("foreground_source", "–"))),
            overall,
        ],
        "run": [
            ("Created", str(summary.get("created", "–"))),
            ("auditor", str((summary.get("versions") or {}).get("auditor")
                            or summary.get("auditor_version", "–"))),
            *[(name, str(v)) for name, v in (summary.get("versions") or {}).items()
              if name != "auditor"],
            ("Time taken", " · ".join(f"{k} {fmt_number(v, 1)} s" for k, v in timings.items())
             or "–"),
        ],
        "command": str(summary.get("command") or ""),
        "multi_label": multi_label,
        "threshold": accuracy.get("threshold"),
        "notes": [str(n)[:1].upper() + str(n)[1:]
                  for n in (*(model.get("warnings") or []), *(data.get("warnings") or []))],
    }
