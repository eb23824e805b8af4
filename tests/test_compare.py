"""`auditor compare` and `audit --baseline` on synthetic run directories: flags matched by kind,
class and region; the paired test against hand-derived answers; overlap by rel_path; exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from auditor.cli import main
from auditor.compare import baseline_record, compare_runs, paired_test
from auditor.errors import UsageError
from auditor.store import RunReader, write_json
from auditor.summary import read_summary_json
from tests.helpers.run_fixtures import clean_run, full_run


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("compare")
    return clean_run(root / "clean", seed=1), full_run(root / "flagged")


def test_paired_test_medians_difference_and_p_value_match_hand_derived_answers() -> None:
    before = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, np.nan])
    after = before + 0.1
    after[-1] = 0.5  # a pair with NaN is dropped
    out = paired_test(before, after)
    assert out["n"] == 8
    assert out["median_a"] == pytest.approx(0.45)
    assert out["median_b"] == pytest.approx(0.55)
    assert out["difference"] == pytest.approx(0.1)
    # Eight positive differences, all tied: exact two-sided p = 2 / 2**8.
    assert out["p_value"] == pytest.approx(2 / 256, rel=0.2)
    assert paired_test(before, before)["p_value"] == 1.0
    assert paired_test(np.array([0.1]), np.array([0.2]))["p_value"] is None


def test_compare_finds_the_flags_that_appeared_and_states_the_overlap(runs) -> None:
    clean, flagged = runs
    comparison = compare_runs(clean, flagged)
    kinds = sorted(f["kind"] for f in comparison.flags["appeared"])
    assert kinds == ["border_attention", "fixed_location", "intervention_sensitive",
                     "metadata_shortcut"]
    assert comparison.flags["disappeared"] == []
    assert comparison.overlap.n_shared == 21
    assert comparison.exit_code("high") == 3
    back = compare_runs(flagged, clean)
    assert len(back.flags["disappeared"]) == 4
    assert back.exit_code("low") == 0
    same = compare_runs(flagged, flagged)
    assert len(same.flags["persisting"]) == 4
    assert same.changed == []  # nothing changed: no sample listed


def test_per_class_medians_are_taken_over_the_shared_samples_only(runs, tmp_path: Path) -> None:
    clean, flagged = runs
    # B keeps only the cat rows: A's medians must be over the same rows.
    reader = RunReader(flagged)
    samples = reader.samples()
    copy = tmp_path / "cats"
    full_run(copy)
    keep = samples[samples["label"] == "cat"]
    keep.to_parquet(copy / "samples.parquet")
    comparison = compare_runs(clean, copy)
    assert set(comparison.classes) == {"cat"}
    a = RunReader(clean).samples().set_index("rel_path").loc[keep["rel_path"], "fg_energy"]
    assert comparison.classes["cat"]["measures"]["fg_energy"]["median_a"] == pytest.approx(
        float(a.dropna().median()))
    assert comparison.overlap.n_shared == int(keep["status"].eq("ok").sum())


def test_runs_that_share_no_sample_exit_2_with_the_reason(runs, tmp_path: Path) -> None:
    clean, _ = runs
    other = full_run(tmp_path / "other")
    frame = pd.read_parquet(other / "samples.parquet")
    frame["rel_path"] = "elsewhere/" + frame["rel_path"]
    frame.to_parquet(other / "samples.parquet")
    with pytest.raises(UsageError, match="share no readable sample"):
        compare_runs(clean, other)
    result = CliRunner().invoke(main, ["compare", str(clean), str(other), "--out",
                                       str(tmp_path / "out")])
    assert result.exit_code == 2
    assert "share no readable sample" in result.output


def test_cli_compare_writes_json_and_a_self_contained_page(runs, tmp_path: Path) -> None:
    clean, flagged = runs
    out = tmp_path / "cmp"
    result = CliRunner().invoke(main, ["compare", str(clean), str(flagged), "--out", str(out),
                                       "--fail-on", "high"])
    assert result.exit_code == 3, result.output
    data = json.loads((out / "compare.json").read_text(encoding="utf-8"))
    assert {"appeared", "disappeared", "persisting", "classes", "accuracy", "changed",
            "overlap"} <= set(data)
    assert data["classes"]["cat"]["measures"]["fg_energy"]["p_value"] is not None
    html = (out / "compare.html").read_text(encoding="utf-8")
    assert "http://" not in html.replace("http://www.w3.org", "")
    assert "<script>alert" not in html
    assert html.count('alt="Map in run A of') == len(data["changed"]) > 0
    ok = CliRunner().invoke(main, ["compare", str(flagged), str(clean), "--out", str(out),
                                   "--fail-on", "low"])
    assert ok.exit_code == 0, ok.output


def test_baseline_record_counts_only_new_flags(runs) -> None:
    clean, flagged = runs
    summary = read_summary_json(flagged)
    samples = RunReader(flagged).samples()
    known = baseline_record(summary["flags"], flagged, samples)
    assert known["appeared"] == []
    assert known["n_persisting"] == 4
    new = baseline_record(summary["flags"], clean, samples)
    assert {a["kind"] for a in new["appeared"]} == {
        "border_attention", "fixed_location", "intervention_sensitive", "metadata_shortcut"}
    assert all(a["severity"] for a in new["appeared"])


def test_report_marks_what_is_new_against_the_baseline(runs, tmp_path: Path) -> None:
    from auditor.report import render_report

    clean, _ = runs
    run = full_run(tmp_path / "run")
    reader = RunReader(run)
    summary = read_summary_json(run)
    summary["baseline"] = baseline_record(summary["flags"][:1], clean, reader.samples())
    write_json(run / "summary.json", summary)
    html = render_report(run).read_text(encoding="utf-8")
    assert "Against the baseline" in html
    assert html.count('class="new"') >= 2  # the card's badge and its class row
