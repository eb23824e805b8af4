"""What changed between two runs of the same (or overlapping) data: `auditor compare` and
`auditor audit --baseline`.

Samples are matched by `rel_path` (the path under the data root), so a run on a copy of the
data elsewhere still matches; only samples readable in both runs are compared, and the overlap
is stated. Flags are matched by (kind, class, region) (auditor.detect.matching).

| output | rule |
|---|---|
| per class and measure | medians in A and in B over the shared samples, B - A, and a paired |
| | two-sided Wilcoxon signed-rank test of the per-sample differences (pairs with a NaN |
| | dropped; p = 1 when every difference is zero; None with fewer than MIN_PAIRS pairs) |
| accuracy | each run's top-1 accuracy overall (summary.json) and on the shared samples |
| changed most | the MAX_CHANGED shared samples of largest change = abs(suspicion B - A), + 1 |
| | when the prediction changed (a NaN suspicion counts 0) |
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from auditor.detect.flags import at_or_above
from auditor.detect.matching import flag_key, key_dict, match_flags
from auditor.errors import RunDirectoryError, UsageError
from auditor.report.formatting import finite
from auditor.store import RunReader
from auditor.summary import Summary, read_summary

#: Per-sample measures compared per class (samples.parquet columns).
MEASURES = ("fg_energy", "fg_enrichment", "bg_energy", "border_energy", "border_lift",
            "pointing_hit", "wsol_iou", "suspicion")
MAX_CHANGED = 24
MIN_PAIRS = 2


@dataclass
class Overlap:
    """How far two runs share their samples (readable in both, matched by rel_path)."""

    n_a: int
    n_b: int
    n_shared: int

    def describe(self) -> str:
        """'N of the A run's a and of the B run's b readable samples are shared'."""
        return (f"{self.n_shared:,} shared readable samples ({self.n_a:,} in A, "
                f"{self.n_b:,} in B)")


@dataclass
class Comparison:
    """Run B against run A, as plain data (to_dict is compare.json)."""

    run_a: str
    run_b: str
    overlap: Overlap
    flags: dict[str, list[dict[str, Any]]]
    accuracy: dict[str, Any]
    classes: dict[str, dict[str, Any]]
    changed: list[dict[str, Any]] = field(default_factory=list)
    primary: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_a": self.run_a, "run_b": self.run_b,
            "overlap": {"n_a": self.overlap.n_a, "n_b": self.overlap.n_b,
                        "n_shared": self.overlap.n_shared,
                        "description": self.overlap.describe()},
            **self.flags, "accuracy": self.accuracy, "classes": self.classes,
            "changed": self.changed, "primary": self.primary,
        }

    def exit_code(self, fail_on: str | None) -> int:
        """0, or 3 when a flag at or above `fail_on` appeared in B (the CI gate)."""
        return 3 if fail_on and at_or_above(self.flags["appeared"], fail_on) else 0


def _reader(run_dir: str | Path, name: str) -> tuple[RunReader, Summary]:
    """The run's reader and summary.json; UsageError when it is not a finished run."""
    try:
        return RunReader(run_dir), read_summary(run_dir)
    except RunDirectoryError as exc:
        raise UsageError(f"run {name} ({run_dir}) cannot be compared: {exc}") from exc


def _readable(reader: RunReader) -> pd.DataFrame:
    samples = reader.samples()
    ok = samples[samples["status"] == "ok"]
    return ok.drop_duplicates("rel_path").set_index("rel_path")


def shared_samples(a: pd.DataFrame, b: pd.DataFrame) -> pd.DataFrame:
    """Readable rows of A and B joined on rel_path (columns suffixed _a and _b)."""
    return a.merge(b, how="inner", left_index=True, right_index=True, suffixes=("_a", "_b"))


