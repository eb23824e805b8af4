"""Model-free shortcut probes: do file properties or border pixels alone predict the label?

No model is involved. Two kinds of evidence, both computed from plain data (the per-file
fingerprints of `auditor.data.decode` and the 16x16 thumbnails of `auditor.data.dataset`):

1. **Associations.** Each fingerprint property against the label, with a permutation p-value
   (labels shuffled `n_permutations` times, the same shuffles for every property; add-one
   smoothing, so the smallest p-value is 1 / (n_permutations + 1)).

   - Categorical properties: bias-corrected Cramér's V (Bergsma 2013) of the property-by-class
     table, in [0, 1]; the p-value ranks the shuffles by uncorrected V, i.e. by chi-square.
     `border_dominant` ("#rrggbb") is first rounded to 5 levels per channel (0, 64, 128, 191,
     255: 125 colours) so JPEG noise does not split one colour into many.
     Levels past the 64 most frequent are pooled into "(other)".
   - Numeric properties: plug-in mutual information in bits between the label and the property
     cut into quantile bins (at most 10; the distinct values when there are that few); missing
     values (NaN, e.g. `jpeg_quality` of a PNG) form a bin of their own, so "has no JPEG quality"
     is itself a feature. `strength` is MI / H(label) in [0, 1]: the fraction of the label's
     entropy the property explains.

   Constant or absent columns are skipped and listed in `skipped_properties` with the reason
   (absent `dicom_<Keyword>` tags silently: only DICOM files have them). DICOM files add the
   allow-listed technical tags of `auditor.data.dicom` (Manufacturer, ViewPosition, KVP, ...);
   a tag that predicts the label is named in the `metadata_shortcut` message like any property.

2. **Cross-validated probes.** A random forest (stratified K-fold, seeded; K = 5 up to 1000
   rows, 3 above, never more than the smallest class) on the file properties alone (one-hot
   categoricals; the border statistics are left out, they are pixels, not file metadata), and
   one on the border pixels alone: the band of the thumbnail that matches `border`
   (round(border * side) pixels per side, at least 1; 2 pixels at 0.1 on a 16x16 thumbnail),
   flattened. Without thumbnails the border probe uses the fingerprint border statistics
   instead. Above 100 classes the trees split at random thresholds (extremely randomized
   trees: the best-split search costs rows x classes; see `probe_classifier`). Out-of-fold
   accuracy gets a 95% Wilson interval; the baseline is the majority-class rate (what always
   guessing the biggest class scores), with its own interval.

   Classes with fewer than 3 labelled rows are left out of the probes (noted); the probes are
   skipped, with the reason, when fewer than 20 rows or fewer than 2 classes remain. Above
   3000 rows the probes train on a stratified, seeded subsample (every class keeps at least 5
   rows or all it has), which keeps a 10k-row data set to a few seconds; `n` is the rows used.

The rule that turns these into flags, its constants and its severities are in
`auditor.detect.probe_rule`. The parts, each a module: `probe_encoding` (which properties, how
they become features; the thumbnails' border band), `probe_associations` (1.), `stats`
(Wilson interval, Cramér's V, mutual information), `probe_classifier` (2.), `probe_phrasing`
(the flag messages); this module runs them and raises the flags.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
import pandas as pd

from auditor.detect.flags import SEVERITY_RANK, Flag, Severity
from auditor.detect.probe_associations import association, permutations
from auditor.detect.probe_classifier import cross_validated_probe
from auditor.detect.probe_encoding import (
    BORDER_PROPERTIES,
    border_pixel_features,
    border_pixel_groups,
    encode_properties,
    property_features,
    validate_inputs,
)
from auditor.detect.probe_phrasing import border_colour_phrase, flag_message
from auditor.detect.probe_rule import (
    MAX_NAMED_PROPERTIES,
    MIN_ROWS,
    NAMING_ALPHA,
    NAMING_STRENGTH,
    association_severity,
)
from auditor.jsonsafe import json_ready


@dataclass
class ProbeResult:
    """Everything the probes found, as plain data (`to_dict()` is the summary.json `probes`).

    `associations`: one dict per tested property, strongest first. `metadata_classifier` and
    `border_classifier`: the probe summaries, `{"status": "skipped", "reason": ...}` when a
    probe could not run. `skipped_properties`: property -> why it was not tested. `notes`: data
    set level remarks (unlabelled rows dropped, classes left out, single class).
    """

    n: int
    classes: list[str]
    associations: list[dict[str, Any]]
    metadata_classifier: dict[str, Any]
    border_classifier: dict[str, Any]
    flags: list[Flag]
    skipped_properties: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (NaN -> None, numpy scalars -> Python numbers)."""
        return json_ready(
            {
                "n": self.n,
                "classes": list(self.classes),
                "settings": self.settings,
                "notes": list(self.notes),
                "associations": self.associations,
                "skipped_properties": self.skipped_properties,
                "metadata_classifier": self.metadata_classifier,
                "border_classifier": self.border_classifier,
                "flags": [f.to_dict() for f in self.flags],
            }
        )


