"""AuditDataset: decode, orient, resize, mask and fingerprint one sample, never raising.

Items follow docs/architecture.md ("Data items") plus ``thumb16`` and ``warning``. A file
that cannot be decoded (or vanished since indexing) becomes ``ok=False`` with the reason
and zero tensors, so batches keep a constant shape and the run goes on.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset

from auditor.data.annotations import Annotation, render
from auditor.data.decode import DEFAULT_MAX_PIXELS, DecodedImage, decode_bytes
from auditor.data.foreground import estimate_foreground
from auditor.data.masks import (
    box_to_mask,
    read_mask,
    read_mask_bytes,
    resize_mask,
    scale_box,
    upright_mask,
)
from auditor.data.members import read_member, sample_bytes
from auditor.data.regions import border_band
from auditor.data.sources import DatasetIndex, SampleRef
from auditor.errors import DecodeError, UsageError

THUMB_SIZE = 16
# Band pixels within this many levels (of 255, every channel) of the dominant colour count
# as "uniform": tolerates JPEG noise on a flat frame, not a real change of colour.
BORDER_TOLERANCE = 16
# The dominant colour is found in a 16x16x16 histogram (bins of 16 levels per channel).
_BIN_SHIFT = 4


def resize_image(rgb: np.ndarray, input_size: tuple[int, int]) -> np.ndarray:
    """Resize RGB uint8 [h, w, 3] to [H, W, 3] (no crop): area when shrinking, else bilinear.

    Args:
        input_size: (H, W).
    """
    out_h, out_w = input_size
    height, width = rgb.shape[:2]
    if (height, width) == (out_h, out_w):
        return rgb
    shrinking = out_h <= height and out_w <= width
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    return cv2.resize(rgb, (out_w, out_h), interpolation=interpolation)


def border_stats(rgb: np.ndarray, band: np.ndarray) -> dict[str, Any]:
    """Colour statistics of the border band of an image.

    Args:
        rgb: uint8 [H, W, 3].
        band: bool [H, W], True in the band.

    Returns:
        border_mean_r/g/b (0-255), border_std (mean of the per-channel standard deviations,
        0-255), border_uniform_frac (fraction of band pixels within BORDER_TOLERANCE of the
        dominant colour in every channel), border_dominant ("#rrggbb", the per-channel
        median of the most populated histogram bin). NaN / "" when the band is empty.
    """
    pixels = rgb[band].astype(np.int32)  # [N, 3]
    if pixels.shape[0] == 0:
        nan = float("nan")
        return {"border_mean_r": nan, "border_mean_g": nan, "border_mean_b": nan,
                "border_std": nan, "border_uniform_frac": nan, "border_dominant": ""}
    means = pixels.mean(axis=0)
    bins = pixels >> _BIN_SHIFT
    keys = (bins[:, 0] << (2 * (8 - _BIN_SHIFT))) | (bins[:, 1] << (8 - _BIN_SHIFT)) | bins[:, 2]
    top = np.bincount(keys).argmax()
    dominant = np.rint(np.median(pixels[keys == top], axis=0)).astype(np.int32)
    uniform = (np.abs(pixels - dominant).max(axis=1) <= BORDER_TOLERANCE).mean()
    return {
        "border_mean_r": float(means[0]),
        "border_mean_g": float(means[1]),
        "border_mean_b": float(means[2]),
        "border_std": float(pixels.std(axis=0).mean()),
        "border_uniform_frac": float(uniform),
        "border_dominant": "#{:02x}{:02x}{:02x}".format(*(int(v) for v in dominant)),
    }


class AuditDataset(Dataset):
    """Torch data set over a DatasetIndex; ``dataset[i]`` is the item dict of the contract.

    Args:
        index: the indexed data set.
        image_size: (H, W) of the model input.
        border: border band thickness as a fraction of each side, in [0, 0.5].
        max_pixels: decompression-bomb limit passed to decode_image.
        foreground: "mask" uses only mask files and boxes; "estimate" also estimates the
            object of a sample without either from its resized image
            (auditor.data.foreground.estimate_foreground). Each item's `foreground_source`
            says which: "mask", "box", "estimate" or "none".
        dicom_window: (center, width) replacing DICOM files' own VOI; None = each file's.
    """

    def __init__(
        self,
        index: DatasetIndex,
        image_size: tuple[int, int],
        border: float = 0.1,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        foreground: str = "mask",
        dicom_window: tuple[float, float] | None = None,
    ) -> None:
        height, width = (int(v) for v in image_size)
        if foreground not in ("mask", "estimate"):
            raise UsageError(f"foreground must be 'mask' or 'estimate', not {foreground!r}")
        if height < 1 or width < 1:
            raise UsageError(f"image_size must be two positive ints (H, W), got {image_size}")
        if max_pixels <= 0:
            raise UsageError(f"max_pixels must be a positive pixel count, got {max_pixels}")
        self.index = index
        self.image_size = (height, width)
        self.border = border
        self.max_pixels = max_pixels
        self.foreground = foreground
        self.dicom_window = dicom_window
        self._band = border_band(height, width, border).numpy()

    def __len__(self) -> int:
        return len(self.index.samples)

    def __getitem__(self, position: int) -> dict[str, Any]:
        ref = self.index.samples[position]
        try:
            decoded = decode_bytes(*sample_bytes(ref), max_pixels=self.max_pixels,
                                   dicom_window=self.dicom_window)
            return self._item(ref, decoded)
        except DecodeError as exc:
            return self._error_item(ref, str(exc))
        except Exception as exc:  # a worker must never die on one file; the row says why
            return self._error_item(ref, f"unexpected error: {type(exc).__name__}: {exc}")

    def _error_item(self, ref: SampleRef, reason: str) -> dict[str, Any]:
        height, width = self.image_size
        return {
            "index": ref.index,
            "image": torch.zeros(3, height, width, dtype=torch.uint8),
            "mask": torch.zeros(height, width, dtype=torch.uint8),
            "has_mask": False,
            "box": torch.full((4,), float("nan"), dtype=torch.float32),
            "ok": False,
            "error": reason,
            "props": {},
            "thumb16": torch.zeros(3, THUMB_SIZE, THUMB_SIZE, dtype=torch.uint8),
            "warning": "",
            "foreground_source": "none",
        }

    def _item(self, ref: SampleRef, decoded: DecodedImage) -> dict[str, Any]:
        resized = resize_image(decoded.rgb, self.image_size)
        thumb = cv2.resize(decoded.rgb, (THUMB_SIZE, THUMB_SIZE), interpolation=cv2.INTER_AREA)
        mask, source, box, warnings = self._foreground(ref, decoded)
        if source == "none" and self.foreground == "estimate":
            mask, source = estimate_foreground(resized).astype(np.uint8), "estimate"
        props = dict(decoded.props)
        props.update(border_stats(resized, self._band))
        return {
            "index": ref.index,
            "image": torch.from_numpy(np.ascontiguousarray(resized.transpose(2, 0, 1))),
            "mask": torch.from_numpy(mask),
            "has_mask": source != "none",
            "foreground_source": source,
            "box": torch.from_numpy(box),
            "ok": True,
            "error": "",
            "props": props,
            "thumb16": torch.from_numpy(np.ascontiguousarray(thumb.transpose(2, 0, 1))),
            "warning": "; ".join(warnings),
        }

    def _foreground(
        self, ref: SampleRef, decoded: DecodedImage
    ) -> tuple[np.ndarray, str, np.ndarray, list[str]]:
        """(mask uint8 [H, W], source "mask"/"box"/"none", box float32 [4] or NaNs, warnings)
        of one sample."""
        image_size = (decoded.props["width"], decoded.props["height"])
        warnings: list[str] = []
        box = np.full(4, np.nan, dtype=np.float32)
        if ref.box is not None:
            scaled, warning = scale_box(ref.box, image_size, self.image_size)
            if scaled is None:
                warnings.append(warning)
            else:
                box = scaled
        mask: np.ndarray | None = None
        drawn_from_boxes = False
        if ref.mask_path is not None or ref.mask_member is not None:
            try:
                image = (image_size, decoded.raw_size, decoded.orientation, self.max_pixels)
                if isinstance(ref.mask_member, Annotation):
                    drawn = render(ref.mask_member, decoded.raw_size)
                    upright, warning = upright_mask(drawn, 1, *image[:3])
                    drawn_from_boxes = ref.mask_member.boxes_only
                elif ref.mask_member is not None:
                    upright, warning = read_mask_bytes(read_member(ref.mask_member), *image)
                else:
                    upright, warning = read_mask(ref.mask_path, *image)
                mask = resize_mask(upright, self.image_size)
                if warning:
                    warnings.append(warning)
            except DecodeError as exc:
                warnings.append(f"mask ignored: {exc}")
            except Exception as exc:  # a bad mask must not cost the image its audit
                warnings.append(f"mask ignored: unexpected {type(exc).__name__}: {exc}")
        if mask is not None:
            return mask, "box" if drawn_from_boxes else "mask", box, warnings
        if not np.isnan(box[0]):
            return box_to_mask(box, self.image_size), "box", box, warnings
        return np.zeros(self.image_size, dtype=np.uint8), "none", box, warnings


def collate_samples(items: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Batch item dicts: tensors stacked, ``ok``/``has_mask`` as bool tensors [B],
    ``index``/``error``/``warning``/``props``/``foreground_source`` as lists.

    Returns:
        image uint8 [B, 3, H, W], mask uint8 [B, H, W], box float32 [B, 4],
        thumb16 uint8 [B, 3, 16, 16], has_mask bool [B], ok bool [B], and the lists.
    """
    if not items:
        raise UsageError("collate_samples got an empty batch; batch_size must be >= 1")
    return {
        "index": [item["index"] for item in items],
        "image": torch.stack([item["image"] for item in items]),
        "mask": torch.stack([item["mask"] for item in items]),
        "has_mask": torch.tensor([item["has_mask"] for item in items], dtype=torch.bool),
        "box": torch.stack([item["box"] for item in items]),
        "ok": torch.tensor([item["ok"] for item in items], dtype=torch.bool),
        "error": [item["error"] for item in items],
        "props": [item["props"] for item in items],
        "thumb16": torch.stack([item["thumb16"] for item in items]),
        "warning": [item["warning"] for item in items],
        "foreground_source": [item["foreground_source"] for item in items],
    }


