"""Parquet, saved Hugging Face data sets and WebDataset shards as sources: what each row is,
labels and classes, bad input (error rows with reasons, clear DataErrors), resume."""

from __future__ import annotations

import gzip
import io
import json
import tarfile

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from auditor.audit import data_fingerprint
from auditor.data import AuditDataset, open_source
from auditor.data.members import TarMember, read_member
from auditor.data.webdataset import expand_braces
from auditor.errors import DataError
from tests.helpers.images import encoded, noise_rgb
from tests.helpers.source_formats import hf_dataset, write_parquet, write_shards


def _png(value: int, size: int = 8) -> bytes:
    return encoded(Image.fromarray(np.full((size, size, 3), value, np.uint8)), "PNG")


def _samples(n: int = 6) -> list[dict]:
    return [{"class": "ab"[i % 2], "label": i % 2, "rel": f"{'ab'[i % 2]}/{i}.png",
             "bytes": _png(40 * i), "mask": None} for i in range(n)]


def _pixels(index, position: int) -> np.ndarray:
    return AuditDataset(index, (8, 8))[position]["image"].numpy()


def test_parquet_rows_read_across_row_groups_in_table_order(tmp_path):
    path = write_parquet(_samples(6), tmp_path / "t.parquet", rows_per_group=4)
    index = open_source(path)
    assert index.source == "parquet"
    assert index.classes == ["a", "b"]
    assert [s.label for s in index.samples] == [0, 1, 0, 1, 0, 1]
    assert [s.rel_path for s in index.samples] == [f"t.parquet#{i}" for i in range(6)]
    for i in range(6):  # row 5 lives in the second row group
        assert (_pixels(index, i) == 40 * i).all()


def test_parquet_plain_bytes_column_named_by_the_user(tmp_path):
    table = pa.table({"img": pa.array([_png(10), _png(200)], type=pa.binary()),
                      "y": [1, 0]})
    pq.write_table(table, tmp_path / "t.parquet")
    index = open_source(tmp_path / "t.parquet", image_column="img", label_column="y")
    assert index.classes == ["0", "1"]
    assert [s.label for s in index.samples] == [1, 0]
    item = AuditDataset(index, (8, 8))[1]
    assert item["ok"]
    assert item["props"]["extension"] == ""
    assert not item["props"]["extension_mismatch"]


def test_parquet_path_column_reads_files_next_to_the_table(tmp_path):
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "x.png").write_bytes(_png(77))
    pq.write_table(pa.table({"image": ["img/x.png"], "label": ["cat"]}), tmp_path / "t.parquet")
    index = open_source(tmp_path / "t.parquet")
    assert index.samples[0].path == str(tmp_path / "img" / "x.png")
    assert index.samples[0].member is None
    assert (_pixels(index, 0) == 77).all()


def test_missing_column_names_the_columns_found_and_the_option(tmp_path):
    pq.write_table(pa.table({"picture": [_png(1)], "label": [0]}), tmp_path / "t.parquet")
    with pytest.raises(DataError, match=r"no column 'image'.*picture.*--image-column"):
        open_source(tmp_path / "t.parquet")


def test_undecodable_cell_is_an_error_row_and_the_others_are_read(tmp_path):
    samples = _samples(3)
    samples[1]["bytes"] = b"<html>not found</html>"
    index = open_source(write_parquet(samples, tmp_path / "t.parquet"))
    dataset = AuditDataset(index, (8, 8))
    assert [dataset[i]["ok"] for i in range(3)] == [True, False, True]
    assert "HTML" in dataset[1]["error"]


def test_saved_dataset_takes_class_names_from_its_class_label(tmp_path):
    hf_dataset(_samples(4)).save_to_disk(str(tmp_path / "saved"))
    index = open_source(tmp_path / "saved", classes=None)
    assert index.source == "arrow"
    assert index.classes == ["a", "b"]
    assert [s.label for s in index.samples] == [0, 1, 0, 1]
    assert (_pixels(index, 3) == 120).all()


def test_saved_dataset_dict_asks_for_one_split(tmp_path):
    import datasets

    datasets.DatasetDict({"train": hf_dataset(_samples(2)), "test": hf_dataset(_samples(2))}
                         ).save_to_disk(str(tmp_path / "dd"))
    with pytest.raises(DataError, match=r"several splits.*train"):
        open_source(tmp_path / "dd")


def test_class_label_out_of_the_given_classes_is_refused(tmp_path):
    path = write_parquet(_samples(2), tmp_path / "t.parquet")
    with pytest.raises(DataError, match=r"not among the classes.*'b'"):
        open_source(path, classes=["a", "c"])


def test_brace_patterns_expand_in_order_with_zero_padding():
    assert expand_braces("s-{008..011}.tar") == ["s-008.tar", "s-009.tar", "s-010.tar",
                                                 "s-011.tar"]
    assert expand_braces("{a,b}-{0..1}.tar") == ["a-0.tar", "a-1.tar", "b-0.tar", "b-1.tar"]


