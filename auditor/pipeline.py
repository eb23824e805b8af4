"""The pass: loader -> CAM engine -> measures -> run store, one batch at a time.

Everything per pixel happens on the device in batched tensor code; only per-sample scalars,
feature-resolution maps (float16) and 16x16 probe thumbnails come back to the host. Results are
written in chunks, so memory does not grow with the data set and an interrupted pass resumes.
"""

from __future__ import annotations

import logging
import signal
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from auditor.cams import CamEngine
from auditor.class_image_sums import ClassImageSums
from auditor.data import AuditDataset, DatasetIndex, make_loader
from auditor.errors import AuditorError
from auditor.first_thumbs import FirstThumbs
from auditor.jsonsafe import storable_text
from auditor.metrics import MEASURES, attention_measures
from auditor.runtime import normalise_images
from auditor.store import RunWriter

log = logging.getLogger("auditor")

#: Rows per stored chunk: what an interrupted pass can lose at most, and the pass's memory.
DEFAULT_CHUNK_SIZE = 2048


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
    chunk_size: int = DEFAULT_CHUNK_SIZE
    rank: int = 0
    world_size: int = 1
    progress: bool = True
    compile: bool = False
    compile_backend: str = "inductor"
    reshape: Callable[[torch.Tensor], torch.Tensor] | None = None
    multi_label: bool = False
    threshold: float = 0.5


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
    done: set[int] | None = None,
) -> dict[str, Any]:
    """Audit every sample not yet stored in `writer`'s run directory; returns pass statistics.

    Sharded by rank for torchrun: rank r takes positions r, r + world, ... of what is left.
    `done`: the indices already stored, read once before any rank writes (every rank must
    shard the same list); None reads them from `writer`.
    Raises AuditInterrupted (after flushing) on Ctrl-C or SIGTERM.
    """
    if settings.chunk_size < 1:
        raise AuditorError(f"chunk_size must be at least 1 row, not {settings.chunk_size}")
    done = writer.done_indices() if done is None else done
    todo = [i for i, ref in enumerate(index.samples) if ref.index not in done]
    todo = todo[settings.rank :: settings.world_size]
    stats: dict[str, Any] = {"skipped_done": len(done), "n_processed": 0, "seconds": 0.0}
    if not todo:
        return stats
    loader = make_loader(
        dataset, settings.batch_size, settings.workers, device.type, indices=todo
    )
    buffer = _ChunkBuffer(writer, settings.rank)
    # The mean-image inputs summed, the first thumbnails written, while the inputs are in hand
    # (auditor.class_image_sums, auditor.first_thumbs).
    labels = np.array([ref.label for ref in index.samples], dtype=np.int64)
    class_sums = ClassImageSums(labels, len(index.classes))
    first_thumbs = FirstThumbs(labels, writer.run_dir)
    started = time.perf_counter()
    desc = "audit" if settings.world_size == 1 else f"audit (rank 0 of {settings.world_size})"
    bar = _progress(len(todo), settings.progress and settings.rank == 0, desc)
    runner = _Runner(model, settings)
    try:
        with _sigterm_as_interrupt(), runner:
            for batch in loader:
                rows, map_rows, arrays = _audit_batch(batch, index, runner, settings, device)
                buffer.add(rows, map_rows, arrays)
                # After the rows are buffered: a sum never holds a sample left unstored.
                class_sums.add(batch["index"], batch["ok"], batch["image"])
                first_thumbs.add(batch["index"], batch["ok"], batch["image"], batch["mask"],
                                 batch["has_mask"])
                if buffer.size >= settings.chunk_size:
                    buffer.flush()
                stats["n_processed"] += len(rows)
                bar.update(len(rows))
            buffer.flush()
            class_sums.write(writer.run_dir, settings.rank)
    except KeyboardInterrupt:
        buffer.flush()
        class_sums.write(writer.run_dir, settings.rank)
        bar.close()
        raise AuditInterrupted(
            f"interrupted after {stats['n_processed']} samples; finished chunks are stored in "
            f"{writer.run_dir}. Run the same command again to resume (add --overwrite to "
            "start again)."
        ) from None
    bar.close()
    stats["seconds"] = time.perf_counter() - started
    stats["images_per_s"] = stats["n_processed"] / max(stats["seconds"], 1e-9)
    stats["compiled"] = runner.compiled
    return stats


