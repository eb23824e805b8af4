"""Class-level attention flags from the per-sample measures: `background_attention`,
`border_attention`, `degenerate_maps`; and the per-class statistics of summary.json.

Input is the samples.parquet table (one row per file; see docs/architecture.md). Only rows with
status "ok" and a finite measure count. A sample's key is its `rel_path` when the table has one,
else its `path`.

Background attention tests each class's `fg_enrichment` (share of attention on the object /
share of the image the object covers; 1.0 = chance) against a per-sample reference that a map at
feature resolution can reach. Border attention tests `border_lift` (share on the border band /
share of the image the band covers; reference 1.0 = chance). Both use the same rule on the ratio
value / reference; "off" means below it for enrichment and above it for border lift:

| step | rule |
|---|---|
| reference (background) | min(1, MARGIN x fg_enrichment_ceiling), MARGIN = 0.8: chance, or |
| | 80% of the ceiling (the sample's own mask seen through the map grid, see |
| | auditor.metrics) when a map at that resolution cannot get far above chance |
| | (large objects: the ceiling is 1.03 at 93% of the image). No ceiling column: 1.0 |
| ratio | value / reference per sample |
| against the reference | Wilcoxon signed-rank of log(ratio) vs 0, one-sided towards "off": |
| | p_chance; it enters the audit's Benjamini-Hochberg family (auditor.detect.fdr) |
| chance effect | matched-pairs rank-biserial, +1 = every sample off: effect_chance |
| against the rest | Mann-Whitney U of the ratio, class vs all other classes, one-sided: p_rest |
| rest effect | rank-biserial, +1 = every sample more off than every other: effect_rest |
| raised when | n >= 8, median ratio off by a material amount (enrichment ratio <= 0.9: |
| | at least 10% short of the reference; border lift >= 1.25), effect_chance >= 0.3, |
| | and q <= FDR (0.05) in the audit's family |
| high | median ratio <= 0.5 (border lift >= 2.0) and effect_chance >= 0.8 |
| medium | median ratio <= 0.8 (border lift >= 1.5) and effect_chance >= 0.5 |
| low | any other raised flag |
| one level up | p_rest < 0.01 and effect_rest >= 0.5 (the class is worse than the others) |
| at most medium | n < 20 |

Part of a class (a shortcut on a fifth of a class moves neither the class median nor the test
above), per class and rule:

| step | rule |
|---|---|
| off sample | ratio at or beyond the rule's medium bound: enrichment <= 0.8 of its reference |
| | (border lift >= 1.5). On the clean sets of benchmarks/flag_calibration.py (2, 10, 100 |
| | classes) at most 2 (3) of 4000 samples are that far off, never 2 of one class |
| count test | k off samples of the class's n, against k_rest of the other classes' n_rest: |
| | one-sided hypergeometric (Fisher exact) |
| gates | the effect gates of auditor.detect.share_gates (k >= 3; share >= 3x the others' or |
| | 0.5 above it; at least 0.03 above it), and the class as a whole is not off (median |
| | ratio not past the floor: the whole-class test speaks for such a class) |
| one test | the class's two tests (whole, part) enter the Benjamini-Hochberg family as one: |
| | the smaller p of those whose gates pass (of both when neither does), times 2 |
| severity | share_gates: high at 0.5 above the others' share with >= 20 members, medium at |
| | 0.15 with >= 10, else low; at most medium when n < 20 |
| names | `evidence["scope"] = "part"`, `members` (the off samples, most off first; they lead |
| | the class's suspects), `share` (the score), `k`, `n`, `k_rest`, `n_rest` |

The reference, not the other classes, decides whether a flag is raised: when every class relies
on its background (the Pokemon/Digimon case) no class differs from the rest, yet all are off.
Coarse maps (7x7 upsampled) spill mass off a small object, but a map centred on the object still
puts more than its area's share on it (enrichment > 1), so it is not flagged; on a large object
blur alone costs a few percent of enrichment, well inside the margin. A class whose median
enrichment is 0.95 is not flagged however many samples it has: the shortfall is not material.

`score` is 1 - median ratio (border: median lift - 1), clipped to [0, 1]: how far below
(above) its reference the class sits.

Border sides: a border_attention flag names the sides of the band its class's attention is on
(`evidence["border_sides"]`: the sides whose band holds at least SIDE_SHARE = 0.5 of the mass of
the most attended side in the class's mean normalised map; in the members' mean map for a finding
on part of the class), so its intervention blanks that band only, not every side (an info bar
along the bottom is blanked, the object is not clipped).

Degenerate maps: a sample's map is degenerate when it is all zero, constant (no place stands
out, auditor.metrics) or not finite (column `map_degenerate`; without it, an ok row whose
`peak_x` is NaN). Flagged when more than 10 samples or more than 5% of the ok samples are
degenerate; severity high above 50%, medium above 20%, else low.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from scipy import stats

from auditor.data.regions import SIDES, side_bands
from auditor.detect.fdr import ClassTest, control_fdr, either_test
from auditor.detect.flags import Flag, Severity, severity_at
from auditor.detect.groups import class_rows
from auditor.detect.share_gates import passes, share_severity
from auditor.detect.stats import (
    PooledSample,
    group_vs_rest_mannwhitneyu,
    pooled_sample,
    rest_median,
    wilcoxon_signed_rank,
)
from auditor.errors import UsageError
from auditor.metrics import normalise_maps, upsample_maps

MIN_SAMPLES = 8
FULL_SEVERITY_SAMPLES = 20
ALPHA = 0.01
MIN_EFFECT = 0.3
#: The background reference is min(1, MARGIN x the sample's enrichment ceiling).
MARGIN = 0.8
MAX_SAMPLES_LISTED = 12
LOG_FLOOR = 1e-3  # enrichment 0 (no mass on the object) is logged as log(1e-3)
SIDE_SHARE = 0.5
SIDE_GRID = 64
DEGENERATE_COUNT = 10
DEGENERATE_SHARE = 0.05

SUMMARY_MEASURES: tuple[str, ...] = (
    "fg_energy", "fg_enrichment", "bg_energy", "border_energy", "border_lift", "wsol_iou",
)


@dataclass(frozen=True)
class _Rule:
    kind: str
    column: str
    direction: str  # "less": off = below chance; "greater": off = above chance
    high: float
    medium: float
    floor: float  # the median ratio must be at least this far off to raise a flag at all


# A consistent but tiny lift (1.05: the border band's share of an off-object map that simply
# covers the whole background) is not border reading; nor is enrichment 5% short of its
# reference (noise of the map, not a class looking elsewhere).
_BACKGROUND = _Rule("background_attention", "fg_enrichment", "less", high=0.5, medium=0.8,
                    floor=0.9)
_BORDER = _Rule("border_attention", "border_lift", "greater", high=2.0, medium=1.5, floor=1.25)


def sample_keys(samples: pd.DataFrame) -> pd.Series:
    """The key each sample is listed by in flags: `rel_path` when present, else `path`."""
    for column in ("rel_path", "path"):
        if column in samples.columns:
            return samples[column].astype(str)
    raise UsageError("samples table has neither a 'rel_path' nor a 'path' column; "
                     "pass the samples.parquet table")


def _require(samples: pd.DataFrame, columns: tuple[str, ...]) -> None:
    missing = [c for c in columns if c not in samples.columns]
    if missing:
        raise UsageError(f"samples table lacks column(s) {', '.join(missing)}; "
                         "pass the samples.parquet table written by the audit")


def _ok(samples: pd.DataFrame) -> pd.DataFrame:
    return samples[samples["status"] == "ok"]


def _float(value: Any) -> float | None:
    """JSON-ready float: None for NaN / inf."""
    value = float(value)
    return value if math.isfinite(value) else None


def _quartiles(values: np.ndarray) -> tuple[float, float, float]:
    if values.size == 0:
        return math.nan, math.nan, math.nan
    q1, median, q3 = np.quantile(values, [0.25, 0.5, 0.75])
    return float(median), float(q1), float(q3)


def _signed_rank_effect(logs: np.ndarray) -> float:
    """Matched-pairs rank-biserial of logs vs 0: (R- - R+) / (R- + R+); +1 = all negative."""
    nonzero = logs[logs != 0]
    if nonzero.size == 0:
        return 0.0
    ranks = stats.rankdata(np.abs(nonzero))
    negative = ranks[nonzero < 0].sum()
    positive = ranks[nonzero > 0].sum()
    return float((negative - positive) / (negative + positive))


def _chance_test(values: np.ndarray, direction: str) -> tuple[float, float, float]:
    """(statistic, p, effect) of log(values) vs 0; effect > 0 points towards `direction`."""
    logs = np.log(np.maximum(values, LOG_FLOOR))
    effect = _signed_rank_effect(logs)
    if direction == "greater":
        effect = -effect
    if not np.any(logs != 0):
        return math.nan, 1.0, 0.0
    statistic, p = wilcoxon_signed_rank(logs, direction)
    return statistic, p, effect


def _rest_test(pooled: PooledSample, positions: np.ndarray,
               direction: str) -> tuple[float, float, float]:
    """(U, p, effect) of the class (rows `positions` of the pooled ratios) vs the rest;
    effect = rank-biserial towards `direction`."""
    n_rest = pooled.values.size - positions.size
    if n_rest == 0:
        return math.nan, math.nan, math.nan
    u, p = group_vs_rest_mannwhitneyu(pooled, positions, direction)
    # U counts pairs where the class value is larger (ties half): P(class > rest).
    effect = 2.0 * u / (positions.size * n_rest) - 1.0
    if direction == "less":
        effect = -effect
    return u, p, effect


def _severity(rule: _Rule, ratio_median: float, n: int, effect_chance: float, p_rest: float,
              effect_rest: float) -> Severity:
    off = (lambda m, bound: m <= bound) if rule.direction == "less" else (
        lambda m, bound: m >= bound)
    if off(ratio_median, rule.high) and effect_chance >= 0.8:
        level = 2
    elif off(ratio_median, rule.medium) and effect_chance >= 0.5:
        level = 1
    else:
        level = 0
    if math.isfinite(p_rest) and p_rest < ALPHA and effect_rest >= 0.5:
        level += 1
    if n < FULL_SEVERITY_SAMPLES:
        level = min(level, 1)
    return severity_at(level)


def _reference(rule: _Rule, rows: pd.DataFrame) -> np.ndarray:
    """Per-sample reference of the rule's measure: 1.0 (chance), or for background attention
    min(1, MARGIN x fg_enrichment_ceiling) where the ceiling is known."""
    reference = np.ones(len(rows))
    if rule is _BACKGROUND and "fg_enrichment_ceiling" in rows.columns:
        ceiling = rows["fg_enrichment_ceiling"].to_numpy(dtype=float)
        reachable = np.isfinite(ceiling) & (ceiling > 0)
        reference = np.where(reachable, np.minimum(1.0, MARGIN * np.where(reachable, ceiling,
                                                                          1.0)), 1.0)
    return reference


def _class_test(rule: _Rule, finite: pd.DataFrame, pooled: PooledSample, keys: pd.Series,
                name: str, positions: np.ndarray) -> ClassTest | None:
    """The rule's test on class `name`, whose rows are `positions` of `finite` (the ok rows
    whose measure is finite; `pooled` their ratios to the reference, ranked once). None when
    the class has too few samples to test."""
    mine = finite.iloc[positions]
    values = mine[rule.column].to_numpy(dtype=float)
    ratios = pooled.values[positions]
    n = values.size
    if n < MIN_SAMPLES:
        return None
    median, q1, q3 = _quartiles(values)
    ratio_median = float(np.median(ratios))
    is_off = ratio_median <= rule.floor if rule.direction == "less" else (
        ratio_median >= rule.floor)
    statistic, p_chance, effect_chance = _chance_test(ratios, rule.direction)
    if not (is_off and effect_chance >= MIN_EFFECT):
        return ClassTest(rule.kind, name, p_chance, None)
    n_rest = pooled.values.size - n
    u, p_rest, effect_rest = _rest_test(pooled, positions, rule.direction)
    severity = _severity(rule, ratio_median, n, effect_chance, p_rest, effect_rest)
    score = 1.0 - ratio_median if rule.direction == "less" else ratio_median - 1.0

    correct = mine[mine["correct"].fillna(False).astype(bool)]
    correct_ratios = ratios[mine["correct"].fillna(False).astype(bool).to_numpy()]
    off = correct_ratios < 1.0 if rule.direction == "less" else correct_ratios > 1.0
    order = np.argsort(correct_ratios[off] * (1 if rule.direction == "less" else -1),
                       kind="stable")
    listed = keys.loc[correct.index[off][order][:MAX_SAMPLES_LISTED]].tolist()

    source = mine["foreground_source"].mode() if "foreground_source" in mine else pd.Series([])
    estimated = len(source) > 0 and source.iloc[0] == "estimate"
    reference = _reference(rule, mine)
    evidence: dict[str, Any] = {
        "rule": "Wilcoxon signed-rank of log(value / reference) vs 0 (one-sided; reference = "
                "chance, or for the background MARGIN x the enrichment ceiling when lower), "
                "Benjamini-Hochberg over the audit's class-level tests, Mann-Whitney U vs the "
                "other classes; see auditor.detect.attention",
        "measure": rule.column,
        "n": int(n),
        "median": _float(median),
        "q1": _float(q1),
        "q3": _float(q3),
        "chance": 1.0,
        "reference_median": _float(np.median(reference)),
        "ratio_median": _float(ratio_median),
        "wilcoxon_statistic": _float(statistic),
        "p_chance": _float(p_chance),
        "effect_chance": _float(effect_chance),
        "rest_median": _float(rest_median(pooled, positions)) if n_rest else None,
        "n_rest": int(n_rest),
        "mannwhitney_u": _float(u),
        "p_rest": _float(p_rest),
        "effect_rest": _float(effect_rest),
        "foreground_estimated": bool(estimated),
        "score_meaning": "how far the class sits from its reference (1 - median of enrichment / "
                         "reference, or median border lift - 1), clipped to [0, 1]",
    }
    if rule is _BACKGROUND:
        energy = mine["fg_energy"].to_numpy(dtype=float)
        area = np.divide(energy, values, out=np.full_like(energy, np.nan), where=values > 0)
        energy_median = float(np.median(energy))
        area_median = float(np.nanmedian(area)) if np.isfinite(area).any() else math.nan
        ceiling = (mine["fg_enrichment_ceiling"].to_numpy(dtype=float)
                   if "fg_enrichment_ceiling" in mine.columns else np.full(n, np.nan))
        evidence.update(fg_energy_median=_float(energy_median),
                        fg_area_median=_float(area_median), margin=MARGIN,
                        ceiling_median=_float(np.nanmedian(ceiling))
                        if np.isfinite(ceiling).any() else None)
        message = (f"class {name}: median {energy_median:.0%} of attention on the object, which "
                   f"covers {area_median:.0%} of the image (enrichment {median:.2f}, "
                   f"{ratio_median:.2f} of the reference {np.median(reference):.2f} a map at "
                   "this resolution can reach; chance = 1.0)")
        if estimated:
            message += "; the object outlines are estimated, not given"
    else:
        energy = mine["border_energy"].to_numpy(dtype=float)
        band = np.divide(energy, values, out=np.full_like(energy, np.nan), where=values > 0)
        energy_median = float(np.median(energy))
        band_share = float(np.nanmedian(band)) if np.isfinite(band).any() else math.nan
        evidence.update(border_energy_median=_float(energy_median),
                        band_area=_float(band_share))
        message = (f"class {name}: median {energy_median:.0%} of attention on the image border, "
                   f"which covers {band_share:.0%} of the image (lift {median:.2f}, "
                   "chance = 1.0)")
    flag = Flag(kind=rule.kind, severity=severity, class_name=name,
                score=float(np.clip(score, 0.0, 1.0)), message=message, evidence=evidence,
                samples=listed)
    return ClassTest(rule.kind, name, p_chance, flag)


def _part_p_values(off: np.ndarray, positions: list[np.ndarray]) -> np.ndarray:
    """float [C]: each class's one-sided hypergeometric p of its count of `off` rows (bool [N])
    against all rows' (positions: each class's rows), in one call."""
    k = np.array([int(off[rows].sum()) for rows in positions])
    n = np.array([rows.size for rows in positions])
    return np.where(k > 0, stats.hypergeom.sf(k - 1, off.size, int(off.sum()), n), 1.0)


def _part_test(rule: _Rule, finite: pd.DataFrame, pooled: PooledSample, off: np.ndarray,
               keys: pd.Series, name: str, positions: np.ndarray, p: float
               ) -> tuple[float, Flag | None]:
    """The rule's part-of-a-class test of class `name` (module table): its count of samples
    off by the rule's medium bound (`off`, bool per row of `finite`) against the other
    classes' rate, whose one-sided hypergeometric p is `p`; (p, flag or None when a gate
    fails)."""
    n, n_all = positions.size, off.size
    k, k_all = int(off[positions].sum()), int(off.sum())
    n_rest, k_rest = n_all - n, k_all - k
    share, base = k / n, k_rest / n_rest
    ratio_median = float(np.median(pooled.values[positions]))
    whole_off = ratio_median <= rule.floor if rule.direction == "less" else (
        ratio_median >= rule.floor)
    if not passes(k, share, base) or whole_off:
        return p, None
    members = positions[off[positions]]
    sign = 1 if rule.direction == "less" else -1
    members = members[np.argsort(sign * pooled.values[members], kind="stable")]
    listed = keys.loc[finite.index[members]].tolist()
    severity = share_severity(share - base, k)
    if n < FULL_SEVERITY_SAMPLES and severity == "high":
        severity = "medium"
    if rule is _BACKGROUND:
        what = (f"put their attention off the object (enrichment at most {rule.medium:.0%} of "
                "the reference a map at this resolution can reach)")
        whole = f"looks at its objects (median {ratio_median:.2f} of the reference)"
    else:
        what = f"put their attention on the image border (border lift at least {rule.medium})"
        whole = f"does not (median border lift {ratio_median:.2f})"
    message = (f"class {name}: {k} of {n} samples ({share:.0%}) {what}, against {base:.1%} of "
               f"the other classes' samples; the class as a whole {whole}")
    evidence: dict[str, Any] = {
        "rule": f"part of a class: count of samples whose {rule.column} (over its reference) "
                "is off by the rule's medium bound, one-sided hypergeometric (Fisher) vs the "
                "other classes, Benjamini-Hochberg over the audit's class-level tests; see "
                "auditor.detect.attention",
        "scope": "part",
        "measure": rule.column,
        "sample_bound": rule.medium,
        "n": int(n), "k": k, "share": share, "n_rest": int(n_rest), "k_rest": int(k_rest),
        "rest_share": base, "p_fisher": _float(p), "ratio_median": _float(ratio_median),
        "members": listed,
        "score_meaning": "share of the class whose maps are off by the rule's medium bound",
    }
    return p, Flag(kind=rule.kind, severity=severity, class_name=name, score=share,
                   message=message, evidence=evidence, samples=listed)


def _rule_tests(rule: _Rule, samples: pd.DataFrame, classes: list[str]) -> list[ClassTest]:
    """The rule's test of every class: the ok rows with a finite measure and their ratios are
    found and ranked once, each class's rows by one grouping (a scan or a ranking per class
    costs rows x classes). Each class is tested as a whole and on part of it (`_part_test`),
    one test per class (`either_test`)."""
    ok = _ok(samples)
    keys = sample_keys(samples)
    # Only the columns a test reads: taking rows of every column, per class, costs more than
    # the tests themselves.
    used = ["label", "correct", "fg_energy", "border_energy", "fg_enrichment_ceiling",
            "foreground_source", rule.column]
    finite = ok.loc[np.isfinite(ok[rule.column].to_numpy(dtype=float)),
                    [c for c in dict.fromkeys(used) if c in ok.columns]]
    pooled = pooled_sample(finite[rule.column].to_numpy(dtype=float) / _reference(rule, finite))
    positions = class_rows(finite["label"].to_numpy(), classes)
    tests = [_class_test(rule, finite, pooled, keys, name, positions[name])
             for name in classes]
    off = (pooled.values <= rule.medium if rule.direction == "less"
           else pooled.values >= rule.medium)
    part_p = _part_p_values(off, [positions[name] for name in classes])
    return [either_test(rule.kind, name, [(test.p_value, test.flag), _part_test(
                rule, finite, pooled, off, keys, name, positions[name], float(p))])
            if positions[name].size < off.size else test
            for name, test, p in zip(classes, tests, part_p, strict=True) if test is not None]


def background_attention_tests(samples: pd.DataFrame, classes: list[str]) -> list[ClassTest]:
    """The `background_attention` test of every class with enough samples (module rule), for
    the audit's Benjamini-Hochberg family (auditor.detect.fdr)."""
    _require(samples, ("label", "status", "correct", "fg_energy", "fg_enrichment"))
    return _rule_tests(_BACKGROUND, samples, classes)


