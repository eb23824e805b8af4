"""The probes' association machinery against plain references: the permutation tables by
chunks, the bounds that screen the permutation statistics, and the p-values they give, which
must equal those of computing every shuffle's statistic exactly."""

from __future__ import annotations

import functools
import math
import warnings

import numpy as np
import pandas as pd
import pytest

from auditor.detect.categories import MISSING, NONE, OTHER, category_strings
from auditor.detect.probe_associations import (
    MAX_TABLE_VALUES,
    NullScreen,
    _chunk_tables,
    association,
    categorical_table,
    numeric_summary,
    permutations,
)
from auditor.detect.probe_encoding import (
    MAX_LEVELS,
    Column,
    encode_categorical,
    encode_numeric,
    quantize_colours,
)
from auditor.detect.stats import cramers_v, mutual_information

EXACT = {"categorical": functools.partial(cramers_v, bias_corrected=False),
         "numeric": mutual_information}


def reference_tables(codes: np.ndarray, n_levels: int, ys: np.ndarray,
                     n_classes: int) -> np.ndarray:
    tables = np.zeros((len(ys), n_levels, n_classes), dtype=np.int64)
    for p, labels in enumerate(ys):
        np.add.at(tables[p], (codes, labels), 1)
    return tables


def random_case(rng: np.random.Generator, n: int, k: int, r: int,
                ) -> tuple[np.ndarray, np.ndarray]:
    """Labels and codes with every class and level used: independent, or tied to the label,
    or one dominant level."""
    y = rng.integers(0, k, n)
    codes = rng.integers(0, r, n)
    mode = rng.integers(0, 3)
    if mode == 1:
        codes = np.where(rng.random(n) < 0.7, y % r, codes)
    elif mode == 2:
        codes = np.where(rng.random(n) < 0.95, 0, codes)
    return np.unique(y, return_inverse=True)[1], np.unique(codes, return_inverse=True)[1]


@pytest.mark.parametrize("dominant", [0.0, 0.5, 0.999, 1.0])
@pytest.mark.parametrize("chunk", [1, 3, 7, 40])
def test_chunk_tables_count_each_shuffle(chunk, dominant):
    rng = np.random.default_rng(chunk)
    y, codes = random_case(rng, 300, 9, 5)
    # One level holding a share of the rows (half exactly: counted from the others).
    codes = np.where(rng.permutation(300) < dominant * 300, 2, codes)
    perms = permutations(y, 17, rng)
    tables = np.concatenate(list(_chunk_tables(codes, 5, perms, 9, chunk)))
    np.testing.assert_array_equal(tables, reference_tables(codes, 5, perms, 9))
    assert [len(t) for t in _chunk_tables(codes, 5, perms, 9, chunk)] == [
        min(chunk, 17 - s) for s in range(0, 17, chunk)]


def test_null_screen_bounds_hold_the_exact_statistic_and_are_narrow():
    rng = np.random.default_rng(0)
    for trial in range(150):
        n = int(rng.choice([4, 30, 200, 3000]))
        y, codes = random_case(rng, n, int(rng.integers(2, 40)), int(rng.integers(2, 9)))
        k, r = y.max() + 1, codes.max() + 1
        if k < 2 or r < 2:
            continue
        observed = reference_tables(codes, r, y[None], k)[0]
        tables = reference_tables(codes, r, permutations(y, 30, rng), k)
        for kind, statistic in EXACT.items():
            low, high = NullScreen(observed, kind).bounds(tables)
            exact = statistic(tables)
            assert np.all(low <= exact), (trial, kind)
            assert np.all(exact <= high), (trial, kind)
            # Narrow (V through its square: sqrt widens them near 0), so a wrong formula
            # could not stay within them.
            width = high**2 - low**2 if kind == "categorical" else high - low
            assert np.all(width <= 1e-9 * np.maximum(exact, 1.0)), (trial, kind)


def test_null_screen_by_hand():
    # [[2, 1], [0, 1]]: margins (3, 1) x (2, 2), n = 4, expected [[1.5, 1.5], [0.5, 0.5]],
    # chi-square = 0.25/1.5 * 2 + 0.25/0.5 * 2 = 4/3, V = sqrt(4/3 / 4 / 1) = 1/sqrt(3).
    observed = np.array([[2, 1], [0, 1]])
    low, high = NullScreen(observed, "categorical").bounds(observed[None])
    assert low[0] == pytest.approx(1 / math.sqrt(3), abs=1e-12)
    assert high[0] == pytest.approx(1 / math.sqrt(3), abs=1e-12)
    # MI = sum p log2(p / (p_row p_col)) = 0.5 log2(0.5/0.375) + 0.25 log2(0.25/0.375)
    #      + 0.25 log2(0.25/0.125)
    mi = 0.5 * math.log2(0.5 / 0.375) + 0.25 * math.log2(0.25 / 0.375) + 0.25
    low, high = NullScreen(observed, "numeric").bounds(observed[None])
    assert low[0] == pytest.approx(mi, abs=1e-12)
    assert high[0] == pytest.approx(mi, abs=1e-12)


