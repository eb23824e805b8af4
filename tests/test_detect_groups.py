"""Rows laid out by class once, and reductions of every group from that layout
(auditor.detect.groups): equal, to the bit, to numpy's call on each group alone."""

from __future__ import annotations

import numpy as np
import pytest

from auditor.detect.groups import (
    class_codes,
    class_rows,
    group_means,
    group_medians,
    group_quantiles,
    grouping,
)


def test_hand_derived_layout_and_reductions():
    # Rows 0..6 in groups 1, 0, 1, -, 1, 0, 1 (row 3 in none); group 2 is empty.
    codes = np.array([1, 0, 1, -1, 1, 0, 1])
    values = np.array([4.0, 10.0, 1.0, 99.0, 3.0, 20.0, 2.0])
    groups = grouping(codes, 3)
    assert groups.order.tolist() == [1, 5, 0, 2, 4, 6]
    assert groups.starts.tolist() == [0, 2, 6]
    assert groups.counts.tolist() == [2, 4, 0]
    assert groups.rows(1).tolist() == [0, 2, 4, 6]
    # Group 0: 10, 20; group 1: 4, 1, 3, 2 (sorted 1 2 3 4: quartiles at 1.75, 2.5, 3.25).
    assert group_medians(values, groups)[:2].tolist() == [15.0, 2.5]
    assert group_means(values, groups)[:2].tolist() == [15.0, 2.5]
    assert group_quantiles(values, groups, [0.25, 0.5, 0.75])[:, 1].tolist() == [1.75, 2.5,
                                                                                 3.25]
    assert np.isnan(group_medians(values, groups)[2])
    assert np.isnan(group_quantiles(values, groups, [0.5])[0, 2])


def test_class_codes_agree_with_class_rows():
    labels = np.array(["b", "a", "zz", "b", "c", "a", "b"], dtype=object)
    classes = ["a", "b", "c", "ghost"]
    codes = class_codes(labels, classes)
    assert codes.tolist() == [1, 0, -1, 1, 2, 0, 1]
    rows = class_rows(labels, classes)
    groups = grouping(codes, len(classes))
    for c, name in enumerate(classes):
        assert groups.rows(c).tolist() == rows[name].tolist()


@pytest.mark.parametrize("kind", ["uniform", "rounded", "wide"])
def test_group_reductions_equal_numpy_per_group(kind):
    rng = np.random.default_rng({"uniform": 0, "rounded": 1, "wide": 2}[kind])
    n_groups = 300
    # Sizes 1 .. 600 (numpy's pairwise summation changes at 8 and 128 values), many groups
    # of one size stacked together, rows of the groups interleaved.
    sizes = rng.choice([1, 2, 3, 7, 8, 9, 30, 127, 128, 129, 600], n_groups)
    codes = rng.permutation(np.repeat(np.arange(n_groups), sizes))
    values = {"uniform": rng.random(codes.size),
              "rounded": np.round(rng.normal(size=codes.size), 1),
              "wide": np.exp(rng.normal(size=codes.size) * 20)}[kind]
    groups = grouping(codes, n_groups + 1)
    q = [0.1, 0.25, 0.5, 0.75]
    quantiles = group_quantiles(values, groups, q)
    medians, means = group_medians(values, groups), group_means(values, groups)
    for g in range(n_groups):
        own = values[codes == g]
        assert quantiles[:, g].tolist() == np.quantile(own, q).tolist()
        assert medians[g] == np.median(own)
        assert means[g] == np.mean(own)
    assert np.isnan(means[n_groups])


@pytest.mark.parametrize("n_groups", [5, 40_000])  # 16-bit radix keys, and beyond them
def test_a_filtered_layout_is_the_layout_of_the_kept_rows(n_groups):
    rng = np.random.default_rng(n_groups)
    codes = rng.integers(-1, n_groups, 100_000)
    keep = rng.random(codes.size) < 0.6
    groups = grouping(codes, n_groups)
    assert groups.order.tolist() == np.flatnonzero(codes >= 0)[
        np.argsort(codes[codes >= 0], kind="stable")].tolist()
    expected = grouping(np.where(keep, codes, -1), n_groups)
    filtered = groups.within(keep)
    for field in ("order", "starts", "counts"):
        assert getattr(filtered, field).tolist() == getattr(expected, field).tolist()
