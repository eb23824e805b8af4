"""The Pokemon/Digimon shortcut, step by step: generate, train, audit, read the flags.

    python examples/demo_pokemon_digimon.py --out demo-run

The same creatures are drawn in both classes; only the files differ (PNG on white vs JPEG on
coloured textures). The model scores ~100% and the audit shows it reads the background.
"""

from __future__ import annotations

import argparse

import torch

from auditor.audit import run_audit
from auditor.config import AuditConfig
from auditor.demo import generate_dataset, train_demo_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="demo-run", help="output folder")
    parser.add_argument("--per-class", type=int, default=150, help="images per class")
    parser.add_argument("--epochs", type=int, default=4, help="training epochs")
    args = parser.parse_args()

    # 1. A data set with a planted shortcut, and its ground-truth masks.
    root = generate_dataset(args.out, per_class=args.per_class)
    # 2. A small CNN with a global-average-pooling head, trained for a few seconds.
    model = train_demo_model(root / "data", epochs=args.epochs)
    weights = root / "demo_model.pt"
    torch.save(model.state_dict(), weights)
    # 3. The audit, exactly what `auditor audit` runs.
    config = AuditConfig(
        data=str(root / "data"),
        masks=str(root / "masks"),
        model="auditor.demo:build_demo_model",
        weights=str(weights),
        out=str(root / "run"),
        image_size=(64, 64),
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
        workers=0,
        overwrite=True,
    )
    result = run_audit(config)
    # 4. What it found.
    print(f"accuracy: {result.summary['accuracy']['overall']:.1%}")
    for flag in result.flags:
        print(
            f"{flag['severity']:>6}  {flag['kind']:<24} {flag['class'] or '-':<10} "
            f"{flag['message']}"
        )
    print(f"report: {result.report_path}")


if __name__ == "__main__":
    main()
