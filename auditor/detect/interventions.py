"""Confirmation by intervention: edit what a flag blames, re-run the model, count what changes.

For each flag of a testable kind and each class it concerns (a class flag: its class; a
data-set-wide flag: every class), up to MAX_PER_CLASS readable, correctly predicted samples of
the class (a seeded choice) are edited and re-classified (batched, float32, inference mode):

| flag kind | edits |
|---|---|
| background_attention | background_constant (mean colour), background_blur (Gaussian, |
| | sigma 10% of the longer side), background_swap (another class's background) |
| border_attention, border_pixels_shortcut | border_blank (the band in the mean colour) |
| fixed_location | box_blank (the flag's box in the mean colour), box_swap (the same box of |
| | another class's image) |
| metadata_shortcut | format_to_jpeg (re-encoded as JPEG quality 75) or format_to_png (JPEG |
| | re-encoded as PNG), by the class's most common format |

The mean colour is the per-channel mean of up to MEAN_COLOUR_SAMPLES readable inputs (seeded).
Background edits need the object: the mask (or box) when the sample has one, else
`auditor.data.foreground.estimate_foreground`; samples whose object is empty or the whole image
are left out. The box of a fixed_location flag is its `evidence["region_box"]` (x0, y0, x1, y1
in [0, 1]; "box" also read); without one, a box of BOX_SIDE around the
class's median attention peak. A format edit decodes the file as the loader does, re-encodes
it, decodes and resizes it again (`auditor.data.edits.reencode`); JPEG -> PNG is lossless, so
it changes no pixel and can only confirm nothing: it stays as a built-in null.

**Per sample.** Only samples the model (float32, here) classifies correctly count: `flipped`
when the edited input is no longer classified as its label; `prob_drop` = p(label | original)
- p(label | edited). In a multi-label run each row is an (image, label) pair, p is the label's
sigmoid, "correct" means p >= the run's threshold and `flipped` that the edit takes it below.

**Control.** The same edit on samples that should not care: by default up to MAX_PER_CLASS
samples of the other classes that carry no flag of the same kind (all other classes for a
data-set-wide flag, or when every class is flagged), highest fg_energy first. For the swaps
(background_swap, box_swap) the control is a swap within the class (each tested sample gets the
background, or box, of another sample of its own class): the same compositing, only the class of
the donor differs. A donor's own object is painted over in its mean background colour first, so
no object of another sample is pasted in. For format edits the control is the other classes'
samples re-encoded to the same format.

**Rule.** An edit confirms the flag for the class when n >= MIN_N and control_n >= MIN_N and
either `flip_rate - control_flip_rate >= MIN_EFFECT` with a one-sided Fisher exact test
p < ALPHA / 2, or `prob_drop_mean - control_prob_drop_mean >= MIN_EFFECT` with a one-sided
Mann-Whitney U test p < ALPHA / 2 (Bonferroni over the two tests; the record's `p_value` is
2 x the smaller p, capped at 1). Each confirmed (flag, class) raises one
`intervention_sensitive` flag; `score` = the largest confirming difference (effect) over its
edits; severity:

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

from auditor.data.edits import blank_border, fill_box, reencode, replace_background
from auditor.data.foreground import estimate_foreground
from auditor.data.members import sample_bytes
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
ALPHA = 0.01
FULL_SEVERITY_N = 20
BOX_SIDE = 0.25
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
class _Outcome:
    """One edit measured on a set of samples: flipped bool [n], prob_drop float [n]."""

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

    def choose(self, positions: np.ndarray, cap: int = MAX_PER_CLASS) -> list[int]:
        if len(positions) > cap:
            positions = np.sort(self.rng.choice(positions, size=cap, replace=False))
        return [int(p) for p in positions]

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
                edited: torch.Tensor) -> _Outcome:
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
        return _Outcome(kept, flipped.numpy()[keep], drop.numpy()[keep].astype(np.float64))

    # --- edits ------------------------------------------------------------------------------
    def run_edit(self, edit: str, positions: list[int], box: tuple[float, ...] | None,
                 fmt: str | None, donors: list[int] | None) -> _Outcome:
        """Apply one edit to the samples at `positions` and measure it."""
        need_fg = edit.startswith("background")
        kept, images, masks = self.load(positions, need_fg)
        if not kept:
            return _Outcome([], np.zeros(0, dtype=bool), np.zeros(0))
        images = images.to(self.device)
        masks = masks.to(self.device) if masks is not None else None
        if edit == "background_constant":
            edited = replace_background(images, masks, self.mean_colour)
        elif edit == "background_blur":
            edited = replace_background(images, masks, "blur")
        elif edit in ("background_swap", "box_swap"):
            backgrounds = self._backgrounds(len(kept), donors)
            if backgrounds is None:
                return _Outcome([], np.zeros(0, dtype=bool), np.zeros(0))
            edited = replace_background(images, masks, backgrounds) \
                if edit == "background_swap" else fill_box(images, box, backgrounds)
        elif edit == "border_blank":
            edited = blank_border(images, self.config.border, self.mean_colour)
        elif edit == "box_blank":
            edited = fill_box(images, box, self.mean_colour)
        elif edit.startswith("format_to_"):
            kept, images, edited = self._reencoded(kept, images, fmt or "JPEG")
            if not kept:
                return _Outcome([], np.zeros(0, dtype=bool), np.zeros(0))
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


def _statistics(test: _Outcome, control: _Outcome) -> dict[str, Any]:
    """Rates, differences, one-sided p-values and the decision for one edit (module rule)."""
    record: dict[str, Any] = {
        "n": test.n,
        "flip_rate": float(test.flipped.mean()) if test.n else None,
        "prob_drop_mean": float(test.drops.mean()) if test.n else None,
        "control_n": control.n,
        "control_flip_rate": float(control.flipped.mean()) if control.n else None,
        "control_prob_drop_mean": float(control.drops.mean()) if control.n else None,
        "p_flip": None, "p_drop": None, "p_value": None, "effect": 0.0, "confirmed": False,
    }
    if test.n < MIN_N or control.n < MIN_N:
        record["note"] = f"too few correctly classified samples (need {MIN_N} edited and control)"
        return record
    flips, control_flips = int(test.flipped.sum()), int(control.flipped.sum())
    p_flip = float(stats.fisher_exact(
        [[flips, test.n - flips], [control_flips, control.n - control_flips]],
        alternative="greater")[1])
    p_drop = float(stats.mannwhitneyu(test.drops, control.drops, alternative="greater").pvalue)
    diff_flip = record["flip_rate"] - record["control_flip_rate"]
    diff_drop = record["prob_drop_mean"] - record["control_prob_drop_mean"]
    passing = [d for d, p in ((diff_flip, p_flip), (diff_drop, p_drop))
               if d >= MIN_EFFECT and p < ALPHA / 2]
    record.update(p_flip=p_flip, p_drop=p_drop, p_value=min(1.0, 2 * min(p_flip, p_drop)),
                  effect=float(max(passing)) if passing else float(max(diff_flip, diff_drop)),
                  confirmed=bool(passing))
    return record


def _sentence(edit: str, record: dict[str, Any]) -> str:
    if record["n"] < MIN_N or record["control_n"] < MIN_N:
        return f"{_DESCRIPTIONS[edit]}: not tested ({record['n']} samples, control " \
               f"{record['control_n']})"
    return (f"{_DESCRIPTIONS[edit]}: {record['flip_rate']:.0%} flipped vs "
            f"{record['control_flip_rate']:.0%} control, probability drop "
            f"{record['prob_drop_mean']:.2f} vs {record['control_prob_drop_mean']:.2f} "
            f"(n={record['n']}, p={record['p_value']:.2g})")


def _flag_box(flag: Flag, runner: _Runner) -> tuple[float, float, float, float]:
    """The fixed_location box in [0, 1]: evidence["region_box"] (or "box"), else BOX_SIDE around
    the class's median attention peak."""
    box = flag.evidence.get("region_box", flag.evidence.get("box"))
    if box is not None and len(box) == 4 and all(math.isfinite(float(v)) for v in box):
        return tuple(float(v) for v in box)  # type: ignore[return-value]
    rows = runner.ok[runner.ok["label"] == flag.class_name]
    cx = float(np.nanmedian(rows["peak_x"].to_numpy(dtype=float))) if len(rows) else 0.5
    cy = float(np.nanmedian(rows["peak_y"].to_numpy(dtype=float))) if len(rows) else 0.5
    half = BOX_SIDE / 2
    x0, y0 = min(max(cx - half, 0.0), 1 - BOX_SIDE), min(max(cy - half, 0.0), 1 - BOX_SIDE)
    return (x0, y0, x0 + BOX_SIDE, y0 + BOX_SIDE)


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
    measured: dict[tuple, tuple[_Outcome, _Outcome]] = {}
    for flag in testable:
        flagged = {f.class_name for f in flags if f.kind == flag.kind}
        tested_classes = [flag.class_name] if flag.class_name is not None else classes
        notes, confirmed_notes = [], []
        for name in tested_classes:
            mine = runner.eligible[runner.eligible["label"] == name]
            if mine.empty:
                continue
            best: tuple[float, str, _Outcome, dict[str, Any]] | None = None
            records = []
            for edit in EDITS_BY_KIND[flag.kind]:
                plan = _plan(edit, flag, name, mine, runner, flagged)
                if plan is None:
                    continue
                edit_name, run_test, run_control, control_label = plan
                key = (name, edit_name, control_label)
                if key not in measured:
                    measured[key] = (run_test(), run_control())
                test, control = measured[key]
                record = {"class": name, "edit": edit_name,
                          "description": _DESCRIPTIONS[edit_name], **_statistics(test, control),
                          "confirms": flag.kind, "flag_class": flag.class_name,
                          "control": control_label}
                records.append(record)
                sentence = _sentence(edit_name, record)
                notes.append(f"{name}: {sentence}" if flag.class_name is None else sentence)
                if record["confirmed"]:
                    confirmed_notes.append(notes[-1])
                    if best is None or record["effect"] > best[0]:
                        best = (record["effect"], edit_name, test, record)
            result.records.extend(records)
            if best is not None:
                result.flags.append(_confirming_flag(flag, name, best, records, paths))
        if notes:
            flag.evidence["intervention_tests"] = notes
        if confirmed_notes:
            flag.evidence["confirmed_by"] = "; ".join(confirmed_notes)
    for record in result.records:
        record["effect"] = round(record["effect"], 4)
    return result


