"""An explanation's files: ``<stem>.png`` (the figure), ``<stem>.<method>.npy`` (each raw map)
and ``<stem>.json`` (the record) per explained image."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from auditor.errors import RunDirectoryError
from auditor.explain.figure import explanation_figure
from auditor.explain.records import Explanation


def _unique_stems(explanations: Sequence[Explanation]) -> list[str]:
    """File stems, with -2, -3, ... added where two images share a name."""
    seen: dict[str, int] = {}
    stems = []
    for explanation in explanations:
        stem = Path(explanation.path).stem or "image"
        count = seen.get(stem, 0) + 1
        seen[stem] = count
        stems.append(stem if count == 1 else f"{stem}-{count}")
    return stems


def write_explanations(explanations: Sequence[Explanation], out: str | Path) -> list[Path]:
    """Write ``<stem>.png``, ``<stem>.<method>.npy`` and ``<stem>.json`` per explained image.

    Images that failed get no files. Returns the JSON paths written, in order.
    """
    out_dir = Path(out)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunDirectoryError(f"cannot create the output folder {out_dir}: {exc}") from exc
    written = []
    for explanation, stem in zip(explanations, _unique_stems(explanations), strict=True):
        if not explanation.ok:
            continue
        figure = cv2.cvtColor(explanation_figure(explanation), cv2.COLOR_RGB2BGR)
        if not cv2.imwrite(str(out_dir / f"{stem}.png"), figure):
            raise RunDirectoryError(f"cannot write {out_dir / f'{stem}.png'}; check the folder.")
        record = explanation.to_dict()
        record["figure"] = f"{stem}.png"
        for name, cam in explanation.maps.items():
            np.save(out_dir / f"{stem}.{name}.npy", cam.astype(np.float32))
            record["methods"][name]["file"] = f"{stem}.{name}.npy"
        path = out_dir / f"{stem}.json"
        path.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        written.append(path)
    return written