def border_attention_tests(samples: pd.DataFrame, classes: list[str]) -> list[ClassTest]:
    """The `border_attention` test of every class with enough samples, for the family."""
    _require(samples, ("label", "status", "correct", "border_energy", "border_lift"))
    return _rule_tests(_BORDER, samples, classes)


def background_attention_flags(samples: pd.DataFrame, classes: list[str]) -> list[Flag]:
    """`background_attention` flags: classes whose attention sits off the object (module rule;
    this rule's tests alone form the FDR family)."""
    return control_fdr(background_attention_tests(samples, classes))


def border_attention_flags(samples: pd.DataFrame, classes: list[str]) -> list[Flag]:
    """`border_attention` flags: classes whose attention sits on the border band (this rule's
    tests alone form the FDR family)."""
    return control_fdr(border_attention_tests(samples, classes))


def border_sides(class_maps: np.ndarray, border: float) -> list[str]:
    """The sides of the border band a class's attention is on: those whose band holds at least
    SIDE_SHARE of the mass of the most attended side in the class's mean max-normalised map
    (class_maps float [n, h, w], upsampled to SIDE_GRID pixels a side)."""
    maps = torch.as_tensor(np.nan_to_num(np.asarray(class_maps, dtype=np.float32)))
    if maps.numel() == 0:
        return list(SIDES)
    mean = upsample_maps(normalise_maps(maps).mean(dim=0)[None], (SIDE_GRID, SIDE_GRID))[0]
    mass = {side: float(mean[side_bands(SIDE_GRID, SIDE_GRID, border, [side])].sum())
            for side in SIDES}
    top = max(mass.values())
    if not top > 0:
        return list(SIDES)
    return [side for side in SIDES if mass[side] >= SIDE_SHARE * top]


