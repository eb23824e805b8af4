"""Confirmation by intervention: edit what a flag blames, re-run the model, count what changes.

For each flag of a testable kind and each class it concerns (a class flag: its class; a
data-set-wide flag: every class), up to MAX_PER_CLASS readable, correctly predicted samples of
the class (a seeded choice) are edited and re-classified (batched, float32, inference mode):

| flag kind | edits |
|---|---|
| background_attention | background_constant (mean colour), background_blur (Gaussian, |
| | sigma 10% of the longer side), background_swap (another class's background) |
| border_attention, border_pixels_shortcut | border_blank (the band in the mean colour: on the |
| | sides the class's attention is on, `evidence["border_sides"]`; every side without it) |
| fixed_location | box_blank (the flag's region in the mean colour), box_swap (the same region |
| | of another class's image) |
| metadata_shortcut | format_to_jpeg (re-encoded as JPEG quality 75) or format_to_png (JPEG |
| | re-encoded as PNG), by the class's most common format |

A finding on part of a class (`evidence["scope"] == "part"`) is tested on its `members` only:
the rest of the class does not use what it blames, and would dilute the test.

The mean colour is the per-channel mean of up to MEAN_COLOUR_SAMPLES readable inputs (seeded).
Background edits need the object: the mask (or box) when the sample has one, else
`auditor.data.foreground.estimate_foreground`; samples whose object is empty or the whole image
are left out. The region of a fixed_location flag is exactly its `evidence["region_cells"]` (a
grid of cells laid over the image: a corner, a band, a frame); without it its
`evidence["region_box"]` (x0, y0, x1, y1 in [0, 1]; "box" also read); without one, a box of
BOX_SIDE around the class's median attention peak. A format edit decodes the file as the loader
does, re-encodes it, decodes and resizes it again (`auditor.data.edits.reencode`); JPEG -> PNG is
lossless, so it changes no pixel and can only confirm nothing: it stays as a built-in null.

**Per sample.** Only samples the model (float32, here) classifies correctly count: `flipped`
when the edited input is no longer classified as its label; `prob_drop` = p(label | original)
- p(label | edited). In a multi-label run each row is an (image, label) pair, p is the label's
sigmoid, "correct" means p >= the run's threshold and `flipped` that the edit takes it below.

**Control.** The same edit on samples that should not care: up to MAX_PER_CLASS samples drawn at
random (seeded) from the other classes that carry no flag of the same kind (all other classes
for a data-set-wide flag, or when every class is flagged). A draw, not a ranking: ranking by
fg_energy picks large objects, whose background edits change the fewest pixels. For the swaps
(background_swap, box_swap) the control is a swap within the class on the same images (each
tested sample gets the background, or region, of another sample of its own class): the same
compositing, only the class of the donor differs. A donor's own object is painted over in its
mean background colour first, so no object of another sample is pasted in. For format edits the
control is the other classes' samples re-encoded to the same format.

**Second control: the same area elsewhere.** Region edits (box_blank, box_swap, border_blank)
are repeated on the same images with the region moved elsewhere: turned 180 degrees about the
image centre, else mirrored left-right, else top-bottom, the first that overlaps the region by
at most MAX_OVERLAP (0.25) of its area (none for a centred region or all four border sides).
An edit that damages whatever it covers (the object, in every class) flips as much there.

**Only off the object.** A region edit (box_blank, box_swap, border_blank) tests, and controls
with, only samples whose object the region covers at most MAX_OBJECT_COVER (10%) of, by their
mask: a flag blames a place off the object, and an edit that removes part of the object is no
evidence about that place (a region drawn where a class's objects tend to be would otherwise be
"confirmed" by cutting into them). The tested samples must also keep their object clear of the
same area elsewhere, so that both edits of the pair change background only (otherwise the
elsewhere edit, landing on objects, would change less background and flatter the test).
Samples without a mask are kept (their object is unknown; a foreground estimate would take a
salient tag for the object); the record counts the tested samples left out
(`left_out_on_object`).

**Rule.** Differences test minus control of the flip rate and of the mean probability drop;
one-sided tests: paired on the same images (swaps vs their within-class swap, every edit vs the
same area elsewhere: exact McNemar on the discordant flips, Wilcoxon signed-rank on the drop
differences), unpaired otherwise (Fisher exact, Mann-Whitney U). Against each control, p = 2 x
the smaller p of the statistics whose difference reaches MIN_EFFECT (0.25) (1 when none does);
the record's `p_value` is the larger over its controls (both must hold). Every record of the
audit is one Benjamini-Hochberg family (auditor.detect.fdr); an edit confirms the flag for the
class when n >= MIN_N, control_n >= MIN_N and its q-value (`q_value`) <= FDR (0.05). Each
confirmed (flag, class) raises one `intervention_sensitive` flag; `score` = the largest
confirming difference over the control (effect) over its edits; severity:

| effect | n >= FULL_SEVERITY_N | n < FULL_SEVERITY_N |
|---|---|---|
| >= 0.50 | high | medium |
| 0.35 - 0.50 | medium | low |
| 0.25 - 0.35 | low | low |

Its samples are the rel_paths that flipped under the strongest edit (largest drop first). The
confirmed flag gets `evidence["confirmed_by"]` (a sentence per confirming edit); every tested
flag gets `evidence["intervention_tests"]` (a sentence per edit, confirmed or not).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch
from scipy import stats
from torch import nn

from auditor.data.edits import box_mask, cells_mask, fill_region, reencode, replace_background
from auditor.data.foreground import estimate_foreground
from auditor.data.members import sample_bytes
from auditor.data.regions import SIDES, side_bands
from auditor.detect.fdr import FDR, bh_qvalues
from auditor.detect.flags import Flag, Severity, severity_at
from auditor.errors import AuditorError
from auditor.runtime import normalise_images

if TYPE_CHECKING:
    from auditor.config import AuditConfig
    from auditor.data import AuditDataset

MAX_PER_CLASS = 256
MEAN_COLOUR_SAMPLES = 256
MIN_N = 5
MIN_EFFECT = 0.25
FULL_SEVERITY_N = 20
BOX_SIDE = 0.25
MAX_OVERLAP = 0.25
#: A region edit tests a sample only when the region covers at most this share of its object
#: (by its mask): blanking part of the object shows the model reads the object, not a shortcut.
MAX_OBJECT_COVER = 0.1
JPEG_QUALITY = 75
MAX_SAMPLES_LISTED = 12

EDITS_BY_KIND: dict[str, tuple[str, ...]] = {
    "background_attention": ("background_constant", "background_blur", "background_swap"),
    "border_attention": ("border_blank",),
    "border_pixels_shortcut": ("border_blank",),
    "fixed_location": ("box_blank", "box_swap"),
    "metadata_shortcut": ("format_swap",),
}

_DESCRIPTIONS = {
    "background_constant": "background replaced by the mean colour",
    "background_blur": "background blurred",
    "background_swap": "background swapped for another class's",
    "border_blank": "border band blanked",
    "box_blank": "attention box blanked",
    "box_swap": "attention box swapped for another class's",
    "format_to_jpeg": "file re-encoded as JPEG",
    "format_to_png": "file re-encoded as PNG",
}


@dataclass
class InterventionResult:
    """`flags`: the new intervention_sensitive flags; `records`: one JSON-ready dict per
    (class, edit, flag kind) tested, for summary.json["interventions"]."""

    flags: list[Flag] = field(default_factory=list)
    records: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class EditOutcome:
    """One edit measured on a set of samples: their positions, whether each prediction flipped
    (bool [n]) and the drop in each one's true-class probability (float [n])."""

    positions: list[int]
    flipped: np.ndarray
    drops: np.ndarray

    @property
    def n(self) -> int:
        return len(self.positions)


