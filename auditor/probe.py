"""`auditor probe DATA`: the model-free checks alone, for a data set nobody has trained on yet.

One decoding pass (fingerprints and 16x16 border thumbnails, no model), then the probes of
auditor.detect.probes; writes samples.parquet, summary.json and a report in the run layout.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from auditor.data import AuditDataset, make_loader, open_source
from auditor.detect.per_label import one_error_row_per_file
from auditor.detect.probe_run import probe_samples
from auditor.errors import DataError
from auditor.pipeline import file_columns, with_fingerprints
from auditor.run import AuditResult, PhaseTimer, data_fingerprint
from auditor.store import RunLock, RunReader, RunWriter, write_samples
from auditor.summary import DataFacts, Summary, write_summary


def run_probe(
    data: str,
    out: str,
    classes: tuple[str, ...] | None = None,
    masks: str | None = None,
    image_size: tuple[int, int] = (224, 224),
    border: float = 0.1,
    workers: int | None = None,
    allow_outside: bool = False,
    image_column: str = "image",
    label_column: str = "label",
    quiet: bool = False,
    command: str | None = None,
    seed: int = 0,
    batch_size: int = 128,
    dicom_window: tuple[float, float] | None = None,
    multi_label: bool = False,
) -> AuditResult:
    """Run the model-free probes on DATA and write OUT (summary.json, report.html, ...)."""
    from tqdm.auto import tqdm

    timer = PhaseTimer()
    with timer.phase("index"):
        index = open_source(
            data,
            classes=list(classes) if classes else None,
            masks_dir=masks,
            allow_outside=allow_outside,
            image_column=image_column,
            label_column=label_column,
            multi_label=multi_label,
        )
        if not index.samples:
            raise DataError(f"no images found in {data}")
    run_dir = Path(out)
    run_dir.mkdir(parents=True, exist_ok=True)
    fingerprint = {
        "config": f"probe|{image_size}|{border}|{dicom_window}|{multi_label}",
        "model": "none",
        "data": data_fingerprint(index),
    }
    with RunLock(run_dir):
        writer = RunWriter(run_dir, fingerprint, overwrite=True)
        dataset = AuditDataset(
            index, image_size=image_size, border=border, dicom_window=dicom_window
        )
        loader = make_loader(dataset, batch_size, workers, "cpu")
        with timer.phase("decode"):
            bar = tqdm(total=len(dataset), unit="img", desc="probe", disable=quiet)
            for batch in loader:
                rows, map_rows, arrays = _probe_rows(batch, index)
                writer.write_chunk(writer.next_part_name(), rows, map_rows, arrays)
                bar.update(len(rows))
            bar.close()
        writer.merge()
        samples = RunReader(run_dir).samples()
        if multi_label:
            samples = one_error_row_per_file(samples)
            write_samples(run_dir, samples)
        with timer.phase("probes"):
            probes = probe_samples(
                samples, RunReader(run_dir), index.classes, border, seed, multi_label
            )
        flags = probes.flags if probes is not None else []
        summary = Summary(
            command=command or "",
            config={
                "data": data,
                "image_size": list(image_size),
                "border": border,
                "classes": list(classes) if classes else None,
                "masks": masks,
                "dicom_window": None if dicom_window is None else list(dicom_window),
                "multi_label": multi_label,
            },
            data=DataFacts.of(samples, index.root, index.classes, index.warnings, index.source,
                              multi_label=multi_label),
            probes=probes.to_dict() if probes is not None else None,
            flags=[f.to_dict() for f in flags],
            timings=timer.timings,
        )
        write_summary(run_dir, summary)
        from auditor.report import render_report, write_samples_csv

        written = RunReader(run_dir)  # the table just written, read once for both
        render_report(run_dir, reader=written)
        write_samples_csv(run_dir, reader=written)
        writer.mark_complete()
    return AuditResult(run_dir=run_dir, summary=summary.to_dict())


def _probe_rows(batch: dict[str, Any], index: Any) -> tuple[pd.DataFrame, Any, dict[str, Any]]:
    ok = batch["ok"].bool().numpy()
    refs = [index.samples[int(i)] for i in batch["index"]]
    frame = with_fingerprints(pd.DataFrame(file_columns(batch, index, refs)), batch)
    map_rows = np.full(len(refs), -1, dtype=np.int64)
    map_rows[ok] = np.arange(int(ok.sum()))
    return frame, map_rows, {"probe/thumb16": batch["thumb16"][torch.from_numpy(ok)].numpy()}
