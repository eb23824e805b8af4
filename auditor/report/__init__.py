"""The stakeholder report: one self-contained HTML file rendered from a run directory."""

from auditor.report.notebook import summary_html
from auditor.report.render import render_report, summary_json
from auditor.report.samples_csv import write_samples_csv

__all__ = ["render_report", "summary_html", "summary_json", "write_samples_csv"]