@dataclass
class _Item:
    image: torch.Tensor  # uint8 [3, H, W]
    foreground: torch.Tensor | None  # bool [H, W]; None: unknown or unusable
    source: str  # "mask" | "estimate" | "none"


class _Runner:
    """Loads items (cached), edits them, runs the model, measures outcomes."""

    def __init__(self, samples: pd.DataFrame, model: nn.Module, dataset: AuditDataset,
                 config: AuditConfig, device: torch.device) -> None:
        self.config = config
        self.dataset = dataset
        self.index = dataset.index
        self.model = model
        self.device = torch.device(device)
        self.rng = np.random.default_rng(self.config.seed)
        self.items: dict[int, _Item | None] = {}
        self.before: dict[int, torch.Tensor] = {}  # position -> probabilities [C], unedited
        ok = samples[(samples["status"] == "ok") & (samples["label_index"] >= 0)]
        self.ok = ok.set_index("index", drop=False)
        correct = ok["correct"].fillna(False).astype(bool)
        self.eligible = ok[correct]
        self.mean_colour = self._mean_colour()

    # --- data -------------------------------------------------------------------------------
    def item(self, position: int) -> _Item | None:
        if position not in self.items:
            raw = self.dataset[position]
            if not raw["ok"]:
                self.items[position] = None
            else:
                self.items[position] = _Item(raw["image"], *self._foreground(raw))
        return self.items[position]

    @staticmethod
    def _foreground(raw: dict[str, Any]) -> tuple[torch.Tensor | None, str]:
        if raw["has_mask"]:
            mask, source = raw["mask"].bool(), "mask"
        else:
            rgb = raw["image"].permute(1, 2, 0).numpy()
            mask, source = torch.from_numpy(estimate_foreground(rgb)), "estimate"
        usable = 0 < int(mask.sum()) < mask.numel()
        return (mask if usable else None), source

    def choose(self, positions: np.ndarray, cap: int | None = None) -> list[int]:
        """At most `cap` (default MAX_PER_CLASS) of the positions, a seeded draw, sorted."""
        cap = MAX_PER_CLASS if cap is None else cap
        if len(positions) > cap:
            positions = np.sort(self.rng.choice(positions, size=cap, replace=False))
        return [int(p) for p in positions]

    def off_object(self, positions: list[int], region: torch.Tensor) -> list[int]:
        """The positions whose object (by its mask; no mask: kept) the region (bool [H, W])
        covers at most MAX_OBJECT_COVER of."""
        kept = []
        for p in positions:
            it = self.item(p)
            if it is not None and it.source == "mask" and it.foreground is not None:
                object_px = it.foreground.sum()
                if (it.foreground & region).sum() > MAX_OBJECT_COVER * object_px:
                    continue
            kept.append(p)
        return kept

    def _mean_colour(self) -> tuple[float, float, float]:
        chosen = self.choose(self.ok["index"].to_numpy(), MEAN_COLOUR_SAMPLES)
        images = [it.image for p in chosen if (it := self.item(p)) is not None]
        if not images:
            return (127.0, 127.0, 127.0)
        mean = torch.stack(images).float().mean(dim=(0, 2, 3))
        return tuple(round(float(v), 1) for v in mean)  # type: ignore[return-value]

    def load(self, positions: list[int], need_foreground: bool) -> tuple[list[int], torch.Tensor,
                                                                         torch.Tensor | None]:
        """(kept positions, images uint8 [n,3,H,W], foreground bool [n,H,W] or None)."""
        kept, images, masks = [], [], []
        for p in positions:
            it = self.item(p)
            if it is None or (need_foreground and it.foreground is None):
                continue
            kept.append(p)
            images.append(it.image)
            if need_foreground:
                masks.append(it.foreground)
        if not kept:
            return [], torch.empty(0), None
        return kept, torch.stack(images), torch.stack(masks) if need_foreground else None

    # --- model ------------------------------------------------------------------------------
    def probabilities(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 [n,3,H,W] (any device) -> probabilities float32 [n, C] on the CPU: softmax,
        or each label's sigmoid in a multi-label run."""
        out = []
        with torch.inference_mode():
            for start in range(0, len(images), self.config.batch_size):
                batch = images[start:start + self.config.batch_size]
                x = normalise_images(batch, self.config.mean, self.config.std, self.device)
                logits = self.model(x).float()
                probs = (torch.sigmoid(logits) if self.config.multi_label
                         else torch.softmax(logits, dim=1))
                out.append(probs.cpu())
        return torch.cat(out)

    def measure(self, positions: list[int], originals: torch.Tensor,
                edited: torch.Tensor) -> EditOutcome:
        labels = torch.tensor([int(self.ok.at[p, "label_index"]) for p in positions])
        missing = [i for i, p in enumerate(positions) if p not in self.before]
        if missing:  # the unedited inputs are shared by every edit: classified once
            fresh = self.probabilities(originals[missing])
            self.before.update({positions[i]: fresh[j] for j, i in enumerate(missing)})
        before = torch.stack([self.before[p] for p in positions])
        after = self.probabilities(edited)
        if self.config.multi_label:  # the label is predicted, then no longer
            threshold = self.config.threshold
            correct = before.gather(1, labels[:, None])[:, 0] >= threshold
            flipped = after.gather(1, labels[:, None])[:, 0] < threshold
        else:
            correct = before.argmax(dim=1) == labels
            flipped = after.argmax(dim=1) != labels
        drop = before.gather(1, labels[:, None])[:, 0] - after.gather(1, labels[:, None])[:, 0]
        keep = correct.numpy()
        kept = [p for p, k in zip(positions, keep, strict=True) if k]
        return EditOutcome(kept, flipped.numpy()[keep], drop.numpy()[keep].astype(np.float64))

    # --- edits ------------------------------------------------------------------------------
    def run_edit(self, edit: str, positions: list[int], region: torch.Tensor | None,
                 fmt: str | None, donors: list[int] | None) -> EditOutcome:
        """Apply one edit to the samples at `positions` and measure it."""
        need_fg = edit.startswith("background")
        kept, images, masks = self.load(positions, need_fg)
        if not kept:
            return EditOutcome([], np.zeros(0, dtype=bool), np.zeros(0))
        images = images.to(self.device)
        masks = masks.to(self.device) if masks is not None else None
        if edit == "background_constant":
            edited = replace_background(images, masks, self.mean_colour)
        elif edit == "background_blur":
            edited = replace_background(images, masks, "blur")
        elif edit in ("background_swap", "box_swap"):
            backgrounds = self._backgrounds(len(kept), donors)
            if backgrounds is None:
                return EditOutcome([], np.zeros(0, dtype=bool), np.zeros(0))
            edited = replace_background(images, masks, backgrounds) \
                if edit == "background_swap" else fill_region(images, region, backgrounds)
        elif edit == "border_blank" or edit == "box_blank":
            edited = fill_region(images, region, self.mean_colour)
        elif edit.startswith("format_to_"):
            kept, images, edited = self._reencoded(kept, images, fmt or "JPEG")
            if not kept:
                return EditOutcome([], np.zeros(0, dtype=bool), np.zeros(0))
        else:
            raise AuditorError(f"internal: unknown intervention edit {edit!r}")
        return self.measure(kept, images, edited)

    def _backgrounds(self, n: int, donors: list[int] | None) -> torch.Tensor | None:
        """uint8 [n, 3, H, W] on the device: the backgrounds of the donors, in turn, each with
        its own object painted over in its mean background colour (so no object of another
        sample is pasted in); None when no donor has a usable foreground."""
        donor_pos, donor_images, donor_masks = self.load(donors or [], need_foreground=True)
        if not donor_pos:
            return None
        pick = [i % len(donor_pos) for i in range(n)]
        donor_images = donor_images[pick].to(self.device)
        donor_masks = donor_masks[pick].to(self.device)
        background = (~donor_masks)[:, None].float()
        colour = (donor_images.float() * background).sum(dim=(2, 3)) / background.sum(dim=(2, 3))
        return replace_background(donor_images, ~donor_masks, colour.round())

    def _reencoded(self, kept: list[int], images: torch.Tensor,
                   fmt: str) -> tuple[list[int], torch.Tensor, torch.Tensor]:
        keep, edited = [], []
        size = tuple(images.shape[2:])
        for i, p in enumerate(kept):
            try:
                data, _ = sample_bytes(self.index.samples[p])
                rgb = reencode(data, fmt, JPEG_QUALITY, size=size,
                               dicom_window=self.config.dicom_window)
            except AuditorError:  # unreadable since the pass: left out, like any error row
                continue
            keep.append(i)
            edited.append(torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1))))
        if not keep:
            return [], images, images
        return ([kept[i] for i in keep], images[keep],
                torch.stack(edited).to(self.device))


