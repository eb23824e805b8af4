"""The probes' cross-validated classifier (auditor.detect.probe_classifier): up to 100 classes
the random forest exactly as it was, the same on every run."""

from __future__ import annotations

import numpy as np

from auditor.detect import probe_classifier


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
    assert probe_classifier.forest(40, 3000, 3).n_jobs == -1
    assert jobs == [(None, 40)] * 3
    single = probe_classifier.forest
    monkeypatch.setattr(probe_classifier, "forest", lambda *a: single(*a).set_params(n_jobs=None))
    assert probe_classifier.cross_validated_probe(x, groups, labels, names, 3, []) == threaded
