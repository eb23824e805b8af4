"""The probe flags' phrases: by hand, and equal to the per-class computation they replaced
on many classes (ties in the lift, fractions whose means round, colours some classes lack)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from auditor.detect.probe_encoding import _COLOUR_LEVELS, band_pixels, border_band_mask
from auditor.detect.probe_phrasing import (
    MAX_MESSAGE_CLASSES,
    _class_list,
    _pct,
    border_colour_phrase,
    categorical_phrase,
)


def reference_categorical_phrase(prop: str, fractions: dict[str, dict[str, float]]) -> str:
    """categorical_phrase as it was: a pandas look-up per class."""
    frame = pd.DataFrame(fractions)
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


def reference_border_colour_phrase(thumbs: np.ndarray, border: float, y: np.ndarray,
                                   names: list[str]) -> str:
    """border_colour_phrase as it was: a dict per class, built colour by colour."""
    band = border_band_mask(thumbs.shape[2], thumbs.shape[3], border)
    mean_rgb = band_pixels(thumbs, band).sum(axis=2, dtype=np.int64) / int(band.sum())
    step = 255 / _COLOUR_LEVELS
    level = np.rint(mean_rgb / step).astype(np.int64)
    code = (level[:, 0] * 5 + level[:, 1]) * 5 + level[:, 2]
    counts = np.bincount(y * 125 + code, minlength=len(names) * 125).reshape(len(names), 125)
    fractions: dict[str, dict[str, float]] = {}
    for j, c in enumerate(names):
        total = max(counts[j].sum(), 1)
        fractions[c] = {}
        for k in np.flatnonzero(counts[j]):
            rgb = (k // 25, (k // 5) % 5, k % 5)
            fractions[c]["#" + "".join(f"{round(v * step):02x}" for v in rgb)] = (
                counts[j, k] / total)
    frame = pd.DataFrame(fractions).fillna(0.0)
    return reference_categorical_phrase("border band mean colour", frame.to_dict())


def test_categorical_phrase_by_hand():
    fractions = {"a": {"PNG": 1.0, "JPEG": 0.0}, "b": {"PNG": 0.1, "JPEG": 0.9},
                 "c": {"PNG": 0.0, "JPEG": 1.0}}
    # Mean PNG 11/30, JPEG 19/30: lift a 1 - 0.367 = 0.633 beats b, c (0.9 or 1 - 0.633).
    assert categorical_phrase("format", fractions) == (
        "format: PNG in 100% of class a, JPEG in 90-100% of classes c and b")


@pytest.mark.parametrize("seed", range(6))
def test_categorical_phrase_equals_the_per_class_phrase(seed):
    rng = np.random.default_rng(seed)
    k, v = int(rng.integers(1, 400)), int(rng.integers(1, 25))
    values = [f"v{i}" for i in range(v)]
    counts = rng.integers(0, 4, (k, v)) * (rng.random((k, v)) < 0.5)
    counts[:, 0] += seed % 2  # every class has a value, or some classes none
    if seed % 3 == 0:
        counts = np.repeat(counts[: max(1, k // 7)], 7, axis=0)[:k]  # tied lifts
    fractions = {f"c{j}": dict(zip(values, (counts[j] / max(counts[j].sum(), 1)).tolist(),
                                   strict=True)) for j in range(len(counts))}
    assert categorical_phrase("p", fractions) == reference_categorical_phrase("p", fractions)


@pytest.mark.parametrize("seed", range(5))
def test_border_colour_phrase_equals_the_per_class_phrase(seed):
    rng = np.random.default_rng(seed)
    k = int(rng.integers(2, 300))
    y = rng.integers(0, k, 3000)
    y[:k] = np.arange(k)
    # A few colours per class (some classes lack colours others have), plus noise.
    base = rng.integers(0, 256, (k, 3))
    thumbs = np.repeat(np.repeat(base[y][:, :, None, None], 16, axis=2), 16, axis=3)
    noisy = rng.random(len(y)) < 0.3
    thumbs[noisy] = rng.integers(0, 256, (noisy.sum(), 3, 16, 16))
    thumbs = thumbs.astype(np.uint8)
    names = [f"class {j}" for j in range(k)]
    assert border_colour_phrase(thumbs, 0.1, y, names) == reference_border_colour_phrase(
        thumbs, 0.1, y, names)