def _severity(effect: float, n: int) -> Severity:
    level = 2 if effect >= 0.5 else 1 if effect >= 0.35 else 0
    if n < FULL_SEVERITY_N:
        level -= 1
    return severity_at(level)


def _comparison(test: EditOutcome, control: EditOutcome, paired: bool) -> dict[str, Any]:
    """Differences and one-sided p-values of an edit against one control (module rule).

    Unpaired (different samples): Fisher exact on flips, Mann-Whitney U on drops. Paired (the
    same samples, in the same order): exact McNemar on the discordant flips, Wilcoxon
    signed-rank on the drop differences. `p` = 2 x the smaller p among the statistics whose
    difference reaches MIN_EFFECT (1.0 when none does); `effect` = the largest such difference
    (else the largest difference)."""
    diff_flip = float(test.flipped.mean() - control.flipped.mean())
    diff_drop = float(test.drops.mean() - control.drops.mean())
    if paired:
        gained = int((test.flipped & ~control.flipped).sum())
        lost = int((~test.flipped & control.flipped).sum())
        p_flip = float(stats.binom.sf(gained - 1, gained + lost, 0.5)) if gained + lost else 1.0
        differences = test.drops - control.drops
        p_drop = float(stats.wilcoxon(differences, alternative="greater").pvalue) \
            if np.any(differences != 0) else 1.0
    else:
        flips, control_flips = int(test.flipped.sum()), int(control.flipped.sum())
        p_flip = float(stats.fisher_exact(
            [[flips, test.n - flips], [control_flips, control.n - control_flips]],
            alternative="greater")[1])
        p_drop = float(stats.mannwhitneyu(test.drops, control.drops,
                                          alternative="greater").pvalue)
    material = [(d, p) for d, p in ((diff_flip, p_flip), (diff_drop, p_drop))
                if d >= MIN_EFFECT]
    return {"p_flip": p_flip, "p_drop": p_drop,
            "p": min(1.0, 2 * min(p for _, p in material)) if material else 1.0,
            "effect": max(d for d, _ in material) if material else max(diff_flip, diff_drop)}


