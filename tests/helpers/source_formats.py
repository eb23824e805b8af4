"""The same images and masks as a folder tree (the layout of tests/helpers/shortcut_sets.py),
written as the other sources: Parquet (plain or Hugging Face), a saved data set, tar shards.

Rows and members follow the folder tree's sample order (class, then file name), so an index of
any of them lists the same images in the same order as the tree.
"""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq


def tree_samples(data: Path, masks: Path | None = None) -> list[dict]:
    """Every image of a class-per-folder tree in the tree's order: class, rel path, bytes,
    label index and the mask's bytes (None without one)."""
    classes = sorted(p.name for p in data.iterdir() if p.is_dir())
    samples = []
    for label, name in enumerate(classes):
        for path in sorted((data / name).iterdir()):
            mask = masks / name / f"{path.stem}.png" if masks is not None else None
            samples.append({
                "class": name, "label": label, "rel": f"{name}/{path.name}",
                "bytes": path.read_bytes(),
                "mask": mask.read_bytes() if mask is not None and mask.exists() else None,
            })
    return samples


def write_parquet(samples: list[dict], path: Path, rows_per_group: int = 16,
                  image_column: str = "image", label_column: str = "label") -> Path:
    """Plain Parquet written with pyarrow: images as the {bytes, path} struct, labels as class
    names, masks as bytes; several row groups."""
    table = pa.table({
        image_column: [{"bytes": s["bytes"], "path": s["rel"]} for s in samples],
        label_column: [s["class"] for s in samples],
        "mask": pa.array([s["mask"] for s in samples], type=pa.binary()),
    })
    pq.write_table(table, path, row_group_size=rows_per_group)
    return path


def hf_dataset(samples: list[dict]):  # -> datasets.Dataset
    """A Hugging Face Dataset: an Image feature and a ClassLabel of the class names."""
    import datasets

    classes = sorted({s["class"] for s in samples})
    features = datasets.Features({
        "image": datasets.Image(), "label": datasets.ClassLabel(names=classes),
        "mask": datasets.Image(),
    })
    return datasets.Dataset.from_dict({
        "image": [{"bytes": s["bytes"], "path": s["rel"]} for s in samples],
        "label": [s["label"] for s in samples],
        "mask": [{"bytes": s["mask"], "path": None} if s["mask"] else None for s in samples],
    }, features=features)


def _member(archive: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    archive.addfile(info, io.BytesIO(data))


def write_shards(samples: list[dict], folder: Path, per_shard: int = 20,
                 label_as: str = "cls", masks: bool = True) -> list[Path]:
    """WebDataset shards shard-000000.tar, ...: per sample KEY.<ext>, KEY.<label_as> (cls:
    the index, txt: the class name, json: {"label": name}) and (``masks``) KEY.mask.png."""
    folder.mkdir(parents=True, exist_ok=True)
    shards = []
    for start in range(0, len(samples), per_shard):
        path = folder / f"shard-{start // per_shard:06d}.tar"
        with tarfile.open(path, "w") as archive:
            for s in samples[start:start + per_shard]:
                key = s["rel"].replace("/", "_").rsplit(".", 1)[0]
                _member(archive, f"{key}.{s['rel'].rsplit('.', 1)[1]}", s["bytes"])
                label = {"cls": str(s["label"]), "txt": s["class"],
                         "json": json.dumps({"label": s["class"]})}[label_as]
                _member(archive, f"{key}.{label_as}", label.encode())
                if masks and s["mask"] is not None:
                    _member(archive, f"{key}.mask.png", s["mask"])
        shards.append(path)
    return shards


def unique_names(samples: list[dict], root: Path) -> list[dict]:
    """The samples renamed <class>/<class>_<name> (base names unique across classes, as file
    name matching needs) and written as a tree: root/data/<class>/..., root/masks/<class>/..."""
    renamed = []
    for s in samples:
        name = s["rel"].replace("/", "_")
        rel = f"{s['class']}/{name}"
        for folder, data in (("data", s["bytes"]), ("masks", s["mask"])):
            target = root / folder / (rel if folder == "data" else rel.rsplit(".", 1)[0] + ".png")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        renamed.append({**s, "rel": rel})
    return renamed


def write_coco(samples: list[dict], path: Path) -> Path:
    """COCO JSON of the samples' masks, each as one object's compressed RLE (exact), named by
    the images' base names."""
    import numpy as np
    from PIL import Image
    from pycocotools import mask as coco_mask

    images, objects = [], []
    for i, s in enumerate(samples):
        mask = np.asarray(Image.open(io.BytesIO(s["mask"])).convert("L")) > 0
        height, width = mask.shape
        images.append({"id": i, "file_name": s["rel"].split("/")[-1], "width": width,
                       "height": height})
        rle = coco_mask.encode(np.asfortranarray(mask.astype(np.uint8)))
        objects.append({"id": i, "image_id": i, "category_id": 1, "iscrowd": 1,
                        "segmentation": {"size": rle["size"], "counts": rle["counts"].decode()}})
    path.write_text(json.dumps({"images": images, "annotations": objects,
                                "categories": [{"id": 1, "name": "creature"}]}))
    return path
