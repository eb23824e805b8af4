"""`auditor sanity`: the model-parameter randomisation test of saliency maps.

Adebayo et al. 2018, "Sanity Checks for Saliency Maps": a map that explains the MODEL must
change when the model's learned weights are replaced by random ones. On a deep copy of the
model the parametrised layers are re-initialised from the head down, cumulatively (after the
k-th step the layers of steps 1..k stay random), and at each step every method's maps are
recomputed for the same images and the same target classes and compared with the original maps:

- Spearman rank correlation of the absolute maps at their native resolution (the paper's
  "absolute value" variant; our CAM maps are >= 0 already). Ties get average ranks. A
  constant map carries no ranking: against a non-constant map it scores 0, two constant maps
  score 1.
- SSIM (Wang et al. 2004: 11 x 11 Gaussian window, sigma 1.5, K1 = 0.01, K2 = 0.03) of the
  absolute maps resized bilinearly to a common size and divided by their max (data range 1).

Rule: a method PASSES when its mean Spearman correlation is below ``threshold`` (0.5) both
at the "half" step -- the first step at which at least half of the parametrised modules,
counted from the head, are random -- and at the last step (every layer random). Below 0.5
the maps no longer rank the pixels as the trained model's maps did. The half-way check is what
the paper's finding needs: guided backprop keeps its maps while the top of the network is
random and only changes once the first layers are, so a last-step check alone would pass it.
A method whose maps do not depend on the weights at all (an edge detector) fails both.
"""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from auditor.cams.compute import compute_maps
from auditor.cams.engine import eval_mode
from auditor.data import AuditDataset
from auditor.errors import DataError, RunDirectoryError, UsageError
from auditor.map_methods import METHODS, needs_target_layer
from auditor.models.layers import find_target_layer
from auditor.runtime import normalise_images

log = logging.getLogger("auditor")

MapFn = Callable[[nn.Module, Tensor, Tensor], Tensor]
"""A custom map method: (model, images [B, 3, H, W], targets long [B]) -> maps [B, h, w]."""

#: Pass rule: mean Spearman after randomising every layer must be below this.
DEFAULT_THRESHOLD = 0.5
# SSIM constants of Wang et al. 2004, for data range 1.
_SSIM_K1, _SSIM_K2 = 0.01, 0.03
# Standard deviation of the normal init of parameters of modules without reset_parameters().
_INIT_STD = 0.02


# ------------------------------------------------------------------------------ similarity


def average_ranks(values: Tensor) -> Tensor:
    """Ranks 0..N-1 of each row of ``values`` [B, N], ties given their average rank. [B, N]."""
    batch, count = values.shape
    ordered, order = values.sort(dim=1)
    starts = torch.ones_like(ordered, dtype=torch.bool)
    starts[:, 1:] = ordered[:, 1:] != ordered[:, :-1]
    group = starts.long().cumsum(dim=1) - 1
    group = (group + torch.arange(batch, device=values.device)[:, None] * count).flatten()
    position = torch.arange(count, device=values.device, dtype=torch.float64).repeat(batch)
    sums = torch.zeros(batch * count, device=values.device, dtype=torch.float64)
    sums.scatter_add_(0, group, position)
    sizes = torch.zeros_like(sums).scatter_add_(0, group, torch.ones_like(position))
    mean_rank = (sums / sizes.clamp_min(1))[group].reshape(batch, count)
    return torch.empty_like(mean_rank).scatter_(1, order, mean_rank)


