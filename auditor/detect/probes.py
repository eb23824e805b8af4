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
   instead. Out-of-fold accuracy gets a 95% Wilson interval; the baseline is the majority-class
   rate (what always guessing the biggest class scores), with its own interval.

   Classes with fewer than 3 labelled rows are left out of the probes (noted); the probes are
   skipped, with the reason, when fewer than 20 rows or fewer than 2 classes remain. Above
   3000 rows the probes train on a stratified, seeded subsample (every class keeps at least 5
   rows or all it has), which keeps a 10k-row data set to a few seconds; `n` is the rows used.

**Rule for a flag.** With `lift = (accuracy - baseline) / (1 - baseline)` (the share of the
majority-guess errors the probe removes), a probe is *well above chance* when BOTH

- `ci_low >= baseline + 0.05` (the whole interval clears chance by a margin), and
- `lift >= 0.25` (the accuracy is meaningfully high, not just significantly above chance).

Then it raises `metadata_shortcut` or `border_pixels_shortcut` (data-set wide, `class_name`
None, `score` = lift) with this severity:

| lift          | n >= 50 | n < 50 (interval wide) |
|---------------|---------|------------------------|
| >= 0.80       | high    | medium                 |
| 0.50 - 0.80   | medium  | low                    |
| 0.25 - 0.50   | low     | low                    |

**Second route: one strong property.** With many classes a property can split them into groups
(5 classes all PNG, 5 all JPEG) and still add little accuracy (lift 0.11 for 10 balanced
classes), yet a model can use it. So a property of the probe's group (file properties, or
border statistics) with strength >= 0.5 and p <= 0.01 (below) also raises the flag when
n >= 20: severity medium at strength >= 0.8, low below. When both routes fire the higher
severity wins; `score` is the lift when the probe fired, else the property's strength.

