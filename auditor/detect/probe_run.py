"""The model-free probes on a run's samples.parquet table and its stored border thumbnails:
`probes.run_probes` on a single-label run, `per_label.one_vs_rest_probes` on a multi-label one.
Used by an audit's analysis and by `auditor probe`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from auditor.detect.per_label import label_sets, one_vs_rest_probes
from auditor.detect.probes import run_probes

if TYPE_CHECKING:
    from auditor.store import RunReader


def probe_samples(
    samples: pd.DataFrame,
    reader: RunReader,
    classes: list[str],
    border: float,
    seed: int,
    multi_label: bool = False,
) -> Any:
    """The model-free probes on the file fingerprints and border thumbnails of readable rows;
    multi-label: one-vs-rest per label on one row per image (auditor.detect.per_label)."""
    if multi_label:
        ok = samples[samples["status"] == "ok"].drop_duplicates("path")
    else:
        ok = samples[(samples["status"] == "ok") & (samples["label_index"] >= 0)]
    if ok.empty:
        return None
    props = ok[[c for c in ok.columns if c.startswith("file_")]]
    props = props.rename(columns=lambda c: c[len("file_") :]).reset_index(drop=True)
    thumbs = reader.load_rows(ok["index"].tolist(), "probe/thumb16")
    thumbs = thumbs if thumbs.size else None
    if multi_label:
        result: Any = one_vs_rest_probes(
            props, label_sets(ok["labels"], classes), classes, thumbs, border=border, seed=seed
        )
    else:
        result = run_probes(
            props, ok["label_index"].to_numpy(), classes, thumbs, border=border, seed=seed
        )
    paths = ok["rel_path"].tolist()
    for flag in result.flags:
        flag.samples = [paths[i] if isinstance(i, int | np.integer) else i for i in flag.samples]
    return result