def _statistics(test: EditOutcome, control: EditOutcome, paired: bool,
                elsewhere: EditOutcome | None) -> dict[str, Any]:
    """Rates, differences and one-sided p-values of one edit against its control and, where
    there is one, the equal-area edit elsewhere on the same images (module rule). `p_value`
    is the larger of the two comparisons' p (both must hold); the decision is taken over the
    whole family of intervention records (run_interventions)."""
    record: dict[str, Any] = {
        "n": test.n,
        "flip_rate": float(test.flipped.mean()) if test.n else None,
        "prob_drop_mean": float(test.drops.mean()) if test.n else None,
        "control_n": control.n,
        "control_flip_rate": float(control.flipped.mean()) if control.n else None,
        "control_prob_drop_mean": float(control.drops.mean()) if control.n else None,
        "paired": paired,
        "tests": "exact McNemar (flips), Wilcoxon signed-rank (drops)" if paired
                 else "Fisher exact (flips), Mann-Whitney U (drops)",
        "p_flip": None, "p_drop": None, "p_value": None, "effect": 0.0, "confirmed": False,
    }
    if elsewhere is not None:
        record.update(elsewhere_n=elsewhere.n,
                      elsewhere_flip_rate=float(elsewhere.flipped.mean()) if elsewhere.n
                      else None,
                      elsewhere_prob_drop_mean=float(elsewhere.drops.mean()) if elsewhere.n
                      else None,
                      elsewhere_p_value=None, elsewhere_effect=None)
    if test.n < MIN_N or control.n < MIN_N:
        record["note"] = f"too few correctly classified samples (need {MIN_N} edited and control)"
        return record
    versus = _comparison(test, control, paired)
    record.update(p_flip=versus["p_flip"], p_drop=versus["p_drop"], p_value=versus["p"],
                  effect=float(versus["effect"]))
    if elsewhere is not None and elsewhere.n == test.n:
        there = _comparison(test, elsewhere, paired=True)
        record.update(elsewhere_p_value=there["p"], elsewhere_effect=float(there["effect"]),
                      p_value=max(versus["p"], there["p"]))
    return record


