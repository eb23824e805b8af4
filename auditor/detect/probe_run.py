"""The model-free probes on a run's samples.parquet table and its stored border thumbnails:
`probes.run_probes` on a single-label run, `per_label.one_vs_rest_probes` on a multi-label one.
Used by an audit's analysis and by `auditor probe`.

Above PROBE_ROWS readable rows the probes run on a seeded subsample of PROBE_ROWS of them
(stratified by class: each keeps its share; images drawn alike on a multi-label run), and only
its thumbnails are read: the permutation p-values cost rows x n_permutations and the
thumbnails 768 bytes a row, so a million rows would cost ten times a hundred thousand for
estimates that are as good. What was subsampled and the intervals are in the probes' notes."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from auditor.detect.groups import stratified_sample
from auditor.detect.per_label import label_sets, one_vs_rest_probes
from auditor.detect.probes import run_probes

if TYPE_CHECKING:
    from auditor.store import RunReader

PROBE_ROWS = 100_000


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
    population = len(ok)
    if population > PROBE_ROWS:
        strata = (np.zeros(population, dtype=np.int64) if multi_label
                  else ok["label_index"].to_numpy())
        ok = ok.iloc[stratified_sample(strata, PROBE_ROWS, np.random.default_rng(seed))]
    props = ok[[c for c in ok.columns if c.startswith("file_")]]
    props = props.rename(columns=lambda c: c[len("file_") :]).reset_index(drop=True)
    thumbs = reader.load_rows(ok["index"].tolist(), "probe/thumb16")
    thumbs = thumbs if thumbs.size else None
    if multi_label:
        result: Any = one_vs_rest_probes(
            props, label_sets(ok["labels"], classes), classes, thumbs, border=border, seed=seed,
            population=population,
        )
    else:
        result = run_probes(
            props, ok["label_index"].to_numpy(), classes, thumbs, border=border, seed=seed,
            population=population,
        )
    paths = ok["rel_path"].tolist()
    for flag in result.flags:
        flag.samples = [paths[i] if isinstance(i, int | np.integer) else i for i in flag.samples]
    return result