The message names, in plain words, the properties that carry the shortcut: those whose
association has p <= 0.01 (or the smallest p-value the permutations allow) and strength >= 0.2
(at most 3, strongest first), each with its per-class picture ("format: PNG in 100% of class
pokemon, JPEG in 100% of class digimon"); when no single property passes, the probe's most
important features are named instead.

**Samples.** `Flag.evidence["sample_rows"]` lists row positions (into `props` / `labels`) of the
most telling samples: correctly predicted out of fold, highest probability of their true class
first. `Flag.samples` holds their `rel_path` when `props` has that column, else stays empty for
the caller to fill from the row positions.
"""

from __future__ import annotations

import functools
import itertools
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import norm
from sklearn.ensemble import RandomForestClassifier
from sklearn.model_selection import StratifiedKFold

from auditor.data.dicom import DICOM_CATEGORICAL_TAGS, DICOM_NUMERIC_TAGS, PROPERTY_PREFIX
from auditor.detect.categories import MISSING, OTHER, category_strings
from auditor.detect.flags import SEVERITY_RANK, Flag, Severity
from auditor.errors import UsageError

CATEGORICAL_PROPERTIES: tuple[str, ...] = (
    "format",
    "extension",
    "extension_mismatch",
    "mode",
    "bit_depth",
    "has_alpha",
    "chroma_subsampling",
    "has_exif",
    "exif_orientation",
    "n_frames",
    "border_dominant",
    *(PROPERTY_PREFIX + tag for tag in DICOM_CATEGORICAL_TAGS),
)
NUMERIC_PROPERTIES: tuple[str, ...] = (
    "width",
    "height",
    "aspect",
    "file_size",
    "jpeg_quality",
    "mean_alpha",
    "border_mean_r",
    "border_mean_g",
    "border_mean_b",
    "border_std",
    "border_uniform_frac",
    *(PROPERTY_PREFIX + tag for tag in DICOM_NUMERIC_TAGS),
)
#: Fingerprint properties computed from pixels of the border band, not from the file itself.
BORDER_PROPERTIES: frozenset[str] = frozenset(
    {
        "border_dominant",
        "border_mean_r",
        "border_mean_g",
        "border_mean_b",
        "border_std",
        "border_uniform_frac",
    }
)

MIN_ROWS = 20
MIN_CLASS_ROWS = 3
MAX_FOLDS = 5
LARGE_N_FOLDS = 3  # above LARGE_N rows three folds keep enough rows per fold and halve the fits
LARGE_N = 1000
STRONG_ASSOCIATION = 0.5
VERY_STRONG_ASSOCIATION = 0.8
FOREST_TREES = 40
MAX_CLASSIFIER_ROWS = 3000
MIN_SUBSAMPLE_CLASS_ROWS = 5
CHANCE_MARGIN = 0.05
MIN_LIFT = 0.25
HIGH_LIFT = 0.8
MEDIUM_LIFT = 0.5
SMALL_N = 50
NAMING_ALPHA = 0.01
NAMING_STRENGTH = 0.2
MAX_NAMED_PROPERTIES = 3
MAX_LEVELS = 64
MAX_TABLE_VALUES = 20
MAX_NUMERIC_BINS = 10
MAX_MESSAGE_CLASSES = 4
MAX_FLAG_SAMPLES = 20
_COLOUR_LEVELS = 4  # 5 levels per channel: 0, 64, 128, 191, 255
_CELLS_PER_CHUNK = 1 << 22  # bounds the permutation tables held in memory at once
_CHANNELS = ("red", "green", "blue")


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
        return _plain(
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


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion successes / n, as (low, high) in [0, 1].

    Unlike the normal approximation it stays inside [0, 1] and is sensible at 0% and 100%.
    """
    if n <= 0:
        raise UsageError(f"wilson_interval needs n > 0 trials, got n={n}")
    if not 0 <= successes <= n:
        raise UsageError(f"wilson_interval needs 0 <= successes <= n, got {successes} of {n}")
    if not 0 < confidence < 1:
        raise UsageError(f"confidence must be in (0, 1), got {confidence}; use e.g. 0.95")
    z = float(norm.ppf(0.5 + confidence / 2))
    p = successes / n
    z2n = z * z / n
    centre = (p + z2n / 2) / (1 + z2n)
    half = z / (1 + z2n) * math.sqrt(p * (1 - p) / n + z2n / (4 * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def cramers_v(table: np.ndarray, bias_corrected: bool = True) -> np.ndarray:
    """Cramér's V of contingency tables.

    Args:
        table: counts [..., R, C] (any leading batch dims); empty rows/columns are ignored.
        bias_corrected: Bergsma's (2013) correction, which makes V of independent data ~0
            instead of growing with the number of cells.

    Returns:
        V [...] in [0, 1]; 0 where a table has fewer than 2 non-empty rows or columns.
    """
    t = np.asarray(table, dtype=np.float64)
    n = t.sum(axis=(-2, -1))
    rows = t.sum(axis=-1)
    cols = t.sum(axis=-2)
    expected = rows[..., :, None] * cols[..., None, :] / np.maximum(n, 1)[..., None, None]
    safe = np.where(expected > 0, expected, 1.0)
    chi2 = np.where(expected > 0, (t - expected) ** 2 / safe, 0.0).sum(axis=(-2, -1))
    phi2 = chi2 / np.maximum(n, 1)
    r = (rows > 0).sum(axis=-1).astype(np.float64)
    c = (cols > 0).sum(axis=-1).astype(np.float64)
    if bias_corrected:
        m = np.maximum(n - 1, 1)
        phi2 = np.maximum(0.0, phi2 - (r - 1) * (c - 1) / m)
        r = r - (r - 1) ** 2 / m
        c = c - (c - 1) ** 2 / m
    denom = np.minimum(r, c) - 1
    v = np.sqrt(phi2 / np.where(denom > 0, denom, 1.0))
    return np.where(denom > 0, np.minimum(v, 1.0), 0.0)


def mutual_information(table: np.ndarray) -> np.ndarray:
    """Plug-in mutual information, in bits, of contingency tables [..., R, C] -> [...]."""
    t = np.asarray(table, dtype=np.float64)
    n = np.maximum(t.sum(axis=(-2, -1)), 1)[..., None, None]
    p = t / n
    outer = p.sum(axis=-1, keepdims=True) * p.sum(axis=-2, keepdims=True)
    ratio = np.where(p > 0, p / np.where(outer > 0, outer, 1.0), 1.0)
    return np.maximum((p * np.log2(ratio)).sum(axis=(-2, -1)), 0.0)


def border_band_mask(height: int, width: int, border: float) -> np.ndarray:
    """Bool [height, width], True on the border band: round(border * side) pixels, >= 1."""
    bh, bw = _band_widths(height, width, border)
    if 2 * bh >= height or 2 * bw >= width:
        raise UsageError(
            f"a border of {border} leaves no centre in a {height}x{width} thumbnail; "
            "use a smaller border"
        )
    ys = np.arange(height)[:, None]
    xs = np.arange(width)[None, :]
    return (ys < bh) | (ys >= height - bh) | (xs < bw) | (xs >= width - bw)


def _band_widths(height: int, width: int, border: float) -> tuple[int, int]:
    """Band rows and columns per side: border * side rounded half up, at least 1 pixel."""
    if not 0 < border < 0.5:
        raise UsageError(f"border must be a fraction in (0, 0.5), got {border}; e.g. 0.1")
    return max(1, math.floor(border * height + 0.5)), max(1, math.floor(border * width + 0.5))


def run_probes(
    props: pd.DataFrame,
    labels: np.ndarray,
    classes: list[str],
    thumbs: np.ndarray | None = None,
    border: float = 0.1,
    seed: int = 0,
    n_permutations: int = 200,
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

    Returns:
        ProbeResult with associations, both probe summaries and the flags.
    """
    labels_arr = _validate(props, labels, classes, thumbs, border, n_permutations)
    settings = {"border": border, "seed": seed, "n_permutations": n_permutations}
    notes: list[str] = []
    keep = labels_arr >= 0
    if not keep.all():
        notes.append(f"{int((~keep).sum())} rows without a label were left out of the probes")
    rows = np.flatnonzero(keep)
    frame = props.iloc[rows].reset_index(drop=True)
    y_full = labels_arr[rows]
    thumbs_kept = None if thumbs is None else np.asarray(thumbs)[rows]
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

    columns, skipped_props = _encode_properties(frame)
    rng = np.random.default_rng(seed)
    perms = _permutations(y, n_permutations, rng)
    associations = [_association(name, col, y, names, perms) for name, col in columns.items()]
    associations.sort(key=lambda a: -a["strength"])

    meta_x, meta_groups = _property_features(len(frame), columns, border_group=False)
    if thumbs_kept is not None:
        border_x, border_groups = _border_pixel_features(thumbs_kept, border)
        size = f"{thumbs_kept.shape[2]}x{thumbs_kept.shape[3]}"
        border_source = f"border band pixels of the {size} thumbnails"
    else:
        border_x, border_groups = _property_features(len(frame), columns, border_group=True)
        border_source = "fingerprint border statistics (no thumbnails given)"

    meta_probe, meta_rows = _cross_validated_probe(meta_x, meta_groups, y, names, seed, notes)
    meta_probe["features_source"] = "file properties (border statistics excluded)"
    border_probe, border_rows = _cross_validated_probe(
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
            _border_colour_phrase(thumbs_kept, border, y, names)
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


def property_association(
    values: pd.Series,
    labels: np.ndarray,
    classes: list[str],
    name: str | None = None,
    n_permutations: int = 200,
    seed: int = 0,
) -> dict[str, Any] | None:
    """Association of one property with the label, as in `ProbeResult.associations`.

    Args:
        values: the property, one entry per sample [N].
        labels: int [N] class indices into `classes`; -1 rows are left out.
        classes: class names.
        name: the fingerprint name; it picks the kind (and colour rounding for
            `border_dominant`). Unknown or None: numeric dtypes (not bool) are numeric.
        n_permutations: label shuffles for the p-value (0: p_value None).
        seed: seeds the shuffles.

    Returns:
        {property, kind, statistic, value, strength, p_value, n_levels, by_class}, or None when
        the property is constant or fewer than 2 classes have samples.
    """
    series = pd.Series(values).reset_index(drop=True)
    labels_arr = _validate(series.to_frame(), labels, classes, None, 0.1, n_permutations)
    keep = labels_arr >= 0
    present, y = np.unique(labels_arr[keep], return_inverse=True)
    if len(present) < 2:
        return None
    series = series[keep].reset_index(drop=True)
    if name in CATEGORICAL_PROPERTIES:
        categorical = True
    elif name in NUMERIC_PROPERTIES:
        categorical = False
    else:
        categorical = pd.api.types.is_bool_dtype(series) or not pd.api.types.is_numeric_dtype(
            series
        )
    col = (
        _encode_categorical(series, colour=name == "border_dominant")
        if categorical
        else _encode_numeric(series)
    )
    if len(col.levels) < 2:
        return None
    perms = _permutations(y, n_permutations, np.random.default_rng(seed))
    return _association(name or str(series.name), col, y, [classes[i] for i in present], perms)


def _validate(
    props: pd.DataFrame,
    labels: np.ndarray,
    classes: list[str],
    thumbs: np.ndarray | None,
    border: float,
    n_permutations: int,
) -> np.ndarray:
    if not isinstance(props, pd.DataFrame):
        raise UsageError(f"props must be a pandas DataFrame of fingerprints, got {type(props)}")
    labels_arr = np.asarray(labels)
    if labels_arr.ndim != 1 or len(labels_arr) != len(props):
        raise UsageError(
            f"labels must be 1-D with one entry per props row ({len(props)}), "
            f"got shape {labels_arr.shape}"
        )
    if len(labels_arr) and not np.issubdtype(labels_arr.dtype, np.integer):
        raise UsageError(f"labels must be integer class indices, got dtype {labels_arr.dtype}")
    labels_arr = labels_arr.astype(np.int64)
    bad = labels_arr[(labels_arr < -1) | (labels_arr >= len(classes))]
    if len(bad):
        raise UsageError(
            f"label {int(bad[0])} is not an index into the {len(classes)} classes; "
            "use 0..len(classes)-1, or -1 for unknown"
        )
    if thumbs is not None:
        t = np.asarray(thumbs)
        if t.dtype != np.uint8 or t.ndim != 4 or t.shape[0] != len(props) or t.shape[1] != 3:
            raise UsageError(
                f"thumbs must be uint8 [N={len(props)}, 3, H, W], got {t.dtype} {t.shape}"
            )
    if not 0 < border < 0.5:
        raise UsageError(f"border must be a fraction in (0, 0.5), got {border}; e.g. 0.1")
    if n_permutations < 0:
        raise UsageError(f"n_permutations must be >= 0, got {n_permutations}")
    return labels_arr


@dataclass
class _Column:
    """One property encoded as integer levels for contingency tables."""

    kind: str  # "categorical" | "numeric"
    codes: np.ndarray  # int64 [N], level index per row
    levels: list[str]  # display name per level
    values: np.ndarray | None = None  # float [N] (numeric only), NaN = missing


def _encode_properties(frame: pd.DataFrame) -> tuple[dict[str, _Column], dict[str, str]]:
    columns: dict[str, _Column] = {}
    skipped: dict[str, str] = {}
    for name in CATEGORICAL_PROPERTIES + NUMERIC_PROPERTIES:
        if name not in frame:
            # DICOM tags exist only for DICOM files: their absence elsewhere is no news.
            if not name.startswith(PROPERTY_PREFIX):
                skipped[name] = "not in the fingerprints"
            continue
        if name in CATEGORICAL_PROPERTIES:
            col = _encode_categorical(frame[name], colour=name == "border_dominant")
        else:
            col = _encode_numeric(frame[name])
        if len(col.levels) < 2:
            only = col.levels[0] if col.levels else MISSING
            skipped[name] = f"constant: every file has {only}"
            continue
        columns[name] = col
    return columns, skipped


def _quantize_colour(hex_colour: str) -> str:
    text = hex_colour.strip().lstrip("#")
    try:
        rgb = [int(text[i : i + 2], 16) for i in (0, 2, 4)] if len(text) == 6 else None
    except ValueError:
        rgb = None
    if rgb is None:
        return MISSING
    step = 255 / _COLOUR_LEVELS
    return "#" + "".join(f"{round(round(v / step) * step):02x}" for v in rgb)


def _encode_categorical(series: pd.Series, colour: bool = False) -> _Column:
    strings = category_strings(series)
    if colour:
        strings = strings.map({v: _quantize_colour(v) for v in strings.unique()})
    counts = strings.value_counts(sort=True)
    if len(counts) > MAX_LEVELS:
        keep = set(counts.index[: MAX_LEVELS - 1])
        strings = strings.where(strings.isin(keep), OTHER)
        counts = strings.value_counts(sort=True)
    levels = [str(v) for v in counts.index]
    codes = pd.Categorical(strings, categories=levels).codes.astype(np.int64)
    return _Column("categorical", codes, levels)


def _encode_numeric(series: pd.Series) -> _Column:
    values = pd.to_numeric(series, errors="coerce").to_numpy(dtype=np.float64)
    values = np.where(np.isfinite(values), values, np.nan)
    finite = values[~np.isnan(values)]
    uniq = np.unique(finite)
    n_bins = min(MAX_NUMERIC_BINS, max(2, len(finite) // 10))
    if len(uniq) <= n_bins:
        edges = uniq[1:]
        levels = [f"{v:.6g}" for v in uniq]
    else:
        edges = np.unique(np.quantile(finite, np.linspace(0, 1, n_bins + 1)[1:-1]))
        bounds = np.concatenate([[uniq[0]], edges, [uniq[-1]]])
        levels = [f"[{lo:.6g}, {hi:.6g})" for lo, hi in itertools.pairwise(bounds)]
        levels[-1] = levels[-1][:-1] + "]"  # the top bin holds the maximum
    codes = np.searchsorted(edges, np.nan_to_num(values), side="right").astype(np.int64)
    if np.isnan(values).any():
        codes = np.where(np.isnan(values), len(levels), codes)
        levels.append(MISSING)
    # Drop empty levels so constant columns are seen as constant.
    used, codes = np.unique(codes, return_inverse=True)
    return _Column("numeric", codes.astype(np.int64), [levels[i] for i in used], values)


def _permutations(y: np.ndarray, n_permutations: int, rng: np.random.Generator) -> np.ndarray:
    """[P, N] shuffles of y, shared by every property so their p-values are comparable."""
    if n_permutations == 0:
        return np.empty((0, len(y)), dtype=np.int64)
    return rng.permuted(np.broadcast_to(y, (n_permutations, len(y))), axis=1)


def _tables(codes: np.ndarray, n_levels: int, ys: np.ndarray, n_classes: int) -> np.ndarray:
    """Contingency tables [P, R, K] of codes [N] against each label row of ys [P, N]."""
    cells = n_levels * n_classes
    flat = (np.arange(len(ys))[:, None] * cells + codes[None, :] * n_classes + ys).ravel()
    counts = np.bincount(flat, minlength=len(ys) * cells)
    return counts.reshape(len(ys), n_levels, n_classes)


def _association(
    name: str, col: _Column, y: np.ndarray, names: list[str], perms: np.ndarray
) -> dict[str, Any]:
    k = len(names)
    r = len(col.levels)
    observed = _tables(col.codes, r, y[None, :], k)[0]
    if col.kind == "categorical":
        statistic = "cramers_v"
        value = float(cramers_v(observed))
        # Permutations keep both margins, so uncorrected V ranks tables exactly as chi-square
        # does; the corrected V clips at 0 and its ties would push null p-values to 1.
        test_stat = functools.partial(cramers_v, bias_corrected=False)
    else:
        statistic, test_stat = "mutual_information", mutual_information
        value = float(mutual_information(observed))
    p_value = None
    if len(perms):
        observed_stat = float(test_stat(observed))
        chunk = max(1, _CELLS_PER_CHUNK // max(len(y), r * k))
        exceed = 0
        for start in range(0, len(perms), chunk):
            null = test_stat(_tables(col.codes, r, perms[start : start + chunk], k))
            exceed += int((null >= observed_stat - 1e-12).sum())
        p_value = (exceed + 1) / (len(perms) + 1)
    if col.kind == "categorical":
        strength = value
        by_class = _categorical_table(observed, col.levels, names)
    else:
        class_p = observed.sum(axis=0) / observed.sum()
        h_label = float(-(class_p[class_p > 0] * np.log2(class_p[class_p > 0])).sum())
        strength = min(1.0, value / h_label) if h_label > 0 else 0.0
        by_class = _numeric_summary(col.values, y, names)
    return {
        "property": name,
        "kind": col.kind,
        "statistic": statistic,
        "value": value,
        "strength": strength,
        "p_value": p_value,
        "n_levels": r,
        "by_class": by_class,
    }


def _categorical_table(observed: np.ndarray, levels: list[str], names: list[str]) -> dict[str, Any]:
    """Property-by-class counts and within-class fractions, top MAX_TABLE_VALUES values."""
    order = np.argsort(-observed.sum(axis=1), kind="stable")
    shown = order[:MAX_TABLE_VALUES]
    table = observed[shown]
    values = [levels[i] for i in shown]
    if len(order) > MAX_TABLE_VALUES:
        table = np.vstack([table, observed[order[MAX_TABLE_VALUES:]].sum(axis=0)])
        values.append(OTHER)
    class_n = np.maximum(observed.sum(axis=0), 1)
    return {
        "values": values,
        "counts": {
            c: {v: int(table[i, j]) for i, v in enumerate(values)} for j, c in enumerate(names)
        },
        "fractions": {
            c: {v: float(table[i, j] / class_n[j]) for i, v in enumerate(values)}
            for j, c in enumerate(names)
        },
    }


def _numeric_summary(values: np.ndarray, y: np.ndarray, names: list[str]) -> dict[str, Any]:
    """Per class: n, missing count, median, q25, q75 (NaN when the class has no value)."""
    frame = pd.DataFrame({"v": values, "y": y})
    grouped = frame.groupby("y")["v"]
    q = grouped.quantile([0.25, 0.5, 0.75]).unstack()
    counts = grouped.size()
    missing = counts - grouped.count()
    out: dict[str, Any] = {}
    for j, c in enumerate(names):
        out[c] = {
            "n": int(counts.get(j, 0)),
            "missing": int(missing.get(j, 0)),
            "median": float(q.loc[j, 0.5]) if j in q.index else math.nan,
            "q25": float(q.loc[j, 0.25]) if j in q.index else math.nan,
            "q75": float(q.loc[j, 0.75]) if j in q.index else math.nan,
        }
    return out


def _property_features(
    n_rows: int, columns: dict[str, _Column], border_group: bool
) -> tuple[np.ndarray, list[str]]:
    """Float [N, F] from the file properties (border_group False) or the border statistics
    (True): one-hot categoricals, raw numerics plus a missing indicator where any value is NaN;
    and each column's property name."""
    blocks: list[np.ndarray] = []
    groups: list[str] = []
    for name, col in columns.items():
        if (name in BORDER_PROPERTIES) != border_group:
            continue
        if col.kind == "categorical":
            blocks.append(np.eye(len(col.levels), dtype=np.float32)[col.codes])
            groups.extend([name] * len(col.levels))
        else:
            missing = np.isnan(col.values)
            # An explicit indicator (and the median in the gaps) works with every
            # scikit-learn version; forests only take NaN natively from 1.4 on.
            fill = np.median(col.values[~missing]) if (~missing).any() else 0.0
            blocks.append(np.where(missing, fill, col.values).astype(np.float32)[:, None])
            groups.append(name)
            if missing.any():
                blocks.append(missing.astype(np.float32)[:, None])
                groups.append(name)
    if not blocks:
        return np.empty((n_rows, 0), dtype=np.float32), []
    return np.hstack(blocks), groups


def _border_pixel_features(thumbs: np.ndarray, border: float) -> tuple[np.ndarray, list[str]]:
    """Band pixels flattened to float [N, 3 * band_pixels], grouped as "<side> edge, <channel>"."""
    _, _, h, w = thumbs.shape
    band = border_band_mask(h, w, border)
    bh, bw = _band_widths(h, w, border)
    ys, xs = np.nonzero(band)
    side = np.where(
        ys < bh, "top", np.where(ys >= h - bh, "bottom", np.where(xs < bw, "left", "right"))
    )
    x = thumbs[:, :, ys, xs].astype(np.float32).reshape(len(thumbs), -1)
    groups = [f"{s} edge, {ch}" for ch in _CHANNELS for s in side]
    return x, groups


def _subsample(y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Row positions: all rows, or a stratified subsample of about MAX_CLASSIFIER_ROWS."""
    if len(y) <= MAX_CLASSIFIER_ROWS:
        return np.arange(len(y))
    frac = MAX_CLASSIFIER_ROWS / len(y)
    picked = []
    for c in np.unique(y):
        members = np.flatnonzero(y == c)
        take = min(len(members), max(MIN_SUBSAMPLE_CLASS_ROWS, round(len(members) * frac)))
        picked.append(rng.choice(members, size=take, replace=False))
    return np.sort(np.concatenate(picked))


def _cross_validated_probe(
    x: np.ndarray,
    groups: list[str],
    y: np.ndarray,
    names: list[str],
    seed: int,
    notes: list[str],
) -> tuple[dict[str, Any], list[int]]:
    """Out-of-fold accuracy of a forest on x vs the majority baseline; most telling rows."""
    if x.shape[1] == 0:
        return {"status": "skipped", "reason": "no usable (non-constant) features"}, []
    counts = np.bincount(y, minlength=len(names))
    small = [names[c] for c in np.flatnonzero((counts > 0) & (counts < MIN_CLASS_ROWS))]
    usable = np.flatnonzero(counts[y] >= MIN_CLASS_ROWS)
    if small:
        note = (
            f"classes with fewer than {MIN_CLASS_ROWS} samples left out of the probes: "
            + ", ".join(small)
        )
        if note not in notes:
            notes.append(note)
    n_classes = int((counts >= MIN_CLASS_ROWS).sum())
    if len(usable) < MIN_ROWS or n_classes < 2:
        reason = (
            f"too little data for a cross-validated probe: {len(usable)} rows in "
            f"{n_classes} classes with >= {MIN_CLASS_ROWS} samples; need >= {MIN_ROWS} rows "
            "in >= 2 classes"
        )
        return {"status": "skipped", "reason": reason}, []

    rng = np.random.default_rng(seed)
    rows = usable[_subsample(y[usable], rng)]
    xs, ys = x[rows], y[rows]
    most = MAX_FOLDS if len(rows) <= LARGE_N else LARGE_N_FOLDS
    folds = int(min(most, np.bincount(ys)[np.unique(ys)].min()))
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    true_proba = np.zeros(len(rows))
    correct = np.zeros(len(rows), dtype=bool)
    importance = np.zeros(x.shape[1])
    for train, test in splitter.split(xs, ys):
        forest = RandomForestClassifier(
            n_estimators=FOREST_TREES,
            min_samples_leaf=3,
            max_features="sqrt",
            # Half-size bootstraps halve the fit time; the out-of-fold estimate stays unbiased.
            max_samples=0.5,
            # Thread start-up costs more than it saves on small data sets.
            n_jobs=-1 if len(rows) > LARGE_N else None,
            random_state=seed,
        )
        forest.fit(xs[train], ys[train])
        proba = forest.predict_proba(xs[test])
        col = np.searchsorted(forest.classes_, ys[test])
        true_proba[test] = proba[np.arange(len(test)), col]
        correct[test] = forest.classes_[proba.argmax(axis=1)] == ys[test]
        importance += forest.feature_importances_ / folds

    n = len(rows)
    hits = int(correct.sum())
    majority = int(np.bincount(ys).max())
    accuracy = hits / n
    baseline = majority / n
    ci_low, ci_high = wilson_interval(hits, n)
    lift = (accuracy - baseline) / (1 - baseline)
    well_above = ci_low >= baseline + CHANCE_MARGIN and lift >= MIN_LIFT
    by_group = pd.Series(importance, index=groups).groupby(level=0, sort=False).sum()
    top = by_group.sort_values(ascending=False, kind="stable").head(5)
    order = np.lexsort((-true_proba, ~correct))
    telling = [int(rows[i]) for i in order[:MAX_FLAG_SAMPLES] if correct[i]]
    summary = {
        "status": "ok",
        "accuracy": accuracy,
        "ci_low": ci_low,
        "ci_high": ci_high,
        "baseline": baseline,
        "baseline_ci": list(wilson_interval(majority, n)),
        "lift": lift,
        "well_above_chance": bool(well_above),
        "severity": probe_severity(lift, n) if well_above else None,
        "n": n,
        "folds": folds,
        "model": f"random forest ({FOREST_TREES} trees), stratified {folds}-fold, out-of-fold",
        "features": list(dict.fromkeys(groups)),
        "top_features": [{"feature": k, "importance": float(v)} for k, v in top.items()],
    }
    return summary, telling


def probe_severity(lift: float, n: int) -> Severity:
    """Severity of a well-above-chance probe: the module docstring's table (by lift, one level
    lower when n < SMALL_N rows)."""
    ladder: list[Severity] = ["low", "medium", "high"]
    level = 2 if lift >= HIGH_LIFT else 1 if lift >= MEDIUM_LIFT else 0
    if n < SMALL_N:
        level = max(0, level - 1)
    return ladder[level]


def _pct(fraction: float) -> str:
    """Whole percent, except that a near-but-not-exact 0 or 100 keeps a decimal."""
    text = f"{100 * fraction:.0f}"
    if (text == "100" and fraction < 1 - 1e-9) or (text == "0" and fraction > 1e-9):
        text = f"{100 * fraction:.1f}"
    return text + "%"


def _categorical_phrase(prop: str, fractions: dict[str, dict[str, float]]) -> str:
    """'prop: PNG in 100% of class a, JPEG in 90-100% of classes b, c and d'.

    Classes are grouped by their commonest value; the groups whose value is most
    over-represented in them (against the class-balanced mean) come first.
    """
    frame = pd.DataFrame(fractions)  # values x classes
    overall = frame.mean(axis=1)
    modal = frame.idxmax(axis=0)
    share = frame.max(axis=0)
    lift = pd.Series({c: share[c] - overall[modal[c]] for c in frame.columns})
    order = lift.sort_values(ascending=False, kind="stable").index
    groups: dict[str, list[str]] = {}
    for c in order:
        groups.setdefault(str(modal[c]), []).append(str(c))
    parts = []
    for value, members in list(groups.items())[:MAX_MESSAGE_CLASSES]:
        low, high = _pct(share[members].min()), _pct(share[members].max())
        pct = high if low == high else f"{low[:-1]}-{high}"
        parts.append(f"{value} in {pct} of {_class_list(members)}")
    if len(groups) > MAX_MESSAGE_CLASSES:
        parts.append(f"and {len(groups) - MAX_MESSAGE_CLASSES} more values")
    return f"{prop}: " + ", ".join(parts)


def _class_list(members: list[str]) -> str:
    if len(members) == 1:
        return f"class {members[0]}"
    shown = members[:MAX_MESSAGE_CLASSES]
    rest = len(members) - len(shown)
    tail = f" and {rest} more" if rest else f" and {shown.pop()}"
    return "classes " + ", ".join(shown) + tail


def _numeric_phrase(prop: str, by_class: dict[str, dict[str, float]]) -> str:
    """'prop: median 95 in class a, missing in 100% of class b', most distinctive first."""
    medians = pd.Series({c: s["median"] for c, s in by_class.items()})
    missing = pd.Series({c: s["missing"] / max(s["n"], 1) for c, s in by_class.items()})
    centre = medians.median()
    spread = (medians - centre).abs().fillna(0) + missing.sub(missing.mean()).abs()
    order = spread.sort_values(ascending=False, kind="stable").index
    parts = []
    for c in order[:MAX_MESSAGE_CLASSES]:
        if missing[c] >= 0.5:
            parts.append(f"missing in {_pct(missing[c])} of class {c}")
        else:
            parts.append(f"median {medians[c]:.4g} in class {c}")
    if len(order) > MAX_MESSAGE_CLASSES:
        parts.append(f"and {len(order) - MAX_MESSAGE_CLASSES} more classes")
    return f"{prop}: " + ", ".join(parts)


def _border_colour_phrase(
    thumbs: np.ndarray, border: float, y: np.ndarray, names: list[str]
) -> str:
    """Per class, the commonest border band colour (rounded as border_dominant) and its share."""
    band = border_band_mask(thumbs.shape[2], thumbs.shape[3], border)
    mean_rgb = thumbs[:, :, band].astype(np.float64).mean(axis=2)  # [N, 3]
    step = 255 / _COLOUR_LEVELS
    level = np.rint(mean_rgb / step).astype(np.int64)  # [N, 3] in 0..4
    code = (level[:, 0] * 5 + level[:, 1]) * 5 + level[:, 2]
    counts = np.bincount(y * 125 + code, minlength=len(names) * 125).reshape(len(names), 125)
    fractions: dict[str, dict[str, float]] = {}
    for j, c in enumerate(names):
        total = max(counts[j].sum(), 1)
        fractions[c] = {}
        for k in np.flatnonzero(counts[j]):
            rgb = (k // 25, (k // 5) % 5, k % 5)
            hex_colour = "#" + "".join(f"{round(v * step):02x}" for v in rgb)
            fractions[c][hex_colour] = counts[j, k] / total
    frame = pd.DataFrame(fractions).fillna(0.0)
    return _categorical_phrase("border band mean colour", frame.to_dict())


def association_severity(strength: float) -> Severity | None:
    """Severity of the one-strong-property route (module docstring); None below 0.5."""
    if strength >= VERY_STRONG_ASSOCIATION:
        return "medium"
    if strength >= STRONG_ASSOCIATION:
        return "low"
    return None


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
        message=_flag_message(kind, probe, carriers, colours),
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


def _flag_message(
    kind: str, probe: dict[str, Any], carriers: list[dict[str, Any]], extra: str | None
) -> str:
    if probe.get("severity") is not None:
        what = "File properties alone" if kind == "metadata_shortcut" else "Border pixels alone"
        head = (
            f"{what} predict the class: {_pct(probe['accuracy'])} cross-validated accuracy "
            f"(95% CI {_pct(probe['ci_low'])}-{_pct(probe['ci_high'])}) vs "
            f"{_pct(probe['baseline'])} for always guessing the biggest class."
        )
    else:
        what = "A file property" if kind == "metadata_shortcut" else "A border statistic"
        head = (
            f"{what} splits the classes ({carriers[0]['property']}: strength "
            f"{carriers[0]['strength']:.2f} of 1), though it alone predicts few labels."
        )
    phrases = [
        _categorical_phrase(a["property"], a["by_class"]["fractions"])
        if a["kind"] == "categorical"
        else _numeric_phrase(a["property"], a["by_class"])
        for a in carriers
    ]
    if extra is not None:
        phrases.insert(0, extra)
    if phrases:
        return head + " " + "; ".join(phrases) + "."
    top = ", ".join(t["feature"] for t in probe["top_features"][:3])
    return f"{head} No single property stands out; the probe relies most on: {top}."


def _plain(obj: Any) -> Any:
    """Recursively turn numpy scalars into Python numbers and non-finite floats into None."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_plain(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj
