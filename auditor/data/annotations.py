"""Foreground from detection and segmentation annotations: COCO JSON (polygons and RLE, through
pycocotools) and Pascal VOC XML (boxes), for any source (``--masks coco.json``, ``--masks
voc/``).

Matching: an annotated image is matched to a sample by file name: the sample's relative path
(a COCO ``file_name`` may hold sub-folders), else its file name (a file's base name, a
Parquet struct's ``path``, a tar member's name), else that name without the extension (a
WebDataset key). The first annotation entry of a name wins.

Foreground: the union of every object of the image, whatever its category. COCO: each
object's ``segmentation`` (polygons, or RLE for crowds), else its ``bbox`` [x, y, w, h].
VOC: each ``<object>``'s ``<bndbox>``, whose 1-based inclusive pixel indices cover pixels
``xmin - 1 .. xmax - 1``. Coordinates are pixels of the stored image (sized by the file's
``width``/``height``, else the image's own); the mask is then turned upright with the image
like a mask file (``auditor.data.masks.upright_mask``). A sample whose mask comes from boxes
only says ``foreground_source`` "box".
"""

from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from auditor.data.sources import SampleRef
from auditor.errors import DataError, DecodeError
from auditor.extras import require


@dataclass(frozen=True)
class Annotation:
    """The objects of one image, in pixels of its stored image (size 0: the image's own).

    Attributes:
        polygons: COCO polygons, each flat (x1, y1, x2, y2, ...).
        rles: COCO run-length encodings as JSON text ({"counts", "size"}).
        boxes: x0, y0, x1, y1 edges (half-open pixel ranges).
    """

    source: str
    width: int = 0
    height: int = 0
    polygons: tuple[tuple[float, ...], ...] = ()
    rles: tuple[str, ...] = ()
    boxes: tuple[tuple[float, float, float, float], ...] = ()

    @property
    def boxes_only(self) -> bool:
        """True when the foreground is made of boxes alone (no outline of the object)."""
        return not self.polygons and not self.rles


def is_annotation_source(masks: str) -> bool:
    """Whether --masks names a COCO file (.json) or a VOC folder (``*.xml`` directly inside or
    in its ``Annotations`` folder) rather than a folder of mask images."""
    if os.path.isfile(masks):
        return masks.lower().endswith(".json")
    return bool(_voc_files(masks))


def _voc_files(folder: str) -> list[str]:
    for place in (folder, os.path.join(folder, "Annotations")):
        if os.path.isdir(place):
            found = sorted(os.path.join(place, n) for n in os.listdir(place)
                           if n.lower().endswith(".xml"))
            if found:
                return found
    return []


def _coco(path: str) -> dict[str, Annotation]:
    require("pycocotools", f"--masks {path}", DataError)
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
        images = {int(image["id"]): image for image in data["images"]}
        objects = data.get("annotations", [])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(f"cannot read COCO annotations {path!r}: {exc}") from exc
    shapes: dict[int, dict[str, list[Any]]] = {}
    for obj in objects:
        found = shapes.setdefault(int(obj.get("image_id", -1)),
                                  {"polygons": [], "rles": [], "boxes": []})
        segmentation = obj.get("segmentation")
        if isinstance(segmentation, list) and segmentation:
            found["polygons"].extend(tuple(float(v) for v in polygon)
                                     for polygon in segmentation if len(polygon) >= 6)
        elif isinstance(segmentation, dict):
            found["rles"].append(json.dumps(segmentation))
        elif obj.get("bbox"):
            x, y, w, h = (float(v) for v in obj["bbox"])
            found["boxes"].append((x, y, x + w, y + h))
    by_name: dict[str, Annotation] = {}
    for image_id, image in images.items():
        found = shapes.get(image_id, {"polygons": [], "rles": [], "boxes": []})
        by_name.setdefault(str(image.get("file_name", "")), Annotation(
            path, int(image.get("width") or 0), int(image.get("height") or 0),
            tuple(found["polygons"]), tuple(found["rles"]), tuple(found["boxes"])))
    return by_name


def _voc(folder: str) -> dict[str, Annotation]:
    by_name: dict[str, Annotation] = {}
    for path in _voc_files(folder):
        try:
            root = ElementTree.parse(path).getroot()
        except (OSError, ElementTree.ParseError) as exc:
            raise DataError(f"cannot read VOC annotation {path!r}: {exc}") from exc
        name = (root.findtext("filename") or "").strip() or \
            os.path.splitext(os.path.basename(path))[0]
        boxes = []
        for box in root.iter("bndbox"):
            try:
                x0, y0, x1, y1 = (float(box.findtext(k) or "nan")
                                  for k in ("xmin", "ymin", "xmax", "ymax"))
            except ValueError:
                continue
            if x1 >= x0 and y1 >= y0:
                boxes.append((x0 - 1.0, y0 - 1.0, x1, y1))
        size = root.find("size")
        width = int(float(size.findtext("width") or 0)) if size is not None else 0
        height = int(float(size.findtext("height") or 0)) if size is not None else 0
        by_name.setdefault(name, Annotation(path, width, height, boxes=tuple(boxes)))
    return by_name


def _sample_name(ref: SampleRef) -> str:
    return ref.member.name if ref.member is not None and ref.member.name else \
        os.path.basename(ref.path)


def attach_annotations(
    samples: list[SampleRef], masks: str, warnings: list[str]
) -> list[SampleRef]:
    """Give each sample without a mask its annotation (module docstring for the matching).

    Raises:
        DataError: the annotation file cannot be read, or pycocotools is missing for COCO.
    """
    by_path = _coco(masks) if os.path.isfile(masks) else _voc(masks)
    by_name: dict[str, Annotation] = {}
    by_stem: dict[str, Annotation] = {}
    for path, annotation in by_path.items():
        name = os.path.basename(path)
        by_name.setdefault(name, annotation)
        by_stem.setdefault(os.path.splitext(name)[0], annotation)
    attached, missing = [], 0
    for ref in samples:
        if ref.mask_path is None and ref.mask_member is None:
            name = _sample_name(ref)
            found = (by_path.get(ref.rel_path) or by_name.get(name)
                     or by_stem.get(os.path.splitext(name)[0]))
            missing += found is None
            ref = replace(ref, mask_member=found) if found is not None else ref
        attached.append(ref)
    if missing:
        warnings.append(f"{missing} of {len(samples)} images have no annotation in {masks!r} "
                        "(matched by file name); they are audited without a mask")
    return attached


def render(annotation: Annotation, raw_size: tuple[int, int]) -> np.ndarray:
    """The foreground of an annotation, bool [h, w] in stored-image pixels.

    Args:
        raw_size: (width, height) of the stored image, used when the annotation gives none.

    Raises:
        DecodeError: a shape cannot be decoded (or pycocotools is missing for COCO shapes).
    """
    width = annotation.width or raw_size[0]
    height = annotation.height or raw_size[1]
    mask = np.zeros((height, width), dtype=bool)
    if annotation.polygons or annotation.rles:
        mask |= _coco_shapes(annotation, height, width)
    if annotation.boxes:
        centres_x = np.arange(width) + 0.5
        centres_y = np.arange(height) + 0.5
        for x0, y0, x1, y1 in annotation.boxes:
            inside_x = (centres_x >= x0) & (centres_x < x1)
            inside_y = (centres_y >= y0) & (centres_y < y1)
            mask |= inside_y[:, None] & inside_x[None, :]
    return mask


def _coco_shapes(annotation: Annotation, height: int, width: int) -> np.ndarray:
    from pycocotools import mask as coco_mask  # checked when the annotations were indexed

    try:
        encoded = []
        if annotation.polygons:
            encoded.extend(coco_mask.frPyObjects([list(p) for p in annotation.polygons],
                                                 height, width))
        for text in annotation.rles:
            rle = json.loads(text)
            if isinstance(rle.get("counts"), list):  # uncompressed RLE
                rle = coco_mask.frPyObjects(rle, *rle["size"])
            elif isinstance(rle.get("counts"), str):
                rle = {"size": rle["size"], "counts": rle["counts"].encode()}
            encoded.append(rle)
        merged = coco_mask.merge(encoded)
        decoded = coco_mask.decode(merged).astype(bool)
    except (ValueError, TypeError, KeyError) as exc:
        raise DecodeError(f"COCO shapes of {annotation.source!r} cannot be decoded: {exc}"
                          ) from exc
    if decoded.shape != (height, width):
        raise DecodeError(f"COCO RLE size {decoded.shape[::-1]} differs from the image entry's "
                          f"{width}x{height}")
    return decoded
