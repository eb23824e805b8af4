"""The pass: loader -> CAM engine -> measures -> run store, one batch at a time.

Everything per pixel happens on the device in batched tensor code; only per-sample scalars,
feature-resolution maps (float16) and 16x16 probe thumbnails come back to the host. Results are
written in chunks, so memory does not grow with the data set and an interrupted pass resumes.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from auditor.cams import CamEngine
from auditor.data import AuditDataset, DatasetIndex, make_loader
from auditor.errors import AuditorError
from auditor.metrics import attention_measures
from auditor.runtime import normalise_images
from auditor.store import RunWriter

MEASURES = (
    "fg_energy", "fg_enrichment", "bg_energy", "border_energy", "border_lift",
    "pointing_hit", "wsol_iou", "peak_x", "peak_y",
)


class AuditInterrupted(AuditorError):
    """The pass was stopped (Ctrl-C / SIGTERM) after storing every finished chunk."""

    exit_code = 130


@dataclass
class PassSettings:
    """What the pass needs besides the model and the data (plain values from AuditConfig)."""

    methods: tuple[str, ...]
    primary: str
    target_layers: Sequence[str]
    explain: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    border: float
    batch_size: int
    workers: int | None
    amp_dtype: torch.dtype | None
    chunk_size: int = 2048
    rank: int = 0
    world_size: int = 1
    progress: bool = True


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM behaves like Ctrl-C inside the pass, so both flush and exit cleanly."""

    def raise_interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, raise_interrupt)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_pass(
    model: nn.Module,
    index: DatasetIndex,
    dataset: AuditDataset,
    writer: RunWriter,
    settings: PassSettings,
    device: torch.device,
) -> dict[str, Any]:
    """Audit every sample not yet stored in `writer`'s run directory; returns pass statistics.

    Sharded by rank for torchrun: rank r takes positions r, r + world, ... of what is left.
    Raises AuditInterrupted (after flushing) on Ctrl-C or SIGTERM.
    """
    done = writer.done_indices()
    todo = [i for i, ref in enumerate(index.samples) if ref.index not in done]
    todo = todo[settings.rank :: settings.world_size]
    stats: dict[str, Any] = {"skipped_done": len(done), "n_processed": 0, "seconds": 0.0}
    if not todo:
        return stats
    loader = make_loader(
        dataset, settings.batch_size, settings.workers, device.type, indices=todo
    )
    buffer = _ChunkBuffer(writer, settings.rank)
    started = time.perf_counter()
    bar = _progress(len(todo), settings.progress and settings.rank == 0)
    try:
        with _sigterm_as_interrupt(), CamEngine(
            model, target_layer=list(settings.target_layers), methods=settings.methods,
            amp_dtype=settings.amp_dtype,
        ) as engine:
            for batch in loader:
                rows, map_rows, arrays = _audit_batch(batch, index, engine, settings, device)
                buffer.add(rows, map_rows, arrays)
                if buffer.size >= settings.chunk_size:
                    buffer.flush()
                stats["n_processed"] += len(rows)
                bar.update(len(rows))
            buffer.flush()
    except KeyboardInterrupt:
        buffer.flush()
        bar.close()
        raise AuditInterrupted(
            f"interrupted after {stats['n_processed']} samples; finished chunks are stored in "
            f"{writer.run_dir}. Run the same command again to resume."
        ) from None
    bar.close()
    stats["seconds"] = time.perf_counter() - started
    return stats


def _progress(total: int, enabled: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="img", desc="audit", disable=not enabled, dynamic_ncols=True)


class _ChunkBuffer:
    """Collects batch results until a chunk is big enough to write."""

    def __init__(self, writer: RunWriter, rank: int) -> None:
        self.writer, self.rank = writer, rank
        self.rows: list[pd.DataFrame] = []
        self.map_rows: list[np.ndarray] = []
        self.arrays: dict[str, list[np.ndarray]] = {}
        self.size = 0
        self._n_arrays = 0

    def add(self, rows: pd.DataFrame, map_rows: np.ndarray, arrays: dict[str, np.ndarray]) -> None:
        self.rows.append(rows)
        self.map_rows.append(np.where(map_rows >= 0, map_rows + self._n_arrays, -1))
        for key, value in arrays.items():
            self.arrays.setdefault(key, []).append(value)
        self._n_arrays += int((map_rows >= 0).sum())
        self.size += len(rows)

    def flush(self) -> None:
        if not self.rows:
            return
        part = self.writer.next_part_name(self.rank)
        arrays = {k: np.concatenate(v) for k, v in self.arrays.items()}
        self.writer.write_chunk(
            part, pd.concat(self.rows, ignore_index=True), np.concatenate(self.map_rows), arrays
        )
        self.rows, self.map_rows, self.arrays = [], [], {}
        self.size = self._n_arrays = 0


