"""Audit a torchvision architecture from a CSV manifest with masks.

    python examples/torchvision_manifest.py --out manifest-run
    python examples/torchvision_manifest.py --manifest my.csv --weights my_resnet18.pt --out run

With your own files: a manifest with columns `path,label,mask` (paths relative to the manifest;
optional box columns x0,y0,x1,y1) and a resnet18 state_dict. Without them, the script makes a
small manifest from the demo generator and fine-tunes a randomly initialised resnet18 for a few
seconds (nothing is downloaded). The equivalent command line is printed.
"""

from __future__ import annotations

import argparse
import csv
import shlex
from pathlib import Path

import torch
import torchvision

from auditor.audit import run_audit
from auditor.config import AuditConfig
from auditor.demo import CLASSES, generate_dataset, train_demo_model


def make_manifest(out: Path, per_class: int) -> Path:
    """A CSV manifest (path,label,mask) over the generated demo images."""
    root = generate_dataset(out / "images", per_class=per_class)
    manifest = out / "manifest.csv"
    with open(manifest, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "label", "mask"])
        for label in CLASSES:
            for image in sorted((root / "data" / label).iterdir()):
                mask = root / "masks" / label / f"{image.stem}.png"
                writer.writerow([image.relative_to(out), label, mask.relative_to(out)])
    return manifest


def finetune_resnet18(manifest: Path, out: Path, steps: int) -> Path:
    """A resnet18 (random init) trained briefly on the manifest's images; returns its weights."""
    model = torchvision.models.resnet18(weights=None, num_classes=len(CLASSES))
    # Same recipe as the demo's small CNN, on a real torchvision architecture.
    trained = train_demo_model(manifest.parent / "images" / "data", epochs=steps, model=model)
    weights = out / "resnet18.pt"
    torch.save(trained.state_dict(), weights)
    return weights


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="manifest-run", help="output folder")
    parser.add_argument("--manifest", help="your CSV manifest (default: a generated one)")
    parser.add_argument("--weights", help="your resnet18 state_dict (default: trained here)")
    parser.add_argument("--per-class", type=int, default=60, help="generated images per class")
    parser.add_argument("--epochs", type=int, default=2, help="fine-tuning epochs")
    parser.add_argument("--image-size", type=int, default=64, help="model input size")
    args = parser.parse_args()

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    manifest = Path(args.manifest) if args.manifest else make_manifest(out, args.per_class)
    weights = Path(args.weights) if args.weights else finetune_resnet18(manifest, out, args.epochs)
    config = AuditConfig(
        data=str(manifest),
        model="torchvision:resnet18",
        weights=str(weights),
        out=str(out / "run"),
        image_size=(args.image_size, args.image_size),
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
        methods=("gradcam", "layercam"),
        workers=0,
        overwrite=True,
    )
    print("equivalent command:")
    print(
        "  "
        + shlex.join(
            [
                "auditor",
                "audit",
                str(manifest),
                "--model",
                "torchvision:resnet18",
                "--weights",
                str(weights),
                "--image-size",
                str(args.image_size),
                "--mean",
                "0.5,0.5,0.5",
                "--std",
                "0.5,0.5,0.5",
                "--methods",
                "gradcam,layercam",
                "--out",
                str(out / "run"),
                "--overwrite",
            ]
        )
    )
    result = run_audit(config)
    print(f"target layer: {result.summary['model']['target_layers']}")
    print(f"accuracy: {result.summary['accuracy']['overall']:.1%}")
    for flag in result.flags:
        print(
            f"{flag['severity']:>6}  {flag['kind']:<24} {flag['class'] or '-':<10} "
            f"{flag['message']}"
        )
    print(f"report: {result.report_path}")


if __name__ == "__main__":
    main()
