"""Effect gates and severity of a finding on part of a class: k of the class's n samples show
something, against a share `base` of the other classes' samples.

Shared by `fixed_location` (peaks in a region) and the part-of-a-class `background_attention`
test (maps off their objects), so both read one rule:

| step | rule |
|---|---|
| passes | k >= MIN_MEMBERS (3), share - base >= MIN_EXCESS (0.03), and share >= RATIO (3) x |
| | base or share - base >= LARGE_EXCESS (0.5): at any share of the class, so 5% of a |
| | class is found when the other classes almost never show it |
| high | excess (share - base) >= LARGE_EXCESS and k >= FULL_SEVERITY_SAMPLES (20) |
| medium | excess >= MEDIUM_EXCESS (0.15) and k >= MEDIUM_SEVERITY_SAMPLES (10) |
| low | any other raised finding |
"""

from __future__ import annotations

import numpy as np

from auditor.detect.flags import Severity

MIN_MEMBERS = 3
RATIO = 3.0
MIN_EXCESS = 0.03
LARGE_EXCESS = 0.5  # passes the ratio gate on its own (also the high-severity excess)
MEDIUM_EXCESS = 0.15
FULL_SEVERITY_SAMPLES = 20
MEDIUM_SEVERITY_SAMPLES = 10


def passes(k: np.ndarray | int, share: np.ndarray | float, base: np.ndarray | float
           ) -> np.ndarray | bool:
    """Whether k members at `share` of their class, against `base` among the other classes,
    pass the effect gates (module table); element-wise on arrays."""
    far_above = (share >= RATIO * base) | (share - base >= LARGE_EXCESS)
    return (k >= MIN_MEMBERS) & far_above & (share - base >= MIN_EXCESS)


def share_severity(excess: float, k: int) -> Severity:
    """Severity of a finding of k members whose share is `excess` above the others'."""
    if excess >= LARGE_EXCESS and k >= FULL_SEVERITY_SAMPLES:
        return "high"
    if excess >= MEDIUM_EXCESS and k >= MEDIUM_SEVERITY_SAMPLES:
        return "medium"
    return "low"