def compare_runs(run_a: str | Path, run_b: str | Path) -> Comparison:
    """Compare run B (after) with run A (before). Raises UsageError when either is not a
    finished run or when they share no readable sample (nothing to compare)."""
    (reader_a, summary_a), (reader_b, summary_b) = _reader(run_a, "A"), _reader(run_b, "B")
    a, b = _readable(reader_a), _readable(reader_b)
    joined = shared_samples(a, b)
    overlap = Overlap(len(a), len(b), len(joined))
    if joined.empty:
        raise UsageError(
            f"runs {run_a} and {run_b} share no readable sample (matched by the path under "
            f"the data root: {len(a):,} in A, {len(b):,} in B): they audited different data, "
            "so there is nothing to compare")
    match = match_flags(summary_a.flags, summary_b.flags)
    flags = {
        "appeared": match.appeared,
        "disappeared": match.disappeared,
        "persisting": [{**after, "severity_before": before.get("severity"),
                        "score_before": before.get("score")}
                       for after, before in zip(match.persisting, match.persisting_before,
                                                strict=True)],
    }
    return Comparison(
        run_a=str(run_a), run_b=str(run_b), overlap=overlap, flags=flags,
        accuracy=_accuracy(summary_a, summary_b, joined),
        classes=class_changes(joined),
        changed=changed_most(joined),
        primary={"a": _primary(summary_a), "b": _primary(summary_b)},
    )


def _primary(summary: Summary) -> str:
    return summary.primary or (summary.methods or ["gradcam"])[0]


def _accuracy(sa: Summary, sb: Summary, joined: pd.DataFrame) -> dict[str, Any]:
    shared = {}
    if {"correct_a", "correct_b"} <= set(joined.columns):
        shared = {"a": float(joined["correct_a"].mean()), "b": float(joined["correct_b"].mean())}
    return {
        "a": finite((sa.accuracy or {}).get("overall")),
        "b": finite((sb.accuracy or {}).get("overall")),
        "shared_a": shared.get("a"), "shared_b": shared.get("b"),
    }


def paired_test(before: np.ndarray, after: np.ndarray) -> dict[str, Any]:
    """Medians and the paired Wilcoxon signed-rank test of after - before.

    before, after: float [n], the same samples in the same order; pairs with a NaN are dropped.
    Returns {n, median_a, median_b, difference, p_value}; difference = median_b - median_a."""
    keep = np.isfinite(before) & np.isfinite(after)
    x, y = before[keep], after[keep]
    n = int(keep.sum())
    median_a, median_b = (float(np.median(x)), float(np.median(y))) if n else (None, None)
    out: dict[str, Any] = {
        "n": n, "median_a": median_a, "median_b": median_b,
        "difference": median_b - median_a if n else None,  # type: ignore[operator]
        "p_value": None,
    }
    if n < MIN_PAIRS:
        return out
    if not np.any(y - x):
        out["p_value"] = 1.0
        return out
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # small-sample and tie warnings: the p-value stands
        result = stats.wilcoxon(y, x, zero_method="wilcox", alternative="two-sided")
    out["p_value"] = finite(result.pvalue)
    return out


