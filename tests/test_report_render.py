"""The report rendered from synthetic run directories: every section, none flagged, nothing
readable, escaping of user strings, no external reference, caps, CSV, JSON, notebook view."""

from __future__ import annotations

import base64
import csv
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from auditor.detect.flags import Flag
from auditor.errors import RunDirectoryError, UsageError
from auditor.report import render_report, summary_html, summary_json, write_samples_csv
from auditor.report.formatting import fmt_identifier, fmt_number
from auditor.report.sections import class_maps, probes
from auditor.report.sections import unreadable as unreadable_section
from auditor.report.sections.verdict import verdict as verdict_of
from auditor.store import RunReader
from auditor.summary import DataFacts, Summary, read_summary, write_summary
from tests.helpers.run_fixtures import (
    HOSTILE_CLASSES,
    build_run,
    clean_run,
    full_run,
    unreadable_run,
)

SECTION_IDS = ("verdict", "classes", "facts", "attention", "maps", "probes", "gallery", "clusters",
               "interventions", "errors", "method")


class _Page(HTMLParser):
    """Collects the text, the tags with their attributes, and the URLs a page refers to."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.text: list[str] = []
        self.tags: list[tuple[str, dict[str, str]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, {k: v or "" for k, v in attrs}))

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def images(self) -> list[dict[str, str]]:
        return [a for t, a in self.tags if t == "img"]

    def with_attr(self, name: str, value: str) -> list[dict[str, str]]:
        return [a for _, a in self.tags if a.get(name) == value]


def _text(page: _Page) -> str:
    """The page's text as a reader sees it: adjacent nodes joined, whitespace collapsed."""
    return re.sub(r"\s+", " ", "".join(page.text))


def _parse(html: str) -> _Page:
    page = _Page()
    page.feed(html)
    return page


