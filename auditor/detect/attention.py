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

import functools
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
from auditor.detect.groups import (
    Grouping,
    class_codes,
    class_rows,
    group_means,
    group_medians,
    group_quantiles,
    grouping,
)
from auditor.detect.share_gates import passes, share_severity
from auditor.detect.stats import (
    PooledSample,
    group_vs_rest_mannwhitneyu,
    pooled_sample,
    rest_median,
    wilcoxon_signed_ranks,
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


def _float(value: Any) -> float | None:
    """JSON-ready float: None for NaN / inf."""
    value = float(value)
    return value if math.isfinite(value) else None


def _chance_tests(ratios: np.ndarray, groups: Grouping, direction: str
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(statistic, p, effect) float [C] of log(ratios) vs 0 in every class (groups: the rows
    of each class) at once: the Wilcoxon signed-rank test one-sided towards `direction`, and
    the matched-pairs rank-biserial (R- - R+) / (R- + R+) (+1 = every log negative), its sign
    turned so that effect > 0 points towards `direction`. A class whose logs are all 0:
    (NaN, 1.0, 0.0)."""
    logs = np.log(np.maximum(ratios, LOG_FLOOR))
    tests = wilcoxon_signed_ranks(logs, groups, direction)
    ranked = tests.r_plus + tests.r_minus
    with np.errstate(divide="ignore", invalid="ignore"):
        effect = (tests.r_minus - tests.r_plus) / ranked
    if direction == "greater":
        effect = -effect
    return (tests.statistic, np.where(ranked > 0, tests.p, 1.0),
            np.where(ranked > 0, effect, 0.0))


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


def _reference(rule: _Rule, ceiling: np.ndarray) -> np.ndarray:
    """Per-sample reference of the rule's measure: 1.0 (chance), or for background attention
    min(1, MARGIN x fg_enrichment_ceiling) where the ceiling (float [M], NaN where not known)
    is known."""
    reference = np.ones(ceiling.size)
    if rule is _BACKGROUND:
        reachable = np.isfinite(ceiling) & (ceiling > 0)
        reference = np.where(reachable, np.minimum(1.0, MARGIN * np.where(reachable, ceiling,
                                                                          1.0)), 1.0)
    return reference


@dataclass(frozen=True)
class _RuleRows:
    """The ok rows whose measure is finite (a rule's rows) and what its flags read of them,
    as arrays over those rows, each class's rows laid out once."""

    table_keys: pd.Series  # [N]: the sample key of every row of the table
    rows: np.ndarray  # int64 [M]: the rule's rows' positions in the table
    values: np.ndarray  # float [M]: the rule's measure
    reference: np.ndarray  # float [M]: its per-sample reference (`_reference`)
    pooled: PooledSample  # values / reference, ranked once
    energy: np.ndarray  # float [M]: fg_energy (background) or border_energy (border)
    ceiling: np.ndarray  # float [M]: fg_enrichment_ceiling, NaN where not known
    correct: np.ndarray  # bool [M]: correctly classified (missing = no)
    groups: Grouping  # the rows of each class, in `classes` order
    estimated: np.ndarray  # bool [C]: the class's most frequent foreground_source is "estimate"

    @functools.cached_property
    def keys(self) -> np.ndarray:
        """object [M]: the sample key of each of the rule's rows, read when a flag lists
        samples (once: a look-up per flag costs more than all the keys)."""
        return self.table_keys.iloc[self.rows].to_numpy()


def _rule_rows(rule: _Rule, samples: pd.DataFrame, classes: list[str]) -> _RuleRows:
    """The rule's rows of the samples table, each column read once for every class."""
    column = samples[rule.column].to_numpy(dtype=float)
    # Column by column: taking the rows of the whole table copies every column.
    rows = np.flatnonzero((samples["status"] == "ok").to_numpy() & np.isfinite(column))
    values = column[rows]
    ceiling = (samples["fg_enrichment_ceiling"].to_numpy(dtype=float)[rows]
               if "fg_enrichment_ceiling" in samples.columns else np.full(rows.size, np.nan))
    reference = _reference(rule, ceiling)
    codes = class_codes(samples["label"], classes)[rows]
    energy = samples["fg_energy" if rule is _BACKGROUND else "border_energy"]
    return _RuleRows(
        table_keys=sample_keys(samples), rows=rows, values=values, reference=reference,
        pooled=pooled_sample(values / reference), energy=energy.to_numpy(dtype=float)[rows],
        ceiling=ceiling, correct=samples["correct"].fillna(False).astype(bool).to_numpy()[rows],
        groups=grouping(codes, len(classes)),
        estimated=(_mode_is(samples["foreground_source"].iloc[rows], "estimate", codes,
                            len(classes))
                   if "foreground_source" in samples.columns
                   else np.zeros(len(classes), dtype=bool)))


def _mode_is(column: pd.Series, value: str, codes: np.ndarray, n_classes: int) -> np.ndarray:
    """bool [C]: whether `value` is each class's mode of `column` (the most frequent non-null
    value, the first in sorted order among equally frequent ones, as pandas' mode orders
    them); codes int [N]: each row's class, -1 for none."""
    found, uniques = pd.factorize(column, sort=True)
    if value not in uniques:
        return np.zeros(n_classes, dtype=bool)
    kept = (codes >= 0) & (found >= 0)
    counts = np.bincount(codes[kept] * len(uniques) + found[kept],
                         minlength=n_classes * len(uniques)).reshape(n_classes, len(uniques))
    # argmax takes the first of equal counts: the first in sorted order.
    return (counts.max(axis=1) > 0) & (counts.argmax(axis=1) == uniques.get_loc(value))


def _whole_flag(rule: _Rule, rows: _RuleRows, name: str, c: int, quartiles: np.ndarray,
                ratio_median: float, chance: tuple[float, float, float]) -> Flag:
    """The rule's flag on class `name` (number c) as a whole (module table); quartiles float
    [3]: q1, median, q3 of its measure; chance: (statistic, p, effect) of `_chance_tests`."""
    positions = rows.groups.rows(c)
    pooled = rows.pooled
    values = rows.values[positions]
    ratios = pooled.values[positions]
    n = values.size
    q1, median, q3 = (float(v) for v in quartiles)
    statistic, p_chance, effect_chance = chance
    n_rest = pooled.values.size - n
    u, p_rest, effect_rest = _rest_test(pooled, positions, rule.direction)
    severity = _severity(rule, ratio_median, n, effect_chance, p_rest, effect_rest)
    score = 1.0 - ratio_median if rule.direction == "less" else ratio_median - 1.0

    correct = rows.correct[positions]
    correct_ratios = ratios[correct]
    off = correct_ratios < 1.0 if rule.direction == "less" else correct_ratios > 1.0
    order = np.argsort(correct_ratios[off] * (1 if rule.direction == "less" else -1),
                       kind="stable")
    listed = rows.keys[positions[correct][off][order][:MAX_SAMPLES_LISTED]].tolist()

    estimated = bool(rows.estimated[c])
    reference_median = float(np.median(rows.reference[positions]))
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
        "reference_median": _float(reference_median),
        "ratio_median": _float(ratio_median),
        "wilcoxon_statistic": _float(statistic),
        "p_chance": _float(p_chance),
        "effect_chance": _float(effect_chance),
        "rest_median": _float(rest_median(pooled, positions)) if n_rest else None,
        "n_rest": int(n_rest),
        "mannwhitney_u": _float(u),
        "p_rest": _float(p_rest),
        "effect_rest": _float(effect_rest),
        "foreground_estimated": estimated,
        "score_meaning": "how far the class sits from its reference (1 - median of enrichment / "
                         "reference, or median border lift - 1), clipped to [0, 1]",
    }
    energy = rows.energy[positions]
    energy_median = float(np.median(energy))
    # The object's (border band's) share of the image: energy / enrichment (lift).
    share = np.divide(energy, values, out=np.full_like(energy, np.nan), where=values > 0)
    share_median = float(np.nanmedian(share)) if np.isfinite(share).any() else math.nan
    if rule is _BACKGROUND:
        ceiling = rows.ceiling[positions]
        evidence.update(fg_energy_median=_float(energy_median),
                        fg_area_median=_float(share_median), margin=MARGIN,
                        ceiling_median=_float(np.nanmedian(ceiling))
                        if np.isfinite(ceiling).any() else None)
        message = (f"class {name}: median {energy_median:.0%} of attention on the object, which "
                   f"covers {share_median:.0%} of the image (enrichment {median:.2f}, "
                   f"{ratio_median:.2f} of the reference {reference_median:.2f} a map at "
                   "this resolution can reach; chance = 1.0)")
        if estimated:
            message += "; the object outlines are estimated, not given"
    else:
        evidence.update(border_energy_median=_float(energy_median),
                        band_area=_float(share_median))
        message = (f"class {name}: median {energy_median:.0%} of attention on the image border, "
                   f"which covers {share_median:.0%} of the image (lift {median:.2f}, "
                   "chance = 1.0)")
    return Flag(kind=rule.kind, severity=severity, class_name=name,
                score=float(np.clip(score, 0.0, 1.0)), message=message, evidence=evidence,
                samples=listed)


def _part_test(rule: _Rule, rows: _RuleRows, off: np.ndarray, k_all: int, name: str, c: int,
               k: int, ratio_median: float, p: float) -> tuple[float, Flag | None]:
    """The rule's part-of-a-class test of class `name` (number c; module table): its count k
    of samples off by the rule's medium bound (`off`, bool per rule row; k_all of them)
    against the other classes' rate, whose one-sided hypergeometric p is `p`; (p, flag or
    None when a gate fails). ratio_median: the class's median ratio to the reference."""
    positions = rows.groups.rows(c)
    n, n_all = positions.size, off.size
    n_rest, k_rest = n_all - n, k_all - k
    share, base = k / n, k_rest / n_rest
    whole_off = ratio_median <= rule.floor if rule.direction == "less" else (
        ratio_median >= rule.floor)
    if not passes(k, share, base) or whole_off:
        return p, None
    members = positions[off[positions]]
    sign = 1 if rule.direction == "less" else -1
    members = members[np.argsort(sign * rows.pooled.values[members], kind="stable")]
    listed = rows.keys[members].tolist()
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
    """The rule's test of every class with at least MIN_SAMPLES rows: the rule's rows are read,
    laid out by class and ranked once, and every class's statistics computed together (a
    look-up, scan or scipy call per class costs rows x classes, or a thousand calls); only a
    class that would be flagged builds its flag. Each class is tested as a whole and on part
    of it (`_part_test`), one test per class (`either_test`)."""
    rows = _rule_rows(rule, samples, classes)
    groups, ratios = rows.groups, rows.pooled.values
    n = groups.counts
    ratio_medians = group_medians(ratios, groups)
    statistic, p_chance, effect_chance = _chance_tests(ratios, groups, rule.direction)
    is_off = ratio_medians <= rule.floor if rule.direction == "less" else (
        ratio_medians >= rule.floor)
    flagged = is_off & (effect_chance >= MIN_EFFECT)
    quartiles = group_quantiles(rows.values, groups, [0.25, 0.5, 0.75], which=flagged)
    off = ratios <= rule.medium if rule.direction == "less" else ratios >= rule.medium
    k = np.bincount(np.repeat(np.arange(n.size), n), weights=off[groups.order],
                    minlength=n.size).astype(np.int64)
    k_all = int(off.sum())
    part_p = np.where(k > 0, stats.hypergeom.sf(k - 1, off.size, k_all, n), 1.0)
    tests = []
    for c in np.flatnonzero(n >= MIN_SAMPLES):
        name, median = classes[c], float(ratio_medians[c])
        flag = (_whole_flag(rule, rows, name, c, quartiles[:, c], median,
                            (statistic[c], p_chance[c], effect_chance[c]))
                if flagged[c] else None)
        test = ClassTest(rule.kind, name, float(p_chance[c]), flag)
        if n[c] < off.size:
            test = either_test(rule.kind, name, [(test.p_value, test.flag), _part_test(
                rule, rows, off, k_all, name, c, int(k[c]), median, float(part_p[c]))])
        tests.append(test)
    return tests


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


@functools.cache
def _side_bands(border: float) -> dict[str, torch.Tensor]:
    """The band of each of SIDES on the SIDE_GRID grid, bool [SIDE_GRID, SIDE_GRID] (built once
    per border width, not per flag and side)."""
    return {side: side_bands(SIDE_GRID, SIDE_GRID, border, [side]) for side in SIDES}


def border_sides(class_maps: np.ndarray, border: float) -> list[str]:
    """The sides of the border band a class's attention is on: those whose band holds at least
    SIDE_SHARE of the mass of the most attended side in the class's mean max-normalised map
    (class_maps float [n, h, w], upsampled to SIDE_GRID pixels a side)."""
    maps = torch.as_tensor(np.nan_to_num(np.asarray(class_maps, dtype=np.float32)))
    if maps.numel() == 0:
        return list(SIDES)
    mean = upsample_maps(normalise_maps(maps).mean(dim=0)[None], (SIDE_GRID, SIDE_GRID))[0]
    mass = {side: float(mean[band].sum()) for side, band in _side_bands(border).items()}
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
    if not flagged:  # nothing to read of the table
        return
    ok = np.flatnonzero((samples["status"] == "ok").to_numpy())
    keys = sample_keys(samples)
    positions = class_rows(samples["label"].to_numpy()[ok], [f.class_name for f in flagged])
    for flag in flagged:
        rows = positions[flag.class_name]
        if flag.evidence.get("scope") == "part":
            rows = rows[np.isin(keys.iloc[ok[rows]].to_numpy(),
                                flag.evidence.get("members", []))]
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
    # Every statistic of every class from one layout of the ok rows by class (group
    # reductions equal to numpy's per class), not a table look-up per class.
    codes = class_codes(samples["label"], classes)
    ok = (samples["status"] == "ok").to_numpy()
    ok_rows = grouping(np.where(ok, codes, -1), len(classes))
    n = np.bincount(codes[codes >= 0], minlength=len(classes))
    n_ok = ok_rows.counts
    degenerate = degenerate_mask(samples).to_numpy()
    n_degenerate = np.bincount(codes[degenerate & (codes >= 0)], minlength=len(classes))
    correct = samples["correct"].astype(float).to_numpy()  # the mean skips a missing value
    accuracy = group_means(correct, ok_rows.within(np.isfinite(correct)))
    quartiles = {}
    for measure in SUMMARY_MEASURES:
        values = samples[measure].to_numpy(dtype=float)
        quartiles[measure] = group_quantiles(values, ok_rows.within(np.isfinite(values)),
                                             [0.25, 0.5, 0.75])
    hits = samples["pointing_hit"].to_numpy(dtype=float)
    hit_rate = group_means(hits, ok_rows.within(np.isfinite(hits)))
    iou = samples["wsol_iou"].to_numpy(dtype=float)
    measured = ok_rows.within(np.isfinite(iou))
    iou_mean = group_means(iou, measured)
    iou_half = group_means((iou >= 0.5).astype(float), measured)
    out: dict[str, dict[str, Any]] = {}
    for c, name in enumerate(classes):
        entry: dict[str, Any] = {"n": int(n[c]), "n_ok": int(n_ok[c]),
                                 "accuracy": _float(accuracy[c]),
                                 "n_degenerate": int(n_degenerate[c])}
        for measure in SUMMARY_MEASURES:
            q1, median, q3 = quartiles[measure][:, c]
            entry[f"{measure}_median"] = _float(median)
            entry[f"{measure}_q1"] = _float(q1)
            entry[f"{measure}_q3"] = _float(q3)
        entry["pointing_hit_rate"] = _float(hit_rate[c])
        entry["wsol_iou_mean"] = _float(iou_mean[c])
        entry["wsol_iou_at_least_half"] = _float(iou_half[c])
        out[name] = entry
    return out
