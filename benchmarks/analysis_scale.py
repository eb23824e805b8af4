"""The analysis after the pass at scale: generated run directories of 10k to 1M rows, timed.

    python benchmarks/analysis_scale.py [--sizes 10000:10 100000:100 1000000:1000]
    python benchmarks/analysis_scale.py --audit 30000:1000      # a real audit, pass included
    python benchmarks/analysis_scale.py --sizes 100000:100 --interventions
    python benchmarks/analysis_scale.py --sizes 1000000:1000 --keep /tmp/runs  # reuse runs
    AUDITOR_BENCH_QUICK=1 python benchmarks/analysis_scale.py   # a few seconds, for CI smoke

Analysis mode. For each ROWS:CLASSES a child process writes a run directory the way the pass
does: a pool of real image files (two per class: class 0 PNGs with a white corner tag, the others
JPEGs), decoded by the loader's own `AuditDataset` for their fingerprints and 16x16 probe
thumbnails; feature-resolution maps (a bump near each sample's object, class 0's in the corner)
measured by `metrics.attention_measures`; rows (`pipeline.file_columns`, `with_fingerprints`)
and arrays written chunk by chunk through `RunWriter.write_chunk`, and the mean-image inputs
summed by `class_image_sums.ClassImageSums`, and the first thumbnails of each class written by
`first_thumbs.FirstThumbs`, as the pass does. A second
child then merges the parts and runs `analysis.analyse_run` on it with the demo CNN (random
weights) as the model, on the GPU when there is one: detectors, clusters, probes, class means,
thumbnails, suspect maps (occlusion on the gallery), summary.json and the report; with
`--interventions` also the confirmation runs (the model on up to 2 x 256 edited inputs per
flagged class and edit: a second, smaller pass, timed as its own step). It reports the phase
timings from summary.json, wall and CPU seconds (CPU seconds are less swayed by other work on
a shared machine), a breakdown by step (wall and CPU seconds; the merge of the parts
included), the peak resident memory of the analysis child and the
memory it held before the analysis began (Python, torch, the data index).

Audit mode (`--audit ROWS:CLASSES`): ROWS generated 16x16 image files in CLASSES classes and a
real `run_audit` of the demo CNN on them (no interventions), to compare the phases after the
pass (`detect`, `figures`, `report`) with the pass itself on the same machine.

`--json FILE` also writes every result as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd
import torch

QUICK = os.environ.get("AUDITOR_BENCH_QUICK", "") not in ("", "0")
IMAGE_SIZE = 32
AFTER_PASS = ("detect", "figures", "report")


def _peak_mib() -> float:
    # ru_maxrss is KiB on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _cpu_seconds() -> float:
    """CPU seconds of this process (user + system): a figure less swayed than wall time by
    other work on a shared machine."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


#: Steps of the analysis timed on their own (module, function), wrapped where analysis calls
#: them, so the phases of summary.json can be broken down. `band_mass` (the middle-band
#: search) and `objects_nearer_p` (the object-following gate, summed over its calls) run
#: inside fixed_location_tests, and only where the table has object centroids (fg_cx, fg_cy):
#: they are listed only where they ran.
PARTS = (
    ("auditor.analysis", "background_attention_tests"),
    ("auditor.analysis", "border_attention_tests"), ("auditor.analysis", "fixed_location_tests"),
    ("auditor.detect.location", "band_mass"), ("auditor.detect.location", "objects_nearer_p"),
    ("auditor.analysis", "cluster_maps"), ("auditor.analysis", "probe_samples"),
    ("auditor.analysis", "check_model"),
    ("auditor.detect.interventions", "run_interventions"), ("auditor.analysis", "class_statistics"),
    ("auditor.analysis", "sample_flag_codes"), ("auditor.analysis", "_write_figures"),
    ("auditor.analysis", "stored_class_sums"), ("auditor.analysis", "write_suspect_maps"),
    ("auditor.report", "render_report"), ("auditor.report", "write_samples_csv"),
)