def spearman(a: Tensor, b: Tensor) -> Tensor:
    """Spearman rank correlation of each pair of rows of a, b [B, N] -> float64 [B].

    Pearson correlation of the tie-averaged ranks. A constant row has no ranking: the result
    is 0 against a non-constant row and 1 when both rows are constant.
    """
    if a.shape != b.shape or a.dim() != 2:
        raise UsageError(f"spearman needs two [B, N] tensors of one shape; got "
                         f"{tuple(a.shape)} and {tuple(b.shape)}.")
    ranks_a = average_ranks(a)
    ranks_b = average_ranks(b)
    centred_a = ranks_a - ranks_a.mean(dim=1, keepdim=True)
    centred_b = ranks_b - ranks_b.mean(dim=1, keepdim=True)
    norm_a = centred_a.pow(2).sum(dim=1).sqrt()
    norm_b = centred_b.pow(2).sum(dim=1).sqrt()
    flat_a, flat_b = norm_a == 0, norm_b == 0
    rho = (centred_a * centred_b).sum(dim=1) / (norm_a * norm_b).clamp_min(1e-300)
    rho = torch.where(flat_a | flat_b, 0.0, rho.clamp(-1.0, 1.0))
    return torch.where(flat_a & flat_b, 1.0, rho)


def _gaussian_window(size: int, sigma: float, device: torch.device) -> Tensor:
    offsets = torch.arange(size, device=device, dtype=torch.float64) - (size - 1) / 2
    weights = torch.exp(-offsets.pow(2) / (2 * sigma**2))
    return weights / weights.sum()


def ssim(a: Tensor, b: Tensor, data_range: float = 1.0, window: int = 11,
         sigma: float = 1.5) -> Tensor:
    """Mean structural similarity of each pair of images a, b [B, H, W] -> float64 [B].

    Gaussian-weighted local means, variances and covariance over ``window`` x ``window``
    patches (positions where the whole window fits: no padding), C1 = (0.01 L)^2,
    C2 = (0.03 L)^2 with L = ``data_range``; SSIM = mean over positions of
    (2 mu_a mu_b + C1)(2 cov + C2) / ((mu_a^2 + mu_b^2 + C1)(var_a + var_b + C2)).
    """
    if a.shape != b.shape or a.dim() != 3:
        raise UsageError(f"ssim needs two [B, H, W] tensors of one shape; got "
                         f"{tuple(a.shape)} and {tuple(b.shape)}.")
    if min(a.shape[-2:]) < window:
        raise UsageError(f"ssim window {window} is larger than the images {tuple(a.shape[-2:])}; "
                         "resize the maps to at least the window size.")
    x, y = a.double(), b.double()
    weights = _gaussian_window(window, sigma, x.device)
    stack = torch.stack([x, y, x * x, y * y, x * y], dim=1)
    stack = F.conv2d(stack, weights.view(1, 1, window, 1).expand(5, 1, window, 1), groups=5)
    stack = F.conv2d(stack, weights.view(1, 1, 1, window).expand(5, 1, 1, window), groups=5)
    mu_x, mu_y, xx, yy, xy = stack.unbind(dim=1)
    var_x, var_y, cov = xx - mu_x**2, yy - mu_y**2, xy - mu_x * mu_y
    c1, c2 = (_SSIM_K1 * data_range) ** 2, (_SSIM_K2 * data_range) ** 2
    local = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / (
        (mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2)
    )
    return local.mean(dim=(1, 2))


def ssim_ready(maps: Tensor, size: int) -> Tensor:
    """|maps| [B, h, w] resized bilinearly to [B, size, size] and divided by each map's max
    (an all-zero map stays zero): values in [0, 1]."""
    resized = F.interpolate(maps.abs()[:, None].float(), size=(size, size), mode="bilinear",
                            align_corners=False)[:, 0]
    peak = resized.amax(dim=(1, 2), keepdim=True)
    return torch.where(peak > 0, resized / torch.where(peak > 0, peak, 1.0), 0.0)


# ------------------------------------------------------------------------- randomisation


def _is_parametrised(module: nn.Module) -> bool:
    """Owns parameters, or owns learned state (buffers) it can reset (BatchNorm without affine)."""
    if next(module.parameters(recurse=False), None) is not None:
        return True
    return callable(getattr(module, "reset_parameters", None)) and (
        next(module.buffers(recurse=False), None) is not None
    )


