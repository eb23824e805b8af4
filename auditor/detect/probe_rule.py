"""The rule of the model-free probes (`auditor.detect.probes`): when a probe raises a flag.

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

from auditor.detect.flags import Severity, severity_at

MIN_ROWS = 20
MIN_CLASS_ROWS = 3
STRONG_ASSOCIATION = 0.5
VERY_STRONG_ASSOCIATION = 0.8
CHANCE_MARGIN = 0.05
MIN_LIFT = 0.25
HIGH_LIFT = 0.8
MEDIUM_LIFT = 0.5
SMALL_N = 50
NAMING_ALPHA = 0.01
NAMING_STRENGTH = 0.2
MAX_NAMED_PROPERTIES = 3
MAX_FLAG_SAMPLES = 20


def probe_severity(lift: float, n: int) -> Severity:
    """Severity of a well-above-chance probe: the module docstring's table (by lift, one level
    lower when n < SMALL_N rows)."""
    level = 2 if lift >= HIGH_LIFT else 1 if lift >= MEDIUM_LIFT else 0
    return severity_at(level - 1 if n < SMALL_N else level)


def association_severity(strength: float) -> Severity | None:
    """Severity of the one-strong-property route (module docstring); None below 0.5."""
    if strength >= VERY_STRONG_ASSOCIATION:
        return "medium"
    if strength >= STRONG_ASSOCIATION:
        return "low"
    return None
