"""Are the flags right on data we generate? False flags on clean sets, power on planted shortcuts.

Clean sets: 2, 10 and 100 classes, each a shape (disk, square, triangle, ring, cross, bar,
diamond, notched square, ellipse, L) in a colour (10 hues); objects cover 10-90% of a 32x32
image (drawn uniformly in area), anywhere, on textured backgrounds from one distribution for
every class. CleanNet (DemoNet's three convolutions with batch norm) is trained on fresh images
every epoch (CLEAN_TRAINING: 10,000 an epoch, 10 epochs; on the GPU when there is one; weights
cached under CACHE by classes, seed and config) and audited, with masks, on a held-out set of
PER_CLASS_CLEAN images a class. `accuracy` is its held-out accuracy; `object_removed_accuracy`
its accuracy on the same images without the object (the background alone): near chance, so the
model uses the object and nothing else. Every flag raised on them is false; the figure is
class-level attention flags (CLASS_KINDS) per 100 classes, by severity, with masks and without
(`flags_without_masks`: the detectors rerun on the same maps with the mask-derived measures
NaN, as in an audit without --masks; no interventions); the model-free data-set-wide flags are
listed by kind (`kinds`).

Shortcut sets: 4 classes; in class "c0" a share p (5, 10, 20, 40, 80%) of images carry a
shortcut and an object drawn from another class (so the shortcut is the only cue for them, as
for a tagged horse whose horse is hard to see): a white corner tag, a semi-transparent band of
text-like stripes across the middle, a magenta frame, or a background colour (a saturated
magenta texture). CleanNet is trained as for the clean sets (SHORTCUT_TRAINING: fresh images
with the shortcut on the same share of c0 every epoch; weights cached by shape, share, seed,
config and SHORTCUT_VERSION) and audited on a held-out set of PER_CLASS_SHORTCUT images a class
with the same share. Whether the model learnt the shortcut is measured apart from the auditor:
`carrier_accuracy` (held-out carriers predicted c0), `paste_to_c0` (the shortcut pasted on the
other classes' held-out images turns this share of their predictions to c0), `learned`
(carrier_accuracy >= LEARNED). Found = a flag of the right kind on c0 (corner tag and
band: fixed_location; frame: fixed_location or border_attention; background colour:
background_attention or fixed_location), at any severity and at medium or above. Top-k
precision = the share of shortcut carriers among c0's k most suspicious samples (k = the number
of carriers). `uses` = the share of carriers whose map peaks in the planted region or one map
cell next to it (does the model use it at all? where it does not, no map-based detector can
find it); `uses_base` = the same share among the other classes' samples (what a map that ignores
the shortcut gives: a band across the middle is where most objects are). `found_by`: the search
that found it (`scan` of the fixed regions, `maps` for a region found from the maps, or the
flag kind). `cluster_candidate`: a candidate SpRAy cluster of c0 (summary `clusters`) whose
listed members are mostly carriers.

`other_kinds_on_c0`: flags of other kinds on c0; `flags_on_other_classes`: class-level attention
flags on the clean classes of the set (false flags).

Run (about an hour and a half on a 2-core CPU shared with other jobs, most of it training: 10
minutes a 100-class clean model, 1-4 minutes a shortcut model; on a GPU 25 seconds a model;
--quick a few minutes). `--cache DIR` keeps
the trained weights (clean and shortcut sets) and reuses them, so a detector change is measured
again in the time of the audits alone:

    python benchmarks/flag_calibration.py [--quick] [--seeds 2] [--part clean]
        [--classes 2,10,100] [--shapes corner,band] [--shares 0.2] [--cache DIR] [--keep DIR]
        [--json out.json]
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

SIZE = 32
SHAPES = ("disk", "square", "triangle", "ring", "cross", "bar", "diamond", "notched", "ellipse",
          "ell")
HUES = (0, 18, 36, 54, 72, 90, 108, 126, 144, 162)
PER_CLASS_CLEAN = 40
PER_CLASS_SHORTCUT = 100
SHORTCUT_CLASSES = 4
SHARES = (0.05, 0.1, 0.2, 0.4, 0.8)
KINDS = ("corner", "band", "frame", "background")
RIGHT_KINDS = {"corner": {"fixed_location"}, "band": {"fixed_location"},
               "frame": {"fixed_location", "border_attention"},
               "background": {"background_attention", "fixed_location"}}
TAG = 5
MAP_GRID = 8  # cells a side of the demo network's maps (features.6) at SIZE
#: The clean sets' model and training: `images` fresh images a epoch (drawn anew each epoch),
#: Adam with a one-cycle schedule peaking at `lr`.
CLEAN_TRAINING = {"widths": (16, 32, 64), "images": 10_000, "epochs": 10, "lr": 1e-2,
                  "batch": 128}
QUICK_TRAINING = {**CLEAN_TRAINING, "images": 2_000, "epochs": 4}
#: The shortcut sets' training: the clean sets' protocol on 4 classes (fresh images with the
#: shortcut on the same share of c0 every epoch).
SHORTCUT_TRAINING = {**CLEAN_TRAINING, "images": 4_000, "epochs": 12}
#: Part of the shortcut models' cache key: bump it when the generator of the shortcut sets
#: changes, so no weights trained on another generator are reused.
SHORTCUT_VERSION = 2
#: A model learnt the shortcut when at least this share of the held-out carriers is predicted
#: c0 (their objects are other classes', so nothing else says c0).
LEARNED = 0.5
CLEAN_LAYER = "features.10"
#: Per-sample measures that need the object's mask (NaN in an audit without masks).
MASK_MEASURES = ("fg_energy", "fg_enrichment", "bg_energy", "pointing_hit", "wsol_iou",
                 "fg_enrichment_ceiling", "peak_fg_cover")
CACHE = Path(tempfile.gettempdir()) / "auditor-flag-calibration"
#: Flags of the model's attention on a class (what this benchmark calibrates); the model-free
#: probes and degenerate maps are counted apart, by kind.
CLASS_KINDS = ("background_attention", "border_attention", "fixed_location",
               "intervention_sensitive")


def _shape_mask(shape: str, side: int, rng: np.random.Generator) -> np.ndarray:
    """bool [SIZE, SIZE]: the shape, `side` pixels across, at a random position."""
    canvas = np.zeros((side, side), dtype=np.uint8)
    s, h = side - 1, side / 2
    if shape == "disk":
        cv2.circle(canvas, (side // 2, side // 2), side // 2, 1, -1)
    elif shape in ("square", "notched"):
        canvas[:] = 1
        if shape == "notched":
            canvas[: side // 3, side // 3: 2 * side // 3] = 0
    elif shape == "triangle":
        cv2.fillConvexPoly(canvas, np.array([[0, s], [s, s], [side // 2, 0]], np.int32), 1)
    elif shape == "ring":
        cv2.circle(canvas, (side // 2, side // 2), side // 2, 1, -1)
        cv2.circle(canvas, (side // 2, side // 2), max(1, side // 5), 0, -1)
    elif shape == "cross":
        canvas[side // 3: 2 * side // 3 + 1] = 1
        canvas[:, side // 3: 2 * side // 3 + 1] = 1
    elif shape == "bar":
        canvas[side // 4: 3 * side // 4 + 1] = 1
    elif shape == "diamond":
        pts = np.array([[side // 2, 0], [s, side // 2], [side // 2, s], [0, side // 2]], np.int32)
        cv2.fillConvexPoly(canvas, pts, 1)
    elif shape == "ellipse":
        cv2.ellipse(canvas, (side // 2, side // 2), (side // 2, max(1, int(h * 0.6))), 0, 0, 360,
                    1, -1)
    else:  # "ell"
        canvas[:, : side // 3 + 1] = 1
        canvas[2 * side // 3:] = 1
    mask = np.zeros((SIZE, SIZE), dtype=bool)
    y, x = (int(v) for v in rng.integers(0, SIZE - side + 1, size=2))
    mask[y:y + side, x:x + side] = canvas.astype(bool)
    return mask


def _object(shape: str, hue: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(colour uint8 [3], mask bool [SIZE, SIZE]) covering 10-90% of the image's bounding box."""
    area = rng.uniform(0.1, 0.9)
    side = int(np.clip(round(np.sqrt(area) * SIZE), 6, SIZE))
    colour = cv2.cvtColor(np.uint8([[[hue, 220, 230]]]), cv2.COLOR_HSV2RGB)[0, 0]
    return colour, _shape_mask(shape, side, rng)


