"""The probes sized to the data: above PROBE_ROWS rows they run on a seeded stratified
subsample, whose estimates carry intervals that hold the full data's answer."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from auditor.detect import probe_run
from auditor.detect.groups import stratified_sample
from auditor.detect.probe_associations import strength_interval, table_strength
from auditor.detect.probes import run_probes
from auditor.detect.stats import cramers_v
from auditor.store import RunReader
from tests.helpers.run_fixtures import build_run


def test_stratified_sample_keeps_each_class_share_and_is_seeded():
    labels = np.repeat([0, 1, 2, 7], [6000, 3000, 900, 3])
    rows = stratified_sample(labels, 1000, np.random.default_rng(0))
    # round(count x 1000 / 9903) per class, at least 5 or all a class has.
    assert np.bincount(labels[rows]).tolist() == [606, 303, 91, 0, 0, 0, 0, 3]
    assert np.all(np.diff(rows) > 0)
    again = stratified_sample(labels, 1000, np.random.default_rng(0))
    other = stratified_sample(labels, 1000, np.random.default_rng(1))
    assert again.tolist() == rows.tolist()
    assert other.tolist() != rows.tolist()
    assert stratified_sample(labels[:50], 100, np.random.default_rng(0)).tolist() == list(range(50))


def test_table_strength_is_the_association_strength():
    table = np.array([[30, 5, 2], [4, 25, 9]])
    assert table_strength(table, "categorical") == cramers_v(table)
    # A property that is the label: MI = H(label), strength 1; independent: 0.
    assert table_strength(np.diag([50, 50, 50]), "numeric") == pytest.approx(1.0)
    assert table_strength(np.full((2, 3), 40), "numeric") == pytest.approx(0.0)


def _known_answer(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """Two balanced classes; 80% of class 0 and 20% of class 1 are PNG: Cramér's V of format
    and class is |0.8 - 0.2| = 0.6, and format alone predicts the class 80% of the time."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    png = rng.random(n) < np.where(y == 0, 0.8, 0.2)
    props = pd.DataFrame({"format": np.where(png, "PNG", "JPEG"),
                          "file_size": rng.normal(1000, 100, n)})
    return props, y


def test_a_subsample_agrees_with_the_full_data_within_its_intervals():
    props, y = _known_answer(40_000, 3)
    full = run_probes(props, y, ["a", "b"], n_permutations=20)
    rows = stratified_sample(y, 4000, np.random.default_rng(0))
    sub = run_probes(props.iloc[rows].reset_index(drop=True), y[rows], ["a", "b"],
                     n_permutations=20, population=len(y))
    assert sub.settings["subsample"] == {"rows": 4000, "of": 40_000}
    assert any("4,000 of the 40,000" in note for note in sub.notes)
    strength = {a["property"]: a for a in sub.associations}["format"]
    low, high = strength["strength_ci"]
    whole = {a["property"]: a for a in full.associations}["format"]["strength"]
    assert low <= whole <= high
    assert low <= 0.6 <= high
    assert high - low < 0.1  # 4000 rows pin V down to a few hundredths
    # The forest's accuracy (a little under the 80% that format alone allows: it also fits
    # the noise column), measured on the full data, is inside the subsample's interval.
    probe = sub.metadata_classifier
    assert probe["ci_low"] <= full.metadata_classifier["accuracy"] <= probe["ci_high"]
    assert probe["ci_high"] <= 0.8 + 0.02
    assert "strength_ci" not in {a["property"]: a for a in full.associations}["format"]


def test_the_interval_of_an_independent_property_holds_zero():
    rng = np.random.default_rng(5)
    table = np.bincount(rng.integers(0, 2, 3000) * 3 + rng.integers(0, 3, 3000),
                        minlength=6).reshape(2, 3)
    low, high = strength_interval(table, "categorical", np.random.default_rng(0))
    assert low == 0.0
    assert high < 0.1


