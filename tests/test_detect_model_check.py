"""The model before the data: chance, permuted class orders, withheld flags."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from auditor.detect.flags import Flag
from auditor.detect.model_check import (
    chance_test,
    check_model,
    correct_count_null,
    withheld,
)


def table(labels, preds) -> pd.DataFrame:
    labels = np.asarray(labels)
    return pd.DataFrame({"rel_path": [f"s{i}.png" for i in range(len(labels))],
                         "status": "ok", "label_index": labels,
                         "pred_index": np.asarray(preds)})


def test_null_moments_of_the_correct_count_equal_every_permutation_enumerated():
    labels = np.array([0, 0, 1, 2, 2, 2])
    preds = np.array([0, 2, 2, 1, 0, 2])
    counts = [int((labels == preds[list(order)]).sum())
              for order in itertools.permutations(range(6))]
    mean, variance = correct_count_null(labels, preds)
    assert mean == pytest.approx(np.mean(counts))
    assert variance == pytest.approx(np.var(counts))


def test_chance_test_by_hand():
    # 100 labels and predictions, half 0 half 1 each, 60 right: mean 50; E[C^2] = 50 +
    # (2 * 50*49*50*49 + 5000^2 - 2 * 2500^2) / (100 * 99) -> variance 2500/99 = 25.25.
    labels = np.array([0] * 50 + [1] * 50)
    preds = np.array([0] * 30 + [1] * 20 + [1] * 30 + [0] * 20)
    assert correct_count_null(labels, preds) == pytest.approx((50.0, 2500 / 99))
    test = chance_test(labels, preds)
    sd = math.sqrt(2500 / 99)
    assert test.chance == 0.5
    assert test.p == pytest.approx(stats.norm.sf((60 - 0.5 - 50) / sd))
    assert test.upper_lift == pytest.approx((60 + stats.norm.isf(0.01) * sd - 50) / 50)


def test_reversed_two_class_order_is_labels_permuted_with_the_order_to_pass():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 200)
    preds = 1 - labels
    preds[:3] = labels[:3]  # 98.5% right once swapped
    check = check_model(table(labels, preds), ["pokemon", "digimon"], 2)
    assert [f.kind for f in check.flags] == ["labels_permuted"]
    flag = check.flags[0]
    assert flag.severity == "high"
    assert check.classes_order == ["digimon", "pokemon"]
    assert "--classes digimon,pokemon" in flag.message
    assert flag.score == pytest.approx(check.assigned_accuracy - check.accuracy)
    assert check.accuracy == pytest.approx(0.015)


def test_three_of_ten_classes_in_a_cycle_are_found_at_any_accuracy():
    classes = [f"c{k}" for k in range(10)]
    labels = np.repeat(np.arange(10), 30)
    outputs = np.arange(10)
    outputs[[0, 1, 2]] = [1, 2, 0]  # class 0 -> output 1, 1 -> 2, 2 -> 0
    check = check_model(table(labels, outputs[labels]), classes, 10)
    assert check.accuracy == pytest.approx(0.7)
    assert [f.kind for f in check.flags] == ["labels_permuted"]
    assert check.classes_order == ["c2", "c0", "c1", *classes[3:]]


def test_a_good_model_with_confusable_classes_raises_nothing():
    rng = np.random.default_rng(1)
    labels = np.repeat(np.arange(4), 100)
    preds = labels.copy()
    confused = rng.random(400) < 0.3  # 30% of classes 0 and 1 swapped: far from a better order
    swap = confused & (labels < 2)
    preds[swap] = 1 - labels[swap]
    check = check_model(table(labels, preds), ["a", "b", "c", "d"], 4)
    assert check.flags == []
    assert check.p_value < 1e-10


def test_random_predictions_over_many_classes_are_at_chance():
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 100, 5000)
    preds = rng.integers(0, 100, 5000)
    check = check_model(table(labels, preds), [f"c{k}" for k in range(100)], 100)
    assert [f.kind for f in check.flags] == ["model_at_chance"]
    assert check.chance == pytest.approx(0.01, abs=0.001)
    assert check.p_value > 0.01


def test_a_constant_prediction_of_the_majority_class_is_at_chance():
    labels = np.array([0] * 180 + [1] * 20)
    check = check_model(table(labels, np.zeros(200, dtype=int)), ["a", "b"], 2)
    assert check.accuracy == 0.9
    assert check.chance == pytest.approx(0.9)
    assert [f.kind for f in check.flags] == ["model_at_chance"]


def test_too_few_samples_to_tell_raise_nothing():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, 40)
    check = check_model(table(labels, rng.integers(0, 2, 40)), ["a", "b"], 2)
    assert check.flags == []  # at chance, but the upper bound on 40 samples is far above it
    assert check_model(table([0, 1] * 5, [1, 0] * 5), ["a", "b"], 2).flags == []


def test_outputs_beyond_the_classes_are_named_not_given_as_an_order():
    labels = np.repeat(np.arange(3), 20)
    check = check_model(table(labels, labels + 5), ["x", "y", "z"], 10)
    assert [f.kind for f in check.flags] == ["labels_permuted"]
    assert check.classes_order is None
    assert check.assignment == {"x": 5, "y": 6, "z": 7}
    assert "x -> output 5" in check.flags[0].message


def test_withheld_keeps_model_free_and_data_set_wide_flags():
    rng = np.random.default_rng(4)
    labels = rng.integers(0, 50, 3000)
    check = check_model(table(labels, rng.integers(0, 50, 3000)),
                        [f"c{k}" for k in range(50)], 50)
    made = [Flag(kind=kind, severity="high", class_name=cls, score=1.0, message="m")
            for kind, cls in (("background_attention", "c1"), ("fixed_location", "c2"),
                              ("intervention_sensitive", "c1"), ("metadata_shortcut", "c3"),
                              ("border_pixels_shortcut", None), ("degenerate_maps", None))]
    shown, held = withheld(made, check)
    assert [f.kind for f in shown] == ["model_at_chance", "metadata_shortcut",
                                       "border_pixels_shortcut", "degenerate_maps"]
    assert [f.kind for f in held] == ["background_attention", "fixed_location",
                                      "intervention_sensitive"]
    good = check_model(table(labels, labels), [f"c{k}" for k in range(50)], 50)
    assert withheld(made, good) == (made, [])


def test_random_predictions_on_few_samples_per_cell_are_never_called_permuted():
    # 10 classes, 50 samples: the best of all assignments beats the identity by chance alone
    # (about 0.3 against 0.1), and a test of it that ignores the choice gives small p.
    rng = np.random.default_rng(5)
    classes = [f"c{k}" for k in range(10)]
    raised = [f.kind for _ in range(60)
              for f in check_model(table(rng.integers(0, 10, 50), rng.integers(0, 10, 50)),
                                   classes, 10).flags]
    assert "labels_permuted" not in raised