def randomisation_order(model: nn.Module, images: Tensor) -> list[str]:
    """Dotted names of the parametrised modules, from the head down to the input.

    The order is the REVERSE of the order in which one forward pass of ``images`` first
    calls them (so it follows the computation, not the registration order); modules the
    forward never calls do not affect the maps and are left out.
    """
    called: list[str] = []
    handles = []
    for name, module in model.named_modules():
        if _is_parametrised(module):
            handles.append(module.register_forward_pre_hook(
                lambda _m, _i, name=name: called.append(name) if name not in called else None
            ))
    try:
        with eval_mode(model), torch.no_grad():
            model(images)
    finally:
        for handle in handles:
            handle.remove()
    return called[::-1]


def randomisation_steps(order: Sequence[str], steps: int | None) -> list[list[str]]:
    """``order`` split into at most ``steps`` consecutive groups (None: one module each)."""
    if steps is not None and steps < 1:
        raise UsageError(f"steps must be a positive number of cascade steps, got {steps}.")
    count = len(order) if steps is None else min(steps, len(order))
    return [list(part) for part in np.array_split(np.array(order, dtype=object), count)
            if len(part)]


def reinitialise(module: nn.Module) -> None:
    """Re-initialise ``module``'s own parameters: its reset_parameters() where it has one
    (PyTorch's default init; BatchNorm also resets its running statistics), else N(0, 0.02)."""
    reset = getattr(module, "reset_parameters", None)
    if callable(reset):
        reset()
        return
    with torch.no_grad():
        for param in module.parameters(recurse=False):
            param.normal_(0.0, _INIT_STD)


@contextmanager
def _seeded(seed: int, device: torch.device) -> Iterator[None]:
    """Seed the global RNGs for reset_parameters(); the caller's RNG state is restored after."""
    devices = [device.index if device.index is not None else torch.cuda.current_device()] \
        if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


# -------------------------------------------------------------------------------- the test


def _model_device(model: nn.Module) -> torch.device:
    reference = next((t for t in (*model.parameters(), *model.buffers())), None)
    return reference.device if reference is not None else torch.device("cpu")


def _all_maps(
    model: nn.Module,
    images: Tensor,
    targets: Tensor,
    builtin: Sequence[str],
    custom: Mapping[str, MapFn],
    batch_size: int,
    map_options: dict[str, Any],
) -> dict[str, Tensor]:
    """Every method's maps [N, h, w] for all images, in batches, absolute, finite."""
    parts: dict[str, list[Tensor]] = {name: [] for name in (*builtin, *custom)}
    for start in range(0, images.shape[0], batch_size):
        stop = start + batch_size
        batch, batch_targets = images[start:stop], targets[start:stop]
        if builtin:
            for name, maps in compute_maps(model, batch, batch_targets, builtin,
                                           **map_options).items():
                parts[name].append(maps)
        for name, fn in custom.items():
            maps = fn(model, batch, batch_targets)
            if not isinstance(maps, Tensor) or maps.dim() != 3 or maps.shape[0] != batch.shape[0]:
                raise UsageError(f"custom method {name!r} must return maps [B, h, w]; got "
                                 f"{getattr(maps, 'shape', type(maps).__name__)}.")
            parts[name].append(maps.detach().float())
    return {name: torch.nan_to_num(torch.cat(chunks)).abs() for name, chunks in parts.items()}


