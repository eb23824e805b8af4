"""Small maps with known peaks and the samples table rows the detectors read from them."""

from __future__ import annotations

import math

import pandas as pd
import torch

from auditor.metrics import attention_measures

SIZE = 28


def spot_maps(cells: list[tuple[int, int]], gen: torch.Generator, side: int = 7) -> torch.Tensor:
    """side x side maps with weak noise and a hot cell at each (row, col)."""
    maps = 0.1 * torch.rand(len(cells), side, side, generator=gen)
    for i, (r, c) in enumerate(cells):
        maps[i, r, c] += 1.0
    return maps


def rows(name: str, maps: torch.Tensor, masks: torch.Tensor | None) -> pd.DataFrame:
    """samples.parquet rows of class `name` for maps [n, h, w] and masks [n, SIZE, SIZE]."""
    n = maps.shape[0]
    has = torch.full((n,), masks is not None)
    masks = masks if masks is not None else torch.zeros(n, SIZE, SIZE, dtype=torch.bool)
    out = attention_measures(maps, masks, has, torch.full((n, 4), math.nan))
    frame = pd.DataFrame({k: v.numpy() for k, v in out.items()})
    frame.insert(0, "rel_path", [f"{name}/{i:03d}.png" for i in range(n)])
    frame.insert(1, "label", name)
    frame["status"] = "ok"
    return frame


def centre_masks(n: int) -> torch.Tensor:
    masks = torch.zeros(n, SIZE, SIZE, dtype=torch.bool)
    masks[:, 8:20, 8:20] = True
    return masks


def build(parts: list[tuple[str, torch.Tensor, torch.Tensor | None]]
          ) -> tuple[pd.DataFrame, torch.Tensor]:
    """(samples table, maps [N, h, w]) of (class, maps, masks) parts, in order."""
    frames = [rows(name, maps, masks) for name, maps, masks in parts]
    return pd.concat(frames, ignore_index=True), torch.cat([m for _, m, _ in parts])
