"""Synthetic run directories for report tests (and anyone who needs a finished run).

`build_run(run_dir, ...)` writes what `auditor audit` writes — samples.parquet, maps, thumbs,
class_means.npz, summary.json — with the store's own writers, from numbers made in code:
class 0 is a "watermark" class whose maps peak in the top-left corner and whose images carry a
white square there; the other classes' maps peak on a centred object. Images are 48 x 64
(non-square) and maps 6 x 8, so a height/width swap anywhere shows.

Three ready-made runs: `full_run` (every section populated, flags raised), `clean_run` (no
flag, no optional section), `unreadable_run` (every file failed to decode).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd
import torch

from auditor.detect.attention import class_statistics
from auditor.detect.clusters import cluster_maps
from auditor.detect.flags import Flag
from auditor.detect.interventions import EditOutcome, decide_records, edit_record
from auditor.detect.probes import run_probes
from auditor.runtime import normalise_images
from auditor.sanity import run_sanity
from auditor.store import RunWriter, write_class_means, write_thumb
from auditor.summary import (
    DataFacts,
    ModelFacts,
    Summary,
    accuracy,
    read_summary,
    write_summary,
)
from tests.helpers.cam_models import tiny_gap_net

IMAGE_SIZE = (48, 64)
MAP_SIZE = (6, 8)
DEFAULT_CLASSES = ("cat", "dog", "bird")
HOSTILE_CLASSES = ("<script>alert(1)</script>", 'Mañana "quoted" & <b>bold</b>', "dog")
ERROR_REASONS = (
    "cannot identify image file: not an image",
    "truncated file: image file is truncated (3 bytes not processed)",
)


def _maps(label_index: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """float32 [n, 6, 8]: a Gaussian bump at the top-left cell for class 0, centred otherwise."""
    h, w = MAP_SIZE
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    corner = np.exp(-((yy - 0) ** 2 + (xx - 0) ** 2) / 1.5)
    centre = np.exp(-((yy - (h - 1) / 2) ** 2 + (xx - (w - 1) / 2) ** 2) / 3.0)
    base = np.where((label_index == 0)[:, None, None], corner, centre)
    noise = rng.uniform(0.0, 0.05, size=base.shape).astype(np.float32)
    return (base * rng.uniform(0.5, 3.0, size=(len(base), 1, 1)) + noise).astype(np.float32)


def _image(label_index: int, rng: np.random.Generator) -> np.ndarray:
    """uint8 [48, 64, 3] RGB: a coloured ellipse on a grey-green background; class 0 also has a
    white 8 x 8 watermark in the top-left corner."""
    h, w = IMAGE_SIZE
    img = np.empty((h, w, 3), dtype=np.uint8)
    img[:] = (90, 110, 80)
    yy, xx = np.mgrid[0:h, 0:w]
    inside = ((yy - h / 2) / (h / 3)) ** 2 + ((xx - w / 2) / (w / 4)) ** 2 <= 1.0
    palette = ((200, 60, 40), (40, 90, 200), (230, 200, 40), (150, 60, 170))
    img[inside] = palette[label_index % len(palette)]
    if label_index == 0:
        img[:8, :8] = 255
    noise = rng.integers(-12, 12, size=img.shape)
    return np.clip(img.astype(np.int16) + noise, 0, 255).astype(np.uint8)


def build_run(
    run_dir: str | Path,
    *,
    classes: Sequence[str] = DEFAULT_CLASSES,
    n_per_class: int = 7,
    n_errors: int = 2,
    flagged: bool = True,
    optional_sections: bool = True,
    readable: bool = True,
    thumbs: int | None = None,
    missing_thumbs: Sequence[int] = (),
    seed: int = 0,
) -> Path:
    """Write a finished run directory and return its path.

    classes: class names (any string: hostile ones test escaping). n_per_class readable rows
    per class (0 readable when `readable` is False; 7, so that three classes pass the probe
    classifiers' 20-row minimum) plus n_errors undecodable rows. flagged: raise flags (else
    none). optional_sections: probes, clusters, interventions, sanity (else
    absent). thumbs: store thumbnails of at most this many samples (None: all), skipping the
    indices in missing_thumbs.
    """
    run_dir = Path(run_dir)
    rng = np.random.default_rng(seed)
    k = len(classes)
    n_ok = n_per_class * k if readable else 0
    n = n_ok + n_errors if readable else max(n_errors, k * n_per_class)
    label_index = np.arange(n) % k
    labels = np.array(classes, dtype=object)[label_index]
    status = np.full(n, "error", dtype=object)
    if readable:
        # Errors at the end so the readable rows cover every class evenly.
        status[:n_ok] = "ok"
    ok = status == "ok"
    # Every 7th file name carries quotes, non-ASCII, & and < for the escaping tests.
    names = [f"img {i:05d} \"q\" ‘é’ & <x>.png" if i % 7 == 3 else f"img_{i:05d}.jpg"
             for i in range(n)]
    rel = [f"{labels[i]}/{names[i]}" for i in range(n)]
    pred_index = np.where(ok, label_index, -1)
    wrong = ok & (rng.uniform(size=n) < 0.2)
    pred_index = np.where(wrong, (label_index + 1) % k, pred_index)
    watermark = ok & (label_index == 0)

    def measure(low: float, high: float, where: np.ndarray) -> np.ndarray:
        return np.where(where, rng.uniform(low, high, n), np.nan)

    fg = np.where(watermark, rng.uniform(0.05, 0.3, n), rng.uniform(0.5, 0.9, n))
    fg = np.where(ok, fg, np.nan)
    border = np.where(watermark, rng.uniform(0.4, 0.7, n), rng.uniform(0.05, 0.2, n))
    border = np.where(ok, border, np.nan)
    suspicion = np.where(ok, np.clip(border + (1 - fg) / 2 + rng.uniform(0, 0.1, n), 0, 1), 0.0)
    flag_codes = np.where(
        watermark & flagged, "border_attention,fixed_location", ""
    ).astype(object)
    rows = pd.DataFrame({
        "index": np.arange(n, dtype=np.int64),
        "path": [f"/data/set/{r}" for r in rel],
        "rel_path": rel,
        "label": labels,
        "label_index": label_index.astype(np.int64),
        "status": status,
        "error": [
            "" if ok[i] else ERROR_REASONS[i % len(ERROR_REASONS)] for i in range(n)
        ],
        "warning": ["" for _ in range(n)],
        "pred": np.where(ok, np.array(classes, dtype=object)[np.maximum(pred_index, 0)], ""),
        "pred_index": pred_index.astype(np.int64),
        "confidence": np.where(ok, rng.uniform(0.4, 1.0, n), np.nan),
        "correct": ok & (pred_index == label_index),
        "fg_energy": fg,
        "fg_enrichment": fg / 0.3,
        "bg_energy": 1 - fg,
        "border_energy": border,
        "border_lift": border / 0.36,
        "pointing_hit": np.where(ok, (fg > 0.5).astype(float), np.nan),
        "wsol_iou": measure(0.1, 0.8, ok),
        "peak_x": np.where(watermark, 0.0625, np.where(ok, 0.5625, np.nan)),
        "peak_y": np.where(watermark, 0.0833, np.where(ok, 0.5833, np.nan)),
        "has_mask": ok,
        "foreground_source": np.where(ok, "mask", "none"),
        "map_degenerate": np.zeros(n, dtype=bool),
        "suspicion": suspicion,
        "flags": flag_codes,
        "file_format": np.where(label_index == 0, "PNG", "JPEG"),
        "file_mode": np.where(label_index == 0, "RGBA", "RGB"),
        "file_width": np.where(ok, 64, 0).astype(np.int64),
        "file_height": np.where(ok, 48, 0).astype(np.int64),
    })
    writer = RunWriter(run_dir, {"config": "fixture", "seed": seed}, overwrite=True)
    map_rows = np.where(ok, np.cumsum(ok) - 1, -1)
    maps = _maps(label_index[ok], rng)
    arrays = {"maps/gradcam": maps.astype(np.float16)} if ok.any() else {}
    writer.write_chunk(writer.next_part_name(), rows, map_rows, arrays)
    writer.merge()
    writer.mark_complete()

    if ok.any():
        order = np.argsort(-suspicion, kind="stable")
        order = order[ok[order]]
        chosen = order if thumbs is None else order[:thumbs]
        for i in chosen:
            if int(i) not in set(missing_thumbs):
                write_thumb(run_dir, int(i), _image(int(label_index[i]), rng))
        mean_image = np.stack([_image(c, rng) for c in range(k)])
        norm = maps / maps.reshape(len(maps), -1).max(axis=1)[:, None, None]
        mean_map = np.stack([norm[label_index[ok] == c].mean(axis=0) for c in range(k)])
        write_class_means(run_dir, mean_image, mean_map.astype(np.float32))

    write_summary(run_dir, _summary(rows, maps, list(classes), flagged, optional_sections))
    return run_dir


def _summary(
    rows: pd.DataFrame, maps: np.ndarray, classes: list[str], flagged: bool,
    optional_sections: bool,
) -> Summary:
    """The summary an audit of these rows writes, every section by the code the audit uses
    (the flags are built with Flag, their numbers made up)."""
    ok = rows[rows["status"] == "ok"]
    first = classes[0]
    first_rows = ok[ok["label"] == first]["rel_path"].tolist()
    summary = Summary(
        command="auditor audit /data/set --model torchvision:resnet18 --out run "
                "--weights 'w <1>.pt'",
        config={"border": 0.1, "methods": ["gradcam"], "image_size": list(IMAGE_SIZE)},
        model=ModelFacts(
            spec="torchvision:resnet18", weights="/models/w <1>.pt", weights_sha256="ab" * 32,
            parameters=11_178_051, outputs=len(classes), target_layers=["layer4"],
            input_size=list(IMAGE_SIZE), device="cpu",
        ),
        data=DataFacts.of(rows, "/data/set", classes, [], "folder"),
        methods=["gradcam"],
        primary="gradcam",
        accuracy=accuracy(rows, classes),
        class_stats=class_statistics(rows, classes),
        timings={"index": 0.1, "pass": 2.5, "detect": 0.4},
        created="2024-05-01T12:00:00+00:00",
        versions={"python": "3.11.9", "torch": "2.4.0", "torchvision": "0.19.0",
                  "auditor": "0.1.0"},
    )
    if flagged and len(ok):
        grid = np.zeros((4, 4), dtype=int)
        grid[0, 0] = len(first_rows)
        flags = [
            Flag("fixed_location", "high", first, 0.92,
                 f"attention of {first} returns to the top-left corner",
                 {"grid_counts": grid.tolist(), "share_in_top_cell": 0.92,
                  "region_box": [0.0, 0.0, 0.25, 0.25], "scan_cells": (grid > 0).tolist()},
                 first_rows[:3]),
            Flag("border_attention", "medium", first, 1.6,
                 f"{first}: border lift 1.6 (chance 1.0)", {"border_lift_median": 1.6},
                 first_rows[:2]),
            Flag("metadata_shortcut", "high", None, 0.95,
                 "file format predicts the label (accuracy 0.95, chance 0.33)",
                 {"property": "format"}),
            Flag("intervention_sensitive", "low", first, 0.4,
                 "blurring the border flips 40% of predictions",
                 {"confirms": {"kind": "border_attention", "class": first},
                  "edit": "border_blank",
                  "edits": [{"edit": "border_blank", "description": "border band blanked",
                             "flip_rate": 0.4, "control_flip_rate": 0.05}]},
                 first_rows[:1]),
        ]
        summary.flags = [f.to_dict() for f in flags]
    if optional_sections and len(ok):
        _detector_sections(summary, rows, maps, classes)
    return summary


def _detector_sections(
    summary: Summary, rows: pd.DataFrame, maps: np.ndarray, classes: list[str],
) -> None:
    """Probes, clusters, interventions and sanity of these rows, each by its detector's code:
    the probes on the file properties and 16 x 16 thumbnails (too few rows for the two
    classifiers: they say so), the clusters of the maps, two edits of the first class measured
    on made-up outcomes (the border blank confirmed, the box swap not), and the sanity check of
    a tiny CNN on four images."""
    rng = np.random.default_rng(1)
    ok = rows[rows["status"] == "ok"].reset_index(drop=True)
    props = ok[[c for c in ok.columns if c.startswith("file_")]]
    thumbs = np.stack([
        cv2.resize(_image(int(k), rng), (16, 16), interpolation=cv2.INTER_AREA).transpose(2, 0, 1)
        for k in ok["label_index"]])
    summary.probes = run_probes(
        props.rename(columns=lambda c: c[len("file_"):]), ok["label_index"].to_numpy(), classes,
        thumbs, n_permutations=50).to_dict()
    summary.clusters = cluster_maps(rows, maps, classes)
    first = classes[0]
    n = int((ok["label"] == first).sum())
    border = Flag("border_attention", "medium", first, 1.6, "", {})
    place = Flag("fixed_location", "high", first, 0.92, "", {})

    def outcome(n_flipped: int, drop: float) -> EditOutcome:
        return EditOutcome(list(range(n)), np.arange(n) < n_flipped,
                           np.full(n, drop) + rng.uniform(0, 0.01, n))

    summary.interventions = [
        edit_record(first, "border_blank", border, "other classes", outcome(n, 0.3),
                    outcome(0, 0.02), False, None),
        edit_record(first, "box_swap", place, "random", outcome(1, -0.05), outcome(0, 0.01),
                    True, outcome(0, 0.0)),
    ]
    decide_records(summary.interventions)
    images = torch.from_numpy(np.stack([_image(k % len(classes), rng) for k in range(4)]))
    summary.sanity = run_sanity(
        tiny_gap_net(len(classes)), normalise_images(images.permute(0, 3, 1, 2), (0.5,) * 3,
                                                     (0.5,) * 3, torch.device("cpu")),
        methods=("gradcam",), steps=2, ssim_size=16)


def full_run(run_dir: str | Path, **kwargs: Any) -> Path:
    """Every section populated, flags raised, one stored thumbnail missing (sample 0)."""
    return build_run(run_dir, missing_thumbs=(0,), **kwargs)


def clean_run(run_dir: str | Path, **kwargs: Any) -> Path:
    """Readable data, no flag, no optional section (probes, clusters... not run)."""
    return build_run(run_dir, flagged=False, optional_sections=False, **kwargs)


def unreadable_run(run_dir: str | Path, **kwargs: Any) -> Path:
    """Every file failed to decode: no map, no thumbnail, no class means."""
    return build_run(run_dir, readable=False, flagged=False, optional_sections=False, **kwargs)


def many_classes_run(run_dir: str | Path, n_classes: int = 1000, **kwargs: Any) -> Path:
    """A run of `n_classes` classes ("c0000", ...) (two images each unless n_per_class says),
    with the full run's flags on the first class plus a background_attention flag on every
    third class and a border_attention flag on every tenth: the report's grouping at scale."""
    classes = [f"c{k:04d}" for k in range(n_classes)]
    kwargs = {"n_per_class": 2, "thumbs": 64, **kwargs}
    run = build_run(run_dir, classes=classes, **kwargs)
    summary = read_summary(run)
    for k in range(1, n_classes):
        for kind, every, severity in (("background_attention", 3, "medium"),
                                      ("border_attention", 10, "low")):
            if k % every == 0:
                summary.flags.append(Flag(kind, severity, classes[k], k / n_classes,
                                          f"{classes[k]}: {kind.replace('_', ' ')}",
                                          {}).to_dict())
    write_summary(run, summary)
    return run
