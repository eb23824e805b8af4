"""Model-free probes of a multi-label data set: one-vs-rest, one probe per label.

Each label k gets the probes of `auditor.detect.probes.run_probes` on every readable image
(one row per image), with the two classes "not k" and "k": a file property or border pattern
that tells the images with finding k from the others is a `metadata_shortcut` or
`border_pixels_shortcut` flag for label k (`class_name` k, the message starts with the label).
The rules, constants and severities are those of `run_probes`, unchanged. A label that every
image has, or none, is skipped with a note.

Also the multi-label run's table helpers: `label_sets` (the `labels` column as class indices)
and `one_error_row_per_file`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from auditor.detect.flags import Flag
from auditor.detect.probes import ProbeResult, run_probes


@dataclass
class PerLabelProbes:
    """The one-vs-rest probe of each label, and their flags (labelled)."""

    results: dict[str, ProbeResult]
    flags: list[Flag] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``per_label`` {label: ProbeResult.to_dict()}, the flags and notes."""
        return {
            "multi_label": True,
            "per_label": {name: result.to_dict() for name, result in self.results.items()},
            "flags": [f.to_dict() for f in self.flags],
            "notes": list(self.notes),
        }


def one_vs_rest_probes(
    props: pd.DataFrame,
    label_sets: list[tuple[int, ...]],
    classes: list[str],
    thumbs: np.ndarray | None = None,
    border: float = 0.1,
    seed: int = 0,
    population: int | None = None,
) -> PerLabelProbes:
    """Probe each label against the rest.

    Args:
        props: one row per readable image, the fingerprint columns.
        label_sets: the positive label indices of each image (into ``classes``), [N].
        classes: label names.
        thumbs: uint8 [N, 3, H, W] border thumbnails, or None.
        border: border band width as a fraction of each side.
        seed: seeds the permutations, folds and forests of every label alike.
        population: the images of the data set when `props` is a subsample (run_probes).
    """
    members = np.zeros((len(label_sets), len(classes)), dtype=bool)
    for row, labels in enumerate(label_sets):
        members[row, list(labels)] = True
    results: dict[str, ProbeResult] = {}
    flags: list[Flag] = []
    notes: list[str] = []
    for k, name in enumerate(classes):
        y = members[:, k].astype(np.int64)
        if y.min() == y.max():
            notes.append(f"label {name}: {'every' if y[0] else 'no'} image has it; not probed")
            continue
        result = run_probes(props, y, [f"not {name}", name], thumbs, border=border, seed=seed,
                            population=population)
        for flag in result.flags:
            flag.class_name = name
            flag.message = f"Label {name}: {flag.message}"
        results[name] = result
        flags += result.flags
    return PerLabelProbes(results=results, flags=flags, notes=notes)


def label_sets(labels: pd.Series, classes: list[str]) -> list[tuple[int, ...]]:
    """The ``labels`` column (``|``-joined names) as tuples of class indices."""
    positions = {name: k for k, name in enumerate(classes)}
    return [tuple(positions[n] for n in str(cell).split("|") if n) for cell in labels]


def one_error_row_per_file(samples: pd.DataFrame) -> pd.DataFrame:
    """Multi-label runs hold a row per (image, label); an unreadable file keeps one (its
    first), with no label of its own (its labels stay in ``labels``)."""
    error = samples["status"] == "error"
    repeated = error & samples.duplicated("path")
    out = samples[~repeated].reset_index(drop=True)
    out.loc[out["status"] == "error", ["label", "label_index"]] = ["", -1]
    return out
