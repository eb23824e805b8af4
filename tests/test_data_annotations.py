"""COCO JSON and Pascal VOC XML as --masks, for any source: known-answer shapes, matching by
file name, and the same measures as the mask images they encode."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from auditor.data import AuditDataset, open_source
from auditor.data.annotations import Annotation, render
from auditor.errors import DataError
from auditor.probe import run_probe
from tests.helpers.shortcut_sets import SIZE, write_set
from tests.helpers.source_formats import tree_samples, unique_names, write_coco, write_shards


def _tree(root, names=("a/cat1.png", "b/dog1.png"), size=(10, 8)):
    for rel in names:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((size[1], size[0], 3), 90, np.uint8)).save(root / rel)
    return root


def _voc(folder, filename, boxes, size=(10, 8)):
    objects = "".join(
        f"<object><name>x</name><bndbox><xmin>{x0}</xmin><ymin>{y0}</ymin><xmax>{x1}</xmax>"
        f"<ymax>{y1}</ymax></bndbox></object>" for x0, y0, x1, y1 in boxes)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{filename.rsplit('.', 1)[0]}.xml").write_text(
        f"<annotation><filename>{filename}</filename><size><width>{size[0]}</width>"
        f"<height>{size[1]}</height><depth>3</depth></size>{objects}</annotation>")


def test_voc_box_covers_its_one_based_inclusive_pixels(tmp_path):
    data = _tree(tmp_path / "data")
    _voc(tmp_path / "voc", "cat1.png", [(3, 2, 5, 4)])  # columns 3..5, rows 2..4, 1-based
    index = open_source(data, masks_dir=tmp_path / "voc")
    item = AuditDataset(index, (8, 10))[0]  # input = image size: no resampling
    expected = np.zeros((8, 10), np.uint8)
    expected[1:4, 2:5] = 1
    np.testing.assert_array_equal(item["mask"].numpy(), expected)
    assert item["foreground_source"] == "box"
    assert any("no annotation" in w for w in index.warnings)  # dog1.png has none


def test_voc_objects_are_united(tmp_path):
    mask = render(Annotation("x", 6, 4, boxes=((0, 0, 2, 1), (4, 3, 6, 4))), (6, 4))
    expected = np.zeros((4, 6), bool)
    expected[0, 0:2] = True
    expected[3, 4:6] = True
    np.testing.assert_array_equal(mask, expected)


def test_coco_polygon_fills_its_area(tmp_path):
    # A right triangle with legs of 40 pixels: area 800, its edges cost at most a pixel each.
    mask = render(Annotation("x", 64, 64, polygons=((10.0, 10.0, 50.0, 10.0, 10.0, 50.0),)),
                  (64, 64))
    assert abs(int(mask.sum()) - 800) <= 40 + 40 + 57
    assert mask[12, 12]
    assert not mask[45, 45]  # beyond the hypotenuse


def test_coco_names_are_matched_by_relative_path_or_file_name(tmp_path):
    data = _tree(tmp_path / "data")
    coco = {"images": [{"id": 1, "file_name": "a/cat1.png", "width": 10, "height": 8},
                       {"id": 2, "file_name": "elsewhere/dog1.png", "width": 10, "height": 8}],
            "annotations": [{"id": 1, "image_id": 1, "bbox": [0, 0, 5, 8], "category_id": 1},
                            {"id": 2, "image_id": 2, "bbox": [5, 0, 5, 8], "category_id": 1}]}
    (tmp_path / "coco.json").write_text(json.dumps(coco))
    index = open_source(data, masks_dir=tmp_path / "coco.json")
    dataset = AuditDataset(index, (8, 10))
    assert dataset[0]["mask"].numpy()[:, :5].all()
    assert not dataset[0]["mask"].numpy()[:, 5:].any()
    assert dataset[1]["mask"].numpy()[:, 5:].all()


def test_unreadable_coco_file_is_a_data_error(tmp_path):
    data = _tree(tmp_path / "data")
    (tmp_path / "coco.json").write_text("{not json")
    with pytest.raises(DataError, match="cannot read COCO annotations"):
        open_source(data, masks_dir=tmp_path / "coco.json")


@pytest.fixture(scope="module")
def coco_runs(tmp_path_factory):
    """Probe runs over one set: mask images (the reference), COCO RLE of the same masks on
    the folder tree, and on tar shards."""
    root = tmp_path_factory.mktemp("coco")
    write_set(root / "made", "format", per_class=12, seed=1)
    samples = unique_names(tree_samples(root / "made" / "data", root / "made" / "masks"), root)
    coco = write_coco(samples, root / "coco.json")
    by_name = [{**s, "rel": s["rel"].split("/")[1]} for s in samples]  # members a_000.png
    write_shards(by_name, root / "shards", per_shard=10, masks=False)
    runs = {}
    for name, data, masks, classes in (
            ("reference", root / "data", root / "masks", None),
            ("coco_tree", root / "data", coco, None),
            ("coco_shards", root / "shards", coco, ("a", "b"))):
        runs[name] = run_probe(str(data), str(root / "out" / name), masks=str(masks),
                               classes=classes, image_size=(SIZE, SIZE), workers=0, quiet=True)
    return runs


@pytest.mark.parametrize("name", ["coco_tree", "coco_shards"])
def test_coco_masks_give_the_same_foreground_as_the_mask_images(coco_runs, name):
    reference = coco_runs["reference"].samples().sort_values("index").reset_index(drop=True)
    got = coco_runs[name].samples().sort_values("index").reset_index(drop=True)
    assert (got["foreground_source"] == "mask").all()
    columns = [c for c in reference.columns if c not in ("path", "rel_path")]
    pd.testing.assert_frame_equal(got[columns], reference[columns])
