"""summary.json's one schema: the key order of the contract, the probe's subset, reading back."""

from __future__ import annotations

import json
from pathlib import Path

from auditor.summary import (
    MODEL_ONLY_KEYS,
    DataFacts,
    ModelFacts,
    Summary,
    read_summary,
    write_summary,
    write_timings,
)

AUDIT_KEYS = [
    "auditor_version", "created", "command", "config", "versions", "model", "data", "methods",
    "primary", "suspect_methods", "suspect_methods_errors", "accuracy", "model_check",
    "class_stats", "probes", "interventions", "clusters", "sanity", "flags", "withheld_flags",
    "baseline", "pass", "timings",
]


def _audit_summary() -> Summary:
    return Summary(
        command="auditor audit data", config={"border": 0.1},
        model=ModelFacts(spec="m:f", parameters=10, outputs=2, target_layers=["features"],
                         input_size=[32, 48], device="cpu"),
        data=DataFacts(root="/d", source="folder", classes=["a", "b"], n_samples=4, n_ok=3,
                       n_errors=1),
        methods=["gradcam"], primary="gradcam", accuracy={"overall": float("nan")},
        flags=[{"kind": "border_attention", "severity": "high"}], pass_stats={"images_per_s": 2.0},
        timings={"pass": 1.5},
    )


def test_an_audit_writes_every_key_in_the_documented_order(tmp_path: Path) -> None:
    write_summary(tmp_path, _audit_summary())
    raw = json.loads((tmp_path / "summary.json").read_text())
    assert list(raw) == AUDIT_KEYS
    assert raw["accuracy"]["overall"] is None  # NaN is written as null
    assert raw["model"]["input_size"] == [32, 48]
    assert raw["pass"] == {"images_per_s": 2.0}


def test_a_probe_summary_has_no_model_only_keys() -> None:
    probe = Summary(command="", config={}, data=DataFacts(root="/d"))
    keys = list(probe.to_dict())
    assert keys == [k for k in AUDIT_KEYS if k not in MODEL_ONLY_KEYS]
    assert probe.to_dict()["model"] is None


def test_reading_back_gives_the_same_summary(tmp_path: Path) -> None:
    written = _audit_summary()
    write_summary(tmp_path, written)
    again = read_summary(tmp_path)
    assert again.model == written.model
    assert again.data == written.data
    assert again.pass_stats == written.pass_stats
    assert again.to_dict()["flags"] == written.to_dict()["flags"]


def test_keys_an_older_run_lacks_take_their_defaults() -> None:
    old = Summary.from_dict({"data": {"n_samples": 3}, "model": {"spec": "x"}})
    assert old.data is not None
    assert old.data.n_samples == 3
    assert old.data.classes == []
    assert old.model is not None
    assert old.model.target_layers_given
    assert old.flags == []
    assert old.suspect_methods == []


def test_new_timings_give_the_file_of_the_whole_summary(tmp_path: Path) -> None:
    summary = _audit_summary()
    summary.withheld_flags = [{"kind": "x", "evidence": {"timings": [1.0, float("nan")]},
                               "note": '\n  "timings": {'}]
    write_summary(tmp_path, summary)
    summary.timings.update(report=0.25, detect=2.0)
    write_timings(tmp_path, summary.timings)
    whole = tmp_path / "whole"
    whole.mkdir()
    write_summary(whole, summary)
    assert (tmp_path / "summary.json").read_bytes() == (whole / "summary.json").read_bytes()
    assert read_summary(tmp_path).timings == {"pass": 1.5, "report": 0.25, "detect": 2.0}


def test_timings_that_are_not_the_last_key_are_rewritten_in_place(tmp_path: Path) -> None:
    raw = {"timings": {"pass": 1.0}, "command": "older run"}
    (tmp_path / "summary.json").write_text(json.dumps(raw, indent=2))
    write_timings(tmp_path, {"pass": 1.0, "report": 0.5})
    assert (tmp_path / "summary.json").read_text() == json.dumps(
        {"timings": {"pass": 1.0, "report": 0.5}, "command": "older run"}, indent=2)