def run_sanity(
    model: nn.Module,
    images: Tensor,
    targets: Tensor | None = None,
    methods: Sequence[str] = ("gradcam",),
    target_layers: str | Sequence[str] | None = None,
    steps: int | None = 10,
    threshold: float = DEFAULT_THRESHOLD,
    ssim_size: int = 64,
    batch_size: int = 32,
    seed: int = 0,
    custom_methods: Mapping[str, MapFn] | None = None,
    occlusion_patch: int | None = None,
    scorecam_channels: int | None = None,
    reshape: Callable[[Tensor], Tensor] | None = None,
) -> dict[str, dict[str, Any]]:
    """The cascading model-parameter randomisation test (see the module docstring).

    The model itself is never changed: everything runs on one deep copy.

    Args:
        model: images -> logits [B, C].
        images: float [N, 3, H, W], normalised, on the model's device.
        targets: long [N], the class every map explains at every step; None: the class the
            ORIGINAL model predicts (fixed before any layer is randomised).
        methods: names from ``auditor.map_methods.METHODS`` or keys of custom_methods.
        target_layers: dotted name(s) for the CAM methods; None: the last feature map.
        steps: cascade steps; the parametrised modules (head first) are split into at most
            this many consecutive groups. None: one step per module (as in the paper).
        threshold: pass rule, see the module docstring.
        ssim_size: side of the common grid SSIM compares on (>= 11).
        batch_size: images per map computation.
        seed: seeds each step's re-initialisation (step k uses seed + k).
        custom_methods: extra methods by name (e.g. a model-independent baseline).
        occlusion_patch, scorecam_channels, reshape: see ``auditor.cams.compute.compute_maps``.

    Returns:
        JSON-ready ``{method: {"passed": bool, "threshold": float, "half_layer": str,
        "n_samples": int, "layers": [{"layer",
        "modules", "spearman", "ssim"}]}}``, one layer entry per step in cascade order;
        "layer" is the lowest module randomised so far, "spearman"/"ssim" the means over the
        images against the original maps.
    """
    custom = dict(custom_methods or {})
    clash = sorted(set(custom) & set(METHODS))
    if clash:
        raise UsageError(f"custom method name(s) {clash} shadow built-in methods; rename them.")
    names = tuple(dict.fromkeys([methods] if isinstance(methods, str) else methods))
    unknown = [n for n in names if n not in METHODS and n not in custom]
    if not names or unknown:
        raise UsageError(f"unknown or no method(s) {unknown}; choose from "
                         f"{', '.join(METHODS)} or pass them in custom_methods.")
    if not isinstance(images, Tensor) or images.dim() != 4 or images.shape[0] < 1:
        raise UsageError(f"images must be a float tensor [N, 3, H, W] with N >= 1; got "
                         f"{getattr(images, 'shape', type(images).__name__)}.")
    if ssim_size < 11:
        raise UsageError(f"ssim_size must be at least 11 (the SSIM window), got {ssim_size}.")
    if batch_size < 1:
        raise UsageError(f"batch_size must be at least 1, got {batch_size}.")
    builtin = [n for n in names if n in METHODS]
    chosen = {n: custom[n] for n in names if n in custom}
    device = _model_device(model)
    images = images.detach().to(device)

    work = copy.deepcopy(model)
    if target_layers is None and needs_target_layer(builtin):
        target_layers = find_target_layer(work, (1, *images.shape[1:]), reshape)
    map_options = {"target_layer": target_layers, "occlusion_patch": occlusion_patch,
                   "scorecam_channels": scorecam_channels, "reshape": reshape}
    if targets is None:
        with eval_mode(work), torch.no_grad():
            targets = torch.cat([work(images[s : s + batch_size]).argmax(dim=1)
                                 for s in range(0, images.shape[0], batch_size)])
    targets = targets.to(device=device, dtype=torch.long)
    original = _all_maps(work, images, targets, builtin, chosen, batch_size, map_options)
    reference_rank = {name: maps.flatten(1) for name, maps in original.items()}
    reference_ssim = {name: ssim_ready(maps, ssim_size) for name, maps in original.items()}

    layers: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    order = randomisation_order(work, images[:1])
    if not order:
        raise UsageError(f"{type(model).__name__} has no parameters to randomise; the sanity "
                         "check needs a trained model.")
    randomised: list[str] = []
    half_step = 0
    for step, group in enumerate(randomisation_steps(order, steps), start=1):
        with _seeded(seed + step, device):
            for name in group:
                reinitialise(work.get_submodule(name))
        randomised.extend(group)
        if not half_step and 2 * len(randomised) >= len(order):
            half_step = step
        current = _all_maps(work, images, targets, builtin, chosen, batch_size, map_options)
        for name in names:
            rho = spearman(reference_rank[name], current[name].flatten(1))
            similarity = ssim(reference_ssim[name], ssim_ready(current[name], ssim_size))
            layers[name].append({
                "layer": group[-1], "modules": list(group),
                "spearman": float(rho.mean()), "ssim": float(similarity.mean()),
            })
        log.info("sanity step %d: randomised down to %s", step, group[-1])
    return {
        name: {
            "passed": passes([row["spearman"] for row in records], half_step - 1, threshold),
            "threshold": threshold,
            "half_layer": records[half_step - 1]["layer"],
            "n_samples": int(images.shape[0]),
            "layers": records,
        }
        for name, records in layers.items()
    }


