"""The flag record every detector returns, and the severity order used by `--fail-on`."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

Severity = Literal["high", "medium", "low"]
#: The one severity order, least severe first; every sort and ladder reads it.
SEVERITIES: tuple[Severity, ...] = ("low", "medium", "high")
SEVERITY_RANK: dict[str, int] = {name: rank for rank, name in enumerate(SEVERITIES, start=1)}

#: Stable flag codes (the public contract; see README "Flag kinds").
FLAG_KINDS: tuple[str, ...] = (
    "background_attention",
    "border_attention",
    "fixed_location",
    "metadata_shortcut",
    "border_pixels_shortcut",
    "intervention_sensitive",
    "degenerate_maps",
    "labels_permuted",
    "model_at_chance",
)
#: The model-level kinds (auditor.detect.model_check): judged before any attention flag, and
#: listed first because they say how to read the others.
MODEL_KINDS: tuple[str, ...] = ("labels_permuted", "model_at_chance")


@dataclass
class Flag:
    """One finding: what was found, how strongly, for which class, on which samples.

    `class_name` is None for data-set-wide findings. `score` is the detector's strength measure
    (documented per kind in `evidence["score_meaning"]`). `samples` are relative paths, most
    telling first.
    """

    kind: str
    severity: Severity
    class_name: str | None
    score: float
    message: str
    evidence: dict[str, Any] = field(default_factory=dict)
    samples: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.kind not in FLAG_KINDS:
            raise ValueError(f"unknown flag kind {self.kind!r}; known: {', '.join(FLAG_KINDS)}")
        if self.severity not in SEVERITY_RANK:
            raise ValueError(f"unknown severity {self.severity!r}; use high, medium or low")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data, in the summary.json `flags` shape."""
        return {
            "kind": self.kind,
            "severity": self.severity,
            "class": self.class_name,
            "score": None if not math.isfinite(self.score) else float(self.score),
            "message": self.message,
            "evidence": self.evidence,
            "samples": list(self.samples),
        }


def severity_at(level: int) -> Severity:
    """The severity of a 0-based level on the ladder low, medium, high (clipped to it)."""
    return SEVERITIES[min(max(level, 0), len(SEVERITIES) - 1)]


def flag_sort_key(severity: str | None, score: float | None, kind: str | None = None
                  ) -> tuple[bool, int, float]:
    """Sort key of a flag: model-level kinds (MODEL_KINDS) first, then most severe, then the
    largest |score|; unknown severities and missing or non-finite scores last."""
    strength = abs(score) if score is not None and math.isfinite(score) else 0.0
    return kind not in MODEL_KINDS, -SEVERITY_RANK.get(str(severity), 0), -strength


def at_or_above(flags: list[dict[str, Any]], severity: str) -> list[dict[str, Any]]:
    """The flags (summary.json dicts) whose severity is `severity` or worse."""
    floor = SEVERITY_RANK[severity]
    return [f for f in flags if SEVERITY_RANK[f["severity"]] >= floor]
