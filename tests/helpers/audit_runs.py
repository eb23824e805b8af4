"""Hand-built models and folders for whole audits (end-to-end and suspect-map tests).

``CornerFeatureNet`` keeps its features at full resolution in one 8x8 corner and both logits
grow with their mean, so every map of every class must sit in that corner (unlike
``cam_models.CornerNet``, which gates the input and explains class 0 only positively).
"""

from __future__ import annotations

import base64
import re
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image
from torch import nn

from auditor.config import AuditConfig

SIZE = 32


class CornerMask(nn.Module):
    """Zeroes every feature outside one 8x8 corner patch."""

    def __init__(self, corner: str) -> None:
        super().__init__()
        window = torch.zeros(1, 1, SIZE, SIZE)
        if corner == "top_left":
            window[..., :8, :8] = 1.0
        else:
            window[..., -8:, -8:] = 1.0
        self.register_buffer("window", window)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.window


class CornerFeatureNet(nn.Module):
    """Its features exist only in one 8x8 corner (full resolution), and both logits grow with
    their mean (class 1 twice as fast): whichever class is explained, the map must sit there."""

    def __init__(self, corner: str) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 4, 1), nn.ReLU(), CornerMask(corner))
        with torch.no_grad():
            self.features[0].weight.fill_(1.0)
            self.features[0].bias.fill_(3.0)  # inputs are >= -1 after normalisation: all positive

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        score = self.features(x).mean(dim=(1, 2, 3))
        return torch.stack([score, 2 * score], dim=1)


class NaNNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU())
        self.fc = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.fc(self.features(x).mean(dim=(2, 3)))
        return logits * torch.tensor(float("nan"))


class BatchNormNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.fc = nn.Linear(8, 2)
        with torch.no_grad():  # running statistics far from any batch's own statistics
            self.features[1].running_mean.fill_(5.0)
            self.features[1].running_var.fill_(9.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x).mean(dim=(2, 3)))


def noise_folder(root: Path, per_class: int = 6, seed: int = 0) -> Path:
    """root/a and root/b with `per_class` random-noise PNGs each (SIZE x SIZE)."""
    rng = np.random.default_rng(seed)
    for name in ("a", "b"):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 256, size=(SIZE, SIZE, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}.png")
    return root


def audit_config(data: Path, out: Path, **kw: object) -> AuditConfig:
    """An AuditConfig for the hand-built models here (SIZE px, 0.5/0.5, fast settings)."""
    options: dict = {
        "model": "test model", "image_size": (SIZE, SIZE), "mean": (0.5, 0.5, 0.5),
        "std": (0.5, 0.5, 0.5), "workers": 0, "quiet": True, "interventions": False,
    }
    options.update(kw)
    return AuditConfig(data=str(data), out=str(out), **options)


def hottest_overlay_point(html: str, overlay_alt: str) -> tuple[int, int, int, int]:
    """(y, x, height, width) of the hottest point of the first gallery card's overlay whose alt
    text starts with `overlay_alt`. The colour layer is recovered from overlay = 0.55 image +
    0.45 heat; viridis' green rises monotonically with the map, so the greenest is the hottest."""
    card = re.search(
        r'src="data:image/jpeg;base64,([^"]+)" alt="Input image[^"]*">.*?'
        r'src="data:image/jpeg;base64,([^"]+)" alt="' + re.escape(overlay_alt), html, re.S
    )
    assert card is not None
    image, over = (
        cv2.cvtColor(
            cv2.imdecode(np.frombuffer(base64.b64decode(u), np.uint8), cv2.IMREAD_COLOR),
            cv2.COLOR_BGR2RGB,
        ).astype(float)
        for u in card.groups()
    )
    green = cv2.blur((over[..., 1] - 0.55 * image[..., 1]) / 0.45, (9, 9))
    y, x = np.unravel_index(np.argmax(green), green.shape)
    return int(y), int(x), *green.shape