def test_probe_samples_reads_only_the_subsample(tmp_path, monkeypatch):
    run = build_run(tmp_path / "run", n_per_class=40, n_errors=0)
    reader = RunReader(run)
    samples = reader.samples()
    for part, rows in samples.groupby("map_part")["map_row"]:
        (run / "probe" / "thumb16").mkdir(parents=True, exist_ok=True)
        np.save(run / "probe" / "thumb16" / f"{part}.npy",
                np.zeros((rows.max() + 1, 3, 16, 16), dtype=np.uint8))
    read: list[list[int]] = []
    original = RunReader.load_rows

    def recorded(self, indices, folder):
        read.append(list(indices))
        return original(self, indices, folder)

    monkeypatch.setattr(RunReader, "load_rows", recorded)
    monkeypatch.setattr(probe_run, "PROBE_ROWS", 60)
    result = probe_run.probe_samples(samples, reader, ["cat", "dog", "bird"], 0.1, seed=0)
    assert result.settings["subsample"] == {"rows": 60, "of": 120}
    assert len(read) == 1
    assert len(read[0]) == 60
    labels = samples.set_index("index").loc[read[0], "label"]
    assert labels.value_counts().tolist() == [20, 20, 20]
    assert all("strength_ci" in a for a in result.associations)


def test_the_report_says_what_the_probes_were_subsampled_to(tmp_path):
    import json

    from auditor.report import render_report
    from auditor.store import write_json

    run = build_run(tmp_path / "run")
    summary = json.loads((run / "summary.json").read_text(encoding="utf-8"))
    assert "Run on a seeded subsample" not in render_report(run).read_text(encoding="utf-8")
    summary["probes"]["settings"]["subsample"] = {"rows": 100_000, "of": 1_000_000}
    write_json(run / "summary.json", summary)
    html = render_report(run).read_text(encoding="utf-8")
    assert "Run on a seeded subsample of 100,000 of the 1,000,000 readable rows" in html


def _border_coloured(n_classes: int, per_class: int, share: float, seed: int = 0
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Noise thumbnails [N, 3, 16, 16]; `share` of each class's rows carry its own colour in
    the outer 2 pixels (labels int [N])."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(n_classes), per_class)
    thumbs = rng.integers(0, 256, (len(labels), 3, 16, 16), dtype=np.uint8)
    band = np.ones((16, 16), dtype=bool)
    band[2:-2, 2:-2] = False
    colours = rng.integers(0, 256, (n_classes, 3), dtype=np.uint8)
    carriers = np.flatnonzero(rng.random(len(labels)) < share)
    thumbs[carriers[:, None], :, band] = colours[labels[carriers]][:, None, :]
    return thumbs, labels


def test_many_classes_split_at_random_and_still_find_a_border_colour(monkeypatch):
    from sklearn.ensemble import ExtraTreesClassifier, RandomForestClassifier

    from auditor.detect import probe_classifier
    from auditor.detect.probe_encoding import border_pixel_features

    assert isinstance(probe_classifier.forest(probe_classifier.MAX_FOREST_CLASSES, 10, 4, 0),
                      RandomForestClassifier)
    assert isinstance(probe_classifier.forest(probe_classifier.MAX_FOREST_CLASSES + 1, 10, 4, 0),
                      ExtraTreesClassifier)
    thumbs, labels = _border_coloured(12, 20, share=1.0)
    x, groups = border_pixel_features(thumbs, 0.1)
    names = [f"c{c}" for c in range(12)]
    monkeypatch.setattr(probe_classifier, "MAX_FOREST_CLASSES", 11)
    found, _ = probe_classifier.cross_validated_probe(x, groups, labels, names, 0, [])
    assert found["model"].startswith("extremely randomized trees (10 trees, grown on class digits)")
    assert found["accuracy"] > 0.9
    assert found["severity"] == "high"
    # Noise alone: at chance, no flag.
    noise, _ = _border_coloured(12, 20, share=0.0)
    x, groups = border_pixel_features(noise, 0.1)
    clean, _ = probe_classifier.cross_validated_probe(x, groups, labels, names, 0, [])
    assert clean["model"].startswith("extremely randomized trees")
    assert clean["severity"] is None
    monkeypatch.setattr(probe_classifier, "MAX_FOREST_CLASSES", 12)
    assert probe_classifier.cross_validated_probe(x, groups, labels, names, 0, [])[0][
        "model"].startswith("random forest (40 trees)")