def _background(rng: np.random.Generator) -> np.ndarray:
    from auditor.demo import textured_background

    return textured_background(rng, SIZE).astype(np.uint8)


def _magenta(background: np.ndarray) -> np.ndarray:
    """The background-colour shortcut: the same texture, a third as strong, on magenta."""
    return np.clip(background.astype(np.int16) // 3 + np.array([150, 0, 150]), 0, 255
                   ).astype(np.uint8)


def _plant(image: np.ndarray, background: np.ndarray, mask: np.ndarray, kind: str,
           rng: np.random.Generator) -> np.ndarray:
    """Paint the shortcut `kind` on image (in place; `background` is the image without its
    object, uint8 [SIZE, SIZE, 3]) and take it out of the mask; returns the bool [SIZE, SIZE]
    region it occupies (for the background colour: the background)."""
    region = np.zeros((SIZE, SIZE), dtype=bool)
    if kind == "background":
        region = ~mask
        image[region] = _magenta(background)[region]
    elif kind == "corner":
        region[:TAG, :TAG] = True
        image[region] = 255
    elif kind == "band":
        region[13:19] = True
        stripes = (np.arange(SIZE) // 2 + rng.integers(0, 2)) % 2 == 0
        text = region & stripes[None, :]
        image[text] = (0.5 * image[text] + 0.5 * 255).astype(np.uint8)
    elif kind == "frame":
        region[:2], region[-2:], region[:, :2], region[:, -2:] = True, True, True, True
        image[region] = (255, 0, 255)
    mask &= ~region
    return region


def _classes(n_classes: int) -> list[tuple[str, int]]:
    """(shape, hue) of classes c0 .. c{n-1}: every shape, then every hue, in turn."""
    return [(SHAPES[c % 10], HUES[(c // 10 + 3 * c) % 10]) for c in range(n_classes)]


def audit(root: Path, model: nn.Module, interventions: bool, layer: str = "features.6",
          spec: str = "auditor.demo:build_demo_model", n_classes: int | None = None) -> object:
    """Audit root/data with root/masks; `n_classes` names the classes c0 .. c{n-1} in output
    order (folders sort as text: c10 before c2)."""
    from auditor.audit import run_audit
    from auditor.config import AuditConfig

    config = AuditConfig(
        data=str(root / "data"), model=spec, out=str(root / "run"),
        masks=str(root / "masks"), image_size=(SIZE, SIZE), mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5), methods=("gradcam",), target_layers=(layer,),
        batch_size=128, workers=0, quiet=True, overwrite=True, interventions=interventions,
        seed=0, gallery_size=8,
        classes=tuple(f"c{k}" for k in range(n_classes)) if n_classes else None,
    )
    return run_audit(config, model=model)


class CleanNet(nn.Module):
    """DemoNet's three convolutions with batch norm, for the clean sets: input [B, 3, 32, 32]
    normalised; features [B, 64, 8, 8] at CLEAN_LAYER (the last ReLU); logits [B, classes]."""

    def __init__(self, num_classes: int, widths: tuple[int, ...] = CLEAN_TRAINING["widths"]
                 ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        widths = (3, *widths)
        for i, (into, out) in enumerate(itertools.pairwise(widths)):
            layers += [nn.Conv2d(into, out, 3, padding=1), nn.BatchNorm2d(out), nn.ReLU()]
            if i < len(widths) - 2:
                layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(widths[-1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.features(x)).flatten(1))


@dataclass(frozen=True)
class GeneratedSet:
    """A generated set in memory: images uint8 [N, SIZE, SIZE, 3], the same backgrounds
    without the object (and without a shortcut), masks bool [N, SIZE, SIZE] (the object, less
    any shortcut painted over it), labels int [N], regions bool [N, SIZE, SIZE] (where the
    shortcut is; all False on samples without it)."""

    images: np.ndarray
    backgrounds: np.ndarray
    masks: np.ndarray
    labels: np.ndarray
    regions: np.ndarray

    @property
    def carriers(self) -> np.ndarray:
        """bool [N]: the samples that carry the shortcut."""
        return self.regions.any(axis=(1, 2))


def clean_arrays(n_classes: int, per_class: int, rng: np.random.Generator,
                 kind: str | None = None, share: float = 0.0) -> GeneratedSet:
    """A set in memory, `per_class` images a class; with `kind`, the first round(share x
    per_class) images of class 0 carry that shortcut and an object drawn from another class (so
    the shortcut is their only cue). Without `kind` the draws are those of a clean set."""
    n = n_classes * per_class
    images = np.empty((n, SIZE, SIZE, 3), dtype=np.uint8)
    backgrounds = np.empty_like(images)
    masks = np.empty((n, SIZE, SIZE), dtype=bool)
    regions = np.zeros_like(masks)
    labels = np.repeat(np.arange(n_classes), per_class)
    classes = _classes(n_classes)
    n_carriers = round(share * per_class) if kind else 0
    for i, label in enumerate(labels):
        carrier = label == 0 and i < n_carriers
        drawn = classes[int(rng.integers(1, n_classes))] if carrier else classes[label]
        colour, masks[i] = _object(*drawn, rng)
        backgrounds[i] = images[i] = _background(rng)
        images[i][masks[i]] = colour
        if carrier:
            regions[i] = _plant(images[i], backgrounds[i], masks[i], kind, rng)
    return GeneratedSet(images, backgrounds, masks, labels, regions)


def pasted(data: GeneratedSet, kind: str, rng: np.random.Generator) -> np.ndarray:
    """uint8 [N, SIZE, SIZE, 3]: every image of `data` with the shortcut `kind` pasted on."""
    images = data.images.copy()
    for image, background, mask in zip(images, data.backgrounds, data.masks, strict=True):
        _plant(image, background, mask.copy(), kind, rng)
    return images


def _inputs(images: np.ndarray) -> torch.Tensor:
    """uint8 [N, S, S, 3] -> float [N, 3, S, S] normalised with mean 0.5, std 0.5."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).float().div(255).sub(0.5).div(0.5)


def _cache_path(cache: Path, n_classes: int, seed: int, config: dict,
                kind: str | None = None, share: float = 0.0) -> Path:
    """Weights of the model for (classes, seed, training config, generator, shortcut)."""
    planted = {"kind": kind, "share": share, "version": SHORTCUT_VERSION} if kind else {}
    key = json.dumps({"classes": n_classes, "seed": seed, "size": SIZE, "shapes": SHAPES,
                      "hues": HUES, **config, **planted}, sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    name = f"shortcut-{kind}-{share:g}" if kind else "clean"
    return cache / f"{name}-{n_classes}-{seed}-{digest}.pt"


def train_fresh(n_classes: int, seed: int, config: dict, cache: Path = CACHE,
                kind: str | None = None, share: float = 0.0) -> nn.Module:
    """CleanNet trained on fresh images every epoch (`config`, e.g. CLEAN_TRAINING; no image is
    seen twice, so held-out accuracy is what it learnt), with the shortcut `kind` on `share` of
    class 0 when given; its weights cached under `cache`; eval mode, CPU."""
    path = _cache_path(cache, n_classes, seed, config, kind, share)
    model = CleanNet(n_classes, config["widths"])
    if path.is_file():
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        return model.eval()
    from auditor.runtime import select_device

    device = select_device("auto")
    torch.manual_seed(seed)
    rng = np.random.default_rng([seed, 1])
    per_class = max(config["images"] // n_classes, 1)
    batch = config["batch"]
    steps = config["epochs"] * -(-per_class * n_classes // batch)
    model.to(device).train()
    optimiser = torch.optim.Adam(model.parameters(), lr=config["lr"])
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, config["lr"], total_steps=steps)
    for _ in range(config["epochs"]):
        data = clean_arrays(n_classes, per_class, rng, kind, share)
        x, y = _inputs(data.images).to(device), torch.from_numpy(data.labels).to(device)
        order = torch.randperm(len(x), device=device)
        for start in range(0, len(x), batch):
            idx = order[start:start + batch]
            loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
    model = model.cpu().eval()
    cache.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), path)
    return model


def _write_arrays(root: Path, images: np.ndarray, masks: np.ndarray, labels: np.ndarray
                  ) -> None:
    """root/data/c<k>/<i>.png and root/masks/... of a set from clean_arrays."""
    for i, (image, mask, label) in enumerate(zip(images, masks, labels, strict=True)):
        for folder, picture in (("data", image[..., ::-1]),
                                ("masks", mask.astype(np.uint8) * 255)):
            (root / folder / f"c{label}").mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(root / folder / f"c{label}" / f"{i:05d}.png"), picture)


@torch.no_grad()
def _predict(model: nn.Module, images: np.ndarray) -> np.ndarray:
    """int [N]: the model's predicted class of uint8 images [N, SIZE, SIZE, 3]."""
    device = next(model.parameters()).device  # the audit moved it to its device
    return torch.cat([model(_inputs(images[i:i + 512]).to(device)).argmax(1).cpu()
                      for i in range(0, len(images), 512)]).numpy()


def _accuracy(model: nn.Module, images: np.ndarray, labels: np.ndarray) -> float:
    return float((_predict(model, images) == labels).mean())


def _severities(flags: list[dict]) -> dict[str, int]:
    return {severity: sum(f["severity"] == severity for f in flags)
            for severity in ("high", "medium", "low")}


def _flags_without_masks(run_dir: Path, n_classes: int) -> list[dict]:
    """The class-level attention flags of the same maps had the audit no masks: the measures
    that need the object (MASK_MEASURES) are NaN, as in an audit without --masks, and the
    detectors run on that table (one Benjamini-Hochberg family, as in the audit; no
    interventions)."""
    from auditor.detect.attention import background_attention_tests, border_attention_tests
    from auditor.detect.fdr import control_fdr
    from auditor.detect.location import fixed_location_tests
    from auditor.store import RunReader

    reader = RunReader(run_dir)
    samples = reader.samples().copy()
    samples[list(MASK_MEASURES)] = np.nan
    ok = samples[samples["status"] == "ok"]
    maps = reader.load_maps(ok["index"].tolist(), "gradcam")
    classes = [f"c{k}" for k in range(n_classes)]
    tests = (background_attention_tests(samples, classes)
             + border_attention_tests(samples, classes)
             + fixed_location_tests(samples, maps, classes))
    return [{"kind": f.kind, "class": f.class_name, "severity": f.severity, "score": f.score}
            for f in control_fdr(tests)]


def clean_run(n_classes: int, seed: int, interventions: bool, per_class: int,
              config: dict, cache: Path = CACHE, keep: Path | None = None) -> dict:
    """Train (or load) the clean model, audit a held-out clean set of `per_class` images a
    class, and count its flags; with `keep`, the run directory is copied there."""
    started = time.perf_counter()
    model = train_fresh(n_classes, seed, config, cache)
    trained = time.perf_counter()
    data = clean_arrays(n_classes, per_class, np.random.default_rng([seed, 2]))
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        _write_arrays(root, data.images, data.masks, data.labels)
        result = audit(root, model, interventions, layer=CLEAN_LAYER,
                       spec="flag_calibration:CleanNet", n_classes=n_classes)
        without_masks = _flags_without_masks(root / "run", n_classes)
        if keep is not None:
            shutil.copytree(root / "run", keep / f"clean-{n_classes}-{seed}", dirs_exist_ok=True)
    kinds: dict[str, int] = {}
    for flag in result.flags:
        kinds[flag["kind"]] = kinds.get(flag["kind"], 0) + 1
    flags = [{key: flag.get(key) for key in ("kind", "class", "severity", "score")}
             for flag in result.flags if flag["kind"] in CLASS_KINDS]
    return {"classes": n_classes, "seed": seed,
            "accuracy": result.summary["accuracy"]["overall"],
            "object_removed_accuracy": _accuracy(model, data.backgrounds, data.labels),
            "chance": 1 / n_classes, "flags": _severities(flags), "kinds": kinds,
            "class_flags": flags, "flags_without_masks": _severities(without_masks),
            "class_flags_without_masks": without_masks,
            "train_seconds": round(trained - started, 1),
            "audit_seconds": round(time.perf_counter() - trained, 1)}


def near_region(x: float, y: float, region: np.ndarray) -> bool:
    """Whether a map peak (x, y in [0, 1]) falls in, or one map cell next to, a planted region
    (bool [SIZE, SIZE]): the map sees the image in MAP_GRID cells, and a map lights up along
    the inner edge of a flat mark (a frame's peaks sit one cell in)."""
    cell = SIZE // MAP_GRID
    col, row = min(int(x * MAP_GRID), MAP_GRID - 1), min(int(y * MAP_GRID), MAP_GRID - 1)
    return bool(region[max(0, (row - 1) * cell):(row + 2) * cell,
                       max(0, (col - 1) * cell):(col + 2) * cell].any())


def shortcut_run(kind: str, share: float, seed: int, per_class: int, config: dict,
                 cache: Path = CACHE, keep: Path | None = None) -> dict:
    """Train (or load) a model on fresh images with `kind` on `share` of c0, audit a held-out
    set of `per_class` images a class with the same share, and ask whether the flags find it.

    Whether the model learnt the shortcut is measured apart from the auditor: `carrier_accuracy`
    (held-out carriers predicted c0: their objects belong to other classes, so only the
    shortcut says c0) and `paste_to_c0` (the shortcut pasted on the other classes' held-out
    images turns this share of their predictions from another class to c0). `learned`:
    carrier_accuracy >= LEARNED."""
    started = time.perf_counter()
    model = train_fresh(SHORTCUT_CLASSES, seed, config, cache, kind, share)
    trained = time.perf_counter()
    data = clean_arrays(SHORTCUT_CLASSES, per_class, np.random.default_rng([seed, 2]), kind,
                        share)
    carriers = {f"c0/{i:05d}.png": data.regions[i] for i in np.flatnonzero(data.carriers)}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        _write_arrays(root, data.images, data.masks, data.labels)
        result = audit(root, model, False, layer=CLEAN_LAYER, spec="flag_calibration:CleanNet",
                       n_classes=SHORTCUT_CLASSES)
        samples = result.samples()
        if keep is not None:
            shutil.copytree(root / "run", keep / f"shortcut-{kind}-{share:g}-s{seed}",
                            dirs_exist_ok=True)
    found = [f for f in result.flags if f["class"] == "c0" and f["kind"] in RIGHT_KINDS[kind]]
    severities = {f["severity"] for f in found}
    c0 = samples[(samples["label"] == "c0") & (samples["status"] == "ok")]
    k = len(carriers)
    top = c0.sort_values("suspicion", ascending=False, na_position="last").head(k)
    precision = float(top["rel_path"].isin(list(carriers)).mean()) if k else float("nan")
    peaks = c0.set_index("rel_path")[["peak_x", "peak_y"]]
    uses = [near_region(*peaks.loc[rel], region) for rel, region in carriers.items()
            if rel in peaks.index and np.isfinite(peaks.loc[rel]).all()]
    union = np.logical_or.reduce(list(carriers.values())) if k else None
    rest = samples[(samples["label"] != "c0") & (samples["status"] == "ok")
                   & np.isfinite(samples["peak_x"])]
    base = [near_region(x, y, union) for x, y in rest[["peak_x", "peak_y"]].to_numpy()] \
        if k else []
    carrier_index = set(c0.loc[c0["rel_path"].isin(list(carriers)), "index"])
    cluster_hits = [c for c in result.summary["clusters"].get("c0", [])
                    if c.get("candidate") and c["members"]
                    and np.mean([m in carrier_index for m in c["members"]]) >= 0.5]
    carrier_acc = float((_predict(model, data.images[data.carriers]) == 0).mean()) if k \
        else float("nan")
    others = data.labels != 0
    before = _predict(model, data.images[others]) == 0
    after = _predict(model, pasted(data, kind, np.random.default_rng([seed, 3]))[others]) == 0
    return {"kind": kind, "share": share, "seed": seed, "carriers": k,
            "found": bool(found), "found_medium": bool(severities & {"medium", "high"}),
            "topk_precision": precision, "uses": float(np.mean(uses)) if uses else None,
            "uses_base": float(np.mean(base)) if base else None,
            "found_by": sorted({f["evidence"].get("region_found_by", f["kind"]) for f in found}),
            "cluster_candidate": bool(cluster_hits),
            "accuracy": result.summary["accuracy"]["overall"],
            "carrier_accuracy": carrier_acc,
            "paste_to_c0": float((after & ~before).sum() / max(int((~before).sum()), 1)),
            "learned": bool(carrier_acc >= LEARNED),
            "other_kinds_on_c0": sorted({f["kind"] for f in result.flags if f["class"] == "c0"
                                         and f["kind"] not in RIGHT_KINDS[kind]}),
            "flags_on_other_classes": sorted(
                f"{f['class']} {f['kind']} {f['severity']}" for f in result.flags
                if f["class"] not in (None, "c0") and f["kind"] in CLASS_KINDS),
            "train_seconds": round(trained - started, 1),
            "audit_seconds": round(time.perf_counter() - trained, 1)}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="2 clean classes and a corner tag on 80%%, small sets")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--part", choices=("all", "clean", "shortcut"), default="all",
                        help="run only the clean sets or only the shortcut sets")
    parser.add_argument("--shares", default=",".join(str(s) for s in SHARES),
                        help="shares of the shortcut class carrying it, comma-separated")
    parser.add_argument("--classes", default="2,10,100",
                        help="class counts of the clean sets, comma-separated")
    parser.add_argument("--shapes", default=",".join(KINDS),
                        help="planted shortcuts to run, comma-separated, of " + ", ".join(KINDS))
    parser.add_argument("--cache", type=Path, default=CACHE,
                        help="folder of the trained models' cached weights (clean and shortcut "
                             "sets)")
    parser.add_argument("--keep", type=Path, default=None,
                        help="copy each run directory here (clean-<classes>-<seed>, "
                             "shortcut-<shape>-<share>-s<seed>)")
    args = parser.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    if args.quick:
        cleans, shortcuts, seeds = [2], [("corner", 0.8)], [0]
        per_clean, per_shortcut, training, shortcut_training = 24, 40, QUICK_TRAINING, \
            QUICK_TRAINING
    else:
        cleans = [int(v) for v in args.classes.split(",")] if args.part != "shortcut" else []
        shares = [float(v) for v in args.shares.split(",")]
        shortcuts = ([(k, s) for s in shares for k in args.shapes.split(",")]
                     if args.part != "clean" else [])
        seeds = list(range(args.seeds))
        per_clean, per_shortcut = PER_CLASS_CLEAN, PER_CLASS_SHORTCUT
        training, shortcut_training = CLEAN_TRAINING, SHORTCUT_TRAINING
    out: dict = {"clean": [], "shortcut": []}
    for n in cleans:
        for seed in seeds:
            row = clean_run(n, seed, not args.quick, per_clean, training, args.cache,
                            args.keep)
            out["clean"].append(row)
            print(json.dumps(row), file=sys.stderr)
    for kind, share in shortcuts:
        for seed in seeds:
            row = shortcut_run(kind, share, seed, per_shortcut, shortcut_training,
                               args.cache, args.keep)
            out["shortcut"].append(row)
            print(json.dumps(row), file=sys.stderr)
    out["summary"] = summarise(out)
    print(json.dumps(out["summary"], indent=1))
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))
    return out


def _mean(values: list) -> float | None:
    kept = [v for v in values if v is not None]
    return round(float(np.mean(kept)), 2) if kept else None


def summarise(out: dict) -> dict:
    """Flags per 100 clean classes by severity; detection and top-k precision per shortcut."""
    clean = {}
    for n in sorted({r["classes"] for r in out["clean"]}):
        rows = [r for r in out["clean"] if r["classes"] == n]
        total = sum(r["classes"] for r in rows)
        clean[str(n)] = {sev: round(100 * sum(r["flags"][sev] for r in rows) / total, 1)
                         for sev in ("high", "medium", "low")}
        clean[str(n)]["accuracy"] = round(float(np.mean([r["accuracy"] for r in rows])), 3)
        clean[str(n)]["object_removed_accuracy"] = round(float(np.mean(
            [r["object_removed_accuracy"] for r in rows])), 3)
        clean[str(n)]["seeds"] = len(rows)
        by_kind: dict[str, int] = {}
        for flag in (f for r in rows for f in r["class_flags"]):
            by_kind[flag["kind"]] = by_kind.get(flag["kind"], 0) + 1
        clean[str(n)]["per_kind"] = {kind: round(100 * count / total, 1)
                                     for kind, count in sorted(by_kind.items())}
        clean[str(n)]["without_masks"] = {
            sev: round(100 * sum(r["flags_without_masks"][sev] for r in rows) / total, 1)
            for sev in ("high", "medium", "low")}
    power = {}
    for kind in sorted({r["kind"] for r in out["shortcut"]}):
        for share in sorted({r["share"] for r in out["shortcut"] if r["kind"] == kind}):
            rows = [r for r in out["shortcut"] if r["kind"] == kind and r["share"] == share]
            uses = [r["uses"] for r in rows if r["uses"] is not None]
            power[f"{kind} {share:.0%}"] = {
                "found": round(float(np.mean([r["found"] for r in rows])), 2),
                "found_medium": round(float(np.mean([r["found_medium"] for r in rows])), 2),
                "topk_precision": round(float(np.nanmean([r["topk_precision"] for r in rows])),
                                        2),
                "uses": round(float(np.mean(uses)), 2) if uses else None,
                "uses_base": _mean([r["uses_base"] for r in rows]),
                "cluster_candidate": round(float(np.mean([r["cluster_candidate"]
                                                          for r in rows])), 2),
                "carrier_accuracy": round(float(np.nanmean([r["carrier_accuracy"]
                                                            for r in rows])), 2),
                "paste_to_c0": _mean([r["paste_to_c0"] for r in rows]),
                "runs": len(rows),
                "learned": sum(r["learned"] for r in rows),
                "found_where_learned": sum(r["found"] for r in rows if r["learned"]),
                "found_medium_where_learned": sum(r["found_medium"] for r in rows
                                                  if r["learned"]),
            }
    return {"false_flags_per_100_classes": clean, "detection": power}


if __name__ == "__main__":
    main()
