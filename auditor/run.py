"""What the commands share about a run: the phase timer, what the pass hands the analysis, the
result a caller gets back, and the data fingerprint resume compares.

Below ``audit``, ``analysis`` and ``probe`` (each imports it; it imports none of them).
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from auditor.detect.flags import at_or_above
from auditor.store import RunReader
from auditor.summary import Summary

if TYPE_CHECKING:
    import torch
    from torch import nn

    from auditor.config import AuditConfig
    from auditor.data import AuditDataset, DatasetIndex
    from auditor.models.loading import LoadedModel

log = logging.getLogger("auditor")


class PhaseTimer:
    """Logs one line per phase with its duration and keeps the durations for summary.json."""

    def __init__(self) -> None:
        self.timings: dict[str, float] = {}

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        yield
        seconds = time.perf_counter() - started
        self.timings[name] = round(self.timings.get(name, 0.0) + seconds, 3)
        log.info("%s: %.2f s", name, seconds)


@dataclass
class PassContext:
    """What the pass hands the analysis (``auditor.analysis.analyse_run``).

    Attributes:
        config: the audit's options.
        index: the data set's samples and classes.
        dataset: the decoded inputs (the analysis re-reads thumbnails and edits from it).
        model: the audited model, eval mode, on ``device``.
        loaded: how the model was loaded (spec, weights and their digest, parameter count).
        layers: the target layers the maps come from.
        layers_given: True when the user named them (--target-layer), False when found.
        layer_warning: a note about the default layer for the report, or None.
        device: where the model runs.
        num_outputs: the model's number of outputs.
        stats: the pass's own numbers (images/s ...), summary.json's ``pass``.
        command: the command line, for the report.
        random_weights: the model runs on the random initial weights of its architecture
            (auditor.models.initial).
    """

    config: AuditConfig
    index: DatasetIndex
    dataset: AuditDataset
    model: nn.Module
    loaded: LoadedModel
    layers: list[str]
    device: torch.device
    num_outputs: int
    layers_given: bool = False
    layer_warning: str | None = None
    stats: dict[str, Any] = field(default_factory=dict)
    command: str = ""
    random_weights: bool = False


@dataclass
class AuditResult:
    """A finished run: its directory and summary. Shows a compact summary in notebooks."""

    run_dir: Path
    summary: dict[str, Any]

    @property
    def flags(self) -> list[dict[str, Any]]:
        return list(self.summary.get("flags", []))

    @property
    def report_path(self) -> Path:
        return self.run_dir / "report.html"

    def samples(self) -> pd.DataFrame:
        """samples.parquet of the run."""
        return RunReader(self.run_dir).samples()

    @property
    def gated_flags(self) -> list[dict[str, Any]]:
        """The flags --fail-on counts: with a baseline, only those new against it."""
        baseline = self.summary.get("baseline")
        if isinstance(baseline, dict):
            return list(baseline.get("appeared") or [])
        return self.flags

    def exit_code(self, fail_on: str | None) -> int:
        """0, or 3 when a flag at or above `fail_on` was raised (the CI gate); with a
        baseline, only flags new against it count."""
        return 3 if fail_on and at_or_above(self.gated_flags, fail_on) else 0

    def _repr_html_(self) -> str:
        from auditor.report.notebook import summary_html

        return summary_html(Summary.from_dict(self.summary))


def data_fingerprint(index: DatasetIndex) -> str:
    """sha256 over (relative path, label, size, mtime) of every sample (of the container file
    for a sample kept in one): resume refuses when the data changed."""
    digest = hashlib.sha256("\x00".join(index.classes).encode())
    for ref in index.samples:
        try:
            st = os.stat(ref.member.container if ref.member is not None else ref.path)
            stamp = f"{st.st_size}:{st.st_mtime_ns}"
        except OSError:
            stamp = "missing"
        record = f"{ref.rel_path}\x00{ref.label}\x00{ref.mask_path}\x00{ref.box}\x00{stamp}\n"
        digest.update(record.encode("utf-8", "surrogateescape"))
    return digest.hexdigest()
