"""Per-sample suspicion ("right for the wrong reasons") and per-sample flag codes.

Suspicion, in [0, 1], is the product of three factors:

| factor | value |
|---|---|
| off-object, foreground known | clip(1 - fg_enrichment, 0, 1): 0 at or above chance, 1 with |
| | no mass on the object |
| off-object, no foreground | clip((border_energy - a) / (1 - a), 0, 1) with a = band area = |
| | border_energy / border_lift: 0 at chance, 1 with all mass on the border |
| in a flagged region | 1.0 instead of the above for a member of a `fixed_location` finding (its |
| | map peaks in the flagged off-object region, `evidence["members"]`) or of a finding |
| | on part of a class (`background_attention` with `evidence["members"]`: its map |
| | sits off its object) |
| confidence | `confidence` (softmax probability of the prediction); missing counts as 1 |
| correctness | 1.0 for a correct prediction (or an unknown one), 0.5 for a wrong one |

so a correct, confident prediction whose map sits off the object scores near 1, and a correct
prediction made from a flagged region (confidence above 0.5) always outranks a misclassified
image (at most 0.5): the members of a finding lead their class's suspects. The score is NaN
where the off-object factor is undefined: error rows and degenerate (all-zero, constant) maps.

Flag codes per sample (comma-joined, in this order):

| code | when |
|---|---|
| off_object | fg_enrichment < 0.5 (under half the chance share on the object), or listed |
| | by a `background_attention` flag |
| border | border_lift > 2.0, or listed by a `border_attention` flag |
| <kind> | listed by a flag of any other kind, e.g. fixed_location, intervention_sensitive |
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from auditor.detect.attention import sample_keys
from auditor.detect.flags import FLAG_KINDS, Flag
from auditor.errors import UsageError

OFF_OBJECT_ENRICHMENT = 0.5
BORDER_LIFT = 2.0
WRONG_PREDICTION_WEIGHT = 0.5
_CODE_OF_KIND = {"background_attention": "off_object", "border_attention": "border"}


def _column(samples: pd.DataFrame, name: str) -> np.ndarray:
    if name not in samples.columns:
        return np.full(len(samples), np.nan)
    return pd.to_numeric(samples[name], errors="coerce").to_numpy(dtype=float)


def _members(flag: Flag) -> list[str]:
    """The samples a finding says carry what it found: a fixed_location finding's members
    (its samples where it lists no members), a part-of-a-class finding's members."""
    if flag.kind == "fixed_location":
        return list(flag.evidence.get("members", flag.samples))
    return list(flag.evidence.get("members", ()))


def suspicion_scores(samples: pd.DataFrame, flags: list[Flag] | None = None) -> pd.Series:
    """Per-sample suspicion in [0, 1] (module formula), NaN where undefined; samples' index.

    `flags`: the audit's flags; members of its fixed_location findings and of its findings on
    part of a class count as fully off the object."""
    if not {"fg_enrichment", "border_lift"} & set(samples.columns):
        raise UsageError("suspicion needs the fg_enrichment or border_energy/border_lift "
                         "columns of samples.parquet")
    enrichment = _column(samples, "fg_enrichment")
    border = _column(samples, "border_energy")
    lift = _column(samples, "border_lift")
    off_fg = np.clip(1.0 - enrichment, 0.0, 1.0)
    band = np.divide(border, lift, out=np.full_like(border, np.nan), where=lift > 0)
    off_border = np.clip(np.divide(border - band, 1.0 - band, out=np.full_like(border, np.nan),
                                   where=band < 1.0), 0.0, 1.0)
    off = np.where(np.isfinite(enrichment), off_fg, off_border)
    members = {key for flag in flags or () for key in _members(flag)}
    if members:
        off = np.where(sample_keys(samples).isin(members).to_numpy(), 1.0, off)

    confidence = np.clip(np.nan_to_num(_column(samples, "confidence"), nan=1.0), 0.0, 1.0)
    if "correct" in samples.columns:
        wrong = samples["correct"].astype("boolean").eq(False).fillna(False).to_numpy(bool)
    else:
        wrong = np.zeros(len(samples), dtype=bool)
    weight = np.where(wrong, WRONG_PREDICTION_WEIGHT, 1.0)
    score = off * confidence * weight
    if "status" in samples.columns:
        score = np.where(samples["status"].to_numpy() == "ok", score, np.nan)
    return pd.Series(score, index=samples.index, name="suspicion", dtype=float)


def sample_flag_codes(samples: pd.DataFrame, flags: list[Flag]) -> pd.Series:
    """Comma-joined flag codes per sample (module table), "" for none; indexed as `samples`."""
    keys = sample_keys(samples)
    order = ["off_object", "border"] + [k for k in FLAG_KINDS if k not in _CODE_OF_KIND]
    listed: dict[str, set[str]] = {}
    for flag in flags:
        listed.setdefault(_CODE_OF_KIND.get(flag.kind, flag.kind), set()).update(flag.samples)
    # One bit per code in `order`; the few distinct bit patterns are spelled once each.
    bits = np.zeros(len(samples), dtype=np.int64)
    for bit, code in enumerate(order):
        has = keys.isin(listed.get(code, ())).to_numpy(copy=True)
        if code == "off_object":
            has |= _column(samples, "fg_enrichment") < OFF_OBJECT_ENRICHMENT
        elif code == "border":
            has |= _column(samples, "border_lift") > BORDER_LIFT
        bits |= has.astype(np.int64) << bit
    patterns = np.unique(bits)
    spelled = {int(b): ",".join(c for i, c in enumerate(order) if b >> i & 1) for b in patterns}
    codes = pd.Series(bits, index=samples.index).map(spelled)
    return codes.astype(object).rename("flags")


def top_suspects(samples: pd.DataFrame, n: int) -> pd.DataFrame:
    """The rows of the gallery: the `n` readable samples of highest suspicion, most suspicious
    first, ties (and NaN, last) in index order. Empty when there is no suspicion column (a
    model-free probe run). The audit stores the suspects' costly maps for exactly these rows."""
    rows = np.flatnonzero((samples["status"] == "ok").to_numpy())
    if "suspicion" not in samples.columns:
        return samples.iloc[rows[:0]]
    # The order from the two columns alone (sorting the whole table moved every column of
    # every row: seconds at a million rows); lexsort is stable and puts NaN last.
    suspicion = samples["suspicion"].to_numpy(dtype=np.float64)[rows]
    order = np.lexsort((samples["index"].to_numpy()[rows], -suspicion))
    return samples.iloc[rows[order[:n]]]
