"""The report's first thumbnails of each class written during the pass (auditor.first_thumbs):
the same files the analysis would write, and not decoded again after the pass."""

from __future__ import annotations

import numpy as np
import pytest

from auditor import analysis
from auditor.audit import run_audit
from auditor.first_thumbs import THUMBS_PER_CLASS, stored_thumbs
from tests.helpers.audit_runs import CornerFeatureNet, audit_config, noise_folder


def test_stored_thumbs_reads_the_thumbnail_files_not_the_masks(tmp_path):
    folder = tmp_path / "thumbs"
    folder.mkdir()
    for name in ("3.png", "3.mask.png", "7.mask.png", "12.png"):
        (folder / name).write_bytes(b"")
    assert stored_thumbs(tmp_path, np.array([3, 7, 12, 5])).tolist() == [True, False, True,
                                                                          False]
    assert stored_thumbs(tmp_path / "none", np.array([3])).tolist() == [False]


@pytest.mark.slow  # two small audits
def test_the_pass_writes_the_first_thumbnails_the_analysis_would(tmp_path, monkeypatch):
    data = noise_folder(tmp_path / "data", per_class=8)
    (data / "a" / "0.png").write_bytes(b"not a png")  # an unreadable first sample
    run = tmp_path / "run"
    config = audit_config(data, run, batch_size=4, chunk_size=8)
    loaded: list[int] = []
    load_inputs = analysis._load_inputs

    def recorded(dataset, indices, workers):
        loaded.extend(int(i) for i in indices)
        return load_inputs(dataset, indices, workers)

    monkeypatch.setattr(analysis, "_load_inputs", recorded)
    samples = run_audit(config, model=CornerFeatureNet("top_left")).samples()
    ok = samples[samples["status"] == "ok"]
    first = ok.groupby("label").head(THUMBS_PER_CLASS)["index"].tolist()
    assert all((run / "thumbs" / f"{i}.png").is_file() for i in first)
    # Written by the pass: the analysis loaded none of them but the one after the unreadable
    # file (class a's 5th sample, not one of the pass's first four).
    fifth = int(samples[samples["label"] == "a"]["index"].iloc[THUMBS_PER_CLASS])
    assert sorted(set(loaded) & set(first)) == [fifth]
    written = {p.name: p.read_bytes() for p in (run / "thumbs").iterdir()}

    # The same run analysed again without them decodes every shown input: the same files.
    for path in (run / "thumbs").iterdir():
        path.unlink()
    run_audit(config, model=CornerFeatureNet("top_left"))
    again = {p.name: p.read_bytes() for p in (run / "thumbs").iterdir()}
    assert again == written
