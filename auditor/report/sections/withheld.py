"""Flags the model check withheld (auditor.detect.model_check): each listed, with why, so a
reviewer sees what the maps would have said once the model is fixed."""

from __future__ import annotations

from typing import Any

from auditor.report.formatting import names_list
from auditor.report.sections.findings import flag_strength
from auditor.report.texts import KIND_TITLES, MODEL_LEVEL_KINDS
from auditor.summary import Summary

#: Withheld flags listed; the rest are counted (summary.json has them all).
MAX_WITHHELD_ROWS = 50


def withheld_section(summary: Summary) -> dict[str, Any] | None:
    """{n, why, rows [{severity, kind, title, class, message}], left_out}, strongest first;
    None when the run withheld nothing."""
    held = sorted(summary.withheld_flags, key=flag_strength, reverse=True)
    if not held:
        return None
    causes = list(dict.fromkeys(str(f.get("kind")) for f in summary.flags
                                if f.get("kind") in MODEL_LEVEL_KINDS))
    because = names_list([KIND_TITLES[k].lower() for k in causes]) or "the model check failed"
    rows = [{"severity": str(f.get("severity", "")), "kind": str(f.get("kind", "")),
             "title": KIND_TITLES.get(str(f.get("kind")), str(f.get("kind"))),
             "class": f.get("class"), "message": str(f.get("message", ""))}
            for f in held[:MAX_WITHHELD_ROWS]]
    return {
        "n": len(held),
        "why": (f"Withheld because {because}: the maps of such a model say nothing reliable "
                "about the data, so these class-level flags are not findings. They are listed "
                "for reference; audit again once the model passes its check."),
        "rows": rows, "left_out": len(held) - len(rows),
    }
