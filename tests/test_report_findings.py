"""Flags joined into findings and grouped into cards: one cause is one finding, one card per kind
of finding across classes, model-level first, at most MAX_CARDS whatever the number of classes."""

from __future__ import annotations

from auditor.detect.matching import flag_key, match_flags, region_of
from auditor.report.sections.classes import class_ids, classes_section
from auditor.report.sections.findings import MAX_CARDS, finding_cards, group_findings
from auditor.report.sections.verdict import executive_summary
from auditor.summary import DataFacts, Summary

CORNER = [0.0, 0.0, 0.25, 0.25]


def _summary(flags: list[dict], classes: list[str]) -> Summary:
    return Summary(command="", config={}, data=DataFacts(classes=classes), flags=flags)


def _flag(kind: str, cls: str | None, severity: str = "medium", score: float = 1.0,
          **evidence: object) -> dict:
    return {"kind": kind, "class": cls, "severity": severity, "score": score,
            "message": f"{kind} on {cls}", "evidence": dict(evidence), "samples": []}


def _corner_tag(cls: str) -> list[dict]:
    """What one tag in the top-left corner of a class raises today: four flags."""
    return [
        _flag("background_attention", cls, "medium", 0.4),
        _flag("border_attention", cls, "medium", 1.8),
        _flag("fixed_location", cls, "high", 0.9, region_box=CORNER),
        _flag("intervention_sensitive", cls, "high", 0.7,
              confirms={"kind": "fixed_location", "class": cls}, edit="box_blank"),
    ]


def test_a_corner_tag_is_one_finding_with_its_four_flags_as_evidence() -> None:
    findings = group_findings(_corner_tag("a"))
    assert len(findings) == 1
    finding = findings[0]
    assert finding.lead["kind"] == "fixed_location"
    assert finding.region == "top-left corner"
    assert finding.severity == "high"
    assert finding.confirmed
    assert sorted(f["kind"] for f in finding.flags) == sorted(
        ["background_attention", "border_attention", "fixed_location", "intervention_sensitive"])


def test_a_finding_is_titled_by_its_strongest_flag_not_by_the_one_with_a_region() -> None:
    # The demo's pokemon: a high background_attention, a medium fixed_location band (the only
    # flag with a region) and the high intervention that confirms the background.
    flags = [
        _flag("background_attention", "pokemon", "high", 0.02),
        _flag("fixed_location", "pokemon", "medium", 0.3, region="band down the image"),
        _flag("intervention_sensitive", "pokemon", "high", 1.0,
              confirms={"kind": "background_attention", "class": "pokemon"}),
    ]
    [finding] = group_findings(flags)
    assert finding.lead["kind"] == "background_attention"
    assert finding.region == "band down the image"  # the place still comes from its flag
    [card] = finding_cards(_summary(flags, ["pokemon", "digimon"]),
                           class_ids(["pokemon", "digimon"]))["cards"]
    assert card["title"] == "Attention on the background"
    assert card["rows"][0]["message"] == "background_attention on pokemon"
    # Equal severity: the documented kind order (a place before the background) decides.
    flags[0]["severity"] = "medium"
    assert group_findings(flags)[0].lead["kind"] == "fixed_location"


def test_two_regions_on_one_class_are_two_findings_and_other_classes_stay_apart() -> None:
    flags = [
        _flag("fixed_location", "a", "high", 0.9, region_box=CORNER),
        _flag("fixed_location", "a", "medium", 0.6, region_box=[0.75, 0.75, 1.0, 1.0]),
        _flag("border_attention", "b"),
        _flag("degenerate_maps", "a", "low"),
    ]
    findings = group_findings(flags)
    regions = sorted((f.cls, f.region or "", f.lead["kind"]) for f in findings)
    assert regions == [("a", "", "degenerate_maps"),
                       ("a", "bottom-right corner", "fixed_location"),
                       ("a", "top-left corner", "fixed_location"),
                       ("b", "", "border_attention")]
    assert sum(len(f.flags) for f in findings) == len(flags)


def test_confirmation_of_a_data_set_flag_joins_it_and_unknown_kinds_stand_alone() -> None:
    flags = [
        _flag("border_pixels_shortcut", None, "high", 0.9),
        _flag("intervention_sensitive", "a", "medium", 0.5,
              confirms={"kind": "border_pixels_shortcut", "class": None}),
        _flag("labels_permuted", None, "high", 1.0),
        _flag("some_future_kind", "c", "low", 0.1),
    ]
    cards = finding_cards(_summary(flags, ["a", "b", "c"]), class_ids(["a", "b", "c"]))["cards"]
    assert [c["kind"] for c in cards] == ["labels_permuted", "border_pixels_shortcut",
                                          "some_future_kind"]
    assert [c["level"] for c in cards] == ["model", "data set", "class"]
    assert cards[1]["n_confirmed"] == 1
    assert cards[2]["title"] == "Some future kind"


def test_a_thousand_classes_make_at_most_ten_cards_ranked_by_severity_and_support() -> None:
    classes = [f"c{k:04d}" for k in range(1000)]
    flags = [_flag("background_attention", c, "medium", 0.3) for c in classes[:370]]
    flags += [f for c in classes[370:375] for f in _corner_tag(c)]
    flags += [_flag("border_attention", c, "low") for c in classes[400:500]]
    flags += [_flag(f"kind_{k}", classes[k], "low") for k in range(12)]
    summary = _summary(flags, classes)
    result = finding_cards(summary, class_ids(classes))
    cards = result["cards"]
    assert len(cards) == MAX_CARDS
    assert result["left_out"]  # the rest named in one line
    assert (cards[0]["kind"], cards[0]["support"]) == ("fixed_location", 5)
    assert cards[0]["headline"] == "Attention returns to a fixed place in 5 of 1,000 classes"
    assert (cards[1]["kind"], cards[1]["support"]) == ("background_attention", 370)
    assert (cards[2]["kind"], cards[2]["support"]) == ("border_attention", 100)
    assert len(cards[1]["rows"]) + cards[1]["rows_left_out"] == 370
    text = " ".join(s for _, s in executive_summary(summary, cards, result["n_findings"]))
    assert "in 5 of 1,000 classes: c0370 (top-left corner)" in text


def test_flags_match_across_runs_by_kind_class_and_region_words() -> None:
    before = [_flag("fixed_location", "a", region_box=[0.0, 0.0, 0.2, 0.2]),
              _flag("border_attention", "b"), _flag("metadata_shortcut", None)]
    after = [_flag("fixed_location", "a", region_box=[0.0, 0.0, 0.3, 0.25]),  # same corner
             _flag("fixed_location", "a", region_box=[0.7, 0.7, 1.0, 1.0]),
             _flag("metadata_shortcut", None)]
    match = match_flags(before, after)
    assert [flag_key(f) for f in match.appeared] == [
        ("fixed_location", "a", "bottom-right corner")]
    assert [flag_key(f) for f in match.disappeared] == [("border_attention", "b", None)]
    assert len(match.persisting) == 2
    assert region_of({"region": "left edge", "evidence": {"region_box": CORNER}}) == "left edge"


def test_class_table_lists_every_class_worst_first_with_its_kinds() -> None:
    classes = ["x", "y", "z"]
    summary = _summary([_flag("border_attention", "z", "low"), *_corner_tag("y")], classes)
    table = classes_section(summary, classes, new_keys={("border_attention", "z", None)})
    assert [r["name"] for r in table["rows"]] == ["y", "z", "x"]
    assert table["rows"][0]["severity"] == "high"
    assert [r["new"] for r in table["rows"]] == [False, True, False]
    assert table["rows"][2]["kinds"] == []