def _time_parts() -> tuple[dict[str, float], dict[str, float]]:
    """Wrap PARTS with wall-clock and CPU timers; returns the two dicts (wall, CPU) the
    seconds accumulate in (unrounded: a step called many times, the object-following gate
    once per tried region, adds fractions of a millisecond)."""
    import importlib

    seconds: dict[str, float] = {}
    cpu: dict[str, float] = {}

    def timed(name: str, function: Any) -> Any:
        def run(*args: Any, **kwargs: Any) -> Any:
            started, cpu_started = time.perf_counter(), _cpu_seconds()
            try:
                return function(*args, **kwargs)
            finally:
                seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - started
                cpu[name] = cpu.get(name, 0.0) + _cpu_seconds() - cpu_started

        return run

    for module_name, name in PARTS:
        module = importlib.import_module(module_name)
        if hasattr(module, name):
            setattr(module, name, timed(name, getattr(module, name)))
    return seconds, cpu


def _write_pool(folder: Path, n_classes: int, rng: np.random.Generator) -> list[Path]:
    """Two image files per class: class 0 PNG with a white 6x6 tag top-left, others JPEG."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    yy, xx = np.mgrid[0:IMAGE_SIZE, 0:IMAGE_SIZE]
    for c in range(n_classes):
        for k in range(2):
            img = np.empty((IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
            img[:] = rng.integers(40, 200, 3)
            centre = IMAGE_SIZE / 2 + rng.uniform(-3, 3, 2)
            inside = (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= (IMAGE_SIZE / 4) ** 2
            img[inside] = rng.integers(0, 255, 3)
            if c == 0:
                img[:6, :6] = 255
            noise = rng.integers(-10, 10, img.shape)
            img = np.clip(img.astype(np.int16) + noise, 0, 255).astype(np.uint8)
            path = folder / f"c{c:04d}_{k}.{'png' if c == 0 else 'jpg'}"
            cv2.imwrite(str(path), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
            paths.append(path)
    return paths


def _index(root: Path, n_rows: int, n_classes: int) -> Any:
    """The DatasetIndex of a generated run: row i of class i % K reads pool file 2K' + (i // K)
    % 2, with a centred box as its foreground."""
    from auditor.data import DatasetIndex, SampleRef

    pool = root / "pool"
    names = sorted(p.name for p in pool.iterdir())
    box = (IMAGE_SIZE / 4, IMAGE_SIZE / 4, 3 * IMAGE_SIZE / 4, 3 * IMAGE_SIZE / 4)
    samples = []
    for i in range(n_rows):
        label = i % n_classes
        name = names[2 * label + (i // n_classes) % 2]
        samples.append(SampleRef(index=i, path=str(pool / name),
                                 rel_path=f"class_{label:04d}/{i:07d}_{name}", label=label,
                                 mask_path=None, box=box))
    classes = [f"class_{c:04d}" for c in range(n_classes)]
    return DatasetIndex(root=str(pool), classes=classes, samples=samples, warnings=[])


def _maps(label: np.ndarray, rng: np.random.Generator, size: int) -> np.ndarray:
    """float32 [n, size, size]: a Gaussian bump near the centre; class 0's at the corner for
    60% of its samples; noise everywhere."""
    n = len(label)
    centre = np.where((label == 0) & (rng.uniform(size=n) < 0.6), 0.0, (size - 1) / 2)
    cy = centre + rng.normal(0.0, 0.8, n)
    cx = centre + rng.normal(0.0, 0.8, n)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    bump = np.exp(-((yy - cy[:, None, None]) ** 2 + (xx - cx[:, None, None]) ** 2) / 2.0)
    noise = rng.uniform(0.0, 0.1, bump.shape)
    return ((bump + noise) * rng.uniform(0.5, 3.0, (n, 1, 1))).astype(np.float32)


def generate(root: Path, n_rows: int, n_classes: int, seed: int = 0) -> None:
    """Write the pool and a run directory `root/run` whose parts hold every row (see module)."""
    from auditor.class_image_sums import ClassImageSums
    from auditor.data import AuditDataset
    from auditor.first_thumbs import FirstThumbs
    from auditor.metrics import attention_measures
    from auditor.pipeline import DEFAULT_CHUNK_SIZE, MEASURES, file_columns, with_fingerprints
    from auditor.runtime import select_device
    from auditor.store import RunWriter

    rng = np.random.default_rng(seed)
    device = select_device("auto")
    _write_pool(root / "pool", n_classes, rng)
    index = _index(root, n_rows, n_classes)
    dataset = AuditDataset(index, image_size=(IMAGE_SIZE, IMAGE_SIZE))
    # One decode per pool file: every row reading it shares its fingerprint and thumbnail.
    first = {ref.path: ref.index for ref in index.samples[: 2 * n_classes]}
    decoded = {path: dataset[i] for path, i in first.items()}
    writer = RunWriter(root / "run", {"benchmark": f"{n_rows}:{n_classes}:{seed}"},
                       overwrite=True)
    map_size = IMAGE_SIZE // 4
    labels = np.array([r.label for r in index.samples])
    class_sums = ClassImageSums(labels, n_classes)
    first_thumbs = FirstThumbs(labels, root / "run")
    for start in range(0, n_rows, DEFAULT_CHUNK_SIZE):
        refs = index.samples[start : start + DEFAULT_CHUNK_SIZE]
        items = [decoded[r.path] for r in refs]
        n = len(refs)
        ok = np.array([r.index % 200 != 199 for r in refs])  # 0.5% unreadable rows
        batch = {
            "ok": torch.from_numpy(ok),
            "has_mask": torch.from_numpy(ok.copy()),
            "error": ["" if o else "cannot identify image file" for o in ok],
            "warning": [""] * n,
            "foreground_source": [it["foreground_source"] if o else "none"
                                  for it, o in zip(items, ok, strict=True)],
            "props": [it["props"] if o else {} for it, o in zip(items, ok, strict=True)],
        }
        columns = file_columns(batch, index, refs)
        label = columns["label_index"]
        maps = _maps(label[ok], rng, map_size)
        masks = torch.stack([items[i]["mask"] for i in np.flatnonzero(ok)]).bool()
        boxes = torch.stack([items[i]["box"] for i in np.flatnonzero(ok)])
        measures = attention_measures(
            torch.from_numpy(maps).to(device), masks.to(device),
            torch.ones(len(maps), dtype=torch.bool, device=device), boxes.to(device))
        measures = {k: v.cpu() for k, v in measures.items()}
        pred = np.where(rng.uniform(size=n) < 0.7, label, rng.integers(0, n_classes, n))
        pred = np.where(ok, pred, -1)
        columns["pred_index"] = pred
        columns["pred"] = [index.classes[p] if p >= 0 else "" for p in pred]
        columns["target_index"] = np.where(ok, label, -1)
        columns["correct"] = (pred == label) & ok
        columns["map_degenerate"] = np.zeros(n, dtype=bool)
        for name in (*MEASURES, "confidence", "target_prob"):
            values = np.full(n, np.nan, dtype=np.float32)
            values[ok] = (measures[name].numpy() if name in measures
                          else rng.uniform(0.3, 1.0, int(ok.sum())))
            columns[name] = values
        rows = with_fingerprints(pd.DataFrame(columns), batch)
        map_rows = np.where(ok, np.cumsum(ok) - 1, -1)
        thumbs = np.stack([items[i]["thumb16"].numpy() for i in np.flatnonzero(ok)])
        writer.write_chunk(writer.next_part_name(), rows, map_rows,
                           {"maps/gradcam": maps.astype(np.float16), "probe/thumb16": thumbs})
        # The mean-image inputs summed and the first thumbnails written as the pass does (on
        # a loader batch of the rows concerned).
        candidates = np.flatnonzero((class_sums.candidate_class[columns["index"]] >= 0)
                                    | first_thumbs.first[columns["index"]])
        if candidates.size:
            picked = [items[i] for i in candidates]
            images = torch.stack([it["image"] for it in picked])
            chosen = np.asarray(columns["index"])[candidates]
            class_sums.add(chosen, ok[candidates], images)
            first_thumbs.add(chosen, ok[candidates], images,
                             torch.stack([it["mask"] for it in picked]),
                             torch.tensor([it["has_mask"] for it in picked]))
    class_sums.write(root / "run", rank=0)


def analyse(root: Path, n_rows: int, n_classes: int, interventions: bool) -> dict[str, Any]:
    """Merge and analyse `root/run` as run_audit does after its pass; timings and memory."""
    from auditor.analysis import analyse_run
    from auditor.config import AuditConfig
    from auditor.data import AuditDataset
    from auditor.demo import build_demo_model
    from auditor.models.loading import LoadedModel
    from auditor.run import PassContext, PhaseTimer
    from auditor.runtime import select_device
    from auditor.store import RunWriter

    index = _index(root, n_rows, n_classes)
    config = AuditConfig(
        data=str(root / "pool"), model="auditor.demo:build_demo_model", out=str(root / "run"),
        image_size=(IMAGE_SIZE, IMAGE_SIZE), batch_size=256, workers=0, quiet=True,
        suspect_methods=("occlusion",), interventions=interventions,
    ).resolved()  # as run_audit does: the normalisation left at None becomes ImageNet's
    device = select_device(config.device)
    torch.manual_seed(0)
    model = build_demo_model(n_classes).eval().to(device)
    loaded = LoadedModel(module=model, spec=config.model, weights=None, weights_sha256=None,
                         parameters=sum(p.numel() for p in model.parameters()), scripted=False)
    dataset = AuditDataset(index, image_size=config.image_size)
    parts, parts_cpu = _time_parts()
    before = _peak_mib()
    cpu = _cpu_seconds()
    timer = PhaseTimer()
    writer = RunWriter(root / "run", {"benchmark": f"{n_rows}:{n_classes}:0"})
    with timer.phase("merge"):
        writer.merge()
    parts_cpu["merge"] = round(_cpu_seconds() - cpu, 2)
    context = PassContext(config=config, index=index, dataset=dataset, model=model,
                          loaded=loaded, layers=["features"], device=device,
                          num_outputs=n_classes, command="bench")
    started = time.perf_counter()
    summary = analyse_run(root / "run", context, timer)
    return {
        "rows": n_rows, "classes": n_classes, "timings": summary["timings"],
        "analysis_s": round(time.perf_counter() - started, 2),
        "analysis_cpu_s": round(_cpu_seconds() - cpu, 2),
        "parts": {k: round(v, 2) for k, v in parts.items()},
        "parts_cpu": {k: round(v, 2) for k, v in parts_cpu.items()},
        "flags": sorted({f["kind"] for f in summary["flags"]}),
        "held_before_mib": round(before), "peak_mib": round(_peak_mib()),
    }


def audit(root: Path, n_rows: int, n_classes: int) -> dict[str, Any]:
    """A real audit of n_rows generated 16x16 files in n_classes classes (see module)."""
    from auditor.audit import run_audit
    from auditor.config import AuditConfig
    from auditor.demo import build_demo_model

    rng = np.random.default_rng(0)
    size = 16
    for i in range(n_rows):
        c = i % n_classes
        folder = root / "data" / f"class_{c:04d}"
        folder.mkdir(parents=True, exist_ok=True)
        img = rng.integers(0, 255, (size, size, 3), np.uint8)
        if c == 0:
            img[:4, :4] = 255
        cv2.imwrite(str(folder / f"{i:07d}.png"), img)
    torch.manual_seed(0)
    weights = root / "w.pt"
    torch.save(build_demo_model(n_classes).state_dict(), weights)
    config = AuditConfig(
        data=str(root / "data"), model="auditor.demo:build_demo_model", weights=str(weights),
        num_classes=n_classes, out=str(root / "run"), image_size=(size, size), batch_size=256,
        quiet=True,
        interventions=False,
    )
    summary = run_audit(config).summary
    timings = summary["timings"]
    after = sum(timings.get(k, 0.0) for k in AFTER_PASS)
    return {
        "rows": n_rows, "classes": n_classes, "timings": timings,
        "after_pass_s": round(after, 2),
        "after_pass_vs_pass": round(after / max(timings["pass"], 1e-9), 3),
        "peak_mib": round(_peak_mib()),
    }


def _child(*args: str) -> dict[str, Any]:
    done = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"child {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _size(text: str) -> tuple[int, int]:
    rows, _, classes = text.partition(":")
    return int(rows), int(classes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", nargs="+", type=_size, default=None,
                        help="ROWS:CLASSES of generated run directories")
    parser.add_argument("--audit", nargs="+", type=_size, default=None,
                        help="ROWS:CLASSES of real audits (pass included)")
    parser.add_argument("--interventions", action="store_true",
                        help="also run the interventions (model re-runs on edited inputs)")
    parser.add_argument("--json", type=Path, default=None, help="write the results here too")
    parser.add_argument("--keep", type=Path, default=None,
                        help="generate run directories under this folder and keep them: a "
                             "later run with the same --keep analyses them again without "
                             "generating (a million rows take minutes to write)")
    parser.add_argument("--child", choices=("generate", "analyse", "audit"),
                        help=argparse.SUPPRESS)
    parser.add_argument("--root", help=argparse.SUPPRESS)
    parser.add_argument("--size", type=_size, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        root = Path(args.root)
        if args.child == "generate":
            started = time.perf_counter()
            generate(root, *args.size)
            print(json.dumps({"seconds": round(time.perf_counter() - started, 1)}))
        else:
            result = (analyse(root, *args.size, args.interventions) if args.child == "analyse"
                      else audit(root, *args.size))
            print(json.dumps(result))
        return
    sizes = args.sizes
    if sizes is None and args.audit is None:
        sizes = [(2000, 10)] if QUICK else [(10_000, 10), (100_000, 100), (1_000_000, 1000)]
    results: dict[str, list[dict[str, Any]]] = {"analysis": [], "audit": []}
    for rows, classes in sizes or []:
        with tempfile.TemporaryDirectory() as tmp:
            size = f"{rows}:{classes}"
            root = args.keep / f"{rows}x{classes}" if args.keep else Path(tmp)
            generated = root / "generated.json"
            if not generated.exists():
                made = _child("--child", "generate", "--root", str(root), "--size", size)
                generated.write_text(json.dumps(made))
            result = _child("--child", "analyse", "--root", str(root), "--size", size,
                            *(["--interventions"] if args.interventions else []))
            result["generate_s"] = json.loads(generated.read_text())["seconds"]
            results["analysis"].append(result)
            phases = ", ".join(f"{k} {v:.1f}" for k, v in result["timings"].items())
            steps = ", ".join(f"{k} {v:.1f}/{result['parts_cpu'].get(k, 0.0):.1f}"
                              for k, v in result["parts"].items())
            print(f"analysis {rows:>9,} rows {classes:>5} classes: {result['analysis_s']:7.1f} s "
                  f"wall, {result['analysis_cpu_s']:.1f} s CPU ({phases}; steps wall/CPU s: "
                  f"{steps}); peak "
                  f"{result['peak_mib']} MiB, {result['held_before_mib']} MiB before; flags "
                  f"{', '.join(result['flags']) or 'none'}", flush=True)
    for rows, classes in args.audit or []:
        with tempfile.TemporaryDirectory() as tmp:
            result = _child("--child", "audit", "--root", tmp, "--size", f"{rows}:{classes}")
            results["audit"].append(result)
            t = result["timings"]
            print(f"audit {rows:>9,} rows {classes:>5} classes: pass {t['pass']:.1f} s; after "
                  f"the pass {result['after_pass_s']:.1f} s = {result['after_pass_vs_pass']:.2f}"
                  f"x the pass ({', '.join(f'{k} {t.get(k, 0.0):.1f}' for k in AFTER_PASS)}); "
                  f"peak {result['peak_mib']} MiB", flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
