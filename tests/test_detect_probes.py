"""Model-free probes: planted shortcuts are found and named, controls stay quiet, the maths
(Cramér's V, mutual information, Wilson interval, permutation p-values) matches hand values."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from auditor.detect.probe_associations import permutations, property_association
from auditor.detect.probe_encoding import (
    band_pixels,
    border_band_mask,
    quantize_colour,
    quantize_colours,
)
from auditor.detect.probe_rule import association_severity, probe_severity
from auditor.detect.probes import run_probes
from auditor.detect.stats import cramers_v, mutual_information, wilson_interval
from auditor.errors import UsageError

CLASSES = ["pokemon", "digimon"]
N = 200


def balanced_labels(n: int, rng: np.random.Generator, k: int = 2) -> np.ndarray:
    return rng.permutation(np.arange(n) % k)


def independent_props(n: int, rng: np.random.Generator) -> pd.DataFrame:
    """Every fingerprint column, drawn independently of any label."""
    jpeg = rng.random(n) < 0.5
    return pd.DataFrame(
        {
            "format": np.where(jpeg, "JPEG", "PNG"),
            "extension": rng.choice([".png", ".jpg", ".jpeg"], n),
            "extension_mismatch": rng.random(n) < 0.1,
            "mode": rng.choice(["RGB", "RGBA", "L"], n),
            "bit_depth": 8,
            "has_alpha": rng.random(n) < 0.3,
            "mean_alpha": rng.uniform(200, 255, n),
            "width": rng.integers(64, 512, n),
            "height": rng.integers(64, 512, n),
            "aspect": rng.uniform(0.5, 2.0, n),
            "file_size": rng.integers(2_000, 200_000, n),
            "jpeg_quality": np.where(jpeg, rng.choice([75.0, 85.0, 95.0], n), np.nan),
            "chroma_subsampling": np.where(jpeg, rng.choice(["4:2:0", "4:4:4"], n), ""),
            "has_exif": rng.random(n) < 0.4,
            "exif_orientation": rng.choice([1, 6], n),
            "n_frames": 1,
            "border_mean_r": rng.uniform(0, 255, n),
            "border_mean_g": rng.uniform(0, 255, n),
            "border_mean_b": rng.uniform(0, 255, n),
            "border_std": rng.uniform(0, 60, n),
            "border_uniform_frac": rng.uniform(0, 1, n),
            "border_dominant": [
                f"#{r:02x}{g:02x}{b:02x}" for r, g, b in rng.integers(0, 256, (n, 3))
            ],
        }
    )


def random_thumbs(n: int, rng: np.random.Generator) -> np.ndarray:
    return rng.integers(0, 256, (n, 3, 16, 16), dtype=np.uint8)


def flags_of(result, kind: str):
    return [f for f in result.flags if f.kind == kind]


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture
def control(rng):
    labels = balanced_labels(N, rng)
    return independent_props(N, rng), labels, random_thumbs(N, rng)


# --- statistics against hand-derived values -------------------------------------------------


def test_cramers_v_is_one_for_perfect_and_zero_for_independent_2x2():
    perfect = np.array([[50, 0], [0, 50]])
    independent = np.array([[25, 25], [25, 25]])
    assert cramers_v(perfect) == pytest.approx(1.0)
    assert cramers_v(perfect, bias_corrected=False) == pytest.approx(1.0)
    assert cramers_v(independent) == pytest.approx(0.0)
    assert cramers_v(independent, bias_corrected=False) == pytest.approx(0.0)


def test_cramers_v_matches_hand_computation_and_batches():
    # n=80, expected 20 per cell, chi2 = 4 * 10^2 / 20 = 20, phi2 = 0.25.
    table = np.array([[30, 10], [10, 30]])
    assert cramers_v(table, bias_corrected=False) == pytest.approx(0.5)
    # Bergsma: phi2 - 1/79 over (2 - 1/79) - 1.
    corrected = math.sqrt((0.25 - 1 / 79) / (1 - 1 / 79))
    assert cramers_v(table) == pytest.approx(corrected)
    batch = np.stack([table, np.array([[50, 0], [0, 50]]) * 0.8])
    np.testing.assert_allclose(cramers_v(batch), [corrected, 1.0])


def test_cramers_v_ignores_empty_levels():
    padded = np.array([[30, 10, 0], [10, 30, 0], [0, 0, 0]])
    assert cramers_v(padded) == pytest.approx(cramers_v(np.array([[30, 10], [10, 30]])))


def test_mutual_information_matches_hand_computation():
    assert mutual_information(np.array([[50, 0], [0, 50]])) == pytest.approx(1.0)
    assert mutual_information(np.array([[25, 25], [25, 25]])) == pytest.approx(0.0)
    # p = 0.375 on the diagonal, 0.125 off it, marginals 0.5: 0.75*log2(1.5) + 0.25*log2(0.5).
    expected = 0.75 * math.log2(1.5) - 0.25
    assert mutual_information(np.array([[30, 10], [10, 30]])) == pytest.approx(expected)


def test_wilson_interval_matches_hand_computation():
    z = 1.959963984540054
    p, n = 0.8, 10
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    low, high = wilson_interval(8, 10)
    assert low == pytest.approx(centre - half)
    assert high == pytest.approx(centre + half)
    assert (round(low, 4), round(high, 4)) == (0.4902, 0.9433)
    # At 0 successes the interval starts at 0 and ends at z^2/n / (1 + z^2/n).
    assert wilson_interval(0, 10) == pytest.approx((0.0, (z * z / 10) / (1 + z * z / 10)))


def test_wilson_interval_rejects_impossible_counts():
    with pytest.raises(UsageError, match="successes"):
        wilson_interval(11, 10)
    with pytest.raises(UsageError, match="n > 0"):
        wilson_interval(0, 0)


def test_border_band_is_two_pixels_of_a_16px_thumbnail_at_ten_percent():
    band = border_band_mask(16, 16, 0.1)
    assert band.sum() == 16 * 16 - 12 * 12
    assert not band[2:14, 2:14].any()
    for edge in (band[:2], band[-2:], band[:, :2], band[:, -2:]):
        assert edge.all()
    # A tiny fraction still keeps a one-pixel ring.
    assert border_band_mask(16, 16, 0.01).sum() == 16 * 16 - 14 * 14


def test_severity_follows_the_documented_table():
    assert probe_severity(0.9, 200) == "high"
    assert probe_severity(0.9, 30) == "medium"
    assert probe_severity(0.6, 200) == "medium"
    assert probe_severity(0.6, 30) == "low"
    assert probe_severity(0.3, 200) == "low"
    assert association_severity(0.9) == "medium"
    assert association_severity(0.6) == "low"
    assert association_severity(0.4) is None


# --- permutation p-values -------------------------------------------------------------------


def test_permutation_p_value_is_minimal_for_a_planted_association(rng):
    labels = balanced_labels(N, rng)
    agree = rng.random(N) < 0.8
    fmt = np.where((labels == 0) == agree, "PNG", "JPEG")
    result = property_association(pd.Series(fmt), labels, CLASSES, "format", n_permutations=99)
    assert result is not None
    assert result["p_value"] == pytest.approx(1 / 100)
    assert result["value"] > 0.5


@pytest.mark.parametrize("kind", ["numeric", "categorical"])
def test_permutation_p_values_are_near_uniform_without_association(kind):
    p_values = []
    for seed in range(40):
        gen = np.random.default_rng(seed)
        labels = balanced_labels(120, gen)
        if kind == "numeric":
            values, name = pd.Series(gen.normal(size=120)), "aspect"
        else:
            values, name = pd.Series(gen.choice(["RGB", "L", "RGBA"], 120)), "mode"
        result = property_association(values, labels, CLASSES, name, 99, seed)
        assert result["kind"] == kind
        p_values.append(result["p_value"])
    p = np.array(p_values)
    assert 0.35 < p.mean() < 0.65
    assert (p <= 0.05).mean() <= 0.15
    assert (p > 0.5).mean() >= 0.3
    assert (p > 0.9).mean() <= 0.3  # no pile-up of ties at p = 1


def test_border_dominant_colours_are_rounded_before_testing(rng):
    labels = balanced_labels(60, rng)
    near_white = pd.Series(rng.choice(["#ffffff", "#fefefe", "#f8fcfa"], 60))
    assert property_association(near_white, labels, CLASSES, "border_dominant") is None
    assert property_association(near_white, labels, CLASSES, "extension") is not None


def test_colours_rounded_at_array_speed_equal_the_one_by_one_rounding(rng):
    # Hex colours, spellings int() reads too ("+f", non-ASCII digits, spaces), junk, NUL.
    alphabet = list("0123456789abcdefABCDEF#  +-_xg\x00\u0663\uff10\t")
    texts = [f"#{v:06x}" for v in rng.integers(0, 2**24, 3000)]
    texts += ["".join(rng.choice(alphabet, rng.integers(0, 9))) for _ in range(3000)]
    texts += ["#7f7f7f", "#808080", " #00FF7f ", "##abcdef", "(missing)", "#+f+f+f", "#f_f_f_"]
    rounded = quantize_colours(np.array(texts, dtype=object))
    assert list(rounded) == [quantize_colour(t) for t in texts]
    assert list(rounded[-7:-2]) == ["#808080", "#808080", "#00ff80", "#bfbfff",
                                    "(missing)"]


@pytest.mark.parametrize("n", [0, 1, 50, 3001])
def test_permutations_are_row_major_shuffles_of_the_labels(n):
    y = np.arange(n) % 7
    perms = permutations(y, 30, np.random.default_rng(3))
    expected = np.random.default_rng(3).permuted(np.broadcast_to(y, (30, n)), axis=1)
    np.testing.assert_array_equal(perms, expected)
    assert perms.flags["C_CONTIGUOUS"]
    assert all(np.array_equal(np.sort(p), np.sort(y)) for p in perms)


@pytest.mark.parametrize(("h", "w", "border"), [(16, 16, 0.1), (16, 12, 0.2), (9, 20, 0.3)])
def test_band_pixels_equal_the_masked_thumbnails(rng, h, w, border):
    thumbs = rng.integers(0, 256, (7, 3, h, w), dtype=np.uint8)
    band = border_band_mask(h, w, border)
    np.testing.assert_array_equal(band_pixels(thumbs, band), thumbs[:, :, band])


# --- planted shortcuts ----------------------------------------------------------------------


def test_format_shortcut_is_flagged_and_named_with_per_class_fractions(control):
    props, labels, thumbs = control
    props["format"] = np.where(labels == 0, "PNG", "JPEG")
    result = run_probes(props, labels, CLASSES, thumbs)

    (flag,) = flags_of(result, "metadata_shortcut")
    assert flag.severity == "high"
    assert "format: PNG in 100% of class pokemon" in flag.message
    assert "JPEG in 100% of class digimon" in flag.message
    assert [p["property"] for p in flag.evidence["properties"]] == ["format"]
    assert result.metadata_classifier["accuracy"] == pytest.approx(1.0)
    assert result.metadata_classifier["top_features"][0]["feature"] == "format"
    fmt = next(a for a in result.associations if a["property"] == "format")
    assert fmt["value"] == pytest.approx(1.0)
    assert fmt["by_class"]["fractions"]["pokemon"] == {"PNG": 1.0, "JPEG": 0.0}
    assert fmt["by_class"]["counts"]["digimon"]["JPEG"] == int((labels == 1).sum())
    assert not flags_of(result, "border_pixels_shortcut")


def test_border_colour_shortcut_is_flagged_from_thumbnail_rings(control, rng):
    props, labels, thumbs = control
    band = border_band_mask(16, 16, 0.1)
    coloured = rng.integers(0, 200, (N, 3, 1, 1), dtype=np.uint8)
    ring = np.where((labels == 0)[:, None, None, None], np.uint8(255), coloured)
    thumbs = np.where(band, ring, thumbs).astype(np.uint8)
    result = run_probes(props, labels, CLASSES, thumbs)

    (flag,) = flags_of(result, "border_pixels_shortcut")
    assert flag.severity == "high"
    assert "#ffffff in 100% of class pokemon" in flag.message
    assert result.border_classifier["lift"] > 0.9
    assert not flags_of(result, "metadata_shortcut")


def test_border_probe_names_the_edge_that_carries_the_shortcut(control):
    props, labels, thumbs = control
    thumbs = thumbs.copy()
    thumbs[:, :, :2, 2:14] = np.where((labels == 0)[:, None, None, None], 255, 0)
    result = run_probes(props, labels, CLASSES, thumbs)
    top = [t["feature"] for t in result.border_classifier["top_features"][:3]]
    assert all(name.startswith("top edge") for name in top)
    assert flags_of(result, "border_pixels_shortcut")


def test_category_fractions_are_within_each_class_when_classes_are_unbalanced(rng):
    labels = rng.permutation(np.r_[np.zeros(60, int), np.ones(140, int)])
    props = independent_props(200, rng)
    png = np.zeros(200, bool)
    png[np.flatnonzero(labels == 0)[:45]] = True
    props["format"] = np.where(png, "PNG", "JPEG")
    result = run_probes(props, labels, CLASSES, random_thumbs(200, rng))
    fmt = next(a for a in result.associations if a["property"] == "format")
    assert fmt["by_class"]["fractions"]["pokemon"]["PNG"] == pytest.approx(0.75)
    assert fmt["by_class"]["fractions"]["digimon"]["JPEG"] == pytest.approx(1.0)
    assert fmt["by_class"]["counts"]["pokemon"] == {"JPEG": 15, "PNG": 45}
    (flag,) = flags_of(result, "metadata_shortcut")
    assert "PNG in 75% of class pokemon" in flag.message
    assert result.metadata_classifier["baseline"] == pytest.approx(0.7)
    # The best rule (PNG -> pokemon, JPEG -> digimon) is right on 185 of 200: accuracy 0.925,
    # lift (0.925 - 0.7) / 0.3 = 0.75, which the table rates medium.
    assert result.metadata_classifier["lift"] == pytest.approx(0.75, abs=0.1)
    assert flag.severity == "medium"


def test_format_splitting_ten_classes_in_two_groups_is_flagged_by_its_association(rng):
    classes = [f"class{i}" for i in range(10)]
    labels = balanced_labels(300, rng, k=10)
    props = independent_props(300, rng)
    props["format"] = np.where(labels < 5, "PNG", "JPEG")
    result = run_probes(props, labels, classes, random_thumbs(300, rng))
    # Knowing the format halves the candidates: accuracy ~20% vs 10%, too little lift alone.
    assert result.metadata_classifier["severity"] is None
    (flag,) = flags_of(result, "metadata_shortcut")
    assert flag.severity == "medium"
    assert flag.evidence["route"] == "association"
    # Bergsma-corrected V of a perfect 2x10 table, n=300: phi2 = 1 - 9/299 over (2 - 1/299) - 1.
    assert flag.score == pytest.approx(math.sqrt((1 - 9 / 299) / (1 - 1 / 299)))
    assert "format: PNG in 100% of classes " in flag.message
    assert ", JPEG in 100% of classes " in flag.message


def test_pattern_inside_the_centre_does_not_raise_a_border_flag(control):
    props, labels, thumbs = control
    thumbs = thumbs.copy()
    thumbs[:, :, 4:12, 4:12] = np.where((labels == 0)[:, None, None, None], 255, 0)
    result = run_probes(props, labels, CLASSES, thumbs)
    assert not flags_of(result, "border_pixels_shortcut")


def test_border_statistics_stand_in_when_there_are_no_thumbnails(control):
    props, labels, _ = control
    props["border_uniform_frac"] = np.where(labels == 0, 0.95, 0.1)
    result = run_probes(props, labels, CLASSES, None)
    (flag,) = flags_of(result, "border_pixels_shortcut")
    assert "border_uniform_frac: " in flag.message
    assert "median 0.95 in class pokemon" in flag.message
    assert "median 0.1 in class digimon" in flag.message
    assert not flags_of(result, "metadata_shortcut")


def test_jpeg_quality_shortcut_is_found_as_a_numeric_association(control):
    props, labels, thumbs = control
    props["format"] = "JPEG"
    props["chroma_subsampling"] = "4:2:0"
    props["jpeg_quality"] = np.where(labels == 0, 95.0, 70.0)
    result = run_probes(props, labels, CLASSES, thumbs)

    quality = next(a for a in result.associations if a["property"] == "jpeg_quality")
    assert quality["kind"] == "numeric"
    assert quality["statistic"] == "mutual_information"
    assert quality["value"] == pytest.approx(1.0)  # balanced classes: all of H(label) = 1 bit
    assert quality["by_class"]["pokemon"]["median"] == 95.0
    (flag,) = flags_of(result, "metadata_shortcut")
    assert "jpeg_quality: " in flag.message
    assert "median 95 in class pokemon" in flag.message
    assert "median 70 in class digimon" in flag.message
    assert "format" in result.skipped_properties


def test_missing_jpeg_quality_is_itself_a_shortcut_and_is_named_as_missing(control):
    props, labels, thumbs = control
    props["jpeg_quality"] = np.where(labels == 0, np.nan, 80.0)
    result = run_probes(props, labels, CLASSES, thumbs)
    quality = next(a for a in result.associations if a["property"] == "jpeg_quality")
    assert quality["strength"] == pytest.approx(1.0)
    assert quality["by_class"]["pokemon"]["missing"] == int((labels == 0).sum())
    (flag,) = flags_of(result, "metadata_shortcut")
    assert "jpeg_quality: " in flag.message
    assert "missing in 100% of class pokemon" in flag.message
    assert "median 80 in class digimon" in flag.message


def test_control_set_raises_no_flag_and_no_small_p_value(control):
    props, labels, thumbs = control
    result = run_probes(props, labels, CLASSES, thumbs)
    assert not [f for f in result.flags if f.severity == "high"]
    assert result.flags == []
    tested = [a["p_value"] for a in result.associations]
    assert len(tested) >= 15
    assert min(tested) > 0.05 / len(tested)  # Bonferroni over the tested properties
    assert np.median(tested) > 0.2
    for probe in (result.metadata_classifier, result.border_classifier):
        assert probe["status"] == "ok"
        assert not probe["well_above_chance"]
        assert probe["ci_low"] < probe["baseline"] + 0.05


# --- plain-data result, samples and edge cases ----------------------------------------------


def test_result_is_json_ready_and_samples_map_back_to_rows(control):
    props, labels, thumbs = control
    labels = labels.copy()
    labels[:10] = -1
    props["format"] = np.where(labels == 0, "PNG", "JPEG")
    props["rel_path"] = [f"img_{i:03d}.png" for i in range(N)]
    result = run_probes(props, labels, CLASSES, thumbs)

    data = result.to_dict()
    json.dumps(data, allow_nan=False)
    assert data["n"] == N - 10
    assert "10 rows without a label" in data["notes"][0]
    (flag,) = flags_of(result, "metadata_shortcut")
    rows = flag.evidence["sample_rows"]
    assert rows
    assert all(labels[r] >= 0 for r in rows)
    assert flag.samples == [f"img_{r:03d}.png" for r in rows]
    assert data["flags"][0]["kind"] == "metadata_shortcut"


def test_constant_columns_are_reported_not_tested(control):
    props, labels, thumbs = control
    result = run_probes(props, labels, CLASSES, thumbs)
    assert result.skipped_properties["bit_depth"] == "constant: every file has 8"
    assert result.skipped_properties["n_frames"] == "constant: every file has 1"
    assert "bit_depth" not in {a["property"] for a in result.associations}


def test_small_data_set_skips_the_classifiers_with_a_reason(rng):
    labels = balanced_labels(12, rng)
    props = independent_props(12, rng)
    props["format"] = np.where(labels == 0, "PNG", "JPEG")
    result = run_probes(props, labels, CLASSES, random_thumbs(12, rng))
    assert result.metadata_classifier["status"] == "skipped"
    assert "need >= 20 rows" in result.metadata_classifier["reason"]
    assert result.border_classifier["status"] == "skipped"
    assert result.flags == []
    assert any(a["property"] == "format" for a in result.associations)


def test_tiny_class_is_left_out_and_the_rest_still_probed(control):
    props, labels, thumbs = control
    labels = labels.copy()
    labels[:2] = 2
    props["format"] = np.where(labels == 0, "PNG", "JPEG")
    result = run_probes(props, labels, [*CLASSES, "agumon"], thumbs)
    assert any("agumon" in note for note in result.notes)
    assert result.metadata_classifier["n"] == N - 2
    assert flags_of(result, "metadata_shortcut")


def test_single_class_gives_no_flags_and_a_reason(rng):
    props = independent_props(50, rng)
    result = run_probes(props, np.zeros(50, dtype=np.int64), CLASSES, random_thumbs(50, rng))
    assert result.flags == []
    assert "only one class" in result.metadata_classifier["reason"]
    assert result.associations == []


def test_bad_inputs_raise_usage_errors_naming_the_value(control):
    props, labels, thumbs = control
    with pytest.raises(UsageError, match="one entry per props row"):
        run_probes(props, labels[:-1], CLASSES, thumbs)
    with pytest.raises(UsageError, match="label 5"):
        run_probes(props, np.full(N, 5), CLASSES, thumbs)
    with pytest.raises(UsageError, match="thumbs must be uint8"):
        run_probes(props, labels, CLASSES, thumbs.astype(np.float32))
    with pytest.raises(UsageError, match="border"):
        run_probes(props, labels, CLASSES, thumbs, border=0.6)