def _plan(
    edit: str, flag: Flag, name: str, mine: pd.DataFrame, runner: _Runner, flagged: set,
) -> tuple[str, Callable[[], _Outcome], Callable[[], _Outcome], str] | None:
    """(edit name, test thunk, control thunk, control description), or None when the edit
    does not apply (a class already in the target format)."""
    eligible = runner.eligible
    others = eligible[eligible["label"] != name]
    unflagged = others[~others["label"].isin(flagged)]
    pool, control_label = (unflagged, "unflagged classes") \
        if None not in flagged and not unflagged.empty else (others, "other classes")
    pool = pool.sort_values("fg_energy", ascending=False, na_position="last") \
        if "fg_energy" in pool else pool
    control = [int(p) for p in pool["index"].to_numpy()[:MAX_PER_CLASS]]
    tested = runner.choose(mine["index"].to_numpy())
    box = _flag_box(flag, runner) if edit.startswith("box_") else None
    if edit in ("background_swap", "box_swap"):
        donors = runner.choose(runner.ok.loc[runner.ok["label"] != name, "index"].to_numpy())
        runner.rng.shuffle(donors)
        within = tested[1:] + tested[:1]  # each sample gets a class mate's background or box
        return (edit, lambda: runner.run_edit(edit, tested, box, None, donors),
                lambda: runner.run_edit(edit, tested, box, None, within), "same class")
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
        return (edit, lambda: runner.run_edit(edit, tested, None, fmt, None),
                lambda: runner.run_edit(edit, control, None, fmt, None), control_label)
    return (edit, lambda: runner.run_edit(edit, tested, box, None, None),
            lambda: runner.run_edit(edit, control, box, None, None), control_label)


