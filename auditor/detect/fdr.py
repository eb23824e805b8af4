"""One family of class-level tests per audit, controlled by Benjamini-Hochberg.

An audit runs several rules (background, border, fixed location ...) on every class: with 100
classes that is hundreds of tests, and a fixed per-test threshold raises flags on clean data by
chance alone. Every class-level test of every rule therefore enters one family: each rule
returns a `ClassTest` per test it ran (the p-value, and the flag it would raise, or None when
its effect-size gates already fail), and `control_fdr` keeps the flags whose Benjamini-Hochberg
adjusted p-value (q-value) is at most FDR.

| step | rule |
|---|---|
| family | every ClassTest of the audit, flag or not (a test that failed its effect gates still |
| | counts: leaving it out would make the correction too lenient) |
| q-value | q_(i) = min over j >= i of p_(j) * m / j, p sorted ascending, m tests (BH 1995) |
| raised | a test with a flag and q <= FDR (0.05) |

Under no effect at all (every null true) this bounds the chance of any false flag per audit by
FDR; with real effects it bounds the expected share of false flags among those raised.
Interventions form their own family (they test only the flags raised here).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from auditor.detect.flags import Flag

#: False discovery rate of the family of class-level tests of one audit.
FDR = 0.05


class ClassTest:
    """One test of one rule on one class: its p-value and the flag it would raise (None when
    its gates fail), given as the flag or as a function that builds it: built when first read,
    so a family of a thousand tests builds only the flags it raises."""

    def __init__(self, kind: str, class_name: str | None, p_value: float,
                 flag: Flag | Callable[[], Flag] | None) -> None:
        self.kind = kind
        self.class_name = class_name
        self.p_value = p_value
        self._flag = flag

    @property
    def raises(self) -> bool:
        """Whether the test has a flag to raise (its gates pass), without building it."""
        return self._flag is not None

    @property
    def flag(self) -> Flag | None:
        """The flag, built on first read."""
        if callable(self._flag):
            self._flag = self._flag()
        return self._flag


def bh_qvalues(p_values: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (q-values) of p float [m], same order, in [0, 1].

    NaN p-values count as 1.0 (a test that could not be run is still a test of the family).
    """
    p = np.nan_to_num(np.asarray(p_values, dtype=float), nan=1.0)
    m = p.size
    if m == 0:
        return p
    order = np.argsort(p, kind="stable")
    scaled = p[order] * m / np.arange(1, m + 1)
    adjusted = np.minimum.accumulate(scaled[::-1])[::-1]
    q = np.empty(m)
    q[order] = np.minimum(adjusted, 1.0)
    return q


def either_test(kind: str, class_name: str | None,
                searches: list[tuple[float, Flag | Callable[[], Flag] | None]]) -> ClassTest:
    """One test of a class from several searches of one rule (p-value, flag or None when its
    gates fail): the smallest p of those whose gates pass (of all when none does), times the
    number of searches (Bonferroni), with that search's flag (its evidence `p_value` set). A
    flag may be given as a function that builds it: only the chosen search's is called, when
    the test's flag is first read."""
    flagged = [search for search in searches if search[1] is not None]
    p, flag = min(flagged or searches, key=lambda search: search[0])
    p = min(1.0, p * len(searches))
    if callable(flag):
        return ClassTest(kind, class_name, p, _with_p_value(flag, p))
    if flag is not None:
        flag.evidence["p_value"] = p
    return ClassTest(kind, class_name, p, flag)


def _with_p_value(build: Callable[[], Flag], p: float) -> Callable[[], Flag]:
    """`build` with the test's p-value written into the flag's evidence."""
    def built() -> Flag:
        flag = build()
        flag.evidence["p_value"] = p
        return flag

    return built


def control_fdr(tests: list[ClassTest], fdr: float = FDR) -> list[Flag]:
    """The flags of `tests` whose q-value is at most `fdr`, each with its q-value, the family
    size and the rate recorded in evidence (`q_value`, `fdr`, `family_size`)."""
    q = bh_qvalues(np.array([t.p_value for t in tests], dtype=float))
    kept = []
    for test, value in zip(tests, q, strict=True):
        if not test.raises or value > fdr:
            continue
        flag = test.flag
        flag.evidence.update(q_value=float(value), fdr=fdr, family_size=len(tests))
        kept.append(flag)
    return kept