def edit_record(name: str, edit: str, flag: Flag, control_label: str, test: EditOutcome,
                control: EditOutcome, paired: bool,
                elsewhere: EditOutcome | None) -> dict[str, Any]:
    """One summary.json ``interventions`` record: ``edit`` measured on class ``name`` against
    its control (and the same area elsewhere), testing ``flag``; decided by decide_records."""
    return {"class": name, "edit": edit, "description": _DESCRIPTIONS[edit],
            **_statistics(test, control, paired, elsewhere),
            "confirms": flag.kind, "flag_class": flag.class_name, "control": control_label}


def decide_records(records: list[dict[str, Any]]) -> None:
    """One Benjamini-Hochberg family of every record: each gains ``q_value`` and
    ``confirmed`` (q <= FDR), in place."""
    for record, q in zip(records, bh_qvalues(np.array(
            [r["p_value"] if r["p_value"] is not None else np.nan for r in records])),
            strict=True):
        record["q_value"] = float(q) if record["p_value"] is not None else None
        record["confirmed"] = bool(record["p_value"] is not None and q <= FDR)


def _sentence(edit: str, record: dict[str, Any]) -> str:
    if record["n"] < MIN_N or record["control_n"] < MIN_N:
        return f"{_DESCRIPTIONS[edit]}: not tested ({record['n']} samples, control " \
               f"{record['control_n']})"
    text = (f"{_DESCRIPTIONS[edit]}: {record['flip_rate']:.0%} flipped vs "
            f"{record['control_flip_rate']:.0%} control")
    if record.get("elsewhere_flip_rate") is not None:
        text += f" and {record['elsewhere_flip_rate']:.0%} for the same area elsewhere"
    return (f"{text}, probability drop {record['prob_drop_mean']:.2f} vs "
            f"{record['control_prob_drop_mean']:.2f} (n={record['n']}, "
            f"q={record.get('q_value', record['p_value']):.2g})")


