"""One Benjamini-Hochberg family of class-level tests (auditor.detect.fdr), by hand."""

from __future__ import annotations

import numpy as np
import pytest

from auditor.detect.fdr import ClassTest, bh_qvalues, control_fdr
from auditor.detect.flags import Flag


def _flag(name: str) -> Flag:
    return Flag(kind="fixed_location", severity="low", class_name=name, score=0.1,
                message=name, evidence={})


def test_bh_qvalues_by_hand():
    # Sorted p 0.01, 0.03, 0.04, 0.5 (m = 4): p * m / rank = 0.04, 0.06, 0.0533, 0.5; the
    # running minimum from the right gives 0.04, 0.0533, 0.0533, 0.5. NaN counts as 1.
    q = bh_qvalues(np.array([0.01, 0.04, 0.03, 0.5, np.nan]))
    m = 5
    assert q == pytest.approx([0.01 * m, 0.04 * m / 3, 0.04 * m / 3, 0.5 * m / 4, 1.0])
    assert bh_qvalues(np.array([])).size == 0


def test_control_fdr_builds_and_raises_only_the_flags_it_keeps():
    built = []

    def builder(name):
        def build():
            built.append(name)
            return _flag(name)
        return build

    eager = _flag("d")
    tests = [ClassTest("k", "a", 0.001, builder("a")),   # q = 0.001 * 4 = 0.004: raised
             ClassTest("k", "b", 0.04, builder("b")),    # q = 0.04 * 4 / 3 = 0.053: not
             ClassTest("k", "c", 0.002, None),           # gates failed: in the family only
             ClassTest("k", "d", 0.9, eager)]
    kept = control_fdr(tests)
    assert [f.message for f in kept] == ["a"]
    assert built == ["a"]  # the flag q left out was never built
    evidence = kept[0].evidence
    assert evidence["q_value"] == pytest.approx(0.004)
    assert evidence["family_size"] == 4
    assert evidence["fdr"] == 0.05
    assert "q_value" not in eager.evidence
    assert not tests[2].raises
    assert tests[2].flag is None