def _audit_batch(
    batch: dict[str, Any],
    index: DatasetIndex,
    engine: CamEngine,
    settings: PassSettings,
    device: torch.device,
) -> tuple[pd.DataFrame, np.ndarray, dict[str, np.ndarray]]:
    ok = batch["ok"].bool()
    refs = [index.samples[i] for i in _positions(batch, index)]
    n = len(refs)
    labels = torch.tensor([r.label for r in refs], dtype=torch.long)
    columns: dict[str, Any] = {
        "index": [r.index for r in refs],
        "path": [r.path for r in refs],
        "rel_path": [r.rel_path for r in refs],
        "label": [index.classes[r.label] if r.label >= 0 else "" for r in refs],
        "label_index": labels.numpy(),
        "status": np.where(ok.numpy(), "ok", "error"),
        "error": list(batch["error"]),
        "warning": list(batch["warning"]),
        "has_mask": batch["has_mask"].bool().numpy() & ok.numpy(),
    }
    columns["foreground_source"] = [
        _foreground_source(r) if has else "none" for r, has in zip(refs, columns["has_mask"])
    ]
    values = {name: np.full(n, np.nan, dtype=np.float32) for name in (*MEASURES, "confidence", "target_prob")}
    pred = np.full(n, -1, dtype=np.int64)
    target_index = np.full(n, -1, dtype=np.int64)
    degenerate = np.zeros(n, dtype=bool)
    map_rows = np.full(n, -1, dtype=np.int64)
    arrays: dict[str, np.ndarray] = {}
    ok_pos = torch.nonzero(ok).flatten()
    if len(ok_pos):
        sel = ok_pos
        images_u8 = batch["image"][sel]
        x = normalise_images(images_u8, settings.mean, settings.std, device)
        ok_labels = labels[sel].to(device, non_blocking=True)
        targets = ok_labels if settings.explain == "label" and bool((ok_labels >= 0).all()) else None
        out = engine(x, targets)
        logits = out.logits.float()
        probs = torch.softmax(logits, dim=1)
        conf, top = probs.max(dim=1)
        tprob = probs.gather(1, out.targets.view(-1, 1)).squeeze(1)
        primary = out.maps[settings.primary]
        masks = batch["mask"][sel].to(device, non_blocking=True).bool()
        has_mask = batch["has_mask"][sel].to(device).bool()
        boxes = batch["box"][sel].to(device, non_blocking=True).float()
        measures = attention_measures(primary, masks, has_mask, boxes, border=settings.border)
        # No peak means an all-zero or non-finite map: the measures are NaN for it.
        bad = ~torch.isfinite(measures["peak_x"]) | ~torch.isfinite(logits).all(dim=1)
        sel_np = sel.numpy()
        for name in MEASURES:
            values[name][sel_np] = measures[name].float().cpu().numpy()
        values["confidence"][sel_np] = conf.cpu().numpy()
        values["target_prob"][sel_np] = tprob.cpu().numpy()
        pred[sel_np] = top.cpu().numpy()
        target_index[sel_np] = out.targets.cpu().numpy()
        degenerate[sel_np] = bad.cpu().numpy()
        map_rows[sel_np] = np.arange(len(sel_np))
        for method, m in out.maps.items():
            arrays[f"maps/{method}"] = m.float().cpu().numpy().astype(np.float16)
        arrays["probe/thumb16"] = batch["thumb16"][sel].numpy()
    columns["pred_index"] = pred
    columns["pred"] = [index.classes[p] if 0 <= p < len(index.classes) else "" for p in pred]
    columns["target_index"] = target_index
    columns["correct"] = (pred == columns["label_index"]) & ok.numpy()
    columns["map_degenerate"] = degenerate
    columns.update(values)
    frame = pd.DataFrame(columns)
    props = pd.DataFrame(list(batch["props"])).add_prefix("file_")
    if not props.empty:
        frame = pd.concat([frame, props.reset_index(drop=True)], axis=1)
    return frame, map_rows, arrays


def _positions(batch: dict[str, Any], index: DatasetIndex) -> list[int]:
    """Dataset positions of a batch (SampleRef.index is the position; checked, not assumed)."""
    positions = [int(i) for i in batch["index"]]
    for p in positions:
        if index.samples[p].index != p:
            raise AuditorError("internal: DatasetIndex.samples[i].index must equal i")
    return positions


def _foreground_source(ref: Any) -> str:
    if ref.mask_path:
        return "mask"
    if ref.box is not None:
        return "box"
    return "none"