def _flag_region(flag: Flag, runner: _Runner, height: int, width: int) -> torch.Tensor:
    """Bool [H, W]: the pixels a flag blames. fixed_location: `evidence["region_cells"]`, else
    its `region_box` (or "box"), else BOX_SIDE around the class's median attention peak;
    border flags: the band on `evidence["border_sides"]` (every side without it)."""
    if flag.kind in ("border_attention", "border_pixels_shortcut"):
        sides = [s for s in flag.evidence.get("border_sides", SIDES) if s in SIDES] or SIDES
        return side_bands(height, width, runner.config.border, list(sides))
    cells = flag.evidence.get("region_cells")
    if cells is not None and np.asarray(cells).ndim == 2 and np.asarray(cells).any():
        return cells_mask(np.asarray(cells, dtype=bool), height, width)
    box = flag.evidence.get("region_box", flag.evidence.get("box"))
    if box is None or len(box) != 4 or not all(math.isfinite(float(v)) for v in box):
        rows = runner.ok[runner.ok["label"] == flag.class_name]
        cx = float(np.nanmedian(rows["peak_x"].to_numpy(dtype=float))) if len(rows) else 0.5
        cy = float(np.nanmedian(rows["peak_y"].to_numpy(dtype=float))) if len(rows) else 0.5
        half = BOX_SIDE / 2
        x0, y0 = min(max(cx - half, 0.0), 1 - BOX_SIDE), min(max(cy - half, 0.0), 1 - BOX_SIDE)
        box = (x0, y0, x0 + BOX_SIDE, y0 + BOX_SIDE)
    return box_mask([float(v) for v in box], 1, height, width)[0]


def elsewhere_region(region: torch.Tensor) -> torch.Tensor | None:
    """The same region moved elsewhere, bool [H, W]: turned 180 degrees, else mirrored left to
    right, else top to bottom; the first that overlaps the region by at most MAX_OVERLAP of its
    area. None when every one overlaps more (a centred region, all four border sides)."""
    area = int(region.sum())
    if area == 0:
        return None
    for moved in (region.flip(0, 1), region.flip(1), region.flip(0)):
        if int((moved & region).sum()) <= MAX_OVERLAP * area:
            return moved
    return None


def _format_of(rows: pd.DataFrame) -> str:
    if "file_format" not in rows.columns or rows.empty:
        return "PNG"
    formats = rows["file_format"].astype(str).str.upper()
    return str(formats.mode().iloc[0])