class _Runner:
    """The CAM engine over the model, or over torch.compile(model) when asked and it works.

    A compiled model is checked against the eager one on the first batch (same explained
    classes, maps within 1e-3 of each sample's peak); if compiling fails or disagrees (e.g. a
    graph that the engine's hooks cannot live in), the pass warns and goes on eagerly.
    """

    def __init__(self, model: nn.Module, settings: PassSettings) -> None:
        self.settings = settings
        self.eager = self._engine(model)
        self.fast: CamEngine | None = None
        self.compiled = False
        if settings.compile:
            self.fast = self._engine(torch.compile(model, backend=settings.compile_backend))
        self._checked = not settings.compile

    def _engine(self, model: nn.Module) -> CamEngine:
        s = self.settings
        return CamEngine(
            model, target_layer=list(s.target_layers), methods=s.methods, amp_dtype=s.amp_dtype,
            reshape=s.reshape,
        )

    def __enter__(self) -> _Runner:
        return self

    def __exit__(self, *exc: object) -> None:
        for engine in (self.fast, self.eager):
            if engine is not None:
                engine.close()

    def __call__(self, images: torch.Tensor, targets: torch.Tensor | None) -> Any:
        if self.fast is None:
            return self.eager(images, targets)
        if self._checked:
            return self.fast(images, targets)
        self._checked = True
        reference = self.eager(images, targets)
        try:
            out = self.fast(images, targets)
            agrees = _same_maps(out, reference)
            reason = "its maps differ from the eager model's"
        except Exception as exc:  # any compiler failure: the eager engine still works
            agrees, reason = False, f"{type(exc).__name__}: {str(exc)[:200]}"
        if agrees:
            # The eager engine stays open (its hooks idle) until the pass ends: closing it
            # now would restore requires_grad under the compiled engine, which shares modules.
            self.compiled = True
            return out
        warnings.warn(
            f"--compile: torch.compile could not be used ({reason}); running eagerly.",
            RuntimeWarning, stacklevel=2,
        )
        log.warning("--compile: torch.compile could not be used (%s); running eagerly", reason)
        self.fast.close()
        self.fast = None
        return reference


def _same_maps(a: Any, b: Any) -> bool:
    if not torch.equal(a.targets, b.targets) or a.maps.keys() != b.maps.keys():
        return False
    for name, ref in b.maps.items():
        scale = ref.flatten(1).amax(dim=1).clamp_min(1e-12)[:, None, None]
        if not bool(((a.maps[name] - ref).abs() <= 1e-3 * scale).all()):
            return False
    return True


def _progress(total: int, enabled: bool, desc: str) -> Any:
    """tqdm bar with images/s and ETA, on stderr."""
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="img", desc=desc, disable=not enabled, dynamic_ncols=True)


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
    engine: _Runner,
    settings: PassSettings,
    device: torch.device,
) -> tuple[pd.DataFrame, np.ndarray, dict[str, np.ndarray]]:
    """Rows, map rows and arrays (maps float16, probe thumbnails) of one loader batch."""
    ok = batch["ok"].bool()
    refs = [index.samples[i] for i in _positions(batch, index)]
    n = len(refs)
    labels = torch.tensor([r.label for r in refs], dtype=torch.long)
    columns = file_columns(batch, index, refs)
    values = {
        name: np.full(n, np.nan, dtype=np.float32)
        for name in (*MEASURES, "confidence", "target_prob")
    }
    pred = np.full(n, -1, dtype=np.int64)
    target_index = np.full(n, -1, dtype=np.int64)
    degenerate = np.zeros(n, dtype=bool)
    map_rows = np.full(n, -1, dtype=np.int64)
    arrays: dict[str, np.ndarray] = {}
    all_probs = np.full((n, len(index.classes)), np.nan, dtype=np.float32)
    ok_pos = torch.nonzero(ok).flatten()
    if len(ok_pos):
        sel = ok_pos
        images_u8 = batch["image"][sel]
        x = normalise_images(images_u8, settings.mean, settings.std, device)
        ok_labels = labels[sel]
        if settings.multi_label:
            # Each row is one (image, positive label) pair: its label is the target; -1 (no
            # finding) explains the top-scoring class. One backward serves every pair.
            targets = ok_labels.to(device, non_blocking=True)
        else:
            # Decided on the host: a check on the device would wait for it.
            by_label = settings.explain == "label" and bool((ok_labels >= 0).all())
            targets = ok_labels.to(device, non_blocking=True) if by_label else None
        out = engine(x, targets)
        logits = out.logits.float()
        # Multi-label outputs are independent sigmoids; single-label ones one softmax.
        probs = torch.sigmoid(logits) if settings.multi_label else torch.softmax(logits, dim=1)
        conf, top = probs.max(dim=1)
        tprob = probs.gather(1, out.targets.view(-1, 1)).squeeze(1)
        if settings.multi_label:
            conf = tprob
        primary = out.maps[settings.primary]
        masks = batch["mask"][sel].to(device, non_blocking=True).bool()
        has_mask = batch["has_mask"][sel].to(device).bool()
        boxes = batch["box"][sel].to(device, non_blocking=True).float()
        measures = attention_measures(primary, masks, has_mask, boxes, border=settings.border)
        # No peak means an all-zero, constant or non-finite map: the measures are NaN for it.
        bad = ~torch.isfinite(measures["peak_x"]) | ~torch.isfinite(logits).all(dim=1)
        # One copy per dtype to the host (each .cpu() waits for the device).
        scalars = torch.stack([*(measures[k].float() for k in MEASURES), conf, tprob])
        if settings.multi_label:  # every label's probability rides on the same copy
            scalars = torch.cat([scalars, probs.float().T])
        scalars = scalars.cpu()
        classes = torch.stack([top, out.targets, bad.long()]).cpu().numpy()
        sel_np = sel.numpy()
        if settings.multi_label:
            all_probs[sel_np] = scalars[len(MEASURES) + 2 :].T.numpy()
        for row, name in enumerate((*MEASURES, "confidence", "target_prob")):
            values[name][sel_np] = scalars[row].numpy()
        pred[sel_np] = classes[0]
        target_index[sel_np] = classes[1]
        degenerate[sel_np] = classes[2].astype(bool)
        map_rows[sel_np] = np.arange(len(sel_np))
        for method, m in out.maps.items():
            arrays[f"maps/{method}"] = m.to(torch.float16).cpu().numpy()
        arrays["probe/thumb16"] = batch["thumb16"][sel].numpy()
    columns["pred_index"] = pred
    columns["pred"] = [index.classes[p] if 0 <= p < len(index.classes) else "" for p in pred]
    columns["target_index"] = target_index
    columns["correct"] = (pred == columns["label_index"]) & ok.numpy()
    if settings.multi_label:
        columns.update(multi_label_columns(all_probs, refs, index.classes, settings.threshold))
        columns["correct"] &= ok.numpy()
    columns["map_degenerate"] = degenerate
    columns.update(values)
    return with_fingerprints(pd.DataFrame(columns), batch), map_rows, arrays


