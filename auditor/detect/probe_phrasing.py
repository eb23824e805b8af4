"""The probe flags' messages in plain words: which properties carry the shortcut, per class.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from auditor.detect.probe_encoding import (
    _COLOUR_LEVELS,
    _COLOUR_NAMES,
    band_pixels,
    border_band_mask,
)

MAX_MESSAGE_CLASSES = 4


def _pct(fraction: float) -> str:
    """Whole percent, except that a near-but-not-exact 0 or 100 keeps a decimal."""
    text = f"{100 * fraction:.0f}"
    if (text == "100" and fraction < 1 - 1e-9) or (text == "0" and fraction > 1e-9):
        text = f"{100 * fraction:.1f}"
    return text + "%"


def categorical_phrase(prop: str, fractions: dict[str, dict[str, float]]) -> str:
    """'prop: PNG in 100% of class a, JPEG in 90-100% of classes b, c and d'.

    Classes are grouped by their commonest value; the groups whose value is most
    over-represented in them (against the class-balanced mean) come first.
    """
    frame = pd.DataFrame(fractions)  # values x classes
    overall = frame.mean(axis=1)
    modal = frame.idxmax(axis=0)
    share = frame.max(axis=0)
    # Whole columns, not a pandas look-up per class (a thousand classes cost 30 ms a phrase).
    lift = pd.Series(share.to_numpy() - overall.reindex(modal.to_numpy()).to_numpy(),
                     index=frame.columns)
    order = lift.sort_values(ascending=False, kind="stable").index
    modal_of = dict(zip(modal.index, modal.to_numpy(), strict=True))
    groups: dict[str, list[str]] = {}
    for c in order:
        groups.setdefault(str(modal_of[c]), []).append(str(c))
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


def numeric_phrase(prop: str, by_class: dict[str, dict[str, float]]) -> str:
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


def border_colour_phrase(
    thumbs: np.ndarray, border: float, y: np.ndarray, names: list[str]
) -> str:
    """Per class, the commonest border band colour (rounded as border_dominant) and its share."""
    band = border_band_mask(thumbs.shape[2], thumbs.shape[3], border)
    # Integer sums are exact, so sum / count is the float64 mean to the bit, without a float64
    # copy of every band pixel (270 MB at 100 000 thumbnails).
    mean_rgb = band_pixels(thumbs, band).sum(axis=2, dtype=np.int64) / int(band.sum())  # [N, 3]
    step = 255 / _COLOUR_LEVELS
    level = np.rint(mean_rgb / step).astype(np.int64)  # [N, 3] in 0..4
    code = (level[:, 0] * 5 + level[:, 1]) * 5 + level[:, 2]
    counts = np.bincount(y * 125 + code, minlength=len(names) * 125).reshape(len(names), 125)
    # Every colour some class has, 0 where a class has none of it, in order of first
    # appearance (class by class, colours in code order: the order a table of per-class
    # dicts gets); Python numbers by tolist, a class's row at a time.
    seen = np.flatnonzero(counts.sum(axis=0))
    seen = seen[np.lexsort((seen, (counts[:, seen] > 0).argmax(axis=0)))]
    shares = counts[:, seen] / np.maximum(counts.sum(axis=1), 1)[:, None]
    colours = _COLOUR_NAMES[seen].tolist()
    fractions = {c: dict(zip(colours, row, strict=True))
                 for c, row in zip(names, shares.tolist(), strict=True)}
    return categorical_phrase("border band mean colour", fractions)


def flag_message(
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
        categorical_phrase(a["property"], a["by_class"]["fractions"])
        if a["kind"] == "categorical"
        else numeric_phrase(a["property"], a["by_class"])
        for a in carriers
    ]
    if extra is not None:
        phrases.insert(0, extra)
    if phrases:
        return head + " " + "; ".join(phrases) + "."
    top = ", ".join(t["feature"] for t in probe["top_features"][:3])
    return f"{head} No single property stands out; the probe relies most on: {top}."