def run_interventions(samples: pd.DataFrame, flags: list[Flag], model: nn.Module,
                      dataset: AuditDataset, config: AuditConfig,
                      device: torch.device) -> InterventionResult:
    """Test each testable flag by intervention (module docstring); annotate the tested flags.

    Args:
        samples: the samples.parquet table (index, rel_path, label, label_index, status,
            correct, fg_energy, peak_x, peak_y, file_format ...).
        flags: the flags raised so far; tested ones get evidence notes (modified in place).
        model: the audited model, eval mode, on ``device``.
        dataset: the audit's inputs (its index gives the classes and file paths).
        config: the audit's options (seed, batch size, normalisation, border).
        device: where the model runs.

    Returns:
        InterventionResult with the new flags and the records for summary.json.
    """
    testable = [f for f in flags if f.kind in EDITS_BY_KIND]
    result = InterventionResult()
    if not testable:
        return result
    runner = _Runner(samples, model, dataset, config, device)
    classes = list(dataset.index.classes)
    paths = samples.set_index("index")["rel_path"] if "rel_path" in samples else None
    measured: dict[tuple, tuple[EditOutcome, EditOutcome, EditOutcome | None]] = {}
    # Phase 1: every edit of every (flag, class), measured once.
    tested: list[tuple[Flag, str, list[tuple[dict[str, Any], EditOutcome]]]] = []
    for flag in testable:
        flagged = {f.class_name for f in flags if f.kind == flag.kind}
        for name in [flag.class_name] if flag.class_name is not None else classes:
            mine = runner.eligible[runner.eligible["label"] == name]
            if flag.evidence.get("scope") == "part" and "rel_path" in mine:
                mine = mine[mine["rel_path"].isin(flag.evidence.get("members", ()))]
            if mine.empty:
                continue
            rows = []
            for edit in EDITS_BY_KIND[flag.kind]:
                plan = _plan(edit, flag, name, mine, runner, flagged)
                if plan is None:
                    continue
                key = (name, plan.edit, plan.control_label, plan.region_key)
                if key not in measured:
                    measured[key] = (plan.test(), plan.control(),
                                     plan.elsewhere() if plan.elsewhere else None)
                test, control, elsewhere = measured[key]
                record = edit_record(name, plan.edit, flag, plan.control_label, test, control,
                                     plan.paired, elsewhere)
                if plan.region_key:
                    record["left_out_on_object"] = plan.left_out
                rows.append((record, test))
            tested.append((flag, name, rows))
    # Phase 2: one Benjamini-Hochberg family of every record, then the decisions.
    decide_records([record for _, _, rows in tested for record, _ in rows])
    notes: dict[int, tuple[list[str], list[str]]] = {}
    for flag, name, rows in tested:
        mine_notes, confirmed_notes = notes.setdefault(id(flag), ([], []))
        best = None
        for record, test in rows:
            sentence = _sentence(record["edit"], record)
            mine_notes.append(f"{name}: {sentence}" if flag.class_name is None else sentence)
            if record["confirmed"]:
                confirmed_notes.append(mine_notes[-1])
                if best is None or record["effect"] > best[0]:
                    best = (record["effect"], record["edit"], test, record)
        result.records.extend(record for record, _ in rows)
        if best is not None:
            result.flags.append(_confirming_flag(flag, name, best,
                                                 [r for r, _ in rows], paths))
    for flag in testable:
        mine_notes, confirmed_notes = notes.get(id(flag), ([], []))
        if mine_notes:
            flag.evidence["intervention_tests"] = mine_notes
        if confirmed_notes:
            flag.evidence["confirmed_by"] = "; ".join(confirmed_notes)
    for record in result.records:
        record["effect"] = round(record["effect"], 4)
    return result


@dataclass
class _Plan:
    """One edit's measurements to run: the test, its control, and (where there is one) the
    same edit on an equal area elsewhere on the same images."""

    edit: str
    test: Callable[[], EditOutcome]
    control: Callable[[], EditOutcome]
    control_label: str
    paired: bool
    elsewhere: Callable[[], EditOutcome] | None = None
    region_key: bytes = b""
    left_out: int = 0  # tested samples left out: the region covers their object


