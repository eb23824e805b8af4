"""Attention clusters (SpRAy) per class: mean map of each cluster and its members."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from auditor.report import figures
from auditor.report.formatting import fit_size
from auditor.report.sections.class_maps import CLASS_SIDE
from auditor.store import RunReader

MAX_CLUSTER_CLASSES = 12
MAX_CLUSTER_THUMBS = 6
MAX_CLUSTER_PATHS = 12


def clusters_section(
    clusters: Any, reader: RunReader, means: dict[str, np.ndarray] | None, classes: list[str],
    input_size: tuple[int, int],
) -> dict[str, Any] | None:
    if not isinstance(clusters, dict):
        return None
    samples = reader.samples().set_index("index")
    groups = []
    for name, items in list(clusters.items())[:MAX_CLUSTER_CLASSES]:
        background = None
        if means is not None and name in classes and "mean_image" in means:
            k = classes.index(name)
            if k < len(means["mean_image"]):
                background = figures.fit_within(means["mean_image"][k], CLASS_SIDE)
        entries = []
        for item in items or []:
            cam = np.asarray(item.get("mean_map") or [[0.0]], dtype=np.float32)
            if background is not None:
                picture = figures.overlay(background, cam)
            else:
                picture = figures.heat_image(cam, fit_size(input_size, CLASS_SIDE))
            members = [int(m) for m in item.get("members") or []]
            thumbs = []
            for m in members[:MAX_CLUSTER_THUMBS]:
                t = reader.thumb(m)
                if t is not None:
                    thumbs.append({"src": figures.jpeg_data_uri(figures.fit_within(t, 96)),
                                   "alt": _rel_path(samples, m)})
            paths = [_rel_path(samples, m) for m in members[:MAX_CLUSTER_PATHS]]
            entries.append({
                "cluster": item.get("cluster"), "size": item.get("size", len(members)),
                "fg_energy_mean": item.get("fg_energy_mean"),
                "border_energy_mean": item.get("border_energy_mean"),
                "map": figures.jpeg_data_uri(picture), "thumbs": thumbs, "paths": paths,
                "paths_left_out": max(0, len(members) - len(paths)),
            })
        groups.append({"class": str(name), "clusters": entries})
    return {"groups": groups, "left_out": max(0, len(clusters) - len(groups))}


def _rel_path(samples: pd.DataFrame, index: int) -> str:
    if index in samples.index and "rel_path" in samples.columns:
        return str(samples.at[index, "rel_path"])
    return f"sample {index}"
