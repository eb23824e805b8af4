"""Throughput of the one-pass CAM engine against plain inference and other CAM libraries.

For each model (random weights, 224 x 224): images/s of plain inference under
torch.inference_mode, of every gradient method alone and of all of them together through
CamEngine, of a conventional ``.backward()`` with parameters that require grad, and of
pytorch-grad-cam, torchcam and Captum doing the same methods where they are importable.
Ratios are throughput relative to plain inference (1.0 = as fast as inference; lower is
slower). Each figure is the fastest of --iters interleaved timed calls.

    python benchmarks/cam_methods.py --device cuda --batch-size 64 --iters 20
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import torch
from timing import wall_seconds
from torch import Tensor, nn
from torchvision import models

from auditor.cams import CamEngine
from auditor.map_methods import GRADIENT_METHODS

ENGINE_METHODS = ("gradcam", "gradcam++", "xgradcam", "layercam", "hirescam")


def timed(
    steps: dict[str, Callable[[], object]], device: torch.device, iters: int, warmup: int
) -> dict[str, float]:
    """Seconds of the fastest call of each step over ``iters`` interleaved rounds.

    Rounds visit every step in turn, so a change of machine load hits all rows alike; the
    minimum is kept because other processes only ever add time.
    """
    for step in steps.values():
        for _ in range(warmup):
            step()
    best = dict.fromkeys(steps, float("inf"))
    for _ in range(iters):
        for label, step in steps.items():
            best[label] = min(best[label], wall_seconds(step, device))
    return best


def full_backward_gradcam(model: nn.Module, layer: nn.Module, images: Tensor) -> Tensor:
    """Grad-CAM the conventional way: hooks + .backward() with every weight requiring grad."""
    store: dict[str, Tensor] = {}

    def keep(_m: nn.Module, _i: object, out: Tensor) -> None:
        out.register_hook(lambda g: store.__setitem__("g", g))
        store["a"] = out

    handle = layer.register_forward_hook(keep)
    try:
        logits = model(images)
        model.zero_grad(set_to_none=True)
        logits.gather(1, logits.argmax(1, keepdim=True)).sum().backward()
    finally:
        handle.remove()
    weights = store["g"].mean(dim=(2, 3), keepdim=True)
    return (weights * store["a"]).sum(1).clamp_min(0).detach()


def external_steps(
    model: nn.Module, images: Tensor
) -> tuple[dict[str, Callable[[], object]], list[str]]:
    """Steps of the other libraries that import, and notes for those that do not."""
    steps: dict[str, Callable[[], object]] = {}
    notes: list[str] = []
    layer = model.layer4
    try:
        import pytorch_grad_cam as pgc

        for name, cls in (("gradcam", pgc.GradCAM), ("gradcam++", pgc.GradCAMPlusPlus),
                          ("xgradcam", pgc.XGradCAM), ("layercam", pgc.LayerCAM),
                          ("hirescam", pgc.HiResCAM)):
            def run_pgc(cls=cls) -> object:
                with cls(model=model, target_layers=[layer]) as cam:
                    return cam(input_tensor=images, targets=None)

            steps[f"pytorch-grad-cam {name}"] = run_pgc
    except ImportError as error:
        notes.append(f"pytorch-grad-cam not importable ({error}); skipped")
    try:
        from torchcam import methods as tcm

        for name, cls in (("gradcam", tcm.GradCAM), ("gradcam++", tcm.GradCAMpp),
                          ("xgradcam", tcm.XGradCAM), ("layercam", tcm.LayerCAM)):
            def run_torchcam(cls=cls) -> object:
                with cls(model, target_layer="layer4") as extractor:
                    scores = model(images)
                    return extractor(scores.argmax(1).tolist(), scores)

            steps[f"torchcam {name}"] = run_torchcam
    except ImportError as error:
        notes.append(f"torchcam not importable ({error}); skipped")
    try:
        from captum.attr import LayerGradCam

        def run_captum() -> object:
            with torch.no_grad():
                targets = model(images).argmax(1)
            return LayerGradCam(model, layer).attribute(images, target=targets)

        steps["captum gradcam"] = run_captum
    except ImportError as error:
        notes.append(f"captum not importable ({error}); skipped")
    return steps, notes


def benchmark(name: str, device: torch.device, batch_size: int, iters: int, warmup: int,
              external: bool) -> dict[str, float]:
    """Row label -> seconds per batch, for one model."""
    model = getattr(models, name)(weights=None).to(device).eval()
    images = torch.randn(batch_size, 3, 224, 224, device=device)

    def inference() -> object:
        with torch.inference_mode():
            return model(images)

    def engine_step(methods: tuple[str, ...]) -> Callable[[], object]:
        def step() -> object:
            with CamEngine(model, "layer4", methods=methods) as engine:
                return engine(images)

        return step

    steps: dict[str, Callable[[], object]] = {"plain inference": inference}
    for method in ENGINE_METHODS:
        steps[f"auditor {method}"] = engine_step((method,))
    steps[f"auditor all {len(GRADIENT_METHODS)} gradient methods"] = engine_step(
        tuple(sorted(GRADIENT_METHODS))
    )
    steps["full .backward() gradcam (weights require grad)"] = lambda: full_backward_gradcam(
        model, model.layer4, images
    )
    if external:
        found, notes = external_steps(model, images)
        for note in notes:
            print(f"  note: {note}")
        steps.update(found)
    seconds = timed(steps, device, iters, warmup)
    model.zero_grad(set_to_none=True)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--models", default="resnet18,resnet50",
                        help="comma-separated torchvision model names (ResNet family: layer4)")
    parser.add_argument("--no-external", action="store_true",
                        help="skip pytorch-grad-cam, torchcam and Captum")
    args = parser.parse_args()
    device = torch.device(args.device)
    label = torch.cuda.get_device_name(device) if device.type == "cuda" else (
        f"CPU, {torch.get_num_threads()} threads")
    print(f"device: {label}; batch {args.batch_size} x 3 x 224 x 224; {args.iters} iters; "
          f"torch {torch.__version__}")
    for name in args.models.split(","):
        rows = benchmark(name.strip(), device, args.batch_size, args.iters, args.warmup,
                         not args.no_external)
        base = rows["plain inference"]
        print(f"\n{name}")
        print(f"  {'method':<50} {'images/s':>10} {'vs inference':>13}")
        for row_label, seconds in rows.items():
            print(f"  {row_label:<50} {args.batch_size / seconds:>10.1f} {base / seconds:>12.2f}x")


if __name__ == "__main__":
    main()