def _plan(edit: str, flag: Flag, name: str, mine: pd.DataFrame, runner: _Runner,
          flagged: set) -> _Plan | None:
    """The plan of one edit for one class, or None when the edit does not apply (a class
    already in the target format)."""
    eligible = runner.eligible
    others = eligible[eligible["label"] != name]
    unflagged = others[~others["label"].isin(flagged)]
    pool, control_label = (unflagged, "unflagged classes") \
        if None not in flagged and not unflagged.empty else (others, "other classes")
    control = runner.choose(pool["index"].to_numpy())  # a seeded random draw
    tested = runner.choose(mine["index"].to_numpy())
    region = moved = None
    left_out = 0
    if edit.startswith("box_") or edit == "border_blank":
        region = _flag_region(flag, runner, *runner.config.image_size)
        moved = elsewhere_region(region)
        off = runner.off_object(tested, region)
        if moved is not None:  # both edits off the object, so the pair compares like with like
            off = runner.off_object(off, moved)
        left_out = len(tested) - len(off)
        tested, control = off, runner.off_object(control, region)
    key = region.numpy().tobytes() if region is not None else b""
    elsewhere = (lambda: runner.run_edit(edit, tested, moved, None, donors if edit == "box_swap"
                                         else None)) if moved is not None else None
    if edit in ("background_swap", "box_swap"):
        donors = runner.choose(runner.ok.loc[runner.ok["label"] != name, "index"].to_numpy())
        runner.rng.shuffle(donors)
        within = tested[1:] + tested[:1]  # each sample gets a class mate's background or box
        return _Plan(edit, lambda: runner.run_edit(edit, tested, region, None, donors),
                     lambda: runner.run_edit(edit, tested, region, None, within), "same class",
                     paired=True, elsewhere=elsewhere, region_key=key, left_out=left_out)
    if edit == "format_swap":
        source = _format_of(mine)
        fmt = "PNG" if source in ("JPEG", "MPO") else "JPEG"
        edit = f"format_to_{fmt.lower()}"
        if "file_format" in mine:
            already = mine["file_format"].astype(str).str.upper().isin(
                ("JPEG", "MPO") if fmt == "JPEG" else ("PNG",))
            tested = runner.choose(mine.loc[~already, "index"].to_numpy())
        if not tested:
            return None
        return _Plan(edit, lambda: runner.run_edit(edit, tested, None, fmt, None),
                     lambda: runner.run_edit(edit, control, None, fmt, None), control_label,
                     paired=False)
    return _Plan(edit, lambda: runner.run_edit(edit, tested, region, None, None),
                 lambda: runner.run_edit(edit, control, region, None, None), control_label,
                 paired=False, elsewhere=elsewhere, region_key=key, left_out=left_out)


def _confirming_flag(flag: Flag, name: str, best: tuple[float, str, EditOutcome, dict[str, Any]],
                     records: list[dict[str, Any]], paths: pd.Series | None) -> Flag:
    effect, edit, outcome, record = best
    order = np.argsort(-outcome.drops, kind="stable")
    flipped = [outcome.positions[i] for i in order if outcome.flipped[i]]
    listed = [str(paths.get(p, p)) if paths is not None else str(p) for p in flipped]
    where = f"class {flag.class_name}" if flag.class_name is not None else "the data set"
    control = f"control {record['control_flip_rate']:.0%}"
    if record.get("elsewhere_flip_rate") is not None:
        control += f", same area elsewhere {record['elsewhere_flip_rate']:.0%}"
    message = (f"class {name}: {_DESCRIPTIONS[edit]} flips {record['flip_rate']:.0%} of correct "
               f"predictions ({control}), confirming {flag.kind} of {where}")
    evidence = {
        "confirms": {"kind": flag.kind, "class": flag.class_name},
        "edit": edit,
        "edits": [r for r in records if r["confirmed"]],
        "rule": f"flip-rate or probability-drop difference >= {MIN_EFFECT} over the control and "
                "over the same edit elsewhere on the same images, one-sided tests (paired: "
                "McNemar / Wilcoxon signed-rank; unpaired: Fisher exact / Mann-Whitney U), "
                f"Benjamini-Hochberg q <= {FDR} over every edit of the audit; see "
                "auditor.detect.interventions",
        "score_meaning": "largest confirming difference over the control (flip rate or mean "
                         "probability drop of the label)",
    }
    return Flag(kind="intervention_sensitive", severity=_severity(effect, record["n"]),
                class_name=name, score=float(effect), message=message, evidence=evidence,
                samples=listed[:MAX_SAMPLES_LISTED])