@pytest.mark.parametrize("label_as", ["cls", "txt", "json"])
def test_shard_labels_from_cls_txt_or_json(tmp_path, label_as):
    write_shards(_samples(4), tmp_path, per_shard=4, label_as=label_as)
    index = open_source(tmp_path / "shard-000000.tar", classes=["a", "b"])
    assert index.source == "webdataset"
    assert [s.label for s in index.samples] == [0, 1, 0, 1]
    assert index.samples[2].path == f"{tmp_path / 'shard-000000.tar'}#a_2"


def test_shard_with_a_corrupt_member_gives_an_error_row_with_the_reason(tmp_path):
    samples = _samples(4)
    whole = encoded(Image.fromarray(noise_rgb(32, 32)), "PNG")
    samples[2]["bytes"] = whole[: len(whole) // 2]  # a PNG cut short
    write_shards(samples, tmp_path, per_shard=4)
    index = open_source(tmp_path, classes=["a", "b"])
    dataset = AuditDataset(index, (8, 8))
    assert [dataset[i]["ok"] for i in range(4)] == [True, True, False, True]
    assert "truncated" in dataset[2]["error"]


def test_truncated_shard_keeps_whole_samples_and_warns(tmp_path):
    (shard,) = write_shards(_samples(4), tmp_path, per_shard=4)
    data = shard.read_bytes()
    with tarfile.open(shard) as archive:
        members = archive.getmembers()
    cut = members[-3].offset_data + 10  # inside the last sample's image
    shard.write_bytes(data[:cut])
    index = open_source(shard, classes=["a", "b"])
    assert len(index.samples) == 3
    assert any("truncated" in w for w in index.warnings)


def test_compressed_shard_is_refused_with_the_fix(tmp_path):
    (shard,) = write_shards(_samples(2), tmp_path / "s", per_shard=2)
    (tmp_path / "z.tar").write_bytes(gzip.compress(shard.read_bytes()))
    with pytest.raises(DataError, match="decompress"):
        open_source(tmp_path / "z.tar")


def test_shard_sample_without_an_image_is_skipped_with_a_warning(tmp_path):
    (shard,) = write_shards(_samples(2), tmp_path, per_shard=2)
    with tarfile.open(shard, "a") as archive:
        info = tarfile.TarInfo("lonely.json")
        payload = json.dumps({"label": "a"}).encode()
        info.size = len(payload)
        archive.addfile(info, io.BytesIO(payload))
    index = open_source(shard, classes=["a", "b"])
    assert len(index.samples) == 2
    assert any("without an image" in w for w in index.warnings)


def test_tar_member_read_is_one_seek_and_the_exact_bytes(tmp_path):
    (shard,) = write_shards(_samples(2), tmp_path, per_shard=2)
    with tarfile.open(shard) as archive:
        info = archive.getmember("b_1.png")
    member = TarMember(str(shard), info.offset_data, info.size, "b_1.png")
    assert read_member(member) == _png(40)


def test_data_fingerprint_follows_the_container_file(tmp_path):
    path = write_parquet(_samples(2), tmp_path / "t.parquet")
    before = data_fingerprint(open_source(path))
    write_parquet(_samples(2)[::-1], path)
    assert data_fingerprint(open_source(path)) != before


def test_parquet_box_columns_give_a_box_foreground(tmp_path):
    table = pa.table({"image": pa.array([_png(5, size=10)], type=pa.binary()), "label": ["a"],
                      "x0": [2.0], "y0": [4.0], "x1": [6.0], "y1": [10.0]})
    pq.write_table(table, tmp_path / "t.parquet")
    item = AuditDataset(open_source(tmp_path / "t.parquet"), (10, 10))[0]
    assert item["foreground_source"] == "box"
    expected = np.zeros((10, 10), np.uint8)
    expected[4:10, 2:6] = 1
    np.testing.assert_array_equal(item["mask"].numpy(), expected)


def test_resume_refuses_a_rewritten_table(tmp_path):
    import torch

    from auditor.audit import run_audit
    from auditor.config import AuditConfig
    from auditor.demo import DemoNet
    from auditor.errors import RunMismatchError

    path = write_parquet(_samples(4), tmp_path / "t.parquet")
    config = AuditConfig(data=str(path), model="auditor.demo:DemoNet", out=str(tmp_path / "run"),
                         image_size=(16, 16), target_layers=("features.6",), workers=0,
                         quiet=True, interventions=False)
    torch.manual_seed(0)
    model = DemoNet(2)
    first = run_audit(config, model=model)
    assert len(first.samples()) == 4
    assert run_audit(config, model=model).summary["data"]["n_samples"] == 4  # resumed
    write_parquet(_samples(4)[::-1], path)
    with pytest.raises(RunMismatchError, match=r"differs in: data\)"):
        run_audit(config, model=model)