def default_workers() -> int:
    """Loader workers for this machine: one core left to the main process, at most 8."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return min(8, max((cores or 1) - 1, 0))


def _init_worker(_worker_id: int) -> None:
    # Each worker decodes one image at a time; library thread pools would only oversubscribe.
    cv2.setNumThreads(1)
    torch.set_num_threads(1)


def make_loader(
    dataset: AuditDataset,
    batch_size: int,
    workers: int | None = None,
    device_type: str = "cpu",
    indices: Sequence[int] | None = None,
    prefetch_factor: int = 4,
) -> DataLoader:
    """DataLoader over ``dataset`` in index order, batched by collate_samples.

    Args:
        batch_size: items per batch, >= 1.
        workers: loader processes; None = default_workers(); 0 = load in this process.
        device_type: "cuda" pins host memory for faster copies.
        indices: positions to load (resume, sharding); None = all.
        prefetch_factor: batches each worker prepares ahead.
    """
    if batch_size < 1:
        raise UsageError(f"batch_size must be >= 1, got {batch_size}")
    workers = default_workers() if workers is None else workers
    if workers < 0:
        raise UsageError(f"workers must be >= 0, got {workers}")
    source: Dataset = dataset if indices is None else Subset(dataset, list(indices))
    return DataLoader(
        source,
        batch_size=batch_size,
        shuffle=False,
        num_workers=workers,
        collate_fn=collate_samples,
        pin_memory=device_type == "cuda",
        persistent_workers=workers > 0,
        prefetch_factor=prefetch_factor if workers > 0 else None,
        worker_init_fn=_init_worker if workers > 0 else None,
        # Forked workers can deadlock in OpenCV's thread pool once the parent has used it
        # (cv2 in the pass, a worker-less loader before); spawned ones start clean.
        multiprocessing_context="spawn" if workers > 0 else None,
    )
