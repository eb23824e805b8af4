"""open_source: folder trees, CSV manifests, masks folders, and their hostile variants."""

from __future__ import annotations

import csv
import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from auditor.data.dataset import AuditDataset
from auditor.data.sources import open_source
from auditor.errors import DataError
from tests.helpers import images


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """DATA/<class>/...: cat (2 images, one nested), dog (1), plus files to skip."""
    root = tmp_path / "data"
    images.solid(root / "dog" / "d1.PNG", (4, 4))
    images.solid(root / "cat" / "b.jpg", (4, 4), image_format="JPEG")
    images.solid(root / "cat" / "sub" / "a.JpEg", (4, 4), image_format="JPEG")
    images.solid(root / "cat" / ".hidden.png", (4, 4))
    images.solid(root / "cat" / ".cache" / "x.png", (4, 4))
    images.raw(root / "cat" / "notes.txt", b"not an image")
    images.raw(root / ".git" / "config.png", b"")
    return root


def write_manifest(path: Path, rows: list[list[str]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8", errors="surrogateescape") as handle:
        csv.writer(handle).writerows(rows)
    return path


def test_folder_classes_are_sorted_names_and_samples_sorted_by_class_then_path(tree):
    index = open_source(tree)
    assert index.classes == ["cat", "dog"]
    assert [(s.index, s.rel_path, s.label) for s in index.samples] == [
        (0, "cat/b.jpg", 0), (1, "cat/sub/a.JpEg", 0), (2, "dog/d1.PNG", 1),
    ]
    assert all(os.path.isabs(s.path) and os.path.isfile(s.path) for s in index.samples)
    assert all(s.mask_path is None and s.box is None for s in index.samples)


def test_folder_uses_the_given_class_order_and_allows_a_class_without_folder(tree):
    index = open_source(tree, classes=["dog", "bird", "cat"])
    assert [(s.rel_path, s.label) for s in index.samples] == [
        ("dog/d1.PNG", 0), ("cat/b.jpg", 2), ("cat/sub/a.JpEg", 2),
    ]
    assert any("bird" in warning for warning in index.warnings)


def test_folder_not_in_the_given_classes_is_refused_by_name(tree):
    with pytest.raises(DataError, match="'dog'"):
        open_source(tree, classes=["cat"])


def test_duplicate_or_empty_classes_are_refused(tree):
    with pytest.raises(DataError, match="duplicate"):
        open_source(tree, classes=["cat", "dog", "cat"])
    with pytest.raises(DataError, match="classes is empty"):
        open_source(tree, classes=[])


def test_folder_without_images_and_missing_data_are_refused(tmp_path):
    (tmp_path / "empty" / "cat").mkdir(parents=True)
    with pytest.raises(DataError, match="no image files"):
        open_source(tmp_path / "empty")
    with pytest.raises(DataError, match="does not exist"):
        open_source(tmp_path / "nowhere")
    with pytest.raises(DataError, match=r"neither a folder, a \.csv"):
        open_source(images.raw(tmp_path / "data.txt", b"x"))


def test_symlink_loops_in_a_folder_tree_terminate(tree):
    os.symlink(tree / "cat", tree / "cat" / "sub" / "loop_to_parent")
    os.symlink(tree / "cat" / "sub" / "self", tree / "cat" / "sub" / "self")
    os.symlink(tree, tree / "dog" / "loop_to_root")
    index = open_source(tree)
    assert [s.rel_path for s in index.samples] == ["cat/b.jpg", "cat/sub/a.JpEg", "dog/d1.PNG"]


def test_folder_deeper_than_the_recursion_limit_is_walked(tmp_path):
    # Built and removed one level at a time: recursive makedirs/rmtree would hit the limit.
    levels = [tmp_path / "data" / "cat"]
    levels[0].mkdir(parents=True)
    for _ in range(1100):
        levels.append(levels[-1] / "d")
        levels[-1].mkdir()
    image = images.solid(levels[-1] / "deep.png", (2, 2))
    try:
        (sample,) = open_source(tmp_path / "data").samples
        assert sample.rel_path.endswith("/d/deep.png")
    finally:
        image.unlink()
        for level in reversed(levels):
            level.rmdir()


def test_non_utf8_file_name_is_indexed(tmp_path):
    root = tmp_path / "data"
    (root / "cat").mkdir(parents=True)
    name = os.path.join(os.fsencode(root / "cat"), b"caf\xe9-\xff.png")
    with open(name, "wb") as handle:
        handle.write(images.encoded(images.Image.new("RGB", (3, 3)), "PNG"))
    index = open_source(root)
    (sample,) = index.samples
    assert os.fsencode(sample.path) == name
    item = AuditDataset(index, image_size=(3, 3))[0]
    assert item["ok"] is True, item["error"]


def test_masks_dir_finds_masks_at_the_same_relative_path_with_any_extension(tree, tmp_path):
    masks = tmp_path / "masks"
    images.solid(masks / "cat" / "b.png", (4, 4))
    images.solid(masks / "dog" / "d1.bmp", (4, 4), image_format="BMP")
    index = open_source(tree, masks_dir=masks)
    found = {s.rel_path: s.mask_path for s in index.samples}
    assert found == {
        "cat/b.jpg": str(masks / "cat" / "b.png"),
        "cat/sub/a.JpEg": None,
        "dog/d1.PNG": str(masks / "dog" / "d1.bmp"),
    }
    assert any("1 of 3 images have no mask" in warning for warning in index.warnings)


def test_masks_dir_that_does_not_exist_is_refused(tree, tmp_path):
    with pytest.raises(DataError, match="masks folder"):
        open_source(tree, masks_dir=tmp_path / "no_masks")


def test_manifest_resolves_paths_masks_and_boxes_against_its_folder(tmp_path):
    manifest = write_manifest(tmp_path / "m" / "list.csv", [
        ["path", "label", "mask", "x0", "y0", "x1", "y1"],
        ["img/b.png", "dog", "masks/b.png", "1", "2", "30.5", "40"],
        ["img/a.png", "cat", "", "", "", "", ""],
    ])
    index = open_source(manifest)
    root = str(tmp_path / "m")
    assert index.root == root
    assert index.classes == ["cat", "dog"]
    first, second = index.samples
    assert (first.index, first.path, first.rel_path, first.label) == (
        0, os.path.join(root, "img", "b.png"), "img/b.png", 1)
    assert first.mask_path == os.path.join(root, "masks", "b.png")
    assert first.box == (1.0, 2.0, 30.5, 40.0)
    assert (second.label, second.mask_path, second.box) == (0, None, None)


def test_manifest_missing_column_is_named_with_the_columns_found(tmp_path):
    manifest = write_manifest(tmp_path / "m.csv", [["path", "class"], ["a.png", "cat"]])
    with pytest.raises(DataError, match=r"no column 'label'; columns found: \['path', 'class'\]"):
        open_source(manifest)


def test_manifest_with_some_box_columns_only_is_refused(tmp_path):
    manifest = write_manifest(tmp_path / "m.csv", [["path", "label", "x0", "y0"], ["a", "b"]])
    with pytest.raises(DataError, match=r"not \['x1', 'y1'\]"):
        open_source(manifest)


def test_manifest_labels_not_among_classes_are_named_with_a_count(tmp_path):
    rows = [["path", "label"]] + [[f"{i}.png", f"bad{i}"] for i in range(7)] + [["x.png", "cat"]]
    manifest = write_manifest(tmp_path / "m.csv", rows)
    with pytest.raises(DataError, match=r"'bad0', 'bad1'.* and 2 more \(7 distinct\)"):
        open_source(manifest, classes=["cat", "dog"])


def test_manifest_label_is_a_name_first_then_an_index(tmp_path):
    manifest = write_manifest(tmp_path / "m.csv", [
        ["path", "label"], ["a.png", "1"], ["b.png", "dog"], ["c.png", "0"], ["d.png", ""],
    ])
    by_index = open_source(manifest, classes=["cat", "dog"])
    assert [s.label for s in by_index.samples] == [1, 1, 0, -1]
    by_name = open_source(manifest, classes=["dog", "1", "0"])
    assert [s.label for s in by_name.samples] == [1, 0, 2, -1]
    assert any("no label" in warning for warning in by_name.warnings)


def test_manifest_paths_outside_its_folder_are_refused_by_name_unless_allowed(tmp_path):
    manifest = write_manifest(tmp_path / "m" / "list.csv", [
        ["path", "label"], ["../secret.png", "cat"], ["/etc/passwd.png", "cat"], ["ok.png", "cat"],
    ])
    with pytest.raises(DataError, match=r"'\.\./secret\.png \(line 2\)', '/etc/passwd\.png"):
        open_source(manifest)
    index = open_source(manifest, allow_outside=True)
    assert [s.path for s in index.samples] == [
        str(tmp_path / "secret.png"), "/etc/passwd.png", str(tmp_path / "m" / "ok.png"),
    ]


def test_manifest_duplicates_keep_the_first_and_empty_rows_are_skipped(tmp_path):
    manifest = write_manifest(tmp_path / "m.csv", [
        ["path", "label"], ["a.png", "cat"], [], ["", ""], ["./a.png", "dog"], ["b.png", "dog"],
    ])
    index = open_source(manifest)
    assert [(s.rel_path, s.label) for s in index.samples] == [("a.png", 0), ("b.png", 1)]
    assert any("2 empty rows" in warning for warning in index.warnings)
    assert any("1 duplicate" in warning and "./a.png" in warning for warning in index.warnings)


def test_manifest_bad_boxes_are_dropped_with_a_warning(tmp_path):
    manifest = write_manifest(tmp_path / "m.csv", [
        ["path", "label", "x0", "y0", "x1", "y1"],
        ["a.png", "cat", "5", "1", "5", "9"],      # x1 <= x0
        ["b.png", "cat", "1", "9", "5", "2"],      # y1 <= y0
        ["c.png", "cat", "1", "nan", "5", "2"],
        ["d.png", "cat", "1", "", "5", "6"],
        ["e.png", "cat", "1", "2", "5", "6"],
    ])
    index = open_source(manifest)
    assert [s.box for s in index.samples] == [None, None, None, None, (1.0, 2.0, 5.0, 6.0)]
    assert any("4 boxes dropped" in warning for warning in index.warnings)


def test_manifest_with_bom_header_and_non_utf8_path_works(tmp_path):
    manifest = tmp_path / "m.csv"
    manifest.write_bytes(b"\xef\xbb\xbfPath , Label\ncaf\xe9.png,cat\n")
    (sample,) = open_source(manifest).samples
    assert os.fsencode(sample.path) == os.fsencode(tmp_path) + b"/caf\xe9.png"


def test_empty_manifest_is_refused(tmp_path):
    with pytest.raises(DataError, match="empty"):
        open_source(images.raw(tmp_path / "m.csv", b"\n\n"))
    with pytest.raises(DataError, match="lists no images"):
        open_source(images.raw(tmp_path / "h.csv", b"path,label\n"))


_NAME = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_-. é,\"", min_size=1,
                max_size=12).filter(lambda name: name.strip() not in ("", ".", ".."))


@settings(max_examples=60, deadline=None)
@given(
    rows=st.lists(
        st.tuples(st.lists(_NAME, min_size=1, max_size=3),
                  st.sampled_from(["cat", "dog", "bird, the", "7"])),
        min_size=1, max_size=25, unique_by=lambda row: "/".join(n.strip() for n in row[0]),
    )
)
def test_random_valid_manifests_round_trip_every_row_once_with_its_label(rows):
    with tempfile.TemporaryDirectory() as folder:
        paths = ["/".join(part.strip() for part in parts) + ".png" for parts, _ in rows]
        manifest = write_manifest(
            Path(folder) / "m.csv", [["path", "label"]] + [
                [path, label] for path, (_, label) in zip(paths, rows, strict=True)
            ],
        )
        index = open_source(manifest)
        assert index.classes == sorted({label for _, label in rows})
        got = [(s.rel_path, index.classes[s.label]) for s in index.samples]
        expected = [(os.path.normpath(path), label)
                    for path, (_, label) in zip(paths, rows, strict=True)]
        assert got == expected
        assert [s.index for s in index.samples] == list(range(len(rows)))