def reference_p_value(col: Column, y: np.ndarray, k: int, perms: np.ndarray) -> float:
    """The p-value with every shuffle's statistic computed exactly."""
    statistic = EXACT[col.kind]
    r = len(col.levels)
    observed = reference_tables(col.codes, r, y[None], k)[0]
    null = statistic(reference_tables(col.codes, r, perms, k))
    exceed = int((null >= float(statistic(observed)) - 1e-12).sum())
    return (exceed + 1) / (len(perms) + 1)


def test_association_p_values_equal_the_exact_permutation_test():
    rng = np.random.default_rng(5)
    checked = 0
    for trial in range(120):
        n = int(rng.choice([6, 25, 120, 2000]))
        y, codes = random_case(rng, n, int(rng.integers(2, 30)), int(rng.integers(2, 7)))
        k, r = y.max() + 1, codes.max() + 1
        if k < 2 or r < 2:
            continue
        perms = permutations(y, int(rng.choice([1, 19, 99])), rng)
        for kind in EXACT:
            col = Column(kind, codes, [str(i) for i in range(r)],
                         codes.astype(np.float64) if kind == "numeric" else None)
            found = association("p", col, y, [f"c{i}" for i in range(k)], perms)
            assert found["p_value"] == reference_p_value(col, y, k, perms), (trial, kind)
            checked += 1
    assert checked > 150


def reference_encode_categorical(series: pd.Series, colour: bool = False) -> Column:
    """encode_categorical as it was: every row spelled, counted by value_counts."""
    strings = category_strings(series)
    if colour:
        unique = np.asarray(strings.unique(), dtype=object)
        strings = strings.map(dict(zip(unique, quantize_colours(unique), strict=True)))
    counts = strings.value_counts(sort=True)
    if len(counts) > MAX_LEVELS:
        keep = set(counts.index[: MAX_LEVELS - 1])
        strings = strings.where(strings.isin(keep), OTHER)
        counts = strings.value_counts(sort=True)
    levels = [str(v) for v in counts.index]
    codes = pd.Categorical(strings, categories=levels).codes.astype(np.int64)
    return Column("categorical", codes, levels)


def hostile_columns(rng: np.random.Generator, n: int) -> dict[str, pd.Series]:
    """Columns of every dtype the fingerprints have and some they might: ties in the counts,
    more than MAX_LEVELS values, NaN/None/"", literal "(other)"/"(missing)", equal values
    spelled apart (1, 1.0, True; -0.0 and 0.0)."""
    words = np.array(["a", "b", "", "(other)", "(missing)", "é", "A", "b "], dtype=object)
    many = np.array([f"v{i}" for i in range(90)] + ["(other)"], dtype=object)
    mixed = np.array([1, 1.0, True, "1", None, np.nan, 0, False, 2.5], dtype=object)
    floats = np.array([0.0, 8.0, 16.0, np.nan, np.inf, 2.5, -1.0], dtype=np.float64)
    colours = np.array(["#ffffff", "#FEFEFE", " #102030", "#7f7f7f", "#808080", "zz", "",
                        "#+f0000", "#12345"], dtype=object)
    pick = lambda values, p=None: values[rng.choice(len(values), n, p=p)]  # noqa: E731
    hexes = np.array([f"#{v:06x}" for v in rng.integers(0, 2**24, 400)], dtype=object)
    return {
        "str": pd.Series(pick(words), dtype="str"),
        "str_many": pd.Series(pick(many), dtype="str"),
        "str_na": pd.Series(np.where(rng.random(n) < 0.2, None, pick(words)), dtype="str"),
        "object_str": pd.Series(pick(words), dtype=object),
        "object_many_ties": pd.Series(np.array([f"t{i}" for i in range(n)], dtype=object)),
        "object_bool": pd.Series(pick(np.array([True, False, None], dtype=object))),
        "object_mixed": pd.Series(pick(mixed)),
        "object_int": pd.Series(pick(np.array([3, 1, 2, None], dtype=object))),
        "object_empty": pd.Series([None] * n, dtype=object),
        "bool": pd.Series(rng.random(n) < 0.3),
        "int": pd.Series(rng.integers(-3, 70, n)),
        "float_integral": pd.Series(pick(np.array([8.0, 16.0, np.nan, 1.0]))),
        "float": pd.Series(pick(floats)),
        "float_signed_zero": pd.Series(pick(np.array([0.0, -0.0, 2.5, np.nan]))),
        "float_signed_zero_integral": pd.Series(pick(np.array([0.0, -0.0, 3.0]))),
        "nullable_int": pd.Series(pick(np.array([1, 2, None], dtype=object)), dtype="Int64"),
        "nullable_float": pd.Series(pick(np.array([1.0, 2.5, None], dtype=object)),
                                    dtype="Float64"),
        "nullable_bool": pd.Series(pick(np.array([True, False, None], dtype=object)),
                                   dtype="boolean"),
        "float32": pd.Series(pick(floats).astype(np.float32)),
        "colour": pd.Series(pick(colours), dtype="str"),
        "colour_many": pd.Series(pick(hexes), dtype="str"),
    }


