"""The probes' inputs and their encoding: which fingerprint properties are tested, how each
becomes integer codes (categoricals, quantile bins, rounded colours) or features for the
classifier, the thumbnails' border band, and the check of the inputs (see `auditor.detect.probes`).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import pandas as pd

from auditor.data.dicom import DICOM_CATEGORICAL_TAGS, DICOM_NUMERIC_TAGS, PROPERTY_PREFIX
from auditor.data.regions import border_band, border_width
from auditor.detect.categories import MISSING, OTHER, category_strings
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


MAX_LEVELS = 64


MAX_NUMERIC_BINS = 10


_COLOUR_LEVELS = 4  # 5 levels per channel: 0, 64, 128, 191, 255


CHANNELS = ("red", "green", "blue")


def border_band_mask(height: int, width: int, border: float) -> np.ndarray:
    """Bool [height, width], True on the border band (``auditor.data.regions``' rule); a
    UsageError when ``border`` is not in (0, 0.5) or leaves no centre."""
    if not 0 < border < 0.5:
        raise UsageError(f"border must be a fraction in (0, 0.5), got {border}; e.g. 0.1")
    if 2 * border_width(height, border) >= height or 2 * border_width(width, border) >= width:
        raise UsageError(
            f"a border of {border} leaves no centre in a {height}x{width} thumbnail; "
            "use a smaller border"
        )
    return border_band(height, width, border).numpy()


@dataclass
class Column:
    """One property encoded as integer levels for contingency tables."""

    kind: str  # "categorical" | "numeric"
    codes: np.ndarray  # int64 [N], level index per row
    levels: list[str]  # display name per level
    values: np.ndarray | None = None  # float [N] (numeric only), NaN = missing


def encode_properties(frame: pd.DataFrame) -> tuple[dict[str, Column], dict[str, str]]:
    columns: dict[str, Column] = {}
    skipped: dict[str, str] = {}
    for name in CATEGORICAL_PROPERTIES + NUMERIC_PROPERTIES:
        if name not in frame:
            # DICOM tags exist only for DICOM files: their absence elsewhere is no news.
            if not name.startswith(PROPERTY_PREFIX):
                skipped[name] = "not in the fingerprints"
            continue
        if name in CATEGORICAL_PROPERTIES:
            col = encode_categorical(frame[name], colour=name == "border_dominant")
        else:
            col = encode_numeric(frame[name])
        if len(col.levels) < 2:
            only = col.levels[0] if col.levels else MISSING
            skipped[name] = f"constant: every file has {only}"
            continue
        columns[name] = col
    return columns, skipped


def _colour_name(level: tuple[int, ...]) -> str:
    step = 255 / _COLOUR_LEVELS
    return "#" + "".join(f"{round(v * step):02x}" for v in level)


#: quantize_colour's text of each rounded colour, at (r * 5 + g) * 5 + b (levels 0..4).
_COLOUR_NAMES = np.array(
    [_colour_name(level) for level in itertools.product(range(_COLOUR_LEVELS + 1), repeat=3)],
    dtype=object)
#: Value of each ASCII hex digit, -1 for any other code point below 128.
_HEX_DIGITS = np.full(128, -1, dtype=np.int64)
for _digit in "0123456789abcdefABCDEF":
    _HEX_DIGITS[ord(_digit)] = int(_digit, 16)


def quantize_colour(hex_colour: str) -> str:
    """"#rrggbb" rounded to 5 levels per channel (module constants), MISSING when unreadable."""
    text = hex_colour.strip().lstrip("#")
    try:
        rgb = [int(text[i : i + 2], 16) for i in (0, 2, 4)] if len(text) == 6 else None
    except ValueError:
        rgb = None
    if rgb is None:
        return MISSING
    return _colour_name(tuple(round(v / (255 / _COLOUR_LEVELS)) for v in rgb))


def quantize_colours(texts: np.ndarray) -> np.ndarray:
    """quantize_colour of each text (object [N] -> object [N]): six ASCII hex digits (after
    the strip) at array speed, anything else (which int() may still read, e.g. "+f" or
    non-ASCII digits) through quantize_colour itself."""
    stripped = [t.strip().lstrip("#") for t in texts]
    out = np.empty(len(stripped), dtype=object)
    six = np.flatnonzero(np.fromiter(map(len, stripped), dtype=np.int64, count=len(stripped))
                         == 6)
    fast = np.zeros(len(stripped), dtype=bool)
    if len(six):
        chars = np.array([stripped[i] for i in six], dtype="<U6").view(np.uint32).reshape(-1, 6)
        digits = np.where(chars < 128, _HEX_DIGITS[np.minimum(chars, 127)], -1)
        hexed = (digits >= 0).all(axis=1)
        rgb = digits[hexed][:, 0::2] * 16 + digits[hexed][:, 1::2]
        # np.rint rounds half to even as round() does (no channel value lies on a half).
        level = np.rint(rgb / (255 / _COLOUR_LEVELS)).astype(np.int64)
        out[six[hexed]] = _COLOUR_NAMES[(level[:, 0] * 5 + level[:, 1]) * 5 + level[:, 2]]
        fast[six[hexed]] = True
    for i in np.flatnonzero(~fast):
        out[i] = quantize_colour(texts[i])
    return out


def encode_categorical(series: pd.Series, colour: bool = False) -> Column:
    """Levels are the display strings (category_strings; colours rounded with quantize_colour),
    most frequent first, ties in order of first appearance (value_counts' order); past
    MAX_LEVELS the rarest are pooled into OTHER. Counted from the distinct values: each is
    spelled once, not once per row."""
    row, texts = _display_codes(series)
    if colour:
        row, texts = _merge_equal(row, quantize_colours(texts))
    counts = np.bincount(row, minlength=len(texts))
    order = np.argsort(-counts, kind="stable")
    if len(order) > MAX_LEVELS:
        pooled = texts.copy()
        pooled[order[MAX_LEVELS - 1 :]] = OTHER
        row, texts = _merge_equal(row, pooled)
        order = np.argsort(-np.bincount(row, minlength=len(texts)), kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return Column("categorical", rank[row].astype(np.int64), [str(t) for t in texts[order]])


def _display_codes(series: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Each row's category_strings text as int64 codes [N] into the distinct texts (object,
    in order of first appearance). Where equal values always print alike, only the distinct
    values are spelled; otherwise (e.g. 1, 1.0 and True, equal but spelled apart, or -0.0
    beside 0.0) every row is."""
    if _equal_values_print_alike(series):
        codes, uniques = pd.factorize(series, use_na_sentinel=False)
        texts = category_strings(pd.Series(uniques, dtype=series.dtype))
        return _merge_equal(codes, texts.to_numpy(dtype=object))
    texts = category_strings(series).to_numpy(dtype=object)
    return _merge_equal(np.arange(len(texts)), texts)


def _equal_values_print_alike(series: pd.Series) -> bool:
    dtype = series.dtype
    if isinstance(dtype, pd.StringDtype) or dtype.kind in "biu":
        return True
    if dtype.kind == "f":
        values = series.to_numpy(dtype=np.float64, na_value=np.nan)
        return not np.any(np.signbit(values) & (values == 0))
    return pd.api.types.is_object_dtype(dtype) and pd.api.types.infer_dtype(
        series, skipna=True) in ("string", "boolean", "integer")


def _merge_equal(row: np.ndarray, texts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Codes into `texts` re-pointed at its distinct texts (object, first appearance kept)."""
    codes, unique = pd.factorize(texts)
    return codes[row], np.asarray(unique, dtype=object)


def encode_numeric(series: pd.Series) -> Column:
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
    used = np.bincount(codes, minlength=len(levels)) > 0
    codes = (np.cumsum(used) - 1)[codes]
    return Column("numeric", codes.astype(np.int64), [levels[i] for i in np.flatnonzero(used)],
                  values)


def property_features(
    n_rows: int, columns: dict[str, Column], border_group: bool
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


def band_pixels(thumbs: np.ndarray, band: np.ndarray) -> np.ndarray:
    """thumbs[:, :, band]: uint8 [N, 3, band pixels] in row-major order, taken with flat
    indices along one axis (a two-axis fancy index is ten times slower)."""
    n, channels, h, w = thumbs.shape
    return np.take(thumbs.reshape(n, channels, h * w), np.flatnonzero(band.ravel()), axis=2)


def border_pixel_features(thumbs: np.ndarray, border: float) -> tuple[np.ndarray, list[str]]:
    """Band pixels flattened to float [N, 3 * band_pixels], grouped as "<side> edge, <channel>"
    (border_pixel_groups)."""
    _, _, h, w = thumbs.shape
    x = band_pixels(thumbs, border_band_mask(h, w, border)).astype(np.float32)
    return x.reshape(len(thumbs), -1), border_pixel_groups(h, w, border)


def border_pixel_groups(h: int, w: int, border: float) -> list[str]:
    """The group of each of border_pixel_features' columns for H x W thumbnails."""
    band = border_band_mask(h, w, border)
    bh, bw = border_width(h, border), border_width(w, border)
    ys, xs = np.nonzero(band)
    side = np.where(
        ys < bh, "top", np.where(ys >= h - bh, "bottom", np.where(xs < bw, "left", "right"))
    )
    return [f"{s} edge, {ch}" for ch in CHANNELS for s in side]


def validate_inputs(
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