def run_probes(
    props: pd.DataFrame,
    labels: np.ndarray,
    classes: list[str],
    thumbs: np.ndarray | None = None,
    border: float = 0.1,
    seed: int = 0,
    n_permutations: int = 200,
    population: int | None = None,
) -> ProbeResult:
    """Model-free shortcut probes over a labelled data set (see the module docstring).

    Args:
        props: one row per readable file, the fingerprint columns of `auditor.data.decode`
            (absent columns are skipped; an optional `rel_path` column names flag samples).
        labels: int [N], class index into `classes`; -1 (unknown) rows are left out.
        classes: class names.
        thumbs: uint8 [N, 3, H, W] RGB thumbnails (16x16 from the data set), or None.
        border: border band width as a fraction of each side, in (0, 0.5).
        seed: seeds the permutations, the folds and the forests.
        n_permutations: label shuffles for the p-values (0: no p-values).
        population: the rows of the data set when `props` is a subsample of them
            (probe_run.probe_samples above PROBE_ROWS): said in the notes and settings, and
            every association gets the 95% bootstrap interval of its strength.

    Returns:
        ProbeResult with associations, both probe summaries and the flags.
    """
    labels_arr = validate_inputs(props, labels, classes, thumbs, border, n_permutations)
    settings: dict[str, Any] = {"border": border, "seed": seed,
                                "n_permutations": n_permutations}
    notes: list[str] = []
    subsampled = population is not None and population > len(props)
    if subsampled:
        settings["subsample"] = {"rows": len(props), "of": population}
        notes.append(
            f"the probes ran on a seeded subsample of {len(props):,} of the {population:,} "
            "rows (each class keeps its share): counts and p-values are the subsample's, each "
            "association's strength has its 95% bootstrap interval (strength_ci), each "
            "probe's accuracy its 95% Wilson interval")
    keep = labels_arr >= 0
    if not keep.all():
        notes.append(f"{int((~keep).sum())} rows without a label were left out of the probes")
    rows = np.flatnonzero(keep)
    frame = props.iloc[rows].reset_index(drop=True)
    y_full = labels_arr[rows]
    # Read only below: no copy of every thumbnail when every row is labelled.
    thumbs_kept = (None if thumbs is None
                   else np.asarray(thumbs) if keep.all() else np.asarray(thumbs)[rows])
    present, y = np.unique(y_full, return_inverse=True)
    names = [classes[i] for i in present]

    if len(present) < 2:
        reason = (
            "only one class has labelled samples; the probes compare classes, so there is "
            "nothing to test"
            if len(present) == 1
            else "no labelled samples"
        )
        notes.append(reason)
        skipped = {"status": "skipped", "reason": reason}
        return ProbeResult(
            n=len(rows),
            classes=list(classes),
            associations=[],
            metadata_classifier=dict(skipped),
            border_classifier=dict(skipped),
            flags=[],
            notes=notes,
            settings=settings,
        )

    columns, skipped_props = encode_properties(frame)
    rng = np.random.default_rng(seed)
    perms = permutations(y, n_permutations, rng)
    interval_seed = seed if subsampled else None
    associations = [association(name, col, y, names, perms, interval_seed)
                    for name, col in columns.items()]
    associations.sort(key=lambda a: -a["strength"])

    meta_x, meta_groups = property_features(len(frame), columns, border_group=False)
    if thumbs_kept is not None:
        # The classifier keeps a subsample (probe_classifier.subsample): pixels of its rows only.
        border_x = partial(_border_pixels_of_rows, thumbs_kept, border)
        border_groups = border_pixel_groups(*thumbs_kept.shape[2:], border)
        size = f"{thumbs_kept.shape[2]}x{thumbs_kept.shape[3]}"
        border_source = f"border band pixels of the {size} thumbnails"
    else:
        border_x, border_groups = property_features(len(frame), columns, border_group=True)
        border_source = "fingerprint border statistics (no thumbnails given)"

    meta_probe, meta_rows = cross_validated_probe(meta_x, meta_groups, y, names, seed, notes)
    meta_probe["features_source"] = "file properties (border statistics excluded)"
    border_probe, border_rows = cross_validated_probe(
        border_x, border_groups, y, names, seed, notes
    )
    border_probe["features_source"] = border_source

    # Few permutations cannot reach 0.01; then the smallest attainable p-value must do.
    naming_alpha = max(NAMING_ALPHA, 1 / (n_permutations + 1))
    rel_paths = frame["rel_path"].astype(str).to_numpy() if "rel_path" in frame else None
    flags: list[Flag] = []
    for kind, probe, probe_rows in (
        ("metadata_shortcut", meta_probe, meta_rows),
        ("border_pixels_shortcut", border_probe, border_rows),
    ):
        carriers = [
            a
            for a in associations
            if (a["property"] in BORDER_PROPERTIES) == (kind == "border_pixels_shortcut")
            and a["strength"] >= NAMING_STRENGTH
            and (a["p_value"] is None or a["p_value"] <= naming_alpha)
        ][:MAX_NAMED_PROPERTIES]
        strongest = carriers[0]["strength"] if carriers and len(rows) >= MIN_ROWS else 0.0
        severity = _stronger(probe.get("severity"), association_severity(strongest))
        if severity is None:
            continue
        colours = (
            border_colour_phrase(thumbs_kept, border, y, names)
            if kind == "border_pixels_shortcut" and thumbs_kept is not None
            else None
        )
        samples = [] if rel_paths is None else [str(rel_paths[r]) for r in probe_rows]
        sample_rows = [int(rows[r]) for r in probe_rows]
        flags.append(_shortcut_flag(kind, severity, probe, carriers, colours, sample_rows, samples))

    return ProbeResult(
        n=len(rows),
        classes=list(classes),
        associations=associations,
        metadata_classifier=meta_probe,
        border_classifier=border_probe,
        flags=flags,
        skipped_properties=skipped_props,
        notes=notes,
        settings=settings,
    )


