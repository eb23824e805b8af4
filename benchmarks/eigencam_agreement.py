"""Agreement of `eigencam` (and the paper's `eigencam-uncentred`) with pytorch-grad-cam's
EigenCAM, the reference users compare against.

For each model: the maps of both methods through CamEngine, upsampled to the input size
(bilinear), and pytorch-grad-cam's EigenCAM on the same images and layer (its own resize and
min-max scaling). Per image, both maps are min-max normalised and their Pearson r is taken.
pytorch-grad-cam leaves the sign of the singular vector to LAPACK (no rule), so the table also
gives the share of images where the two signs agree and, per image, the r of the better of the
two signs (our map and the one of the opposite sign, computed from -A).

Models: the demo CNN trained on the generated Pokemon/Digimon set (its `features` layer) and
resnet18 with random weights (`layer4`) on the same generated images at 224 x 224.

    pip install -e ".[bench]"; python benchmarks/eigencam_agreement.py --n-images 32
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn
from torchvision import models

from auditor.cams import CamEngine
from auditor.cams.methods import eigencam
from auditor.demo import SIZE, generate_dataset, train_demo_model
from auditor.metrics import upsample_maps

METHODS = ("eigencam", "eigencam-uncentred")


def read_images(root: Path, n: int, size: int) -> torch.Tensor:
    """The first n generated images (both classes in turn), resized, in [0, 1]: [n, 3, S, S]."""
    paths = sorted((root / "data").rglob("*.*"))[:n]
    images = [cv2.resize(cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB), (size, size),
                         interpolation=cv2.INTER_LINEAR) for p in paths]
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float().div(255)


def minmax(maps: np.ndarray) -> np.ndarray:
    """Each map [N, H, W] scaled to [0, 1] (all-equal maps to 0)."""
    low = maps.min(axis=(1, 2), keepdims=True)
    span = maps.max(axis=(1, 2), keepdims=True) - low
    return np.where(span > 0, (maps - low) / np.where(span > 0, span, 1.0), 0.0)


def pearson(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-image Pearson r of maps [N, H, W]; NaN where either map is constant."""
    a = a.reshape(len(a), -1) - a.reshape(len(a), -1).mean(axis=1, keepdims=True)
    b = b.reshape(len(b), -1) - b.reshape(len(b), -1).mean(axis=1, keepdims=True)
    norm = np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1))
    return np.where(norm > 0, (a * b).sum(axis=1) / np.where(norm > 0, norm, 1.0), np.nan)


def agreement(model: nn.Module, layer: str, images: torch.Tensor) -> dict[str, np.ndarray]:
    """Per-image r with pytorch-grad-cam's EigenCAM of each of METHODS, and of `eigencam`
    with the opposite sign ("eigencam, sign flipped"): the map of -A, whose centred
    projection is the opposite one (the channel-mean rule flips with it)."""
    from pytorch_grad_cam import EigenCAM

    size = tuple(images.shape[-2:])
    with CamEngine(model, layer, methods=METHODS) as engine:
        ours = engine(images).maps
    target = dict(model.named_modules())[layer]
    with torch.no_grad():
        negated = -_layer_output(model, target, images)
    ours["eigencam, sign flipped"] = eigencam(negated, None, torch.zeros(1), torch.zeros(1))
    with EigenCAM(model=model, target_layers=[target]) as cam:
        theirs = cam(input_tensor=images, targets=None)
    return {name: pearson(minmax(upsample_maps(maps, size).numpy()), theirs)
            for name, maps in ours.items()}


def _layer_output(model: nn.Module, layer: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """The output of `layer` for `images` (one forward with a hook)."""
    store: list[torch.Tensor] = []
    handle = layer.register_forward_hook(lambda _m, _i, out: store.append(out))
    try:
        model(images)
    finally:
        handle.remove()
    return store[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n-images", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        root = generate_dataset(tmp, per_class=max(args.n_images // 2, 40), seed=args.seed)
        demo = train_demo_model(root / "data", seed=args.seed)
        cases = [
            ("demo CNN (trained), features", demo, "features",
             read_images(root, args.n_images, SIZE).sub(0.5).div(0.5)),
        ]
        large = read_images(root, args.n_images, 224)
        mean = torch.tensor([0.485, 0.456, 0.406])[:, None, None]
        std = torch.tensor([0.229, 0.224, 0.225])[:, None, None]
        cases.append(("resnet18 (random weights), layer4", models.resnet18().eval(), "layer4",
                      (large - mean) / std))
        print("| model, layer | n | `eigencam`: median r | min r | r >= 0.99 | same sign as "
              "theirs | r, better of the two signs: median | min | `eigencam-uncentred`: "
              "median r |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for label, model, layer, images in cases:
            r = agreement(model, layer, images)
            ours, flipped = r["eigencam"], r["eigencam, sign flipped"]
            either = np.fmax(ours, flipped)
            print(f"| {label} | {len(ours)} | {np.nanmedian(ours):.4f} | {np.nanmin(ours):.4f} | "
                  f"{np.mean(ours >= 0.99):.0%} | {np.mean(ours >= flipped):.0%} | "
                  f"{np.nanmedian(either):.4f} | {np.nanmin(either):.4f} | "
                  f"{np.nanmedian(r['eigencam-uncentred']):.4f} |")


if __name__ == "__main__":
    main()
