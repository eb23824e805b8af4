"""End to end through run_audit: each planted shortcut raises its flags; a clean set raises none.

The data sets and the trainer are in tests/helpers/shortcut_sets.py. One trained model per set
(module-scoped); interventions run only where a test checks them, to keep the file fast.
"""

from __future__ import annotations

import pytest

from tests.helpers.shortcut_sets import audit, train, write_set

# Among the longest tests (whole audits, training, subprocesses): `-m "not slow"` skips them.
pytestmark = pytest.mark.slow

PER_CLASS = 40


def _run(tmp_path_factory, kind: str, interventions: bool, per_class: int = PER_CLASS,
         epochs: int = 8) -> tuple:
    root = tmp_path_factory.mktemp(kind)
    marked = write_set(root, kind, per_class=per_class, seed=0)
    result = audit(root, train(root, epochs=epochs, seed=0), interventions=interventions)
    return result, marked


def _kinds(result, severities=("high", "medium", "low")) -> dict[tuple, str]:
    return {(f["kind"], f["class"]): f["severity"] for f in result.flags
            if f["severity"] in severities}


@pytest.fixture(scope="module")
def background(tmp_path_factory):
    return _run(tmp_path_factory, "background", interventions=True)[0]


@pytest.fixture(scope="module")
def file_format(tmp_path_factory):
    return _run(tmp_path_factory, "format", interventions=False)[0]


@pytest.fixture(scope="module")
def corner_tag(tmp_path_factory):
    # Larger and longer than the others: with 40 images a class the tiny net memorises each
    # image's texture, so its maps find the tag but blanking the tag alone flips nothing. With
    # 150 it relies on the tag, as a real model with a real watermark does.
    return _run(tmp_path_factory, "corner_tag", interventions=True, per_class=150, epochs=15)


@pytest.fixture(scope="module")
def frame(tmp_path_factory):
    return _run(tmp_path_factory, "frame", interventions=True)[0]


@pytest.fixture(scope="module")
def control(tmp_path_factory):
    return _run(tmp_path_factory, "control", interventions=False)[0]


def test_background_colour_is_flagged_and_confirmed_by_the_swap(background):
    flags = _kinds(background)
    assert ("background_attention", "a") in flags
    confirming = [f for f in background.flags if f["kind"] == "intervention_sensitive"]
    assert any(f["evidence"]["confirms"] == {"kind": "background_attention", "class": "a"}
               for f in confirming)
    original = next(f for f in background.flags if f["kind"] == "background_attention")
    assert "confirmed_by" in original["evidence"]
    assert any(r["edit"] == "background_swap" and r["confirmed"]
               for r in background.summary["interventions"])


def test_format_alone_is_a_model_free_metadata_shortcut(file_format):
    assert _kinds(file_format).get(("metadata_shortcut", None)) == "high"
    flag = next(f for f in file_format.flags if f["kind"] == "metadata_shortcut")
    assert "format" in flag["message"]


def test_corner_tag_is_a_fixed_location_whose_suspects_are_the_tagged_images(corner_tag):
    result, tagged = corner_tag
    assert _kinds(result).get(("fixed_location", "a")) in ("high", "medium")
    location = next(f for f in result.flags if f["kind"] == "fixed_location")
    assert location["evidence"]["region_box"][0] < 0.2  # left edge of the image
    samples = result.samples()
    suspects = samples[samples["label"] == "a"].nlargest(10, "suspicion")["rel_path"]
    assert sum(path in tagged for path in suspects) >= 8


def test_border_frame_is_flagged_model_free_and_by_attention_and_confirmed(frame):
    flags = _kinds(frame)
    assert flags.get(("border_pixels_shortcut", None)) == "high"
    assert ("border_attention", "a") in flags
    confirmed = {f["evidence"]["confirms"]["kind"] for f in frame.flags
                 if f["kind"] == "intervention_sensitive"}
    assert {"border_attention", "border_pixels_shortcut"} <= confirmed


def test_clean_set_raises_no_high_flag(control):
    assert control.summary["accuracy"]["overall"] > 0.7
    assert not _kinds(control, severities=("high",))


def test_corner_tag_is_confirmed_by_blanking_and_by_swapping_its_box(corner_tag):
    result, _ = corner_tag
    records = {r["edit"]: r for r in result.summary["interventions"]
               if r["confirms"] == "fixed_location" and r["class"] == "a"}
    assert set(records) == {"box_blank", "box_swap"}
    for record in records.values():
        assert record["confirmed"]
        assert record["flip_rate"] - record["control_flip_rate"] >= 0.5
    confirming = [f for f in result.flags if f["kind"] == "intervention_sensitive"
                  and f["evidence"]["confirms"] == {"kind": "fixed_location", "class": "a"}]
    assert len(confirming) == 1
