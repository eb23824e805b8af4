"""Attention flags on synthetic coarse (7x7) maps pushed through attention_measures."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats

from auditor.detect.attention import (
    _mode_is,
    annotate_border_sides,
    attention_flags,
    background_attention_flags,
    border_attention_flags,
    class_statistics,
    degenerate_maps_flags,
)
from auditor.detect.flags import Flag
from auditor.detect.suspicion import sample_flag_codes, suspicion_scores
from auditor.metrics import attention_measures

SIZE = 56
OBJECT_SIDE = 25  # 625 / 3136 = 20% of the image


def coarse_blobs(centres: torch.Tensor, sigma: float, gen: torch.Generator) -> torch.Tensor:
    """7x7 Gaussian blobs at centres [n, 2] (x, y in [0, 1]) plus 5% uniform noise."""
    grid = (torch.arange(7) + 0.5) / 7
    dy = grid[None, :, None] - centres[:, 1, None, None]
    dx = grid[None, None, :] - centres[:, 0, None, None]
    blob = torch.exp(-(dx**2 + dy**2) / (2 * sigma**2))
    return blob + 0.05 * torch.rand(blob.shape, generator=gen)


def class_rows(name: str, looks_at: str, n: int, seed: int, sigma: float = 0.15) -> pd.DataFrame:
    """Samples of one class: a small object near the centre; the map on it or off it."""
    gen = torch.Generator().manual_seed(seed)
    centres = 0.5 + (torch.rand(n, 2, generator=gen) - 0.5) * 0.3
    masks = torch.zeros(n, SIZE, SIZE, dtype=torch.bool)
    half = OBJECT_SIDE // 2
    for i, (x, y) in enumerate((centres * SIZE).long().tolist()):
        masks[i, y - half:y + half + 1, x - half:x + half + 1] = True
    if looks_at == "object":
        targets = centres
    else:  # a background corner, chosen per sample
        targets = torch.where(torch.rand(n, 2, generator=gen) < 0.5, 0.1, 0.9)
    maps = coarse_blobs(targets, sigma, gen)
    measures = attention_measures(maps, masks, torch.ones(n, dtype=torch.bool),
                                  torch.full((n, 4), math.nan))
    frame = pd.DataFrame({k: v.numpy() for k, v in measures.items()})
    frame.insert(0, "rel_path", [f"{name}/{i:03d}.png" for i in range(n)])
    frame.insert(1, "label", name)
    frame["status"] = "ok"
    frame["correct"] = True
    frame["confidence"] = 0.9
    frame["has_mask"] = True
    frame["foreground_source"] = "mask"
    frame["map_degenerate"] = False
    return frame


def table(*parts: pd.DataFrame) -> pd.DataFrame:
    return pd.concat(parts, ignore_index=True)


@pytest.mark.parametrize("sigma", [0.1, 0.15, 0.25])
def test_coarse_maps_on_small_objects_are_not_flagged(sigma):
    samples = table(class_rows("cat", "object", 30, 1, sigma), class_rows("dog", "object", 30, 2,
                                                                          sigma))
    assert background_attention_flags(samples, ["cat", "dog"]) == []
    assert border_attention_flags(samples, ["cat", "dog"]) == []


@pytest.mark.parametrize("sigma", [0.1, 0.15, 0.25])
def test_background_looking_class_is_flagged_and_object_looking_class_is_not(sigma):
    samples = table(class_rows("pokemon", "background", 30, 3, sigma),
                    class_rows("digimon", "object", 30, 4, sigma))
    flags = background_attention_flags(samples, ["pokemon", "digimon"])
    assert [f.class_name for f in flags] == ["pokemon"]
    flag = flags[0]
    assert flag.kind == "background_attention"
    assert flag.severity == "high"
    assert flag.evidence["median"] < 1.0
    assert flag.evidence["p_chance"] < 0.01
    assert flag.evidence["effect_rest"] == pytest.approx(1.0)
    assert "pokemon" in flag.message
    assert "enrichment" in flag.message
    assert f"{flag.evidence['median']:.2f}" in flag.message
    assert flag.samples
    assert all(s.startswith("pokemon/") for s in flag.samples)


def test_every_class_on_its_background_is_flagged_even_though_none_differs_from_the_rest():
    samples = table(class_rows("pokemon", "background", 30, 5),
                    class_rows("digimon", "background", 30, 6))
    flags = background_attention_flags(samples, ["pokemon", "digimon"])
    assert sorted(f.class_name for f in flags) == ["digimon", "pokemon"]
    assert all(f.evidence["p_rest"] > 0.01 for f in flags)


def test_corner_attention_raises_a_border_flag():
    samples = table(class_rows("horse", "background", 30, 7, 0.1),
                    class_rows("zebra", "object", 30, 8, 0.1))
    flags = border_attention_flags(samples, ["horse", "zebra"])
    assert [f.class_name for f in flags] == ["horse"]
    assert flags[0].evidence["median"] > 1.0
    assert "border" in flags[0].message


def test_few_samples_cap_severity_and_too_few_raise_nothing():
    samples = table(class_rows("a", "background", 12, 9), class_rows("b", "object", 12, 10))
    flags = background_attention_flags(samples, ["a", "b"])
    assert [(f.class_name, f.severity) for f in flags] == [("a", "medium")]
    tiny = table(class_rows("a", "background", 5, 11), class_rows("b", "object", 5, 12))
    assert background_attention_flags(tiny, ["a", "b"]) == []


def test_evidence_statistics_match_scipy_by_hand():
    samples = table(class_rows("a", "background", 25, 13), class_rows("b", "object", 25, 14))
    flag = background_attention_flags(samples, ["a", "b"])[0]
    mine = samples.loc[samples["label"] == "a", "fg_enrichment"].to_numpy(float)
    rest = samples.loc[samples["label"] == "b", "fg_enrichment"].to_numpy(float)
    logs = np.log(mine)
    assert flag.evidence["p_chance"] == pytest.approx(
        stats.wilcoxon(logs, alternative="less").pvalue)
    # Every class value lies below 1, so the signed-rank effect is exactly +1.
    assert flag.evidence["effect_chance"] == pytest.approx(1.0)
    u = stats.mannwhitneyu(mine, rest, alternative="less")
    assert flag.evidence["mannwhitney_u"] == pytest.approx(u.statistic)
    assert flag.evidence["n"] == 25
    assert flag.evidence["median"] == pytest.approx(np.median(mine))
    assert flag.score == pytest.approx(1.0 - np.median(mine))


def test_only_ok_correct_samples_are_listed_and_error_rows_are_ignored():
    samples = table(class_rows("a", "background", 25, 15), class_rows("b", "object", 25, 16))
    samples.loc[0:4, "correct"] = False
    errors = pd.DataFrame({"rel_path": ["a/bad.png"], "label": ["a"], "status": ["error"],
                           "correct": [False], "fg_energy": [0.0], "fg_enrichment": [0.0]})
    samples = pd.concat([samples, errors], ignore_index=True)
    flag = background_attention_flags(samples, ["a", "b"])[0]
    wrong = set(samples.loc[0:4, "rel_path"])
    assert not wrong & set(flag.samples)
    assert "a/bad.png" not in flag.samples
    assert flag.evidence["n"] == 25
    listed = samples.set_index("rel_path").loc[flag.samples, "fg_enrichment"].to_numpy()
    assert np.all(np.diff(listed) >= 0)  # most off-object first


def test_estimated_foreground_is_said_in_the_message():
    samples = table(class_rows("a", "background", 25, 17), class_rows("b", "object", 25, 18))
    samples["foreground_source"] = "estimate"
    flag = background_attention_flags(samples, ["a", "b"])[0]
    assert flag.evidence["foreground_estimated"] is True
    assert "estimated" in flag.message


def test_degenerate_maps_flag_counts_ok_rows_only():
    samples = table(class_rows("a", "object", 30, 19), class_rows("b", "object", 30, 20))
    assert degenerate_maps_flags(samples, ["a", "b"]) == []
    samples.loc[0:11, "map_degenerate"] = True  # 12 of 60: > 10 samples and 20% of them
    flags = degenerate_maps_flags(samples, ["a", "b"])
    assert len(flags) == 1
    assert flags[0].severity == "low"
    assert flags[0].evidence["per_class"] == {"a": 12, "b": 0}
    assert flags[0].score == pytest.approx(12 / 60)
    samples.loc[0:29, "map_degenerate"] = True
    assert degenerate_maps_flags(samples, ["a", "b"])[0].severity == "medium"


def test_degenerate_maps_are_inferred_from_nan_peaks_without_the_column():
    samples = class_rows("a", "object", 20, 21).drop(columns="map_degenerate")
    samples.loc[0:1, "peak_x"] = math.nan  # 2 of 20 = 10% > 5%
    flags = degenerate_maps_flags(samples, ["a"])
    assert flags[0].evidence["n_degenerate"] == 2


def test_attention_flags_gathers_all_kinds():
    samples = table(class_rows("a", "background", 30, 22, 0.1),
                    class_rows("b", "object", 30, 23, 0.1))
    samples.loc[30:59, "map_degenerate"] = True
    kinds = sorted(f.kind for f in attention_flags(samples, ["a", "b"]))
    assert kinds == ["background_attention", "border_attention", "degenerate_maps"]


def test_class_statistics_by_hand():
    samples = pd.DataFrame({
        "path": [f"x/{i}" for i in range(5)],
        "label": ["x", "x", "x", "x", "y"],
        "status": ["ok", "ok", "ok", "error", "ok"],
        "correct": [True, False, True, False, True],
        "fg_energy": [0.2, 0.4, 0.6, math.nan, 0.5],
        "fg_enrichment": [1.0, 2.0, 3.0, math.nan, 1.0],
        "bg_energy": [0.8, 0.6, 0.4, math.nan, 0.5],
        "border_energy": [0.1, 0.2, 0.3, math.nan, 0.4],
        "border_lift": [0.5, 1.0, 1.5, math.nan, 1.0],
        "pointing_hit": [1.0, 0.0, math.nan, math.nan, 1.0],
        "wsol_iou": [0.2, 0.5, 0.9, math.nan, math.nan],
        "peak_x": [0.5, 0.5, 0.5, math.nan, 0.5],
    })
    got = class_statistics(samples, ["x", "y"])
    x = got["x"]
    assert (x["n"], x["n_ok"], x["n_degenerate"]) == (4, 3, 0)
    assert x["accuracy"] == pytest.approx(2 / 3)
    assert x["fg_energy_median"] == pytest.approx(0.4)
    assert x["fg_energy_q1"] == pytest.approx(0.3)
    assert x["fg_energy_q3"] == pytest.approx(0.5)
    assert x["pointing_hit_rate"] == pytest.approx(0.5)
    assert x["wsol_iou_mean"] == pytest.approx(1.6 / 3)
    assert x["wsol_iou_at_least_half"] == pytest.approx(2 / 3)
    assert got["y"]["wsol_iou_mean"] is None


@pytest.fixture
def scored() -> pd.DataFrame:
    # Band area 0.36 in every row: border_energy / border_lift.
    return pd.DataFrame({
        "rel_path": ["a", "b", "c", "d", "e", "f"],
        "status": ["ok", "ok", "ok", "ok", "ok", "error"],
        "correct": [True, True, False, True, True, False],
        "confidence": [0.9, 0.9, 0.9, 0.5, 0.8, math.nan],
        "fg_enrichment": [0.2, 1.5, 0.2, 0.0, math.nan, math.nan],
        "border_energy": [0.36, 0.36, 0.36, 0.36, 0.68, math.nan],
        "border_lift": [1.0, 1.0, 1.0, 1.0, 0.68 / 0.36, math.nan],
    })


def test_suspicion_formula_by_hand(scored):
    got = suspicion_scores(scored).tolist()
    assert got[0] == pytest.approx(0.8 * 0.9)  # right, confident, off the object
    assert got[1] == 0.0  # above chance on the object
    assert got[2] == pytest.approx(0.8 * 0.9 * 0.5)  # wrong prediction counts half
    assert got[3] == pytest.approx(0.5)  # nothing on the object, half confident
    # No foreground: (0.68 - 0.36) / (1 - 0.36) = 0.5 of the way from chance to all-border.
    assert got[4] == pytest.approx(0.5 * 0.8)
    assert math.isnan(got[5])


def test_suspicion_ranks_right_for_the_wrong_reasons_first():
    samples = table(class_rows("a", "background", 10, 24), class_rows("b", "object", 10, 25))
    score = suspicion_scores(samples)
    assert score.between(0, 1).all()
    assert score[samples["label"] == "a"].min() > score[samples["label"] == "b"].max()


def test_flag_codes_join_per_sample_rules_and_listed_samples(scored):
    flags = [Flag("fixed_location", "high", "x", 0.9, "m", samples=["b", "c"]),
             Flag("background_attention", "low", "x", 0.1, "m", samples=["b"])]
    codes = sample_flag_codes(scored, flags).tolist()
    assert codes == ["off_object", "off_object,fixed_location", "off_object,fixed_location",
                     "off_object", "", ""]
    scored.loc[4, "border_lift"] = 2.5
    assert sample_flag_codes(scored, [])[4] == "border"


def measured_rows(name: str, n: int, seed: int, enrichment: float, spread: float,
                  ceiling: float | None = 3.0) -> pd.DataFrame:
    """Rows with log-normal fg_enrichment around `enrichment` and border lift around 1."""
    rng = np.random.default_rng(seed)
    values = enrichment * np.exp(rng.normal(0.0, spread, n))
    lift = np.exp(rng.normal(0.0, spread, n))
    frame = pd.DataFrame({
        "rel_path": [f"{name}/{i:03d}.png" for i in range(n)], "label": name, "status": "ok",
        "correct": True, "confidence": 0.9, "fg_enrichment": values, "fg_energy": 0.2 * values,
        "border_lift": lift, "border_energy": 0.36 * lift, "foreground_source": "mask",
        "map_degenerate": False})
    if ceiling is not None:
        frame["fg_enrichment_ceiling"] = ceiling
    return frame


def test_300_classes_without_any_effect_raise_no_flag():
    # No class differs from any other and every class sits at chance: each class's one-sided
    # p-value is uniform, so about 3 of 300 fall below 0.01 by chance alone.
    classes = [f"c{k:03d}" for k in range(300)]
    samples = table(*(measured_rows(c, 10, k, 1.0, 0.3) for k, c in enumerate(classes)))
    from auditor.detect.attention import background_attention_tests
    raw = [t.p_value for t in background_attention_tests(samples, classes)]
    assert min(raw) < 0.01  # the uncorrected rule would have something to flag
    assert attention_flags(samples, classes) == []


def test_median_enrichment_095_over_500_samples_is_not_material():
    samples = table(measured_rows("a", 500, 1, 0.95, 0.1), measured_rows("b", 500, 2, 2.0, 0.1))
    from auditor.detect.attention import background_attention_tests
    test = next(t for t in background_attention_tests(samples, ["a", "b"]) if t.class_name == "a")
    assert test.p_value < 1e-6  # significant, yet not a finding
    assert background_attention_flags(samples, ["a", "b"]) == []
    far = table(measured_rows("a", 500, 1, 0.7, 0.1), measured_rows("b", 500, 2, 2.0, 0.1))
    assert [f.class_name for f in background_attention_flags(far, ["a", "b"])] == ["a"]


def test_reference_is_80_percent_of_a_ceiling_that_barely_clears_chance():
    # A large object: its ceiling 1.05 leaves a map little room above chance, so enrichment 0.85
    # (0.85 / (0.8 x 1.05) = 1.01 of the reference) is a blurred map on the object, not a flag.
    # Without the ceiling the same values are judged against chance and flagged.
    large = table(measured_rows("a", 60, 3, 0.85, 0.05, ceiling=1.05),
                  measured_rows("b", 60, 4, 1.3, 0.05, ceiling=1.05))
    assert background_attention_flags(large, ["a", "b"]) == []
    unknown = large.drop(columns="fg_enrichment_ceiling")
    flags = background_attention_flags(unknown, ["a", "b"])
    assert [f.class_name for f in flags] == ["a"]
    assert flags[0].evidence["reference_median"] == pytest.approx(1.0)
    assert flags[0].evidence["q_value"] <= flags[0].evidence["fdr"]


def test_blurred_maps_on_a_large_object_are_not_flagged_but_maps_on_its_background_are():
    # 90% objects (everything but a 6-pixel strip at the top of a 56-pixel image); 7x7 maps.
    n = 40
    gen = torch.Generator().manual_seed(5)
    masks = torch.ones(n, SIZE, SIZE, dtype=torch.bool)
    masks[:, :6] = False
    on_object = torch.ones(n, 7, 7) + 0.3 * torch.rand(n, 7, 7, generator=gen)
    on_object[:, 0] *= 1.4  # a little spill onto the row holding the strip: a blurry map
    on_strip = 0.05 * torch.rand(n, 7, 7, generator=gen)
    on_strip[:, 0] += 1.0
    frames = []
    for name, maps in (("object", on_object), ("strip", on_strip)):
        m = attention_measures(maps, masks, torch.ones(n, dtype=torch.bool),
                               torch.full((n, 4), math.nan))
        frame = pd.DataFrame({k: v.numpy() for k, v in m.items()})
        frame.insert(0, "rel_path", [f"{name}/{i:03d}.png" for i in range(n)])
        frame.insert(1, "label", name)
        frame["status"], frame["correct"], frame["confidence"] = "ok", True, 0.9
        frame["foreground_source"], frame["map_degenerate"] = "mask", False
        frames.append(frame)
    samples = table(*frames)
    assert samples.loc[samples["label"] == "object", "fg_enrichment"].median() < 1.0
    flags = background_attention_flags(samples, ["object", "strip"])
    assert [f.class_name for f in flags] == ["strip"]


def test_members_of_a_location_finding_outrank_a_misclassified_off_object_image():
    samples = pd.DataFrame({
        "rel_path": ["a/tagged.png", "a/wrong.png", "a/plain.png"], "status": "ok",
        "fg_enrichment": [1.5, 0.0, 0.2], "border_lift": [1.0, 1.0, 1.0],
        "border_energy": [0.36, 0.36, 0.36], "confidence": [0.8, 0.99, 0.9],
        "correct": [True, False, True]})
    before = suspicion_scores(samples)
    assert before.iloc[0] == 0.0  # on the object by its mask: nothing suspicious without a flag
    flag = Flag(kind="fixed_location", severity="medium", class_name="a", score=0.1,
                message="", evidence={"members": ["a/tagged.png"]}, samples=["a/tagged.png"])
    after = suspicion_scores(samples, [flag])
    assert after.iloc[0] == pytest.approx(0.8)
    assert after.iloc[0] > after.iloc[1] == pytest.approx(0.495)
    assert after.iloc[2] == pytest.approx(before.iloc[2])


def _part_class(name: str, n: int, n_off: int, seed: int, off: float = 0.2) -> pd.DataFrame:
    """A class of n samples whose first n_off maps sit off the object (enrichment ~`off` of a
    reference of 1.0), the rest on it (~1.8)."""
    rows = table(measured_rows(name, n_off, seed, off, 0.1),
                 measured_rows(name, n - n_off, seed + 1, 1.8, 0.1))
    rows["rel_path"] = [f"{name}/{i:03d}.png" for i in range(n)]
    return rows


def test_a_fifth_of_a_class_on_its_background_is_a_finding_on_part_of_the_class():
    classes = ["horse", "cat", "dog"]
    samples = table(_part_class("horse", 100, 20, 30), measured_rows("cat", 100, 32, 1.8, 0.1),
                    measured_rows("dog", 100, 33, 1.8, 0.1))
    assert samples.loc[samples["label"] == "horse", "fg_enrichment"].median() > 1.0
    flags = background_attention_flags(samples, classes)
    assert [f.class_name for f in flags] == ["horse"]
    flag = flags[0]
    evidence = flag.evidence
    carriers = {f"horse/{i:03d}.png" for i in range(20)}
    assert evidence["scope"] == "part"
    assert set(evidence["members"]) == carriers
    assert (evidence["k"], evidence["n"], evidence["k_rest"]) == (20, 100, 0)
    assert flag.score == pytest.approx(0.2)
    assert flag.severity == "medium"  # excess 0.2 >= 0.15 and 20 members; not >= 0.5
    # One-sided hypergeometric by hand: all 20 off maps of 300 fall in the class of 100,
    # P = C(100, 20) / C(300, 20); the class's test is the smaller of its two tests x 2.
    by_hand = math.comb(100, 20) / math.comb(300, 20)
    assert evidence["p_fisher"] == pytest.approx(by_hand, rel=1e-9)
    assert evidence["p_value"] == pytest.approx(2 * by_hand, rel=1e-9)
    assert "20 of 100" in flag.message
    # Its members lead the class's suspects.
    scores = suspicion_scores(samples, flags)
    top = samples.loc[scores.sort_values(ascending=False).index[:20], "rel_path"]
    assert set(top) == carriers


def test_a_part_finding_needs_maps_far_off_the_object_and_more_than_the_others_have():
    classes = ["horse", "cat", "dog"]
    # Two off maps are too few (k >= 3), however rare elsewhere.
    few = table(_part_class("horse", 100, 2, 40), measured_rows("cat", 100, 42, 1.8, 0.1),
                measured_rows("dog", 100, 43, 1.8, 0.1))
    assert background_attention_flags(few, classes) == []
    # A fifth of the class mildly short of its reference (0.85 of it, above the medium bound
    # 0.8: a blurred map beside a flat object) is not off the object.
    mild = table(_part_class("horse", 100, 20, 44, off=0.85),
                 measured_rows("cat", 100, 45, 1.8, 0.1), measured_rows("dog", 100, 46, 1.8, 0.1))
    assert background_attention_flags(mild, classes) == []
    # A fifth off in every class: no class differs from the others.
    every = table(*(_part_class(c, 100, 20, 50 + 3 * k) for k, c in enumerate(classes)))
    assert background_attention_flags(every, classes) == []


def test_a_whole_class_on_its_background_is_one_whole_class_finding():
    samples = table(class_rows("pokemon", "background", 40, 60),
                    class_rows("digimon", "object", 40, 61))
    flags = background_attention_flags(samples, ["pokemon", "digimon"])
    assert [(f.class_name, f.evidence.get("scope")) for f in flags] == [("pokemon", None)]


def test_a_fifth_of_a_class_on_the_border_is_a_border_finding_on_part_of_the_class():
    classes = ["framed", "cat", "dog"]
    samples = table(*(measured_rows(c, 100, 70 + k, 1.8, 0.1) for k, c in enumerate(classes)))
    samples["border_lift"] = 0.5
    samples.loc[:19, "border_lift"] = 1.6  # the first 20 of "framed": at least the bound 1.5
    samples["border_energy"] = 0.36 * samples["border_lift"]
    flags = border_attention_flags(samples, classes)
    assert [(f.class_name, f.evidence["scope"]) for f in flags] == [("framed", "part")]
    assert set(flags[0].evidence["members"]) == {f"framed/{i:03d}.png" for i in range(20)}
    samples.loc[:19, "border_lift"] = 1.4  # below the bound: no sample is off
    assert border_attention_flags(samples, classes) == []


def test_border_sides_of_a_part_finding_are_where_its_members_look():
    # Class "a": 5 members' maps on the left column, the other 15 on the right; 8x8 maps.
    maps = np.zeros((20, 8, 8), dtype=np.float32)
    maps[:5, :, 0] = 1.0
    maps[5:, :, 7] = 1.0
    samples = pd.DataFrame({"rel_path": [f"a/{i:02d}.png" for i in range(20)], "label": "a",
                            "status": "ok"})
    members = [f"a/{i:02d}.png" for i in range(5)]
    part = Flag("border_attention", "low", "a", 0.25, "",
                evidence={"scope": "part", "members": members})
    whole = Flag("border_attention", "low", "a", 0.5, "")
    annotate_border_sides([part, whole], samples, maps, 0.125)
    assert part.evidence["border_sides"] == ["left"]
    assert whole.evidence["border_sides"] == ["right"]


def test_the_mode_of_each_class_is_pandas_mode_per_class():
    # Ties between counts go to the first value in sorted order ("estimate" < "mask"), a
    # missing value is not counted, a class without a value has no mode.
    rng = np.random.default_rng(5)
    for _ in range(20):
        n_classes = 12
        codes = rng.integers(-1, n_classes, 200)
        column = pd.Series(rng.choice(["estimate", "mask", "box", None], codes.size))
        column[codes == 3] = None
        found = _mode_is(column, "estimate", codes, n_classes)
        for c in range(n_classes):
            mode = column[codes == c].mode()
            assert found[c] == (len(mode) > 0 and mode.iloc[0] == "estimate")
    tied = pd.Series(["mask", "estimate", "mask", "estimate"])
    assert _mode_is(tied, "estimate", np.array([0, 0, 1, 1]), 2).tolist() == [True, True]
    assert _mode_is(tied, "mask", np.array([0, 0, 1, 1]), 2).tolist() == [False, False]
