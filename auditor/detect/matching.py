"""Which flags are "the same finding": across two runs (compare, --baseline) and within one run.

A flag is identified by (kind, class, region): class None for data-set or model-level flags,
region None when the flag names no place. The region is the flag's own `region` text when it
has one, else its evidence's `region`, else the words for its `region_box` (x0, y0, x1, y1 as
fractions of width and height), e.g. "top-left corner". Words, not coordinates, so a tag found
at a slightly different box in a retrained model is still the same finding.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from auditor.detect.location import describe_region

FlagKey = tuple[str, str | None, str | None]


def region_of(flag: dict[str, Any]) -> str | None:
    """The place a flag (summary.json dict) names, in words, or None."""
    evidence = flag.get("evidence") if isinstance(flag.get("evidence"), dict) else {}
    for value in (flag.get("region"), evidence.get("region")):
        if isinstance(value, str) and value:
            return value
    box = evidence.get("region_box")
    if isinstance(box, list | tuple) and len(box) == 4:
        try:
            return describe_region([float(v) for v in box])
        except (TypeError, ValueError):
            return None
    return None


def flag_key(flag: dict[str, Any]) -> FlagKey:
    """(kind, class, region) of a flag: equal keys are the same finding."""
    cls = flag.get("class")
    return str(flag.get("kind", "")), None if cls is None else str(cls), region_of(flag)


def key_dict(key: FlagKey) -> dict[str, Any]:
    """A key as JSON-ready data: {kind, class, region}."""
    return {"kind": key[0], "class": key[1], "region": key[2]}


@dataclass
class FlagMatch:
    """Flags of run B against run A. Each list holds summary.json flag dicts: `appeared` and
    `persisting` from B, `disappeared` from A; `persisting_before` are A's flags in the order
    of `persisting`."""

    appeared: list[dict[str, Any]] = field(default_factory=list)
    disappeared: list[dict[str, Any]] = field(default_factory=list)
    persisting: list[dict[str, Any]] = field(default_factory=list)
    persisting_before: list[dict[str, Any]] = field(default_factory=list)


def match_flags(before: list[dict[str, Any]], after: list[dict[str, Any]]) -> FlagMatch:
    """Match the flags of two runs by (kind, class, region).

    A key raised twice in one run (two flags of one kind on one class with no region) is
    matched pairwise in order; the extra ones count as appeared or disappeared."""
    pool: dict[FlagKey, list[dict[str, Any]]] = {}
    for flag in before:
        pool.setdefault(flag_key(flag), []).append(flag)
    match = FlagMatch()
    for flag in after:
        earlier = pool.get(flag_key(flag))
        if earlier:
            match.persisting.append(flag)
            match.persisting_before.append(earlier.pop(0))
        else:
            match.appeared.append(flag)
    match.disappeared = [f for flags in pool.values() for f in flags]
    return match