def annotate_border_sides(flags: list[Flag], samples: pd.DataFrame, maps: np.ndarray,
                          border: float) -> None:
    """Add `evidence["border_sides"]` (border_sides of the class's ok maps; of its members'
    for a finding on part of the class) to each border_attention flag, so its intervention
    blanks only the band where attention is. maps: float [N, h, w], one per ok row of
    samples in order."""
    flagged = [flag for flag in flags if flag.kind == "border_attention"]
    ok = _ok(samples)
    keys = sample_keys(samples).loc[ok.index].to_numpy()
    positions = class_rows(ok["label"].to_numpy(), [f.class_name for f in flagged])
    for flag in flagged:
        rows = positions[flag.class_name]
        if flag.evidence.get("scope") == "part":
            rows = rows[np.isin(keys[rows], flag.evidence.get("members", []))]
        flag.evidence["border_sides"] = border_sides(maps[rows], border)


def degenerate_mask(samples: pd.DataFrame) -> pd.Series:
    """Bool per row: an ok sample whose map is all zero, constant or non-finite."""
    ok = samples["status"] == "ok"
    if "map_degenerate" in samples.columns:
        return ok & samples["map_degenerate"].fillna(False).astype(bool)
    _require(samples, ("peak_x",))
    return ok & samples["peak_x"].isna()


