"""The verdict's findings: flags that share one cause joined, then grouped into one card per
kind of finding across classes, ranked, at most MAX_CARDS.

| step | rule |
|---|---|
| one cause | on one class, the attention flags (background, border, fixed location) are one |
| | finding per region: a flag with a region starts one, a flag without joins the class's |
| | strongest region (or forms the class's one regionless finding) |
| confirmation | an `intervention_sensitive` flag joins the finding holding the flag it confirms |
| | (`evidence.confirms` = {kind, class}); a flag whose evidence has `confirmed_by` confirms |
| | its own finding |
| other kinds | every other flag is a finding of its own |
| lead | a finding is named by its lead flag: its strongest flag by severity, ties broken by |
| | LEAD_KIND_ORDER (fixed_location, border, background attention, other kinds), then by |
| | |score|. A confirming intervention_sensitive leads only a finding of its own (it |
| | confirms the cause, it is not the cause) |
| cards | findings with the same lead kind and level form one card; model-level cards first, |
| | then data-set-level, then class-level, each ranked by worst severity, then support |
| | (classes), then the strongest score |
| cap | at most MAX_CARDS cards; the rest are named in one line. A card lists at most |
| | MAX_CARD_ROWS classes; the class table filters the rest |

Works on any flag kind: an unknown kind is its own finding, titled by its code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from auditor.detect.flags import SEVERITY_RANK
from auditor.detect.matching import FlagKey, flag_key, region_of
from auditor.report.formatting import evidence_text, finite, fmt_number, fmt_percent, is_table
from auditor.report.texts import KIND_METHODS, KIND_SECTION, KIND_TITLES, MODEL_LEVEL_KINDS
from auditor.summary import Summary

MAX_CARDS = 10
MAX_CARD_ROWS = 10
MAX_FLAG_SAMPLES = 5
#: Attention kinds that one mark on a class raises together, most specific first.
SHARED_CAUSE_KINDS = ("fixed_location", "border_attention", "background_attention")
CONFIRMING_KIND = "intervention_sensitive"
#: Which flag of a finding names it when two are equally severe: the most specific place
#: first, then other kinds (None).
LEAD_KIND_ORDER = (*SHARED_CAUSE_KINDS, None)
LEVELS = ("model", "data set", "class")


@dataclass
class Finding:
    """Flags (summary.json dicts) that share one cause; `flags[0]` is the lead."""

    level: str
    cls: str | None
    region: str | None
    flags: list[dict[str, Any]] = field(default_factory=list)

    @property
    def lead(self) -> dict[str, Any]:
        return self.flags[0]

    @property
    def severity(self) -> str:
        return max((_severity(f) for f in self.flags), key=SEVERITY_RANK.__getitem__)

    @property
    def confirmations(self) -> list[dict[str, Any]]:
        return [f for f in self.flags if f.get("kind") == CONFIRMING_KIND]

    @property
    def confirmed(self) -> bool:
        return bool(self.confirmations) or any(
            (f.get("evidence") or {}).get("confirmed_by") for f in self.flags)


def _severity(flag: dict[str, Any]) -> str:
    sev = flag.get("severity")
    return sev if sev in SEVERITY_RANK else "low"


def flag_strength(flag: dict[str, Any]) -> tuple[int, float]:
    """(severity rank, |score|) of a flag: larger is stronger."""
    score = finite(flag.get("score"))
    return SEVERITY_RANK[_severity(flag)], abs(score) if score is not None else 0.0


def _level(flag: dict[str, Any]) -> str:
    if flag.get("kind") in MODEL_LEVEL_KINDS:
        return "model"
    return "data set" if flag.get("class") is None else "class"


def group_findings(flags: list[dict[str, Any]]) -> list[Finding]:
    """Join the flags of one run into findings (see the module table); every flag lands in
    exactly one finding. Findings come strongest lead first (severity, then |score|); within
    one, the lead flag first."""
    findings: list[Finding] = []
    by_class: dict[str, list[Finding]] = {}
    loose: list[dict[str, Any]] = []
    confirming: list[dict[str, Any]] = []
    ordered = sorted(flags, key=flag_strength, reverse=True)
    for flag in ordered:
        kind = flag.get("kind")
        cls = None if flag.get("class") is None else str(flag["class"])
        if kind == CONFIRMING_KIND:
            confirming.append(flag)
        elif kind in SHARED_CAUSE_KINDS and cls is not None and _level(flag) == "class":
            region = region_of(flag)
            if region is None:
                loose.append(flag)
                continue
            mine = by_class.setdefault(cls, [])
            same = next((f for f in mine if f.region == region), None)
            if same is None:
                same = Finding("class", cls, region)
                mine.append(same)
                findings.append(same)
            same.flags.append(flag)
        else:
            findings.append(Finding(_level(flag), cls, region_of(flag), [flag]))
    for flag in loose:  # regionless attention flags join the class's strongest region
        cls = str(flag["class"])
        mine = [f for f in by_class.get(cls, []) if f.lead.get("kind") in SHARED_CAUSE_KINDS]
        if mine:
            mine[0].flags.append(flag)
        else:
            finding = Finding("class", cls, None, [flag])
            by_class.setdefault(cls, []).append(finding)
            findings.append(finding)
    holder: dict[tuple[str, str | None], Finding] = {}
    for finding in findings:
        for flag in finding.flags:
            holder.setdefault((str(flag.get("kind")), flag.get("class")), finding)
    for flag in confirming:
        target = (flag.get("evidence") or {}).get("confirms")
        found = None
        if isinstance(target, dict):
            found = holder.get((str(target.get("kind")), target.get("class")))
        if found is not None:
            found.flags.append(flag)
        else:
            findings.append(Finding(_level(flag), flag.get("class"), region_of(flag), [flag]))
    for finding in findings:
        finding.flags.sort(key=_lead_rank)
    # Regionless and confirming flags form their findings after the loop: order them in.
    findings.sort(key=lambda f: flag_strength(f.lead), reverse=True)
    return findings


def _lead_rank(flag: dict[str, Any]) -> tuple[bool, int, int, float]:
    """Sort key of a finding's flags, lead first: confirmations last, then severity, then
    LEAD_KIND_ORDER, then |score|."""
    kind = flag.get("kind")
    order = LEAD_KIND_ORDER.index(kind if kind in LEAD_KIND_ORDER else None)
    rank, score = flag_strength(flag)
    return kind == CONFIRMING_KIND, -rank, order, -score


def finding_cards(
    summary: Summary, class_ids: dict[str, str], new_keys: set[FlagKey] | None = None,
    anchors: dict[FlagKey, str] | None = None,
) -> dict[str, Any]:
    """The verdict's cards as plain data: {cards, left_out [(title, n)], n_findings, n_flags}.

    new_keys: keys of the flags that are new against a baseline (None: no baseline).
    anchors: where a flag's evidence is drawn (e.g. its peak grid), by flag key; else its class
    row or its section."""
    flags = summary.flags
    findings = group_findings(flags)
    n_classes = len(summary.data.classes) if summary.data and summary.data.classes else None
    groups: dict[tuple[str, str], list[Finding]] = {}
    for finding in findings:
        groups.setdefault((finding.level, str(finding.lead.get("kind"))), []).append(finding)
    cards = [_card(level, kind, members, n_classes, class_ids, summary, new_keys, anchors or {})
             for (level, kind), members in groups.items()]
    cards.sort(key=lambda c: (LEVELS.index(c["level"]), -SEVERITY_RANK[c["severity"]],
                              -c["support"], -c["strength"]))
    for i, card in enumerate(cards):
        card["id"] = f"finding-{i}"
    return {
        "cards": cards[:MAX_CARDS],
        "left_out": [(c["title"], c["support"]) for c in cards[MAX_CARDS:]],
        "n_findings": len(findings), "n_flags": len(flags),
    }


def _card(
    level: str, kind: str, members: list[Finding], n_classes: int | None,
    class_ids: dict[str, str], summary: Summary, new_keys: set[FlagKey] | None,
    anchors: dict[FlagKey, str],
) -> dict[str, Any]:
    members = sorted(members, key=lambda f: flag_strength(f.lead), reverse=True)
    title = KIND_TITLES.get(kind, kind.replace("_", " ").capitalize())
    classes = list(dict.fromkeys(f.cls for f in members if f.cls is not None))
    if level == "class":
        of = f" of {n_classes:,}" if n_classes else ""
        headline = f"{title} in {len(classes):,}{of} class{'es' if (n_classes or 2) != 1 else ''}"
    elif level == "data set":
        headline = f"{title} across the data set"
    else:
        headline = title
    rows = [_row(f, class_ids, summary, new_keys, anchors) for f in members[:MAX_CARD_ROWS]]
    severity = max((f.severity for f in members), key=SEVERITY_RANK.__getitem__)
    n_new = sum(1 for f in members for flag in f.flags
                if new_keys is not None and flag_key(flag) in new_keys)
    return {
        "level": level, "kind": kind, "title": title, "headline": headline,
        "severity": severity, "support": len(classes) or len(members),
        "strength": max(flag_strength(f.lead)[1] for f in members),
        "method": KIND_METHODS.get(kind, ""),
        "section": KIND_SECTION.get(kind, "attention"),
        "n_confirmed": sum(1 for f in members if f.confirmed),
        "n_findings": len(members),
        "rows": rows, "rows_left_out": max(0, len(members) - len(rows)),
        "n_new": n_new,
    }


def _row(
    finding: Finding, class_ids: dict[str, str], summary: Summary,
    new_keys: set[FlagKey] | None, anchors: dict[FlagKey, str],
) -> dict[str, Any]:
    lead = finding.lead
    class_id = class_ids.get(finding.cls or "")
    section = KIND_SECTION.get(str(lead.get("kind")), "attention")
    # Where any of its flags is drawn (e.g. a fixed_location's peak grid), lead first.
    drawn = next((anchors[k] for k in map(flag_key, finding.flags) if k in anchors), None)
    anchor = drawn or (f"#{class_id}" if section == "attention" and class_id else f"#{section}")
    return {
        "anchor": anchor,
        "class": finding.cls, "class_id": class_ids.get(finding.cls or ""),
        "severity": finding.severity, "region": finding.region,
        "message": str(lead.get("message", "")), "score": lead.get("score"),
        "kinds": list(dict.fromkeys(str(f.get("kind")) for f in finding.flags)),
        "confirmed": finding.confirmed, "edited": bool(finding.confirmations),
        "confirmation": _confirmation(finding, summary),
        "new": new_keys is not None and any(flag_key(f) in new_keys for f in finding.flags),
        "evidence": [_flag_evidence(f, new_keys) for f in finding.flags],
    }


def _confirmation(finding: Finding, summary: Summary) -> str:
    """How the finding was confirmed, in words ('' when not)."""
    for flag in finding.confirmations:
        edits = [e for e in (flag.get("evidence") or {}).get("edits") or [] if isinstance(e, dict)]
        if not edits:
            return str(flag.get("message", ""))
        return "; ".join(
            f"{e.get('description') or e.get('edit')}: flips {fmt_percent(e.get('flip_rate'))} "
            f"of predictions (control {fmt_percent(e.get('control_flip_rate'))})" for e in edits)
    for flag in finding.flags:
        text = (flag.get("evidence") or {}).get("confirmed_by")
        if text:
            return str(text)
    probe = {"metadata_shortcut": "metadata_classifier",
             "border_pixels_shortcut": "border_classifier"}.get(str(finding.lead.get("kind")))
    probes = summary.probes or {}
    if probe and isinstance(probes.get(probe), dict):
        p = probes[probe]
        return (f"model-free probe accuracy {fmt_number(p.get('accuracy'))} (95% interval "
                f"{fmt_number(p.get('ci_low'))}–{fmt_number(p.get('ci_high'))}; chance "
                f"{fmt_number(p.get('baseline'))})")
    return ""


def _flag_evidence(flag: dict[str, Any], new_keys: set[FlagKey] | None) -> dict[str, Any]:
    kind = str(flag.get("kind", ""))
    evidence = flag.get("evidence") or {}
    samples = [str(s) for s in flag.get("samples") or []]
    return {
        "kind": kind, "title": KIND_TITLES.get(kind, kind), "severity": _severity(flag),
        "message": str(flag.get("message", "")), "score": flag.get("score"),
        "new": new_keys is not None and flag_key(flag) in new_keys,
        # Tables (grids, mean maps) are drawn in their sections, not printed here.
        "details": [(str(k), evidence_text(v)) for k, v in evidence.items() if not is_table(v)],
        "samples": samples[:MAX_FLAG_SAMPLES],
        "samples_left_out": max(0, len(samples) - MAX_FLAG_SAMPLES),
    }
