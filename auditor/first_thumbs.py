"""The report's first thumbnails of each class, written during the pass instead of decoded
again after it.

The report shows the inputs of the first THUMBS_PER_CLASS readable samples of each class (and
of the gallery's suspects). Decoding them after the pass costs that many decodes per class:
4 000 at a thousand classes. The pass has every input in hand, so it writes thumbs/<index>.png
(store.write_thumb, the same bytes the analysis would write) for the first THUMBS_PER_CLASS
samples of each class by index that are readable; the analysis decodes only the shown samples
without a thumbnail yet (the suspects, and the ones after an unreadable first sample). A
thumbnail is a function of the sample's input alone, so one written by any pass of the run is
the one the analysis would write.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from auditor.class_image_sums import first_per_class
from auditor.store import write_thumb

THUMBS_PER_CLASS = 4


class FirstThumbs:
    """Writes the thumbnails of the pass's readable first samples of each class.

    labels: int [N], the class of each sample of the data index by sample index (-1: none);
    run_dir: where thumbs/ is.
    """

    def __init__(self, labels: np.ndarray, run_dir: Path) -> None:
        self.first = first_per_class(np.asarray(labels, dtype=np.int64), THUMBS_PER_CLASS)
        self.run_dir = Path(run_dir)

    def add(self, index: np.ndarray, ok: np.ndarray, images: torch.Tensor, masks: torch.Tensor,
            has_mask: torch.Tensor) -> None:
        """Write the thumbnails of a loader batch's readable first samples (index int [B],
        ok bool [B], images uint8 [B, 3, H, W], masks bool [B, H, W], has_mask bool [B]: the
        batch tensors as the dataset gives them)."""
        index = np.asarray(index, dtype=np.int64)
        for row in np.flatnonzero(np.asarray(ok, dtype=bool) & self.first[index]):
            mask = masks[row].numpy().astype(bool) if has_mask[row] else None
            write_thumb(self.run_dir, int(index[row]), images[row].permute(1, 2, 0).numpy(),
                        mask)


def stored_thumbs(run_dir: Path, indices: np.ndarray) -> np.ndarray:
    """Bool [len(indices)]: whether thumbs/<index>.png exists for each sample index."""
    folder = Path(run_dir) / "thumbs"
    names = [p.name[: -len(".png")] for p in folder.glob("*.png")] if folder.is_dir() else []
    present = np.array([int(n) for n in names if n.isdigit()], dtype=np.int64)
    return np.isin(np.asarray(indices, dtype=np.int64), present)