def multi_label_columns(
    probs: np.ndarray, refs: list[Any], classes: list[str], threshold: float
) -> dict[str, Any]:
    """Columns of multi-label rows from sigmoid probabilities [n, C] (NaN rows: unreadable).

    ``pred``: the labels at or above ``threshold``, ``|``-joined; ``correct``: the row's label
    is predicted (a true positive), or, for an image with no finding, no label is;
    ``scores``: every label's probability (per-label precision, recall and AUROC).
    """
    positive = probs >= threshold  # NaN compares False
    label = np.array([r.label for r in refs], dtype=np.int64)
    hit = positive[np.arange(len(refs)), np.clip(label, 0, None)]
    return {
        "pred": ["|".join(classes[k] for k in np.flatnonzero(row)) for row in positive],
        "correct": np.where(label >= 0, hit, ~positive.any(axis=1)),
        "scores": list(probs),
    }


def file_columns(batch: dict[str, Any], index: DatasetIndex, refs: list[Any]) -> dict[str, Any]:
    """The per-file columns of samples.parquet (identity, label, status, foreground source),
    as stored: text valid UTF-8 (see jsonsafe.storable_text)."""
    ok = batch["ok"].bool().numpy()
    has_mask = batch["has_mask"].bool().numpy() & ok
    return {
        "index": [r.index for r in refs],
        "path": [storable_text(r.path) for r in refs],
        "rel_path": [storable_text(r.rel_path) for r in refs],
        "label": [index.classes[r.label] if r.label >= 0 else "" for r in refs],
        "label_index": np.array([r.label for r in refs], dtype=np.int64),
        "status": np.where(ok, "ok", "error"),
        "error": [storable_text(e) for e in batch["error"]],
        "warning": [storable_text(w) for w in batch["warning"]],
        "has_mask": has_mask,
        "foreground_source": list(batch["foreground_source"]),
        # Multi-label: every positive label of the row's image, |-joined.
        **({"labels": ["|".join(index.classes[k] for k in r.labels) for r in refs]}
           if index.multi_label else {}),
    }


def with_fingerprints(frame: pd.DataFrame, batch: dict[str, Any]) -> pd.DataFrame:
    """`frame` with the batch's file fingerprints appended as `file_<property>` columns."""
    records = list(batch["props"])
    # Column by column (a row without a property gets NaN), as pd.DataFrame(records) would
    # build it, without its per-record inference: this runs once per batch.
    names = dict.fromkeys(name for record in records for name in record)
    if not names:
        return frame
    props = pd.DataFrame(
        {f"file_{name}": [record.get(name, np.nan) for record in records] for name in names},
        index=frame.index,
    )
    return pd.concat([frame, props], axis=1)


def _positions(batch: dict[str, Any], index: DatasetIndex) -> list[int]:
    """Dataset positions of a batch (SampleRef.index is the position; checked, not assumed)."""
    positions = [int(i) for i in batch["index"]]
    for p in positions:
        if index.samples[p].index != p:
            raise AuditorError("internal: DatasetIndex.samples[i].index must equal i")
    return positions


