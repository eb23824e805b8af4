"""The compact summary a notebook shows for a finished run (`AuditResult._repr_html_`)."""

from __future__ import annotations

from typing import Any

from auditor.report.render import environment
from auditor.report.sections.verdict import verdict

#: Flags listed in the notebook summary; the report has them all.
MAX_NOTEBOOK_FLAGS = 10


def summary_html(summary: dict[str, Any]) -> str:
    """Compact HTML of a run's summary.json dict: verdict, flags, accuracy per class."""
    flags = list(summary.get("flags") or [])
    per_class = (summary.get("accuracy") or {}).get("per_class") or {}
    return environment().get_template("notebook.html.j2").render(
        verdict=verdict(summary),
        flags=flags[:MAX_NOTEBOOK_FLAGS],
        flags_left_out=max(0, len(flags) - MAX_NOTEBOOK_FLAGS),
        accuracy=list(per_class.items()),
        model=str((summary.get("model") or {}).get("spec", "")),
    )
