"""The Python API step by step: CAM engine -> measures -> run directory -> report.

    python examples/python_api.py --out api-run

1. maps for one batch with CamEngine (one forward + one backward for several methods);
2. attention measures for that batch against the ground-truth masks;
3. an overlay of one map, written as PNG;
4. the whole audit with run_audit, then the report re-rendered from the run directory alone.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import torch

from auditor.audit import run_audit
from auditor.cams import CamEngine
from auditor.config import AuditConfig
from auditor.data import AuditDataset, collate_samples, open_source
from auditor.demo import generate_dataset, train_demo_model
from auditor.metrics import attention_measures
from auditor.report import render_report
from auditor.report.figures import overlay
from auditor.runtime import normalise_images, select_device


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="api-run", help="output folder")
    parser.add_argument("--per-class", type=int, default=40, help="generated images per class")
    args = parser.parse_args()
    out = Path(args.out)

    # A labelled data set with masks, and a model trained on it (any nn.Module works).
    root = generate_dataset(out, per_class=args.per_class)
    model = train_demo_model(root / "data", epochs=3)
    device = select_device("auto")
    model = model.to(device)

    # The data layer: an index of the files and a Dataset that decodes, resizes and masks.
    index = open_source(root / "data", masks_dir=root / "masks")
    dataset = AuditDataset(index, image_size=(64, 64), border=0.1)
    batch = collate_samples([dataset[i] for i in range(8)])
    images = normalise_images(batch["image"], (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), device)
    labels = torch.tensor([index.samples[i].label for i in batch["index"]], device=device)

    # 1. Several methods from ONE forward and ONE backward; hooks are gone after the block.
    with CamEngine(
        model, target_layer="features", methods=("gradcam", "gradcam++", "cam")
    ) as engine:
        cams = engine(images, labels)
    print("maps:", {name: tuple(m.shape) for name, m in cams.maps.items()})

    # 2. Measures, batched on the device: fractions of each map's mass.
    measures = attention_measures(
        cams.maps["gradcam"],
        batch["mask"].to(device).bool(),
        batch["has_mask"].to(device),
        batch["box"].to(device),
        border=0.1,
    )
    for i in range(len(batch["index"])):
        path = index.samples[int(batch["index"][i])].rel_path
        print(
            f"{path:<20} fg_energy {measures['fg_energy'][i]:.2f}  "
            f"border_lift {measures['border_lift'][i]:.2f}"
        )

    # 3. One overlay: the input (RGB uint8 [H, W, 3]) and its map at feature resolution.
    picture = overlay(
        batch["image"][0].permute(1, 2, 0).numpy(), cams.maps["gradcam"][0].cpu().numpy()
    )
    cv2.imwrite(str(out / "overlay.png"), cv2.cvtColor(picture, cv2.COLOR_RGB2BGR))

    # 4. The whole audit (the model object is passed directly), then the report from disk.
    result = run_audit(
        AuditConfig(
            data=str(root / "data"),
            masks=str(root / "masks"),
            model="DemoNet (in memory)",
            out=str(out / "run"),
            image_size=(64, 64),
            mean=(0.5, 0.5, 0.5),
            std=(0.5, 0.5, 0.5),
            workers=0,
            overwrite=True,
        ),
        model=model,
    )
    print("flags:", [(f["kind"], f["class"], f["severity"]) for f in result.flags])
    print("report:", render_report(result.run_dir))


if __name__ == "__main__":
    main()