def _border_pixels_of_rows(thumbs: np.ndarray, border: float, rows: np.ndarray) -> np.ndarray:
    """border_pixel_features of thumbs[rows] (float [len(rows), F])."""
    return border_pixel_features(thumbs[rows], border)[0]


def _stronger(a: Severity | None, b: Severity | None) -> Severity | None:
    ranked = [s for s in (a, b) if s is not None]
    return max(ranked, key=SEVERITY_RANK.__getitem__) if ranked else None


def _shortcut_flag(
    kind: str,
    severity: Severity,
    probe: dict[str, Any],
    carriers: list[dict[str, Any]],
    colours: str | None,
    sample_rows: list[int],
    samples: list[str],
) -> Flag:
    fired = probe.get("severity") is not None
    if fired:
        score = probe["lift"]
        meaning = (
            "lift = (accuracy - baseline) / (1 - baseline): share of the majority-class "
            "guess's errors the probe removes (0 chance, 1 perfect)"
        )
    else:
        score = carriers[0]["strength"]
        meaning = (
            f"strength of the association of {carriers[0]['property']} with the class "
            "(bias-corrected Cramér's V, or mutual information / label entropy), 0 to 1"
        )
    return Flag(
        kind=kind,
        severity=severity,
        class_name=None,
        score=score,
        message=flag_message(kind, probe, carriers, colours),
        evidence={
            "score_meaning": meaning,
            "route": "probe" if fired else "association",
            "probe": {k: v for k, v in probe.items() if k != "severity"},
            "properties": [
                {k: a[k] for k in ("property", "statistic", "value", "strength", "p_value")}
                for a in carriers
            ],
            "sample_rows": sample_rows,
        },
        samples=samples,
    )
