"""The probes' cross-validated classifier (auditor.detect.probe_classifier): above 100 classes
trees grown on class digits, scored by their leaves' training rows (auditor.detect.leaf_votes),
out of fold; up to 100 classes the random forest exactly as it was, the same on every run."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.ensemble import ExtraTreesClassifier

from auditor.detect import probe_classifier
from auditor.detect.leaf_votes import class_digits, leaf_class_votes, vote_outcome


@pytest.mark.parametrize("n_classes", [2, 3, 101, 1000, 1024, 1025, 5000])
def test_class_digits_are_a_one_to_one_code_in_base_ceil_sqrt(n_classes):
    codes = np.arange(n_classes)
    digits = class_digits(codes, n_classes)
    base = int(np.ceil(np.sqrt(n_classes)))
    assert digits.shape == (n_classes, 2)
    assert digits.min() >= 0
    assert digits.max() < max(base, 2)
    np.testing.assert_array_equal(digits[:, 0] + max(base, 2) * digits[:, 1], codes)


def test_class_digits_by_hand():
    np.testing.assert_array_equal(class_digits(np.array([0, 31, 32, 999]), 1000),
                                  [[0, 0], [31, 0], [0, 1], [7, 31]])


def _many_class_data(n_classes, per_class, seed, signal):
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(n_classes), per_class)
    x = rng.normal(size=(len(labels), 6)).astype(np.float32)
    x[:, 0] += signal * labels
    return x, labels


def test_leaf_votes_are_predict_proba_times_trees_for_trees_grown_on_the_classes():
    x, labels = _many_class_data(150, 6, 0, signal=0.05)
    train, test = np.arange(len(labels)) % 3 != 0, np.arange(len(labels)) % 3 == 0
    model = ExtraTreesClassifier(n_estimators=7, min_samples_leaf=3, max_features="log2",
                                 random_state=0).fit(x[train], labels[train])
    votes = leaf_class_votes(model, x[train], labels[train], x[test], 150)
    proba = model.predict_proba(x[test])
    np.testing.assert_allclose(votes.toarray(), 7 * proba, rtol=0, atol=1e-12)
    correct, own = vote_outcome(votes, labels[test], 7)
    clear = np.sort(proba, axis=1)[:, -2] < proba.max(axis=1) - 1e-9
    np.testing.assert_array_equal(correct[clear], (proba.argmax(axis=1) == labels[test])[clear])
    np.testing.assert_allclose(own, proba[np.arange(test.sum()), labels[test]], atol=1e-12)


def test_leaf_votes_of_a_one_split_tree_by_hand():
    # One tree, one split: the left leaf holds classes 0, 0, 1, the right leaf 2, 2, 2 (the
    # random threshold falls somewhere in (2, 10), the only split that leaves >= 3 rows
    # on each side).
    x = np.array([[0.0], [1.0], [2.0], [10.0], [11.0], [12.0]], dtype=np.float32)
    codes = np.array([0, 0, 1, 2, 2, 2])
    model = ExtraTreesClassifier(n_estimators=1, min_samples_leaf=3, max_depth=1,
                                 random_state=3).fit(x, codes)
    threshold = model.estimators_[0].tree_.threshold[0]
    assert 2 <= threshold < 10
    votes = leaf_class_votes(model, x, codes, np.array([[-5.0], [50.0]], dtype=np.float32), 4)
    np.testing.assert_allclose(votes.toarray(), [[2 / 3, 1 / 3, 0, 0], [0, 0, 1, 0]])


def test_leaf_votes_count_each_tree_once_with_shares_summing_to_one():
    x, labels = _many_class_data(200, 5, 1, signal=0.0)
    model = ExtraTreesClassifier(n_estimators=9, min_samples_leaf=3, max_features="log2",
                                 random_state=1).fit(x[:800], class_digits(labels[:800], 200))
    votes = leaf_class_votes(model, x[:800], labels[:800], x[800:], 200)
    assert sp.issparse(votes)
    assert votes.shape == (200, 200)
    np.testing.assert_allclose(np.asarray(votes.sum(axis=1)).ravel(), 9)


def test_vote_outcome_takes_the_lowest_class_on_ties_and_the_share_of_the_own_class():
    votes = sp.csr_matrix(np.array([[0.0, 2.0, 2.0, 1.0],    # tie between 1 and 2: 1
                                    [0.0, 1.0, 2.0, 2.0],    # tie between 2 and 3: 2
                                    [4.0, 0.0, 0.0, 0.0]]))
    correct, own = vote_outcome(votes, np.array([2, 2, 3]), 4)
    np.testing.assert_array_equal(correct, [False, True, False])
    np.testing.assert_allclose(own, [0.5, 0.5, 0.0])



def test_vote_outcome_equals_the_dense_argmax_on_random_votes_with_ties():
    rng = np.random.default_rng(0)
    for _ in range(200):
        n, k = rng.integers(1, 40), rng.integers(2, 25)
        dense = rng.integers(0, 4, (n, k)) / rng.integers(1, 4)
        dense[np.arange(n), rng.integers(0, k, n)] += 0.5  # every row has a vote
        codes = rng.integers(0, k, n)
        correct, own = vote_outcome(sp.csr_matrix(dense), codes, 3)
        np.testing.assert_array_equal(correct, dense.argmax(axis=1) == codes)
        np.testing.assert_array_equal(own, dense[np.arange(n), codes] / 3)

def _probe(x, labels, seed=0):
    names = [f"c{c}" for c in range(int(labels.max()) + 1)]
    return probe_classifier.cross_validated_probe(x, ["f"] * x.shape[1], labels, names, seed,
                                                  [])[0]


def test_many_classes_a_perfectly_separable_feature_scores_nearly_everything():
    # Each of 300 classes its own value of one feature (far apart), five noise features.
    x, labels = _many_class_data(300, 6, 2, signal=100.0)
    found = _probe(x, labels)
    assert found["model"] == ("extremely randomized trees (10 trees, grown on class digits), "
                              "stratified 3-fold, out-of-fold")
    assert found["accuracy"] >= 0.97
    assert found["severity"] == "high"


def test_many_classes_every_feature_is_a_split_candidate_up_to_32_then_sqrt():
    # A single telling feature among a few must be a candidate at every split: with 5 rows a
    # class, a split on noise scatters a class's rows for good.
    candidates = [probe_classifier.forest(1000, 5000, f, 0).max_features
                  for f in (1, 6, 32, 100, 336, 1024, 2000)]
    assert candidates == [1, 6, 32, 32, 32, 32, 44]


def test_many_classes_pure_noise_stays_near_chance_out_of_fold():
    # Scored on their own training rows, trees with leaves of 3 would get about a third of
    # these rows right; out of fold they are at chance (1 in 300).
    x, labels = _many_class_data(300, 6, 3, signal=0.0)
    found = _probe(x, labels)
    assert found["accuracy"] < 0.012
    assert found["severity"] is None
    model = probe_classifier.forest(300, len(labels), 6, 0).fit(x, class_digits(labels, 300))
    in_sample = vote_outcome(leaf_class_votes(model, x, labels, x, 300), labels, 10)[0]
    assert in_sample.mean() > 0.2


def test_up_to_100_classes_the_random_forest_is_unchanged():
    # Golden values computed on main before the class-digit trees (828e375).
    rng = np.random.default_rng(7)
    labels = np.repeat(np.arange(4), 30)
    x = rng.normal(size=(120, 5)).astype(np.float32)
    x[:, 2] += labels
    found, telling = probe_classifier.cross_validated_probe(
        x, ["a", "a", "b", "c", "c"], labels, ["w", "x", "y", "z"], 3, [])
    assert found["model"] == "random forest (40 trees), stratified 5-fold, out-of-fold"
    assert found["accuracy"] == 0.475
    assert found["ci_low"] == 0.3878209113791835
    assert [(t["feature"], t["importance"]) for t in found["top_features"]] == [
        ("b", 0.48729563656338454), ("c", 0.26356058111647707), ("a", 0.24914378232013837)]
    assert telling == [15, 17, 110, 12, 10, 18, 2, 112, 5, 115, 4, 14, 111, 94, 104, 8, 117,
                       24, 118, 0]
    rng = np.random.default_rng(11)
    labels = np.repeat(np.arange(60), 20)
    x = rng.normal(size=(1200, 4)).astype(np.float32)
    x[:, 1] += labels % 7
    found, telling = probe_classifier.cross_validated_probe(
        x, ["a", "b", "b", "c"], labels, [f"k{i}" for i in range(60)], 5, [])
    assert (found["accuracy"], found["folds"]) == (0.04666666666666667, 3)
    assert [(t["feature"], t["importance"]) for t in found["top_features"]] == [
        ("b", 0.5439664974427887), ("a", 0.22860849975034045), ("c", 0.2274250028068709)]
    assert telling == [329, 264, 277, 542, 553, 124, 333, 261, 446, 260, 977, 546, 687, 123,
                       437, 543, 693, 827, 990, 762]



def test_the_random_forest_sums_its_trees_on_one_thread(monkeypatch):
    # Above LARGE_N rows the forest fits on threads. Threads that add the trees'
    # probabilities as they finish broke a near-tie differently in 5 of 12 runs of this set;
    # summed on one thread, in tree order, every run equals a run wholly on one thread.
    from sklearn.ensemble import RandomForestClassifier

    rng = np.random.default_rng(9)
    labels = rng.integers(0, 40, 4000)
    x = rng.normal(size=(4000, 7)).astype(np.float32)
    x[:, 0] += labels % 3
    groups = [f"g{i % 3}" for i in range(7)]
    names = [f"c{i}" for i in range(40)]
    jobs = []
    predict = RandomForestClassifier.predict_proba

    def recorded(self, x):
        jobs.append((self.n_jobs, len(self.estimators_)))
        return predict(self, x)

    monkeypatch.setattr(RandomForestClassifier, "predict_proba", recorded)
    threaded = probe_classifier.cross_validated_probe(x, groups, labels, names, 3, [])
    assert threaded[0]["model"].startswith("random forest")
    assert probe_classifier.forest(40, 3000, 7, 3).n_jobs == -1
    assert jobs == [(None, 40)] * 3
    single = probe_classifier.forest
    monkeypatch.setattr(probe_classifier, "forest", lambda *a: single(*a).set_params(n_jobs=None))
    assert probe_classifier.cross_validated_probe(x, groups, labels, names, 3, []) == threaded


@pytest.mark.parametrize(("n_classes", "n_rows"), [(3, 400), (40, 4000), (150, 3500), (1000, 6000)])
def test_features_of_the_kept_rows_only_give_the_same_probe(n_classes, n_rows):
    # A function of the row positions (probes.py builds the border pixels of the subsample
    # only) must see exactly the subsample's rows and give what the whole matrix gives.
    rng = np.random.default_rng(n_rows)
    labels = rng.integers(0, n_classes, n_rows)
    labels[labels == 1] = 2  # an absent class
    labels[:2] = 0  # class 0 kept; class 4 may have too few rows
    x = rng.integers(0, 4, (n_rows, 9)).astype(np.float32)
    x[:, 0] += labels % 5
    groups = [f"g{i % 4}" for i in range(9)]
    names = [f"c{i}" for i in range(n_classes)]
    asked = []

    def features(rows):
        asked.append(rows.copy())
        return x[rows]

    whole_notes, lazy_notes = [], []
    whole = probe_classifier.cross_validated_probe(x, groups, labels, names, 5, whole_notes)
    lazy = probe_classifier.cross_validated_probe(features, groups, labels, names, 5, lazy_notes)
    assert lazy == whole
    assert lazy_notes == whole_notes
    assert whole[0]["status"] == "ok"
    assert len(asked) == 1
    assert len(asked[0]) == whole[0]["n"]
    assert len(asked[0]) < n_rows or n_rows <= probe_classifier.MAX_CLASSIFIER_ROWS


def test_a_feature_function_without_features_is_skipped_unasked():
    def features(rows):
        raise AssertionError("no features to build")

    found, telling = probe_classifier.cross_validated_probe(
        features, [], np.repeat(np.arange(3), 20), ["a", "b", "c"], 0, [])
    assert found["status"] == "skipped"
    assert telling == []


@pytest.mark.parametrize("size", [(16, 16), (7, 12), (32, 5)])
def test_border_pixels_of_the_kept_rows_are_those_rows_of_the_whole_matrix(size):
    from auditor.detect.probe_encoding import border_pixel_features, border_pixel_groups
    from auditor.detect.probes import _border_pixels_of_rows

    rng = np.random.default_rng(size[0])
    thumbs = rng.integers(0, 256, (50, 3, *size), dtype=np.uint8)
    rows = np.sort(rng.choice(50, 17, replace=False))
    for border in (0.1, 0.25, 0.45):
        x, groups = border_pixel_features(thumbs, border)
        part = _border_pixels_of_rows(thumbs, border, rows)
        assert part.dtype == x.dtype
        assert part.flags.c_contiguous
        np.testing.assert_array_equal(part, x[rows])
        assert border_pixel_groups(*size, border) == groups
        assert len(groups) == x.shape[1]


def test_many_classes_leaves_are_looked_up_on_one_thread_and_equal_a_run_wholly_on_one(
        monkeypatch):
    rng = np.random.default_rng(4)
    labels = rng.integers(0, 150, 4000)
    x = rng.integers(0, 4, (4000, 40)).astype(np.float32)
    x[:, 0] += labels % 7
    groups = [f"g{i % 5}" for i in range(40)]
    names = [f"c{i}" for i in range(150)]
    jobs = []
    apply = ExtraTreesClassifier.apply

    def recorded(self, x):
        jobs.append(self.n_jobs)
        return apply(self, x)

    monkeypatch.setattr(ExtraTreesClassifier, "apply", recorded)
    threaded = probe_classifier.cross_validated_probe(x, groups, labels, names, 1, [])
    assert threaded[0]["model"].startswith("extremely randomized trees")
    assert probe_classifier.forest(150, 3000, 40, 1).n_jobs == -1
    assert jobs == [None] * 6  # training and scored rows, three folds
    single = probe_classifier.forest
    monkeypatch.setattr(probe_classifier, "forest", lambda *a: single(*a).set_params(n_jobs=None))
    assert probe_classifier.cross_validated_probe(x, groups, labels, names, 1, []) == threaded
