"""The suspect gallery: the most suspicious readable samples, their maps and measures."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from auditor.detect.suspicion import top_suspects
from auditor.report import figures
from auditor.report.formatting import fit_size
from auditor.store import RunReader

#: Longer side, in pixels, of the images embedded per sample (shown at 160 px, enlarged on click).
SAMPLE_SIDE = 224
MEASURE_COLUMNS = ("fg_energy", "bg_energy", "border_energy", "border_lift", "pointing_hit",
                   "wsol_iou")


def gallery_section(
    reader: RunReader, ok: pd.DataFrame, primary: str, input_size: tuple[int, int],
    gallery_size: int, class_ids: dict[str, str], suspect_methods: list[str],
) -> dict[str, Any]:
    if "suspicion" not in ok.columns:  # a model-free probe run has no attention measures
        ok = ok.iloc[:0].assign(suspicion=[])
    top = top_suspects(ok, gallery_size)
    maps = load_maps(reader, top["index"].tolist(), primary)
    cards = []
    for i, row in enumerate(top.itertuples(index=False)):
        rec = row._asdict()
        thumb = reader.thumb(int(rec["index"]))
        cam = maps[i] if maps is not None and np.isfinite(maps[i]).any() else None
        image = overlay = outline = None
        if thumb is not None:
            small = figures.fit_within(thumb, SAMPLE_SIDE)
            image = figures.jpeg_data_uri(small)
            if cam is not None:
                overlay = figures.jpeg_data_uri(figures.overlay(small, cam))
            mask = reader.thumb_mask(int(rec["index"]))
            if mask is not None:
                outline = figures.png_data_uri(figures.mask_outline(small, mask))
        elif cam is not None:
            size = fit_size(input_size, SAMPLE_SIDE)
            overlay = figures.jpeg_data_uri(figures.heat_image(cam, size))
        extra = _suspect_overlays(reader, int(rec["index"]), suspect_methods, thumb, input_size)
        codes = [c for c in str(rec.get("flags") or "").split(",") if c]
        label = str(rec.get("label", ""))
        cards.append({
            "index": int(rec["index"]), "rel_path": str(rec.get("rel_path", "")),
            "label": label, "class_id": class_ids.get(label, "class-unknown"),
            "pred": str(rec.get("pred") or "–"), "correct": bool(rec.get("correct")),
            "confidence": rec.get("confidence"), "suspicion": rec.get("suspicion"),
            "flags": codes, "image": image, "overlay": overlay, "outline": outline,
            "extra_maps": extra,
            "map_only": thumb is None and overlay is not None,
            "foreground_source": str(rec.get("foreground_source") or "none"),
            "measures": [(name, rec.get(name)) for name in MEASURE_COLUMNS if name in rec],
        })
    class_filters = list(dict.fromkeys((c["class_id"], c["label"]) for c in cards))
    flag_filters = sorted({code for c in cards for code in c["flags"]})
    shown = [m for m in suspect_methods if any(e["method"] == m for c in cards
                                               for e in c["extra_maps"])]
    return {
        "cards": cards, "class_filters": class_filters, "flag_filters": flag_filters,
        "n_readable": len(ok), "left_out": max(0, len(ok) - len(cards)),
        "extra_methods": shown,
        "n_with_extra": sum(1 for c in cards if c["extra_maps"]),
    }


def _suspect_overlays(
    reader: RunReader, index: int, methods: list[str], thumb: np.ndarray | None,
    input_size: tuple[int, int],
) -> list[dict[str, Any]]:
    """[{method, src, map_only}] for the maps stored for this suspect by --suspect-methods
    (none stored: an empty list).

    Each map is upsampled from its own grid (target layer, occlusion patches or input pixels)
    to the shown image, so every method's overlay lines up with the input."""
    out = []
    for method in methods:
        try:
            cam = reader.suspect_map(index, method)
        except (OSError, ValueError):
            cam = None  # a damaged file: the card shows the other maps
        if cam is None or cam.ndim != 2 or not np.isfinite(cam).any():
            continue
        if thumb is not None:
            rgb = figures.overlay(figures.fit_within(thumb, SAMPLE_SIDE), cam)
        else:
            rgb = figures.heat_image(cam, fit_size(input_size, SAMPLE_SIDE))
        out.append({"method": method, "src": figures.jpeg_data_uri(rgb),
                    "map_only": thumb is None})
    return out


def load_maps(reader: RunReader, indices: list[int], method: str) -> np.ndarray | None:
    if not indices:
        return None
    try:
        maps = reader.load_maps(indices, method)
    except (OSError, ValueError, KeyError):
        # A missing or damaged shard: show the samples without overlays rather than no report.
        return None
    return maps if maps.ndim == 3 and maps.shape[1] > 0 else None