def class_changes(joined: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """{class: {n, accuracy_a, accuracy_b, measures: {measure: paired_test}}} over the shared
    samples, by the label of run B, classes in name order.

    The table is sorted by class once and each class is a slice of plain arrays: splitting a
    DataFrame per class costs seconds at 1 000 classes and a million rows."""
    measures = [m for m in MEASURES if f"{m}_a" in joined.columns and f"{m}_b" in joined.columns]
    labels = joined["label_b"].astype(str).to_numpy()
    order = np.argsort(labels, kind="stable")
    names, starts = np.unique(labels[order], return_index=True)
    bounds = np.append(starts, len(order))
    before = {m: joined[f"{m}_a"].to_numpy(float)[order] for m in measures}
    after = {m: joined[f"{m}_b"].to_numpy(float)[order] for m in measures}
    correct = None
    if {"correct_a", "correct_b"} <= set(joined.columns):
        correct = (joined["correct_a"].to_numpy(float)[order],
                   joined["correct_b"].to_numpy(float)[order])
    out: dict[str, dict[str, Any]] = {}
    for k, name in enumerate(names):
        rows = slice(int(bounds[k]), int(bounds[k + 1]))
        entry: dict[str, Any] = {"n": rows.stop - rows.start}
        if correct is not None:
            entry["accuracy_a"] = float(correct[0][rows].mean())
            entry["accuracy_b"] = float(correct[1][rows].mean())
        entry["measures"] = {m: paired_test(before[m][rows], after[m][rows]) for m in measures}
        out[str(name)] = entry
    return out


def changed_most(joined: pd.DataFrame, n: int = MAX_CHANGED) -> list[dict[str, Any]]:
    """The n shared samples whose suspicion or prediction changed most (see the module table),
    largest change first, ties by rel_path."""
    sa = joined["suspicion_a"].to_numpy(float) if "suspicion_a" in joined else np.zeros(len(joined))
    sb = joined["suspicion_b"].to_numpy(float) if "suspicion_b" in joined else np.zeros(len(joined))
    delta = np.nan_to_num(sb - sa, nan=0.0)
    flipped = (joined["pred_a"].astype(str).to_numpy() != joined["pred_b"].astype(str).to_numpy()) \
        if {"pred_a", "pred_b"} <= set(joined.columns) else np.zeros(len(joined), bool)
    change = np.abs(delta) + flipped
    frame = pd.DataFrame({"rel_path": joined.index, "change": change, "delta": delta},
                         index=np.arange(len(joined)))
    top = frame.sort_values(["change", "rel_path"], ascending=[False, True], kind="stable")
    top = top[top["change"] > 0].head(n)
    rows = []
    for position in top.index:
        row = joined.iloc[position]
        rows.append({
            "rel_path": str(joined.index[position]), "label": str(row.get("label_b", "")),
            "index_a": int(row["index_a"]), "index_b": int(row["index_b"]),
            "pred_a": str(row.get("pred_a", "")), "pred_b": str(row.get("pred_b", "")),
            "correct_a": bool(row.get("correct_a")), "correct_b": bool(row.get("correct_b")),
            "suspicion_a": finite(row.get("suspicion_a")),
            "suspicion_b": finite(row.get("suspicion_b")),
            "change": float(frame.at[position, "change"]),
        })
    return rows


def baseline_record(
    flags: list[dict[str, Any]], baseline: str | Path, samples: pd.DataFrame
) -> dict[str, Any]:
    """summary.json's `baseline` for a run with these flags and samples against an earlier run:
    {run, appeared, disappeared (flag keys with severity and message), n_persisting, overlap}.

    Raises UsageError when the baseline is not a finished run or shares no readable sample."""
    reader, summary = _reader(baseline, "--baseline")
    before = _readable(reader)
    now = samples[samples["status"] == "ok"].drop_duplicates("rel_path").set_index("rel_path")
    n_shared = int(now.index.isin(before.index).sum())
    if n_shared == 0:
        raise UsageError(
            f"--baseline {baseline} shares no readable sample with this run (matched by the "
            "path under the data root): it audited other data")
    match = match_flags(summary.flags, flags)

    def brief(flag: dict[str, Any]) -> dict[str, Any]:
        return {**key_dict(flag_key(flag)), "severity": flag.get("severity"),
                "message": flag.get("message", "")}

    return {
        "run": str(baseline),
        "appeared": [brief(f) for f in match.appeared],
        "disappeared": [brief(f) for f in match.disappeared],
        "n_persisting": len(match.persisting),
        "overlap": Overlap(len(before), len(now), n_shared).describe(),
    }


def check_baseline(baseline: str | Path) -> None:
    """Fail early (UsageError) when --baseline is not a finished run directory."""
    _reader(baseline, "--baseline")