def degenerate_maps_flags(samples: pd.DataFrame, classes: list[str]) -> list[Flag]:
    """A data-set-wide `degenerate_maps` flag when many maps are all zero, constant or
    non-finite."""
    _require(samples, ("label", "status"))
    degenerate = degenerate_mask(samples)
    n_ok = int((samples["status"] == "ok").sum())
    count = int(degenerate.sum())
    if n_ok == 0 or count == 0:
        return []
    share = count / n_ok
    if not (count > DEGENERATE_COUNT or share > DEGENERATE_SHARE):
        return []
    severity: Severity = "high" if share > 0.5 else "medium" if share > 0.2 else "low"
    counts = samples.loc[degenerate, "label"].value_counts()
    per_class = {name: int(counts.get(name, 0)) for name in classes}
    message = (f"{count} of {n_ok} maps ({share:.0%}) are all zero, constant or not finite: "
               "they point nowhere and their attention measures are undefined. Check the "
               "target layer (a layer after the last ReLU, or one the target class does not "
               "depend on, gives zero or constant maps) and the model's numerical stability")
    return [Flag(kind="degenerate_maps", severity=severity, class_name=None, score=share,
                 message=message,
                 evidence={"n_degenerate": count, "n_ok": n_ok, "share": share,
                           "per_class": per_class,
                           "rule": f"> {DEGENERATE_COUNT} samples or > "
                                   f"{DEGENERATE_SHARE:.0%} of ok samples",
                           "score_meaning": "share of ok samples with a degenerate map"},
                 samples=sample_keys(samples)[degenerate].tolist()[:MAX_SAMPLES_LISTED])]


