"""The mean input image of each class, summed during the pass instead of decoded again after it.

class_means.npz holds, per class, the mean of its first MEAN_IMAGE_SAMPLES readable inputs (by
sample index). Decoding them after the pass costs that many decodes per class: 64 000 at a
thousand classes, as many as a pass over 64 000 images. The pass has every input in hand, so:

- the candidates are the first MEAN_IMAGE_SAMPLES samples of each class by index, readable or
  not: known from the data index alone, so every rank and every resumed pass agrees on them;
- each pass (each rank, each resume) sums its readable candidates per class (`ClassImageSums`)
  and, when it ends or is interrupted after its last chunk is stored, writes
  class_sums/r<rank>-<k>.npz: int16 sums [k, 3, H, W] (64 x 255 fits), and the sample index
  and class of every input summed;
- the analysis (`stored_class_sums`) adds the sums of every file whose samples are all among
  the first readable samples of their class and not counted yet, and decodes only the rest
  (the samples of a pass that crashed, or the ones after an unreadable candidate).

The readable candidates of a class are always among its first MEAN_IMAGE_SAMPLES readable
samples, so a file from a complete pass is always used. The sums are integers: the mean is the
same to the bit as from decoding every input again. Nothing is summed when the sums would take
more than SUM_BUDGET_BYTES (many classes at a large input size): everything is decoded after
the pass then, as before.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from auditor.store import class_sums_files, write_class_sums

MEAN_IMAGE_SAMPLES = 64
SUM_BUDGET_BYTES = 512 * 2**20


def first_per_class(labels: np.ndarray, n: int) -> np.ndarray:
    """Bool [N]: the first `n` rows of each class in the given order (labels int [N]; a
    negative label is no class and never chosen)."""
    labels = np.asarray(labels, dtype=np.int64)
    rank = pd.Series(labels).groupby(labels).cumcount().to_numpy()
    return (labels >= 0) & (rank < n)


class ClassImageSums:
    """Per-class sums of the pass's readable candidates (module docstring), for one pass.

    labels: int [N], the class of each sample of the data index by sample index (-1: none);
    k: number of classes.
    """

    def __init__(self, labels: np.ndarray, k: int) -> None:
        labels = np.asarray(labels, dtype=np.int64)
        self.k = k
        self.candidate_class = np.where(
            first_per_class(labels, MEAN_IMAGE_SAMPLES) & (labels < k), labels, -1)
        self.sums: torch.Tensor | None = None
        self.indices: list[np.ndarray] = []
        self.classes: list[np.ndarray] = []
        self.enabled = bool((self.candidate_class >= 0).any())

    def add(self, index: np.ndarray, ok: np.ndarray, images: torch.Tensor) -> None:
        """Sum the readable candidates of a loader batch (index int [B] sample indices, ok bool
        [B], images uint8 [B, 3, H, W] on the host, as the dataset gives them)."""
        if not self.enabled:
            return
        index = np.asarray(index, dtype=np.int64)
        classes = self.candidate_class[index]
        rows = np.flatnonzero(np.asarray(ok, dtype=bool) & (classes >= 0))
        if rows.size == 0:
            return
        if self.sums is None:
            shape = (self.k, *images.shape[1:])
            if 2 * int(np.prod(shape)) > SUM_BUDGET_BYTES:
                self.enabled = False
                return
            self.sums = torch.zeros(shape, dtype=torch.int16)
        picked = torch.from_numpy(rows)
        self.sums.index_add_(0, torch.from_numpy(classes[rows]), images[picked].to(torch.int16))
        self.indices.append(index[rows])
        self.classes.append(classes[rows])

    def write(self, run_dir: Path, rank: int) -> None:
        """Store the sums as class_sums/r<rank>-<k>.npz (k: the next free number); nothing when
        nothing was summed. Call only when every summed sample's chunk is stored."""
        if self.sums is None or not self.indices:
            return
        write_class_sums(run_dir, rank, {"sums": self.sums.numpy(),
                                         "indices": np.concatenate(self.indices),
                                         "classes": np.concatenate(self.classes)})


def stored_class_sums(run_dir: Path, target: np.ndarray, target_class: np.ndarray, k: int,
                      image_shape: tuple[int, ...]) -> tuple[torch.Tensor | None, np.ndarray]:
    """The pass's sums of the inputs `target` (int [T] sample indices; target_class int [T]
    their classes) as float32 [k, *image_shape] (None when no file could be used), and the
    sample indices they cover (int64, sorted). A file is used whole or not at all: when every
    sample in it is a target of the class it was summed for and none is counted yet."""
    files = class_sums_files(run_dir)
    covered = np.zeros(0, dtype=np.int64)
    if not files:
        return None, covered
    target_of = pd.Series(np.asarray(target_class, dtype=np.int64),
                          index=np.asarray(target, dtype=np.int64))
    sums: torch.Tensor | None = None
    for path in files:
        try:
            with np.load(path, allow_pickle=False) as stored:
                indices, classes = stored["indices"], stored["classes"]
                part = stored["sums"]
        except (OSError, ValueError, KeyError):
            continue  # unreadable: its inputs are decoded again
        expected = target_of.reindex(indices).to_numpy()
        usable = (part.shape == (k, *image_shape)
                  and np.array_equal(expected, classes.astype(np.float64))
                  and len(np.unique(indices)) == len(indices)
                  and not np.isin(indices, covered).any())
        if not usable:
            continue
        if sums is None:
            sums = torch.zeros((k, *image_shape), dtype=torch.float32)
        # Integer sums of at most MEAN_IMAGE_SAMPLES uint8 images are exact in float32.
        sums += torch.from_numpy(part.astype(np.float32))
        covered = np.union1d(covered, indices)
    return sums, covered