@pytest.fixture(scope="module")
def full(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    run = full_run(tmp_path_factory.mktemp("full") / "run", classes=HOSTILE_CLASSES)
    return run, render_report(run).read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    run = clean_run(tmp_path_factory.mktemp("clean") / "run")
    return run, render_report(run).read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def unreadable(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    run = unreadable_run(tmp_path_factory.mktemp("none") / "run")
    return run, render_report(run).read_text(encoding="utf-8")


def test_full_run_report_populates_every_section(full: tuple[Path, str]) -> None:
    run, html = full
    page = _parse(html)
    ids = {a.get("id") for _, a in page.tags}
    assert set(SECTION_IDS) <= ids
    assert "Not run" not in html
    text = _text(page)
    assert ("2 signs of shortcut learning found in 1 of 3 classes, from 4 flags (2 high, 1 medium, "
            "1 low)") in text
    assert len([a for a in page.with_attr("class", "card")]) == 21  # every readable sample
    assert "fixed-0" in ids  # the fixed_location flag's peak grid (first in summary.json)
    assert "format by class" in text
    assert "Cluster 0" in text
    assert "border band blanked" in text
    assert "cannot identify image file" in text
    assert "truncated file" in text
    assert "passed" in text  # sanity check
    assert (run / "report.html").is_file()


def test_flags_link_down_to_their_evidence(full: tuple[Path, str]) -> None:
    page = _parse(full[1])
    ids = {a.get("id") for _, a in page.tags}
    links = [a["href"] for t, a in page.tags if t == "a" and a.get("href", "").startswith("#")]
    assert "#fixed-0" in links
    assert "#class-0" in links
    assert "#probes" in links
    assert "#interventions" in links
    assert {link[1:] for link in links} <= ids


def test_interventions_are_named_in_words_and_confirm_their_finding(
        full: tuple[Path, str]) -> None:
    text = _text(_parse(full[1]))
    assert "border band blanked: flips 40% of predictions (control 5%)" in text
    assert "attention box swapped for another class's" in text


def test_an_older_intervention_record_without_description_shows_its_edit_code(
        tmp_path: Path) -> None:
    run = full_run(tmp_path / "run")
    summary = read_summary(run)
    assert summary.interventions is not None
    summary.interventions.append({"class": "cat", "edit": "swap_background", "n": 6,
                                  "flip_rate": 0.1, "control_flip_rate": 0.0})
    write_summary(run, summary)
    assert "swap_background" in _text(_parse(render_report(run).read_text(encoding="utf-8")))


def test_report_with_no_flag_says_so_and_marks_absent_sections_not_run(
    clean: tuple[Path, str],
) -> None:
    text = _text(_parse(clean[1]))
    assert "No shortcut was flagged in the 21 audited images of 3 classes" in text
    assert "Not run: this run has no model-free probe results." in text
    assert "Not run: this run has no attention clusters." in text
    assert "Not run: this run has no intervention results" in text
    assert 'class="light high"' not in clean[1].split('id="facts"')[0]


def test_report_with_zero_readable_files_says_nothing_was_audited(
    unreadable: tuple[Path, str],
) -> None:
    page = _parse(unreadable[1])
    text = _text(page)
    assert "Nothing was audited: none of the 21 files could be read" in text
    assert "Partial audit" in text
    assert "No readable image: nothing to show." in text
    assert "21 files could not be read" in text
    assert page.images() == []


def test_hostile_class_and_file_names_appear_as_text_never_as_markup(
    full: tuple[Path, str],
) -> None:
    html = full[1]
    page = _parse(html)
    # Our one inline script is the only script element; the class name never opens one.
    assert [t for t, _ in page.tags].count("script") == 1
    assert [t for t, _ in page.tags].count("b") == 0
    assert "<script>alert(1)</script>" not in html
    text = "".join(page.text)
    assert HOSTILE_CLASSES[0] in text
    assert HOSTILE_CLASSES[1] in text
    tricky = 'img 00003 "q" ‘é’ & <x>.png'
    assert tricky in text
    # In attributes too (filters, alt text): escaped in the source, intact once parsed.
    assert any(tricky in a.get("alt", "") for a in page.images())
    assert any(a.get("data-caption", "").endswith(tricky) for _, a in page.tags)


def test_report_refers_to_no_other_host(full: tuple[Path, str], clean: tuple[Path, str]) -> None:
    for _, html in (full, clean):
        page = _parse(html)
        refs = [a[k] for _, a in page.tags for k in ("src", "href") if k in a]
        assert refs
        assert all(r.startswith(("data:", "#")) for r in refs), [
            r[:40] for r in refs if not r.startswith(("data:", "#"))
        ]
        css_urls = re.findall(r"url\(\s*['\"]?([^)'\"]*)", html)
        assert all(u.startswith(("#", "data:")) for u in css_urls)
        assert "@import" not in html
        assert not re.search(r"(src|href|action)\s*=\s*['\"]?\s*(https?:)?//", html)


def test_every_image_has_alt_text_and_tables_have_scoped_headers(
    full: tuple[Path, str],
) -> None:
    page = _parse(full[1])
    assert all(a.get("alt", "").strip() for a in page.images())
    ths = [a for t, a in page.tags if t == "th"]
    assert ths
    assert all(a.get("scope") in ("col", "row") for a in ths)


def test_mean_map_overlay_of_the_watermark_class_is_hot_in_the_top_left(
    full: tuple[Path, str],
) -> None:
    page = _parse(full[1])
    alt = f"Mean attention map of class {HOSTILE_CLASSES[0]} over its mean image"
    src = next(a["src"] for a in page.images() if a.get("alt") == alt)
    payload = base64.b64decode(src.split(",", 1)[1])
    rgb = cv2.cvtColor(cv2.imdecode(np.frombuffer(payload, np.uint8), cv2.IMREAD_COLOR),
                       cv2.COLOR_BGR2RGB).astype(float)
    h, w = rgb.shape[:2]
    assert (h, w) == (48, 64)  # non-square input kept its orientation
    hot = rgb[..., 0] + rgb[..., 1] - rgb[..., 2]
    row, col = np.unravel_index(np.argmax(hot), hot.shape)
    assert row < h / 4
    assert col < w / 4


def test_missing_thumbnail_shows_an_image_not_stored_box(full: tuple[Path, str]) -> None:
    page = _parse(full[1])
    card_texts = full[1].split('data-class="class-0"')
    assert "image not stored" in _text(page)
    assert any("Attention map alone (image not stored)" in a.get("alt", "")
               for a in page.images())
    assert len(card_texts) > 1


def test_gallery_is_capped_and_says_how_many_were_left_out(tmp_path: Path) -> None:
    run = full_run(tmp_path / "run")
    html = render_report(run, gallery_size=5).read_text(encoding="utf-8")
    page = _parse(html)
    cards = page.with_attr("class", "card")
    assert len(cards) == 5
    text = _text(page)
    assert "16 images are left out" in text
    # The five most suspicious readable samples, in order.
    samples = pd.read_parquet(run / "samples.parquet")
    ok = samples[samples["status"] == "ok"]
    top = ok.sort_values(["suspicion", "index"], ascending=[False, True]).head(5)
    shown = [a["data-caption"] for _, a in page.tags if "data-caption" in a and "/" in
             a["data-caption"]]
    assert shown == top["rel_path"].tolist()


def test_errors_are_grouped_by_kind_and_capped(tmp_path: Path) -> None:
    run = build_run(tmp_path / "run", n_errors=60, optional_sections=False)
    html = render_report(run).read_text(encoding="utf-8")
    text = _text(_parse(html))
    per_kind = 60 // 2
    assert f"cannot identify image file: {per_kind} files" in text
    left = per_kind - unreadable_section.MAX_ERRORS_PER_KIND
    assert f"{left} more files of this kind are left out" in text
    assert "Partial audit" in text  # 60 of 78 files unreadable


@pytest.mark.parametrize(
    ("reason", "kind"),
    [
        ("cannot identify image file: /a/b.png", "cannot identify image file"),
        ("truncated file (3 bytes)", "truncated file"),
        ("image exceeds the pixel limit of 89478485 pixels", "image exceeds the pixel"),
        ("", "unknown error"),
    ],
)
def test_error_kind_is_the_reason_before_its_details(reason: str, kind: str) -> None:
    assert unreadable_section.error_kind(reason) == kind


def test_output_argument_writes_the_report_elsewhere(tmp_path: Path) -> None:
    run = clean_run(tmp_path / "run")
    out = render_report(run, output=tmp_path / "elsewhere.html")
    assert out == tmp_path / "elsewhere.html"
    assert out.is_file()
    assert not (run / "report.html").exists()


def test_render_refuses_bad_input(tmp_path: Path) -> None:
    with pytest.raises(RunDirectoryError, match=r"samples\.parquet"):
        render_report(tmp_path)
    run = clean_run(tmp_path / "run")
    with pytest.raises(UsageError, match="gallery_size"):
        render_report(run, gallery_size=-1)


def test_report_and_table_from_one_read_are_the_ones_read_alone(tmp_path: Path) -> None:
    run = full_run(tmp_path / "run")
    html = render_report(run, output=tmp_path / "alone.html").read_bytes()
    table = write_samples_csv(run).read_bytes()
    reader = RunReader(run)
    assert render_report(run, reader=reader).read_bytes() == html
    # The report leaves the shared table as read.
    pd.testing.assert_frame_equal(reader.samples(), pd.read_parquet(run / "samples.parquet"))
    assert write_samples_csv(run, reader=reader).read_bytes() == table


def test_samples_csv_has_every_row_and_defuses_spreadsheet_formulas(tmp_path: Path) -> None:
    run = clean_run(tmp_path / "run")
    samples = pd.read_parquet(run / "samples.parquet")
    samples.loc[0, "rel_path"] = "=HYPERLINK(\"http://x\")"
    samples.to_parquet(run / "samples.parquet", index=False)
    path = write_samples_csv(run)
    with open(path, encoding="utf-8-sig", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == len(samples)
    assert rows[0]["rel_path"] == "'=HYPERLINK(\"http://x\")"
    assert rows[1]["rel_path"] == samples.loc[1, "rel_path"]
    assert "map_part" not in rows[0]


def test_summary_json_is_the_run_summary(full: tuple[Path, str]) -> None:
    run, _ = full
    text = summary_json(run)
    assert json.loads(text) == json.loads((run / "summary.json").read_text(encoding="utf-8"))
    assert "Mañana" in text  # non-ASCII kept readable, not \u-escaped


def test_notebook_summary_shows_the_reports_findings_not_its_flags_escaped(
    full: tuple[Path, str],
) -> None:
    summary = read_summary(full[0])
    html = summary_html(summary)
    page = _parse(html)
    text = _text(page)
    # The fixture's four flags are two findings (fixed_location + border + its intervention on
    # one class; the metadata probe): the notebook says what the report's verdict says.
    report = _text(_parse(full[1]))
    assert "2 signs of shortcut learning found in 1 of 3 classes, from 4 flags" in text
    assert "2 signs of shortcut learning found in 1 of 3 classes, from 4 flags" in report
    assert "2 findings from 4 flags" in text
    assert "Attention returns to a fixed place in 1 of 3 classes" in text
    assert "File properties predict the label across the data set" in text
    assert "border_attention" not in text  # joined into the fixed_location finding
    assert "71.4%" in text  # 5 of the first class's 7 rows are right
    assert HOSTILE_CLASSES[0] in text
    assert "<script>" not in html
    assert len(html) < 10_000


def test_withheld_flags_are_each_listed_collapsed_with_why(tmp_path: Path) -> None:
    run = clean_run(tmp_path / "run")
    summary = read_summary(run)
    chance = Flag("model_at_chance", "high", None, 0.01, "The model is no better than chance",
                  {"accuracy": 0.34, "chance": 0.33})
    summary.flags = [chance.to_dict()]
    summary.withheld_flags = [
        Flag("fixed_location", "high", "dog", 0.8, "class dog: peaks in the top-left corner",
             {"region_box": [0.0, 0.0, 0.25, 0.25]}).to_dict(),
        Flag("background_attention", "medium", "cat", 0.3, "class cat: <b>background</b>",
             {}).to_dict(),
    ]
    write_summary(run, summary)
    html = render_report(run).read_text(encoding="utf-8")
    withheld = html[html.index('<details class="withheld"'):]
    withheld = withheld[:withheld.index("</details>")]
    text = _text(_parse(withheld))
    assert "2 class-level flags withheld by the model check" in text
    assert "Withheld because the model is no better than chance" in text
    assert text.index("class dog: peaks in the top-left corner") < text.index(
        "class cat: <b>background</b>")  # strongest first, the message escaped
    assert "<b>background</b>" not in html
    assert "Attention returns to a fixed place" in text
    # The notebook says how many were withheld.
    assert "2 class-level flags withheld" in _text(_parse(summary_html(summary)))


def test_verdict_level_is_the_worst_severity_and_warns_on_many_errors() -> None:
    facts = DataFacts(n_samples=100, n_ok=90, n_errors=10, classes=["a", "b"])
    summary = Summary(command="", config={}, data=facts,
                      flags=[{"severity": "low"}, {"severity": "medium"}])
    verdict = verdict_of(summary)
    assert verdict["level"] == "medium"
    assert verdict["partial"]
    assert verdict["error_share"] == pytest.approx(0.1)
    facts.n_errors, facts.n_ok = 1, 99
    assert not verdict_of(summary)["partial"]
    clean = Summary(command="", config={}, data=DataFacts(n_samples=3, n_ok=3))
    assert verdict_of(clean)["level"] == "ok"


def test_peak_grid_counts_cells_with_row_zero_at_the_top() -> None:
    grid = class_maps.peak_grid(
        np.array([0.1, 0.9, 0.9, np.nan, 1.0]), np.array([0.1, 0.1, 0.1, 0.5, 1.0])
    )
    assert grid[0][0] == 1
    assert grid[0][3] == 2
    assert grid[3][3] == 1
    assert sum(map(sum, grid)) == 4


def test_fixed_location_grid_is_counted_from_peaks_when_evidence_has_none() -> None:
    ok = pd.DataFrame({"label": ["a", "a", "b"], "peak_x": [0.05, 0.1, 0.9],
                       "peak_y": [0.05, 0.1, 0.9]})
    flags = [{"kind": "fixed_location", "class": "a", "evidence": {}}]
    grids = class_maps.fixed_location_grids(flags, ok)
    texts = [c["text"] for c in grids[0]["layout"]["cells"]]
    assert texts[0] == "2"
    assert texts.count("0") == 15


def test_property_table_marks_values_distinctive_of_a_class() -> None:
    ok = pd.DataFrame({"label": ["a"] * 4 + ["b"] * 4,
                       "file_format": ["PNG"] * 4 + ["JPEG"] * 4, "file_width": [64] * 8})
    table = probes.property_table(ok, "format")
    assert table is not None
    assert set(table["columns"]) == {"PNG", "JPEG"}
    cells = {(r["label"], col): cell for r in table["rows"]
             for col, cell in zip(table["columns"], r["cells"], strict=True)}
    assert cells[("a", "PNG")]["count"] == 4
    assert cells[("a", "PNG")]["distinctive"]
    assert not cells[("a", "JPEG")]["distinctive"]
    same = probes.property_table(ok, "width")
    assert same is not None
    assert not any(c["distinctive"] for r in same["rows"] for c in r["cells"])
    assert probes.property_table(ok, "quality") is None


def test_crosstab_equals_pandas_crosstab() -> None:
    rng = np.random.default_rng(0)
    for dtype in (object, "str"):
        labels = np.array(["b", "a", "\u00e9", "Z", "10", "9", ""], dtype=object)[
            rng.integers(0, 7, 500)]
        labels[rng.random(500) < 0.1] = None
        values = pd.Series(rng.choice(["PNG", "JPEG", "(other)", ""], 500))
        values[rng.random(500) < 0.1] = None
        rows = pd.Series(labels, dtype=dtype)
        pd.testing.assert_frame_equal(probes.crosstab(rows, values), pd.crosstab(rows, values),
                                      check_names=False, check_index_type=False,
                                      check_column_type=False)


def test_property_table_spells_empty_and_missing_values_as_the_probe_flags_do() -> None:
    # A PNG has no chroma subsampling ("") and no JPEG quality (NaN); 85.0 prints as 85.
    ok = pd.DataFrame({"label": ["a"] * 3 + ["b"] * 3,
                       "file_chroma_subsampling": ["4:2:0"] * 3 + [""] * 3,
                       "file_jpeg_quality": [85.0] * 3 + [np.nan] * 3})
    chroma = probes.property_table(ok, "chroma_subsampling")
    quality = probes.property_table(ok, "jpeg_quality")
    assert chroma is not None
    assert quality is not None
    assert chroma["columns"] == ["4:2:0", "(none)"]
    assert quality["columns"] == ["85", "(missing)"]


def test_association_statistics_are_named_in_words(full: tuple[Path, str]) -> None:
    text = _text(_parse(full[1]))
    assert "Cramér's V" in text
    assert "cramers_v" not in text


def test_numbers_that_round_to_zero_show_no_minus_sign() -> None:
    assert [fmt_number(v) for v in (-0.0015, -0.006, 0.004, float("nan"))] == [
        "0.00", "-0.01", "0.00", "–"]


def test_flag_kinds_may_break_after_an_underscore_only_and_stay_escaped(
        full: tuple[Path, str]) -> None:
    assert str(fmt_identifier("intervention_sensitive")) == "intervention_<wbr>sensitive"
    assert str(fmt_identifier("<b>_x")) == "&lt;b&gt;_<wbr>x"
    # Every flag kind in the report is wrapped this way, and its text reads unchanged.
    html = full[1]
    assert "<code class=\"ident\">border_<wbr>attention</code>" in html
    assert "border_attention" in _text(_parse(html))


def test_run_notes_list_model_and_data_warnings_escaped(tmp_path: Path) -> None:
    run = full_run(tmp_path / "run")
    path = run / "summary.json"
    summary = json.loads(path.read_text(encoding="utf-8"))
    summary["model"].update(target_layers_given=False,
                            warnings=["the target layer conv_proj is followed by transformer"])
    summary["data"]["warnings"] = ["3 of 18 images have no mask in '<masks>'"]
    path.write_text(json.dumps(summary), encoding="utf-8")
    html = render_report(run).read_text(encoding="utf-8")
    text = _text(_parse(html))
    assert "Notes on this run" in text
    assert "The target layer conv_proj is followed by transformer" in text
    assert "3 of 18 images have no mask in '<masks>'" in text  # shown as text...
    assert "<masks>" not in html  # ...never as markup
    assert "layer4 (chosen automatically)" in text


def test_run_without_warnings_has_no_notes(full: tuple[Path, str]) -> None:
    assert "Notes on this run" not in full[1]


def test_probe_classifiers_that_did_not_run_are_named_with_why(tmp_path: Path) -> None:
    # 3 classes x 6 rows: below the probes' 20-row minimum, so neither classifier runs.
    html = render_report(full_run(tmp_path / "run", n_per_class=6)).read_text(encoding="utf-8")
    assert "Not run: metadata classifier, border classifier (too little data" in _text(_parse(html))


def test_probe_skips_of_each_label_reach_the_section() -> None:
    skipped = {"status": "skipped", "reason": "only one class"}
    per_label = {
        "effusion": {"associations": [], "metadata_classifier": dict(skipped),
                     "border_classifier": {"accuracy": 0.9, "ci_low": 0.8, "ci_high": 0.95,
                                           "baseline": 0.5},
                     },
    }
    section = probes.probes_section({"multi_label": True, "per_label": per_label},
                                    pd.DataFrame({"status": ["ok"]}))
    assert section["not_run"] == [{"labels": ["effusion: metadata classifier"],
                                   "reason": "only one class"}]
    assert [c["label"] for c in section["classifiers"]] == ["effusion: border classifier"]


def test_the_peak_grid_outlines_the_flagged_region(full: tuple[Path, str]) -> None:
    # The fixture's fixed_location flag: a 4 x 4 peak grid, region = the top-left cell; the
    # grid is drawn 28 units a cell, so its outline is that cell's four sides.
    html = full[1]
    figure = html[html.index('<figure id="fixed-0"'):]
    figure = figure[:figure.index("</figure>")]
    edges = sorted(re.findall(r'<line class="region-edge" x1="([\d.]+)" y1="([\d.]+)" '
                              r'x2="([\d.]+)" y2="([\d.]+)"', figure))
    assert edges == sorted([("0.0", "0.0", "28.0", "0.0"), ("0.0", "28.0", "28.0", "28.0"),
                            ("0.0", "0.0", "0.0", "28.0"), ("28.0", "0.0", "28.0", "28.0")])
    assert "outlined in red: the flagged region" in figure