@pytest.mark.parametrize("n", [0, 1, 7, 500, 4000])
def test_encode_categorical_equals_the_row_by_row_encoding(n):
    rng = np.random.default_rng(n)
    for name, series in hostile_columns(rng, n).items():
        colour = name.startswith("colour")
        got = encode_categorical(series, colour=colour)
        want = reference_encode_categorical(series, colour=colour)
        assert got.levels == want.levels, name
        np.testing.assert_array_equal(got.codes, want.codes, err_msg=name)
        assert got.codes.dtype == np.int64


def test_encode_categorical_by_hand():
    col = encode_categorical(pd.Series([True, 1, 1.0, None, True, "x", ""], dtype=object))
    # "True" twice, then the rest once each in order of first appearance.
    assert col.levels == ["True", "1", "1.0", MISSING, "x", NONE]
    assert list(col.codes) == [0, 1, 2, 3, 0, 4, 5]
    col = encode_categorical(pd.Series([-0.0, 0.0, 0.5, 0.0]))
    assert col.levels == ["0.0", "-0.0", "0.5"]
    assert list(col.codes) == [1, 0, 2, 0]


def test_encode_numeric_drops_empty_levels():
    col = encode_numeric(pd.Series([1.0, 1.0, 2.0, np.nan, 1.0, 2.0]))
    assert col.levels == ["1", "2", MISSING]
    assert list(col.codes) == [0, 0, 1, 2, 0, 1]
    # 60 zeros and 1..40: deciles 0 (x5), 0.4, 10.3, 20.2, 30.1; the bin [0, 0) below the
    # first edge holds nothing (the zeros sit on the edge and go right) and is dropped.
    col = encode_numeric(pd.Series(np.r_[np.zeros(60), np.arange(1.0, 41)]))
    assert col.levels == ["[0, 0.4)", "[0.4, 10.3)", "[10.3, 20.2)", "[20.2, 30.1)",
                          "[30.1, 40]"]
    assert list(np.bincount(col.codes)) == [60, 10, 10, 10, 10]


def reference_categorical_table(observed: np.ndarray, levels: list[str],
                                names: list[str]) -> dict:
    """categorical_table as it was: one numpy scalar per cell."""
    order = np.argsort(-observed.sum(axis=1), kind="stable")
    shown = order[:MAX_TABLE_VALUES]
    table = observed[shown]
    values = [levels[i] for i in shown]
    if len(order) > MAX_TABLE_VALUES:
        table = np.vstack([table, observed[order[MAX_TABLE_VALUES:]].sum(axis=0)])
        values.append(OTHER)
    class_n = np.maximum(observed.sum(axis=0), 1)
    return {
        "values": values,
        "counts": {c: {v: int(table[i, j]) for i, v in enumerate(values)}
                   for j, c in enumerate(names)},
        "fractions": {c: {v: float(table[i, j] / class_n[j]) for i, v in enumerate(values)}
                      for j, c in enumerate(names)},
    }


@pytest.mark.parametrize("r", [1, 2, 20, 21, 64])
def test_categorical_table_equals_the_cell_by_cell_table(r):
    rng = np.random.default_rng(r)
    observed = rng.integers(0, 5, (r, 30)) * (rng.random((r, 30)) < 0.6)
    observed[:, 3] = 0  # a class without rows
    levels = [f"v{i}" for i in range(r)]
    if r > 2:
        levels[1] = OTHER  # a literal "(other)" level beside the pooled one
    names = [f"c{j}" for j in range(30)]
    got = categorical_table(observed, levels, names)
    assert repr(got) == repr(reference_categorical_table(observed, levels, names))


def test_numeric_summary_by_hand():
    values = np.array([1.0, 2.0, 3.0, 4.0, np.nan, 10.0, np.nan])
    y = np.array([0, 0, 0, 0, 0, 2, 2])
    summary = numeric_summary(values, y, ["a", "b", "c"])
    assert summary["a"] == {"n": 5, "missing": 1, "median": 2.5, "q25": 1.75, "q75": 3.25}
    assert summary["c"] == {"n": 2, "missing": 1, "median": 10.0, "q25": 10.0, "q75": 10.0}
    assert summary["b"]["n"] == 0
    assert math.isnan(summary["b"]["median"])
    assert all(type(summary["a"][key]) is int for key in ("n", "missing"))


def test_integral_floats_print_as_ints_and_an_infinity_keeps_them_floats() -> None:
    assert category_strings(pd.Series([8.0, 2.0, np.nan])).tolist() == ["8", "2", MISSING]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # np.mod of an infinity warns
        spelled = category_strings(pd.Series([1.0, np.inf, -np.inf, np.nan])).tolist()
    assert spelled == ["1.0", "inf", "-inf", MISSING]
