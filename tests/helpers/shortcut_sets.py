"""Small data sets with one planted shortcut each, a tiny trainer, and an audit call.

Every set has classes "a" and "b", `per_class` images of SIZE x SIZE with masks (the creature of
`auditor.demo.draw_creature`, drawn from one distribution for both classes unless said
otherwise), written as root/data/<class>/<i>.<ext> and root/masks/<class>/<i>.png.

| kind | what differs between a and b |
|---|---|
| background | background colour: reddish (a) vs bluish (b), both PNG |
| format | file format only: PNG (a) vs JPEG quality 85 (b); pixels from one distribution |
| corner_tag | a white TAG x TAG square in the top-left corner of TAG_SHARE of class a |
| frame | a solid magenta FRAME-pixel frame around every image of class a |
| control | the creature's colour only (warm hues in a, cool in b): a real object cue |
| control_frame | the control's colours, and the frame of `frame` around every image of a |
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

from auditor.audit import run_audit
from auditor.config import AuditConfig
from auditor.demo import DemoNet, draw_creature, textured_background
from auditor.run import AuditResult

SIZE = 32
TAG = 6
TAG_SHARE = 0.8
FRAME = 3
CLASSES = ("a", "b")


def _creature(rng: np.random.Generator, hue: tuple[int, int] | None) -> tuple[np.ndarray,
                                                                              np.ndarray]:
    rgb, mask = draw_creature(rng, SIZE)
    if hue is not None:
        colour = cv2.cvtColor(np.uint8([[[int(rng.integers(*hue)), 200, 220]]]),
                              cv2.COLOR_HSV2RGB)[0, 0]
        rgb = np.where(mask[..., None], colour, 0).astype(np.uint8)
    return rgb, mask


def write_set(root: str | Path, kind: str, per_class: int = 48, seed: int = 0) -> list[str]:
    """Write a data set with the planted shortcut `kind`; returns the rel_paths it marked
    (the tagged images for corner_tag, else [])."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    marked = []
    for name in CLASSES:
        (root / "data" / name).mkdir(parents=True, exist_ok=True)
        (root / "masks" / name).mkdir(parents=True, exist_ok=True)
    for i in range(per_class):
        for name in CLASSES:
            hue = None if not kind.startswith("control") else (
                (0, 30) if name == "a" else (95, 130))
            creature, mask = _creature(rng, hue)
            background = textured_background(rng, SIZE)
            if kind == "background":
                tint = np.array((90, -40, -40) if name == "a" else (-40, -40, 90))
                background = np.clip(background.astype(np.int16) // 2 + 64 + tint, 0, 255)
            image = np.where(mask[..., None], creature, background).astype(np.uint8)
            suffix, params = ".png", [cv2.IMWRITE_PNG_COMPRESSION, 3]
            if kind == "format" and name == "b":
                suffix, params = ".jpg", [cv2.IMWRITE_JPEG_QUALITY, 85]
            if kind == "corner_tag" and name == "a" and rng.random() < TAG_SHARE:
                image[:TAG, :TAG] = 255
                mask[:TAG, :TAG] = False
                marked.append(f"{name}/{i:03d}{suffix}")
            if kind in ("frame", "control_frame") and name == "a":
                image[:FRAME], image[-FRAME:] = (255, 0, 255), (255, 0, 255)
                image[:, :FRAME], image[:, -FRAME:] = (255, 0, 255), (255, 0, 255)
                mask[:FRAME], mask[-FRAME:], mask[:, :FRAME], mask[:, -FRAME:] = (False,) * 4
            cv2.imwrite(str(root / "data" / name / f"{i:03d}{suffix}"), image[..., ::-1], params)
            cv2.imwrite(str(root / "masks" / name / f"{i:03d}.png"), mask.astype(np.uint8) * 255)
    return marked


def train(root: str | Path, epochs: int = 8, seed: int = 0) -> nn.Module:
    """A DemoNet trained on root/data (inputs normalised with mean 0.5, std 0.5); eval mode."""
    torch.manual_seed(seed)
    images, labels = [], []
    for k, name in enumerate(CLASSES):
        for path in sorted((Path(root) / "data" / name).iterdir()):
            images.append(cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB))
            labels.append(k)
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float().div(255).sub(0.5).div(0.5)
    y = torch.tensor(labels)
    model = DemoNet(len(CLASSES))
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=generator)
        for start in range(0, len(x), 32):
            idx = order[start:start + 32]
            loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    return model.eval()


def audit(root: str | Path, model: nn.Module, interventions: bool = True,
          out: str | Path | None = None, baseline: str | Path | None = None) -> AuditResult:
    """run_audit on root/data with root/masks, the model given, written to `out` (default
    root/run), against an earlier run when `baseline` is given."""
    root = Path(root)
    config = AuditConfig(
        data=str(root / "data"), model="tests.shortcut_sets:DemoNet",
        out=str(out or root / "run"), baseline=None if baseline is None else str(baseline),
        masks=str(root / "masks"), image_size=(SIZE, SIZE), mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5), methods=("gradcam",), target_layers=("features.6",),
        batch_size=64, workers=0, quiet=True, overwrite=True, interventions=interventions,
        seed=0,
    )
    return run_audit(config, model=model)
