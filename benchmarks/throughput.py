"""Whole-dataset throughput: the audit pass against plain inference over the same loader.

One run on one device. Generates --n-images JPEG and PNG files (two classes, with masks) in a
temporary folder, then times, over the SAME DataLoader (decode, resize, masks, fingerprints):

- plain inference: torch.inference_mode forward of every batch (the floor);
- our pass with Grad-CAM: the real run_pass (maps, every measure, chunked writes);
- our pass with all six gradient methods from the one forward + backward;
- peers as their users would run them, where installed (`pip install grad-cam torchcam
  captum`): one pass per method, maps to numpy, the measures per image in numpy.

Images/s and the ratio to plain inference (1.0 = as fast as inference) are printed as a table.

    python benchmarks/throughput.py --device cuda --model resnet50 --n-images 4096 \\
        --batch-size 128 --workers 12
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import torch
from timing import wall_seconds
from torch import nn
from torchvision import models

from auditor.config import IMAGENET_MEAN, IMAGENET_STD
from auditor.data import AuditDataset, make_loader, open_source
from auditor.metrics import WSOL_THRESHOLD
from auditor.pipeline import PassSettings, run_pass
from auditor.runtime import autocast_dtype, normalise_images, select_device
from auditor.store import RunWriter

SIX = ("gradcam", "gradcam++", "xgradcam", "layercam", "hirescam", "counterfactual")
BORDER = 0.1


def make_images(root: Path, n: int, size: int, seed: int = 0) -> tuple[Path, Path]:
    """n images (class a: JPEG, class b: PNG) of size x size with a random ellipse, and masks."""
    rng = np.random.default_rng(seed)
    data, masks = root / "data", root / "masks"
    yy, xx = np.mgrid[0:size, 0:size]
    for i in range(n):
        cls, ext = ("a", ".jpg") if i % 2 == 0 else ("b", ".png")
        (data / cls).mkdir(parents=True, exist_ok=True)
        (masks / cls).mkdir(parents=True, exist_ok=True)
        img = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
        cy, cx = rng.uniform(0.3, 0.7, 2) * size
        r = rng.uniform(0.15, 0.3) * size
        inside = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
        img[inside] = rng.integers(0, 255, 3)
        cv2.imwrite(str(data / cls / f"{i:06d}{ext}"), img)
        cv2.imwrite(str(masks / cls / f"{i:06d}.png"), inside.astype(np.uint8) * 255)
    return data, masks


def numpy_measures(heat: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    """The measures the way a peer-library user writes them: one image [H, W] in numpy."""
    total = heat.sum()
    h, w = heat.shape
    band = np.ones_like(mask, dtype=bool)
    bh, bw = max(1, round(h * BORDER)), max(1, round(w * BORDER))
    band[bh:h - bh, bw:w - bw] = False
    peak = int(heat.argmax())
    located = (heat >= WSOL_THRESHOLD * heat.max()).astype(np.uint8)
    _, _, stats, _ = cv2.connectedComponentsWithStats(located, connectivity=8)
    best = 1 + int(stats[1:, cv2.CC_STAT_AREA].argmax())
    ys, xs = np.nonzero(mask)
    truth = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) if len(xs) else None
    x, y, bw_, bh_ = stats[best, :4]
    iou = float("nan")
    if truth is not None:
        ix = max(0, min(x + bw_, truth[2]) - max(x, truth[0]))
        iy = max(0, min(y + bh_, truth[3]) - max(y, truth[1]))
        inter = ix * iy
        iou = inter / (bw_ * bh_ + (truth[2] - truth[0]) * (truth[3] - truth[1]) - inter)
    # An all-zero map (an untrained model's) has no shares: NaN, as in the pass, without a warning.
    share = np.divide if total > 0 else (lambda part, _: np.nan)
    return {
        "fg_energy": float(share((heat * mask).sum(), total)),
        "border_energy": float(share((heat * band).sum(), total)),
        "pointing_hit": float(mask.reshape(-1)[peak]),
        "peak_x": (peak % w + 0.5) / w, "peak_y": (peak // w + 0.5) / h, "wsol_iou": iou,
    }


def peer_steps(model: nn.Module, layer: nn.Module, layer_name: str) -> dict[str, Callable]:
    """name -> fn(images [B,3,H,W], targets [B]) -> list of maps [H, W] in numpy, per method."""
    steps: dict[str, Callable] = {}
    try:
        from pytorch_grad_cam import (
            GradCAM,
            GradCAMPlusPlus,
            HiResCAM,
            LayerCAM,
            XGradCAM,
        )
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

        class Negated(ClassifierOutputTarget):
            def __call__(self, output: torch.Tensor) -> torch.Tensor:
                return -super().__call__(output)

        def grad_cam_lib(classes: list, negate_last: bool) -> Callable:
            def run(x: torch.Tensor, t: torch.Tensor) -> list[np.ndarray]:
                out = []
                for k, cls in enumerate(classes):
                    target = Negated if negate_last and k == len(classes) - 1 else (
                        ClassifierOutputTarget)
                    with cls(model=model, target_layers=[layer]) as cam:
                        out.extend(cam(input_tensor=x, targets=[target(int(c)) for c in t]))
                return out
            return run

        five = [GradCAM, GradCAMPlusPlus, XGradCAM, LayerCAM, HiResCAM]
        steps["pytorch-grad-cam, Grad-CAM"] = grad_cam_lib([GradCAM], False)
        steps["pytorch-grad-cam, 6 methods"] = grad_cam_lib([*five, GradCAM], True)
    except ImportError:
        print("pytorch-grad-cam not installed: skipped (pip install grad-cam)")
    try:
        from torchcam.methods import GradCAM as TorchcamGradCAM

        def torchcam_run(x: torch.Tensor, t: torch.Tensor) -> list[np.ndarray]:
            with TorchcamGradCAM(model, target_layer=layer_name, input_shape=x.shape[1:]) as ex:
                scores = model(x)
                maps = ex(class_idx=t.tolist(), scores=scores)[0]
            up = nn.functional.interpolate(maps[:, None].float(), size=x.shape[-2:],
                                           mode="bilinear", align_corners=False)[:, 0]
            return list(up.detach().cpu().numpy())

        steps["torchcam, Grad-CAM"] = torchcam_run
    except ImportError:
        print("torchcam not installed: skipped (pip install torchcam)")
    try:
        from captum.attr import LayerAttribution, LayerGradCam

        def captum_run(x: torch.Tensor, t: torch.Tensor) -> list[np.ndarray]:
            attr = LayerGradCam(model, layer).attribute(x, target=t, relu_attributions=True)
            up = LayerAttribution.interpolate(attr, tuple(x.shape[-2:]), "bilinear")[:, 0]
            return list(up.detach().cpu().numpy())

        steps["Captum LayerGradCam"] = captum_run
    except ImportError:
        print("captum not installed: skipped (pip install captum)")
    return steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--model", choices=("resnet18", "resnet50"), default="resnet18")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--n-images", type=int, default=128)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--amp", choices=("auto", "on", "off"), default="auto")
    parser.add_argument("--no-peers", action="store_true")
    args = parser.parse_args()

    device = select_device(args.device)
    torch.manual_seed(0)
    model = getattr(models, args.model)(weights=None, num_classes=2).eval().to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    amp = autocast_dtype(device, args.amp)
    size = (args.image_size, args.image_size)
    with tempfile.TemporaryDirectory() as tmp:
        data, masks = make_images(Path(tmp), args.n_images, args.image_size)
        index = open_source(str(data), masks_dir=str(masks))
        dataset = AuditDataset(index, image_size=size, border=BORDER)
        def fresh_loader() -> torch.utils.data.DataLoader:
            # A new loader per row, as run_pass makes one: every row pays worker start-up.
            return make_loader(dataset, args.batch_size, args.workers, device.type)

        def plain() -> None:
            with torch.inference_mode(), torch.autocast(device.type, amp or torch.float32,
                                                        enabled=amp is not None):
                for batch in fresh_loader():
                    model(normalise_images(batch["image"], IMAGENET_MEAN, IMAGENET_STD, device))

        def ours(methods: tuple[str, ...]) -> Callable[[], None]:
            def run() -> None:
                out = Path(tempfile.mkdtemp(dir=tmp))
                settings = PassSettings(
                    methods=methods, primary="gradcam", target_layers=["layer4"],
                    explain="label", mean=IMAGENET_MEAN, std=IMAGENET_STD, border=BORDER,
                    batch_size=args.batch_size, workers=args.workers, amp_dtype=amp,
                    progress=False,
                )
                run_pass(model, index, dataset, RunWriter(out, {"bench": str(out)}),
                         settings, device)
            return run

        def peer(step: Callable) -> Callable[[], None]:
            def run() -> None:
                for batch in fresh_loader():
                    x = normalise_images(batch["image"], IMAGENET_MEAN, IMAGENET_STD, device)
                    t = torch.tensor([index.samples[i].label for i in batch["index"]])
                    maps = step(x, t.to(device))
                    mask = batch["mask"].numpy().astype(bool)
                    for k, heat in enumerate(maps):
                        numpy_measures(np.maximum(heat, 0), mask[k % len(mask)])
            return run

        rows: dict[str, Callable[[], None]] = {
            "plain inference": plain,
            "auditor pass, Grad-CAM": ours(("gradcam",)),
            "auditor pass, 6 methods": ours(SIX),
        }
        if not args.no_peers:
            for name, step in peer_steps(model, model.layer4, "layer4").items():
                rows[name] = peer(step)
        workers = fresh_loader().num_workers
        device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
        # Each row is printed as soon as it is timed, so a run stopped by a time limit still
        # says what it measured.
        print(f"\n{args.model}, {args.n_images} images {args.image_size}x{args.image_size} "
              f"(JPEG+PNG), batch {args.batch_size}, workers {workers}, device {device_name}, "
              f"autocast {amp}, torch threads {torch.get_num_threads()}", flush=True)
        print(f"{'':32} {'images/s':>10} {'x plain':>8}", flush=True)
        plain()  # warm-up: worker start-up, allocator, page cache
        base = None
        for label, run in rows.items():
            rate = args.n_images / wall_seconds(run, device)
            base = base or rate
            print(f"{label:32} {rate:10.1f} {rate / base:8.2f}", flush=True)


if __name__ == "__main__":
    main()