def attention_flags(samples: pd.DataFrame, classes: list[str]) -> list[Flag]:
    """Every flag of this module: background and border flags (one FDR family of both rules'
    tests) and degenerate-map flags."""
    tests = background_attention_tests(samples, classes) + border_attention_tests(samples,
                                                                                  classes)
    return control_fdr(tests) + degenerate_maps_flags(samples, classes)


def class_statistics(samples: pd.DataFrame, classes: list[str]) -> dict[str, dict[str, Any]]:
    """Per-class statistics for summary.json `class_stats` (None where undefined).

    Keys per class: n, n_ok, accuracy, n_degenerate, `<measure>_median/_q1/_q3` for each of
    SUMMARY_MEASURES, pointing_hit_rate, wsol_iou_mean, wsol_iou_at_least_half (share of
    samples with a localisation IoU >= 0.5).
    """
    _require(samples, ("label", "status", "correct", *SUMMARY_MEASURES, "pointing_hit"))
    degenerate = degenerate_mask(samples)
    table = samples[["label", "status", "correct", *SUMMARY_MEASURES, "pointing_hit"]]
    positions = class_rows(table["label"].to_numpy(), classes)
    out: dict[str, dict[str, Any]] = {}
    for name in classes:
        rows = table.iloc[positions[name]]
        ok = rows[rows["status"] == "ok"]
        entry: dict[str, Any] = {
            "n": len(rows),
            "n_ok": len(ok),
            "accuracy": _float(ok["correct"].astype(float).mean()) if len(ok) else None,
            "n_degenerate": int(degenerate[rows.index].sum()),
        }
        for measure in SUMMARY_MEASURES:
            values = ok[measure].to_numpy(dtype=float)
            median, q1, q3 = _quartiles(values[np.isfinite(values)])
            entry[f"{measure}_median"] = _float(median)
            entry[f"{measure}_q1"] = _float(q1)
            entry[f"{measure}_q3"] = _float(q3)
        hits = ok["pointing_hit"].to_numpy(dtype=float)
        hits = hits[np.isfinite(hits)]
        iou = ok["wsol_iou"].to_numpy(dtype=float)
        iou = iou[np.isfinite(iou)]
        entry["pointing_hit_rate"] = _float(hits.mean()) if hits.size else None
        entry["wsol_iou_mean"] = _float(iou.mean()) if iou.size else None
        entry["wsol_iou_at_least_half"] = _float((iou >= 0.5).mean()) if iou.size else None
        out[name] = entry
    return out
