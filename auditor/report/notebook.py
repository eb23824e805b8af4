"""The compact summary a notebook shows for a finished run (`AuditResult._repr_html_`): the
report's verdict and its findings (flags sharing one cause joined, as the report groups them)."""

from __future__ import annotations

from auditor.report.render import environment
from auditor.report.sections.classes import class_ids
from auditor.report.sections.findings import finding_cards
from auditor.report.sections.verdict import verdict
from auditor.report.sections.withheld import withheld_section
from auditor.summary import Summary


def summary_html(summary: Summary) -> str:
    """Compact HTML of a run's summary: verdict, the report's finding cards (at most
    findings.MAX_CARDS, the rest named), withheld flags counted, accuracy per class."""
    classes = summary.data.classes if summary.data else []
    findings = finding_cards(summary, class_ids(classes))
    withheld = withheld_section(summary)
    per_class = (summary.accuracy or {}).get("per_class") or {}
    return environment().get_template("notebook.html.j2").render(
        verdict=verdict(summary, findings["n_findings"]),
        findings=findings,
        n_withheld=withheld["n"] if withheld else 0,
        accuracy=list(per_class.items()),
        model=summary.model.spec if summary.model else "",
    )
