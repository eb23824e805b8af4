"""The same images as a folder tree, as Parquet, as a saved Hugging Face data set and as tar
shards: every source gives the same samples (labels, fingerprints, masks, measures) and the
same flags, for the model-free probes and for a whole audit.

The set carries a planted file-format shortcut (class a PNG, class b JPEG), which the probes
must find from each source's bytes.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from auditor.audit import run_audit
from auditor.config import AuditConfig
from auditor.demo import DemoNet
from auditor.probe import run_probe
from tests.helpers.shortcut_sets import SIZE, write_set
from tests.helpers.source_formats import hf_dataset, tree_samples, write_parquet, write_shards

PER_CLASS = 24
# Columns that name where a sample is kept, not what it is.
_WHERE = {"path", "rel_path"}


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    """(DATA, --masks, --classes) of each source over one planted-format set. Shards label
    by class index (``cls``), so the class names come from --classes."""
    root = tmp_path_factory.mktemp("sources")
    write_set(root, "format", per_class=PER_CLASS, seed=0)
    samples = tree_samples(root / "data", root / "masks")
    (root / "parquet").mkdir()
    write_parquet(samples, root / "parquet" / "part-0.parquet")
    dataset = hf_dataset(samples)
    dataset.save_to_disk(str(root / "saved"))
    (root / "hf_parquet").mkdir()
    dataset.to_parquet(str(root / "hf_parquet" / "train-00000-of-00001.parquet"))
    write_shards(samples, root / "shards", per_shard=20)
    return {
        "folder": (str(root / "data"), str(root / "masks"), None),
        "parquet": (str(root / "parquet" / "part-0.parquet"), None, None),
        "hf_parquet": (str(root / "hf_parquet"), None, None),
        "saved": (str(root / "saved"), None, None),
        "shards": (str(root / "shards"), None, ("a", "b")),
        "brace": (str(root / "shards" / "shard-{000000..000002}.tar"), None, ("a", "b")),
    }


def _comparable(frame: pd.DataFrame) -> pd.DataFrame:
    kept = [c for c in frame.columns if c not in _WHERE]
    return frame[kept].sort_values("index").reset_index(drop=True)


def _flags(flags: list[dict]) -> list[tuple]:
    return sorted((f["kind"], f.get("class"), f["severity"], round(float(f["score"]), 6))
                  for f in flags)


@pytest.fixture(scope="module")
def probed(sources, tmp_path_factory):
    out = tmp_path_factory.mktemp("probe")
    return {name: run_probe(data, str(out / name), masks=masks, classes=classes,
                            image_size=(SIZE, SIZE), workers=0, quiet=True)
            for name, (data, masks, classes) in sources.items()}


@pytest.mark.parametrize("name", ["parquet", "hf_parquet", "saved", "shards", "brace"])
def test_probe_of_each_source_equals_the_folder_tree(probed, name):
    folder, other = probed["folder"], probed[name]
    assert other.summary["data"]["source"] != "folder"
    expected, got = _comparable(folder.samples()), _comparable(other.samples())
    assert len(got) == 2 * PER_CLASS
    pd.testing.assert_frame_equal(got, expected, check_like=True)
    assert _flags(other.flags) == _flags(folder.flags)


def test_probe_finds_the_planted_format_shortcut_in_every_source(probed):
    for name, result in probed.items():
        kinds = {f["kind"] for f in result.flags}
        assert "metadata_shortcut" in kinds, name


def test_sample_paths_name_the_container_and_the_row_or_key(probed):
    parquet = probed["parquet"].samples().sort_values("index")
    assert parquet["rel_path"].iloc[0] == "part-0.parquet#0"
    shards = probed["shards"].samples().sort_values("index")
    assert shards["rel_path"].iloc[0] == "shard-000000.tar#a_000"
    assert shards["rel_path"].iloc[-1] == f"shard-000002.tar#b_{PER_CLASS - 1:03d}"


@pytest.fixture(scope="module")
def audited(sources, tmp_path_factory):
    out = tmp_path_factory.mktemp("audit")
    results = {}
    for name in ("folder", "parquet", "saved", "shards"):
        data, masks, classes = sources[name]
        torch.manual_seed(0)
        config = AuditConfig(
            data=data, model="auditor.demo:DemoNet", out=str(out / name), masks=masks,
            classes=classes,
            image_size=(SIZE, SIZE), mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5),
            target_layers=("features.6",), batch_size=16, workers=0, quiet=True,
        )
        results[name] = run_audit(config, model=DemoNet(2))
    return results


@pytest.mark.parametrize("name", ["parquet", "saved", "shards"])
def test_audit_of_each_source_equals_the_folder_tree(audited, name):
    folder, other = audited["folder"], audited[name]
    expected, got = _comparable(folder.samples()), _comparable(other.samples())
    assert (got["foreground_source"] == "mask").all()
    pd.testing.assert_frame_equal(got, expected, check_like=True)
    assert _flags(other.flags) == _flags(folder.flags)
    assert np.isfinite(got["fg_energy"]).any()