def passes(spearmans: Sequence[float], half_index: int, threshold: float) -> bool:
    """The pass rule: the mean Spearman of the cascade step at ``half_index`` (the first with
    half of the modules random) and of the last step are both below ``threshold``."""
    return all(spearmans[k] < threshold for k in (half_index, -1))


def sample_images(dataset: AuditDataset, n: int, seed: int = 0) -> tuple[Tensor, list[int]]:
    """A seeded random choice of ``n`` readable images of a data set.

    Positions are visited in a random order (numpy generator seeded with ``seed``) and
    unreadable files skipped. Returns (uint8 [m, 3, H, W], their positions), m <= n;
    DataError when no file is readable.
    """
    if n < 1:
        raise UsageError(f"the number of sanity samples must be at least 1, got {n}.")
    chosen: list[Tensor] = []
    positions: list[int] = []
    for position in np.random.default_rng(seed).permutation(len(dataset)):
        item = dataset[int(position)]
        if item["ok"]:
            chosen.append(item["image"])
            positions.append(int(position))
            if len(chosen) == n:
                break
    if not chosen:
        raise DataError("no image of the data set could be read; nothing to check.")
    if len(chosen) < n:
        log.warning("sanity check on %d readable images (asked for %d)", len(chosen), n)
    return torch.stack(chosen), positions


def sanity_from_dataset(
    model: nn.Module,
    dataset: AuditDataset,
    methods: Sequence[str],
    target_layers: str | Sequence[str] | None,
    mean: tuple[float, float, float],
    std: tuple[float, float, float],
    n_samples: int = 16,
    seed: int = 0,
    **options: Any,
) -> dict[str, dict[str, Any]]:
    """``run_sanity`` on ``n_samples`` readable images drawn (seeded) from ``dataset``,
    normalised with ``mean``/``std`` on the model's device, explaining the ORIGINAL model's
    predicted class. ``options`` go to ``run_sanity`` (steps, threshold, ...)."""
    uint8, _ = sample_images(dataset, n_samples, seed)
    images = normalise_images(uint8, mean, std, _model_device(model))
    return run_sanity(model, images, None, methods, target_layers, seed=seed, **options)


def write_sanity(result: Mapping[str, Any], out: str | Path) -> Path:
    """Write ``result`` as ``out``/sanity.json (creating the folder); returns its path."""
    folder = Path(out)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "sanity.json"
        path.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    except OSError as exc:
        raise RunDirectoryError(f"cannot write sanity.json under {folder}: {exc}") from exc
    return path


def format_sanity_table(result: Mapping[str, Mapping[str, Any]]) -> str:
    """The result as a plain-text table, one row per method and step, then a verdict line
    per method."""
    width = max([len("randomised down to"),
                 *(len(r["layer"]) for rec in result.values() for r in rec["layers"])])
    lines = [f"{'method':16} {'randomised down to':{width}} {'spearman':>8} {'ssim':>7}"]
    for method, record in result.items():
        for k, row in enumerate(record["layers"]):
            label = method if k == 0 else ""
            lines.append(f"{label:16} {row['layer']:{width}} {row['spearman']:8.3f} "
                         f"{row['ssim']:7.3f}")
    for method, record in result.items():
        rows = {row["layer"]: row["spearman"] for row in record["layers"]}
        verdict = "PASSED" if record["passed"] else "FAILED"
        lines.append(
            f"{method}: {verdict} (mean Spearman {rows[record['half_layer']]:.3f} with the top "
            f"half random, {record['layers'][-1]['spearman']:.3f} with all; passes below "
            f"{record['threshold']:g} at both)"
        )
    return "\n".join(lines)