def _confirming_flag(flag: Flag, name: str, best: tuple[float, str, _Outcome, dict[str, Any]],
                     records: list[dict[str, Any]], paths: pd.Series | None) -> Flag:
    effect, edit, outcome, record = best
    order = np.argsort(-outcome.drops, kind="stable")
    flipped = [outcome.positions[i] for i in order if outcome.flipped[i]]
    listed = [str(paths.get(p, p)) if paths is not None else str(p) for p in flipped]
    where = f"class {flag.class_name}" if flag.class_name is not None else "the data set"
    message = (f"class {name}: {_DESCRIPTIONS[edit]} flips {record['flip_rate']:.0%} of correct "
               f"predictions (control {record['control_flip_rate']:.0%}), confirming "
               f"{flag.kind} of {where}")
    evidence = {
        "confirms": {"kind": flag.kind, "class": flag.class_name},
        "edit": edit,
        "edits": [r for r in records if r["confirmed"]],
        "rule": "flip-rate or probability-drop difference over the control >= "
                f"{MIN_EFFECT} with one-sided p < {ALPHA / 2} (Fisher exact / Mann-Whitney U); "
                "see auditor.detect.interventions",
        "score_meaning": "largest confirming difference over the control (flip rate or mean "
                         "probability drop of the label)",
    }
    return Flag(kind="intervention_sensitive", severity=_severity(effect, record["n"]),
                class_name=name, score=float(effect), message=message, evidence=evidence,
                samples=listed[:MAX_SAMPLES_LISTED])
