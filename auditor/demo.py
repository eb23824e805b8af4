"""`auditor demo`: the Pokemon/Digimon shortcut, generated, trained and audited in minutes.

Both classes are the same kind of drawn creature (body, eyes, ears, random colours, positions and
sizes drawn from ONE distribution), so the creature itself carries no class information. What
differs is how the files were made: "pokemon" are PNGs on plain white, "digimon" are JPEGs on
coloured, textured backgrounds. A CNN trained on this scores near 100% by reading the background;
the audit must show high accuracy AND flag the background shortcut (and, without the model, the
format and border-pixel shortcuts).
"""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

log = logging.getLogger("auditor")

CLASSES = ("digimon", "pokemon")
SIZE = 64


class DemoNet(nn.Module):
    """A small CNN with a global-average-pooling + linear head (so CAM applies).

    Input [B,3,64,64] normalised; features [B,64,16,16] at `features` (the default target
    layer); logits [B,2].
    """

    def __init__(self, num_classes: int = 2) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1),
            nn.ReLU(),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.features(x)).flatten(1))


def build_demo_model(num_classes: int = 2) -> DemoNet:
    """Factory used as `--model auditor.demo:build_demo_model`."""
    return DemoNet(num_classes)


def draw_creature(rng: np.random.Generator, size: int = SIZE) -> tuple[np.ndarray, np.ndarray]:
    """One creature on a transparent canvas: (rgb uint8 [S,S,3], mask bool [S,S])."""
    canvas = np.zeros((size, size, 3), dtype=np.uint8)
    mask = np.zeros((size, size), dtype=np.uint8)
    cx, cy = (int(v) for v in rng.integers(size * 3 // 8, size * 5 // 8, size=2))
    rx, ry = (int(v) for v in rng.integers(size // 7, size // 4, size=2))
    hue = int(rng.integers(0, 180))
    colour = cv2.cvtColor(np.uint8([[[hue, 200, 220]]]), cv2.COLOR_HSV2RGB)[0, 0].tolist()
    ear = (int(rx * 0.8), int(ry * 1.1))
    for side in (-1, 1):
        tip = (cx + side * ear[0], cy - ry - ear[1] // 2)
        base = np.array([[cx + side * rx // 3, cy - ry // 2], [cx + side * rx, cy - ry // 4], tip])
        for img, value in ((canvas, colour), (mask, 1)):
            cv2.fillConvexPoly(img, base.astype(np.int32), value)
    for img, value in ((canvas, colour), (mask, 1)):
        cv2.ellipse(img, (cx, cy), (rx, ry), 0, 0, 360, value, -1)
    for side in (-1, 1):
        eye = (cx + side * rx // 3, cy - ry // 4)
        cv2.circle(canvas, eye, max(1, rx // 6), (20, 20, 20), -1)
    return canvas, mask.astype(bool)


def textured_background(rng: np.random.Generator, size: int = SIZE) -> np.ndarray:
    """A coloured background with stripes and noise, uint8 [S,S,3]."""
    base = rng.integers(40, 220, size=3).astype(np.float32)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    angle = rng.uniform(0, np.pi)
    freq = rng.uniform(0.15, 0.45)
    stripes = np.sin((xx * np.cos(angle) + yy * np.sin(angle)) * freq)[..., None]
    noise = rng.normal(0, 18, size=(size, size, 3))
    image = base + 35 * stripes * rng.uniform(0.5, 1.0, size=3) + noise
    return np.clip(image, 0, 255).astype(np.uint8)


def generate_dataset(root: str | Path, per_class: int = 150, seed: int = 0) -> Path:
    """Write data/<class>/<i>.{png,jpg} and masks/<class>/<i>.png under `root`; returns root."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    for name in CLASSES:
        (root / "data" / name).mkdir(parents=True, exist_ok=True)
        (root / "masks" / name).mkdir(parents=True, exist_ok=True)
    for i in range(per_class):
        for name in CLASSES:
            creature, mask = draw_creature(rng)
            if name == "pokemon":
                background = np.full((SIZE, SIZE, 3), 255, dtype=np.uint8)
                suffix, params = ".png", [cv2.IMWRITE_PNG_COMPRESSION, 6]
            else:
                background = textured_background(rng)
                suffix, params = ".jpg", [cv2.IMWRITE_JPEG_QUALITY, 85]
            image = np.where(mask[..., None], creature, background)
            bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
            cv2.imwrite(str(root / "data" / name / f"{i:04d}{suffix}"), bgr, params)
            cv2.imwrite(str(root / "masks" / name / f"{i:04d}.png"), mask.astype(np.uint8) * 255)
    return root


def train_demo_model(
    data_root: str | Path,
    epochs: int = 4,
    seed: int = 0,
    batch_size: int = 32,
    model: nn.Module | None = None,
    classes: tuple[str, ...] = CLASSES,
) -> nn.Module:
    """Train `model` (default: a new DemoNet with one output per class) on the generated data,
    class-per-folder under `data_root` (`classes` in output order; CPU, seconds). Inputs
    normalised with mean 0.5, std 0.5; returns it in eval mode."""
    torch.manual_seed(seed)
    images, labels = [], []
    for k, name in enumerate(classes):
        for path in sorted((Path(data_root) / name).iterdir()):
            rgb = cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
            images.append(rgb)
            labels.append(k)
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float().div(255).sub(0.5).div(0.5)
    y = torch.tensor(labels)
    model = model if model is not None else DemoNet(len(classes))
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(seed)
    model.train()
    for epoch in range(epochs):
        order = torch.randperm(len(x), generator=generator)
        total = 0.0
        for start in range(0, len(x), batch_size):
            idx = order[start : start + batch_size]
            loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            total += float(loss.detach()) * len(idx)
        log.info("demo training epoch %d: loss %.4f", epoch + 1, total / len(x))
    return model.eval()


def run_demo(
    out: str | Path,
    per_class: int = 150,
    epochs: int = 4,
    quiet: bool = False,
    seed: int = 0,
    overwrite: bool = True,
):  # -> AuditResult (imported lazily: keeps `import auditor.demo` light)
    """Generate the data, train the model, save its weights, audit it through the same path as
    `auditor audit`, and return the AuditResult (report at OUT/run/report.html)."""
    from auditor.audit import run_audit
    from auditor.config import AuditConfig

    out = Path(out)
    log.info("generating %d images per class in %s", per_class, out / "data")
    generate_dataset(out, per_class=per_class, seed=seed)
    model = train_demo_model(out / "data", epochs=epochs, seed=seed)
    weights = out / "demo_model.pt"
    torch.save(model.state_dict(), weights)
    config = AuditConfig(
        data=str(out / "data"),
        model="auditor.demo:build_demo_model",
        weights=str(weights),
        out=str(out / "run"),
        masks=str(out / "masks"),
        image_size=(SIZE, SIZE),
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
        methods=("gradcam", "gradcam++", "cam"),
        batch_size=64,
        workers=0 if per_class < 100 else None,
        quiet=quiet,
        overwrite=overwrite,
        seed=seed,
    )
    return run_audit(config, command=f"auditor demo --out {out}")
