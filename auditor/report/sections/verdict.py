"""The verdict: its traffic light, its one sentence and the executive summary."""

from __future__ import annotations

from typing import Any

from auditor.detect.flags import SEVERITY_RANK
from auditor.report.formatting import finite, fmt_percent, names_list
from auditor.report.texts import KIND_ACTIONS, MODEL_LEVEL_KINDS
from auditor.summary import DataFacts, Summary

#: Share of unreadable files at and above which the verdict warns that the audit is partial.
ERROR_SHARE_WARNING = 0.05
SEVERITIES = tuple(sorted(SEVERITY_RANK, key=SEVERITY_RANK.__getitem__, reverse=True))


def verdict(summary: Summary, n_findings: int | None = None) -> dict[str, Any]:
    """The one-sentence verdict, its traffic-light level and the error count, as plain data.

    n_findings: how many findings the flags make (flags sharing a cause joined); None counts
    each flag as a finding.

    level: 'high' | 'medium' | 'low' (worst flag), 'ok' (no flag), 'none' (nothing audited)."""
    data = summary.data or DataFacts()
    flags = summary.flags
    n, n_ok = data.n_samples, data.n_ok
    n_errors = data.n_errors or max(n - n_ok, 0)
    n_classes = len(data.classes)
    counts = {s: sum(1 for f in flags if f.get("severity") == s) for s in SEVERITIES}
    if n_ok == 0:
        level = "none"
        sentence = (f"Nothing was audited: none of the {n:,} files could be read, so this "
                    "report cannot say whether the model uses a shortcut.")
    elif model_flags := [f for f in flags if f.get("kind") in MODEL_LEVEL_KINDS]:
        level = next(s for s in SEVERITIES if counts[s]) if any(counts.values()) else "high"
        sentence = _model_verdict(model_flags[0], len(summary.withheld_flags),
                                  len(flags) - len(model_flags))
    elif flags:
        level = next(s for s in SEVERITIES if counts[s]) if any(counts.values()) else "low"
        parts = ", ".join(f"{counts[s]} {s}" for s in SEVERITIES if counts[s])
        found = len(flags) if n_findings is None else n_findings
        noun = "sign" if found == 1 else "signs"
        joined = f", from {len(flags):,} flags" if found != len(flags) else ""
        before = ("before a model is trained on this data" if summary.model is None
                  else "before this model ships")
        flagged = len({str(f.get("class")) for f in flags if f.get("class") is not None})
        where = f" in {flagged:,} of {n_classes:,} classes" if flagged and n_classes else ""
        sentence = (f"{found:,} {noun} of shortcut learning found{where}{joined} ({parts}): "
                    f"review the evidence below {before}.")
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


def executive_summary(
    summary: Summary, cards: list[dict[str, Any]], n_findings: int,
) -> list[tuple[str, str]]:
    """The verdict's plain-word summary: [(heading, sentence)] saying what the model relies
    on and where, how that was confirmed, what to do next, and how far to trust the run."""
    probe_run = summary.model is None
    subject = "the data" if probe_run else "the model"
    rows: list[tuple[str, str]] = []
    if cards:
        parts = [_reliance(card) for card in cards[:3]]
        more = len(cards) - 3
        tail = (f"; and {more} more kind{'s' if more > 1 else ''} of finding below"
                if more > 0 else "")
        rows.append((f"What {subject} relies on", f"{_capital('; '.join(parts))}{tail}."))
        rows.append(("How it was confirmed", _confirmed(summary, cards, n_findings)))
    else:
        rows.append((f"What {subject} relies on",
                     "No shortcut was found by the checks this run made (see Method for what "
                     "they cover)."))
    rows.append(("What to do next", _next_steps(summary, cards)))
    rows.append(("How far to trust this run", _trust(summary, summary.data or DataFacts())))
    return rows


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]


def _reliance(card: dict[str, Any]) -> str:
    rows = card["rows"]
    if card["level"] == "class":
        named = [r["class"] + (f" ({r['region']})" if r.get("region") else "") for r in rows]
        total = len(named) + card["rows_left_out"]
        return f"{card['headline'].lower()}: {names_list(named, total=total)}"
    return card["headline"].lower()


def _confirmed(summary: Summary, cards: list[dict[str, Any]], n_findings: int) -> str:
    confirmed = sum(c["n_confirmed"] for c in cards)
    probe_cards = [c for c in cards if c["section"] == "probes"]
    parts = []
    if summary.interventions is None and summary.model is not None:
        parts.append("no intervention was run (--no-interventions, or a model-free check), "
                     "so no attention finding is confirmed by editing the images: treat them "
                     "as leads to check")
    else:
        parts.append(f"{confirmed} of {n_findings} finding{'s' if n_findings != 1 else ''} "
                     "confirmed by an independent check (editing what it blames changed the "
                     "predictions, or a model-free probe)")
    if probe_cards:
        parts.append("the model-free probes read the files alone, so their findings hold for "
                     "any model trained on this data")
    return _capital("; ".join(parts)) + "."


def _next_steps(summary: Summary, cards: list[dict[str, Any]]) -> str:
    steps = list(dict.fromkeys(KIND_ACTIONS[c["kind"]] for c in cards
                               if c["kind"] in KIND_ACTIONS))[:3]
    source = summary.data.foreground_source if summary.data else "none"
    if source in ("none", "estimate") and summary.model is not None:
        steps.append("collect foreground masks or boxes (--masks or a manifest) so the "
                     "foreground measures are exact, not " + ("estimated" if source ==
                                                              "estimate" else "undefined"))
    if cards:
        steps.append("audit the fixed model on the same data and compare the two runs "
                     "(auditor compare RUN_A RUN_B --out DIR)")
    else:
        steps.append("keep this run as the baseline of a CI gate (auditor audit ... "
                     "--baseline RUN --fail-on medium fails only on new findings)")
    return _capital("; ".join(steps)) + "."


def _trust(summary: Summary, data: DataFacts) -> str:
    n, n_ok = data.n_samples, data.n_ok
    n_errors = data.n_errors or max(n - n_ok, 0)
    accuracy = finite((summary.accuracy or {}).get("overall"))
    n_classes = len(data.classes)
    parts = [f"{n_ok:,} of {n:,} files audited across {n_classes:,} classes"]
    if accuracy is not None:
        parts.append(f"top-1 accuracy {fmt_percent(accuracy, 1)}")
    auroc = finite((summary.accuracy or {}).get("macro_auroc"))
    if auroc is not None:
        parts.append(f"mean AUROC over labels {auroc:.2f} (0.5 = chance)")
    if n_errors:
        parts.append(f"{n_errors:,} file{'s' if n_errors != 1 else ''} "
                     f"({fmt_percent(n_errors / n if n else 0, 1)}) could not be read and "
                     "are not covered")
    source = data.foreground_source or "none"
    if summary.model is not None:
        parts.append({"mask": "foreground from the masks given",
                      "box": "foreground from the boxes given",
                      "estimate": "foreground estimated, not given: foreground numbers are "
                                  "approximate"}.get(
            source, "no foreground given: only the border measures hold"))
    return _capital("; ".join(parts)) + "."
