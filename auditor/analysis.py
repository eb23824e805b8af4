"""After the pass: detectors, per-sample suspicion, what the report shows, summary.json, report.

Reads the merged run directory (never holds more than the per-sample table and the
feature-resolution maps of the readable samples, float32 [N, h, w]).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch

from auditor.class_image_sums import MEAN_IMAGE_SAMPLES, first_per_class, stored_class_sums
from auditor.detect.attention import (
    annotate_border_sides,
    background_attention_tests,
    border_attention_tests,
    class_statistics,
    degenerate_maps_flags,
)
from auditor.detect.clusters import cluster_maps
from auditor.detect.fdr import control_fdr
from auditor.detect.flags import Flag, flag_sort_key
from auditor.detect.location import fixed_location_tests
from auditor.detect.model_check import ModelCheck, check_model, withheld
from auditor.detect.per_label import label_sets, one_error_row_per_file
from auditor.detect.probe_run import probe_samples
from auditor.detect.suspicion import sample_flag_codes, suspicion_scores, top_suspects
from auditor.first_thumbs import THUMBS_PER_CLASS, stored_thumbs
from auditor.models.initial import random_weights_note
from auditor.run import PassContext, PhaseTimer
from auditor.store import (
    RunReader,
    clear_suspect_maps,
    write_class_means,
    write_samples,
    write_suspect_map,
    write_thumb,
)
from auditor.summary import (
    DataFacts,
    ModelFacts,
    Summary,
    accuracy,
    write_summary,
    write_timings,
)

if TYPE_CHECKING:
    from auditor.data import AuditDataset

log = logging.getLogger("auditor")

#: Inputs loaded for the figures above which loader workers are started (a spawned worker
#: costs seconds to start).
PARALLEL_LOAD_ITEMS = 4096
#: Items per batch when loading the figures' inputs.
LOAD_BATCH = 256
#: Rows of maps normalised at a time for the class means (bounds the working memory).
MEAN_BLOCK_ROWS = 65_536


def analyse_run(run_dir: Path, context: PassContext, timer: PhaseTimer) -> dict[str, Any]:
    """Run the detectors on a merged run directory, write summary.json and report.html;
    returns the summary.json object."""
    config = context.config
    index = context.index
    classes: list[str] = index.classes
    reader = RunReader(run_dir)
    # A shallow copy: the columns added below are this frame's only, and the reader's table is
    # not held twice (copy on write: neither sees the other's changes).
    samples = reader.samples().copy(deep=False)
    if config.multi_label:
        samples = one_error_row_per_file(samples)
    primary = config.primary_method
    with timer.phase("detect"):
        maps = reader.load_maps(samples.loc[samples["status"] == "ok", "index"], primary)
        # Every class-level test of every rule is one Benjamini-Hochberg family.
        tests = (background_attention_tests(samples, classes)
                 + border_attention_tests(samples, classes)
                 + fixed_location_tests(samples, maps, classes))
        flags = control_fdr(tests) + degenerate_maps_flags(samples, classes)
        annotate_border_sides(flags, samples, maps, config.border)
        clusters = cluster_maps(samples, maps, classes, seed=config.seed, workers=config.workers)
        probes = probe_samples(
            samples, reader, classes, config.border, config.seed, config.multi_label
        )
        if probes is not None:
            flags += probes.flags
        # The model before the data: a model at chance or with permuted outputs makes its
        # class-level flags no evidence, and its predictions nothing to intervene on.
        # Top-1 against chance: single-label runs only.
        model_check = (ModelCheck.not_run() if config.multi_label
                       else check_model(samples, classes, context.num_outputs))
        flags, withheld_flags = withheld(flags, model_check)
        for flag in model_check.flags:
            log.warning("%s", flag.message)
        if config.interventions and not model_check.flags:
            from auditor.detect.interventions import run_interventions

            found = run_interventions(samples, flags, context.model, context.dataset,
                                      config, context.device)
            flags += found.flags
            interventions = found.records
        else:
            interventions = None
    sanity = None
    if config.sanity:
        from auditor.sanity import sanity_from_dataset

        with timer.phase("sanity"):
            sanity = sanity_from_dataset(
                context.model,
                context.dataset,
                config.methods,
                context.layers,
                config.mean,
                config.std,
                n_samples=16,
                seed=config.seed,
            )
    samples["suspicion"] = suspicion_scores(samples, flags)
    samples["flags"] = sample_flag_codes(samples, flags)
    write_samples(run_dir, samples)
    suspects = top_suspects(samples, config.gallery_size)
    with timer.phase("figures"):
        _write_figures(run_dir, samples, maps, context.dataset, len(classes), suspects,
                       config.workers)
    clear_suspect_maps(run_dir)  # maps of an earlier analysis may belong to other suspects
    suspect_methods: list[str] = []
    suspect_errors: dict[str, str] = {}
    if config.suspect_methods:
        with timer.phase("suspect maps"):
            suspect_methods, suspect_errors = write_suspect_maps(run_dir, suspects, context)
    summary = Summary(
        command=context.command,
        config=config.to_dict(),
        model=model_facts(context, model_check),
        data=DataFacts.of(samples, index.root, index.classes, index.warnings, index.source,
                          multi_label=index.multi_label),
        methods=list(config.methods),
        primary=primary,
        suspect_methods=suspect_methods,
        suspect_methods_errors=suspect_errors,
        accuracy=label_metrics(samples, classes, config.threshold)
        if config.multi_label else accuracy(samples, classes),
        model_check=model_check.to_dict(),
        class_stats=class_statistics(samples, classes),
        probes=probes.to_dict() if probes is not None else None,
        interventions=interventions,
        clusters=clusters,
        sanity=sanity,
        flags=[f.to_dict() for f in sorted(flags, key=_flag_order)],
        withheld_flags=[f.to_dict() for f in sorted(withheld_flags, key=_flag_order)],
        pass_stats=context.stats,
        timings=timer.timings,
    )
    if config.baseline is not None:
        from auditor.compare import baseline_record

        summary.baseline = baseline_record(summary.flags, config.baseline, samples)
    write_summary(run_dir, summary)
    with timer.phase("report"):
        from auditor.report import render_report, write_samples_csv

        render_report(run_dir, gallery_size=config.gallery_size)
        write_samples_csv(run_dir)
    write_timings(run_dir, summary.timings)  # the report's time
    return summary.to_dict()


def _flag_order(flag: Flag) -> tuple[int, float]:
    return flag_sort_key(flag.severity, flag.score, flag.kind)


def label_metrics(samples: pd.DataFrame, classes: list[str], threshold: float) -> dict[str, Any]:
    """Per-label precision, recall and AUROC of a multi-label run, one row per readable image.

    A label is predicted when its sigmoid probability (``scores``) is >= ``threshold``.
    precision = TP / (TP + FP) (None without a prediction), recall = TP / (TP + FN) (None
    without a positive image), AUROC from the probabilities (None unless both occur).
    ``overall`` stays None: top-1 accuracy does not apply; ``macro_auroc`` is the mean AUROC.
    """
    from sklearn.metrics import roc_auc_score

    images = samples[samples["status"] == "ok"].drop_duplicates("path")
    scores = np.stack(images["scores"].to_numpy()) if len(images) else np.zeros((0, len(classes)))
    truth = np.zeros(scores.shape, dtype=bool)
    for row, labels in enumerate(label_sets(images["labels"], classes)):
        truth[row, list(labels)] = True
    predicted = scores >= threshold
    per_label: dict[str, dict[str, Any]] = {}
    for k, name in enumerate(classes):
        tp = int((predicted[:, k] & truth[:, k]).sum())
        n_pred, n_pos = int(predicted[:, k].sum()), int(truth[:, k].sum())
        both = 0 < n_pos < len(truth)
        per_label[name] = {
            "n_positive": n_pos,
            "precision": tp / n_pred if n_pred else None,
            "recall": tp / n_pos if n_pos else None,
            "auroc": float(roc_auc_score(truth[:, k], scores[:, k])) if both else None,
        }
    aurocs = [m["auroc"] for m in per_label.values() if m["auroc"] is not None]
    return {
        "multi_label": True,
        "threshold": threshold,
        "n_images": len(images),
        "overall": None,
        "macro_auroc": float(np.mean(aurocs)) if aurocs else None,
        "per_label": per_label,
        # Recall per label: what the report's per-class accuracy column shows.
        "per_class": {name: m["recall"] for name, m in per_label.items()},
    }


def model_facts(context: PassContext, check: ModelCheck) -> ModelFacts:
    """The model section of summary.json; `warnings` are the report's notes on the model."""
    loaded = context.loaded
    notes = [random_weights_note(loaded.spec)] if context.random_weights else []
    if context.layer_warning:
        notes.append(context.layer_warning)
    if check.flags and context.config.interventions:
        notes.append(f"interventions were not run: the model check raised "
                     f"{' and '.join(f.kind for f in check.flags)}, so there are no "
                     "predictions to confirm a shortcut with")
    return ModelFacts(
        spec=loaded.spec,
        weights=loaded.weights,
        weights_sha256=loaded.weights_sha256,
        parameters=loaded.parameters,
        outputs=context.num_outputs,
        target_layers=list(context.layers),
        target_layers_given=context.layers_given,
        warnings=notes,
        random_weights=context.random_weights,
        input_size=list(context.config.image_size),
        device=str(context.device),
    )


def _write_figures(
    run_dir: Path, samples: pd.DataFrame, maps: np.ndarray, dataset: AuditDataset, k: int,
    suspects: pd.DataFrame, workers: int | None,
) -> None:
    """The thumbnails the report shows (_thumb_indices) and class_means.npz: per class, the
    mean max-normalised primary map of all readable samples (class_mean_maps) over the mean
    input of its first MEAN_IMAGE_SAMPLES readable samples; one loading of the inputs, less
    those the pass summed or wrote already (auditor.class_image_sums, auditor.first_thumbs)."""
    ok = samples.loc[samples["status"] == "ok", ["index", "label", "label_index"]]
    labels = ok["label_index"].to_numpy(dtype=np.int64)
    averaged = first_per_class(labels, MEAN_IMAGE_SAMPLES)
    shown = _thumb_indices(ok, suspects)
    thumbs = shown[~stored_thumbs(run_dir, shown)]  # the pass wrote the others (first_thumbs)
    indices = ok["index"].to_numpy(dtype=np.int64)
    sums: torch.Tensor | None = None
    summed = np.zeros(0, dtype=np.int64)
    if maps.size:
        sums, summed = stored_class_sums(run_dir, indices[averaged], labels[averaged], k,
                                         (3, *dataset.image_size))
    wanted = (np.union1d(np.setdiff1d(indices[averaged], summed), thumbs) if maps.size
              else thumbs)
    # Class of each wanted input, -1 for one that is only a thumbnail (no maps: no means) or
    # whose input the pass summed.
    row_of = pd.Index(indices).get_indexer(wanted)
    meaned = (row_of >= 0) & averaged[row_of] & bool(maps.size) & ~np.isin(wanted, summed)
    wanted_class = np.where(meaned, labels[row_of], -1)
    for batch in _load_inputs(dataset, wanted, workers):
        index = np.asarray(batch["index"], dtype=np.int64)
        readable = batch["ok"].bool().numpy()
        for row in np.flatnonzero(readable & np.isin(index, thumbs)):
            mask = batch["mask"][row].numpy().astype(bool) if batch["has_mask"][row] else None
            write_thumb(run_dir, int(index[row]), batch["image"][row].permute(1, 2, 0).numpy(),
                        mask)
        classes = wanted_class[np.searchsorted(wanted, index)]
        mean_rows = readable & (classes >= 0)
        if mean_rows.any():
            if sums is None:
                # uint8 sums of at most MEAN_IMAGE_SAMPLES images are exact in float32.
                sums = torch.zeros((k, *batch["image"].shape[1:]), dtype=torch.float32)
            sums.index_add_(0, torch.from_numpy(classes[mean_rows]),
                            batch["image"][torch.from_numpy(mean_rows)].float())
    if sums is None:
        return
    # Divided by every chosen sample, readable or not, as the mean always was.
    counts = np.bincount(labels[labels >= 0], minlength=k)[:k]
    mean = sums.double().numpy() / np.minimum(counts, MEAN_IMAGE_SAMPLES).clip(min=1)[
        :, None, None, None]
    images = np.clip(mean.round(), 0, 255).astype(np.uint8).transpose(0, 2, 3, 1)
    write_class_means(run_dir, np.ascontiguousarray(images), class_mean_maps(maps, labels, k))


def _thumb_indices(ok: pd.DataFrame, suspects: pd.DataFrame) -> np.ndarray:
    """Sample indices whose inputs the report shows: the gallery's suspects and the first few
    readable samples of each class."""
    first = ok.groupby("label", sort=False).head(THUMBS_PER_CLASS)["index"].to_numpy()
    return np.union1d(first, suspects["index"].to_numpy()).astype(np.int64)


def _load_inputs(
    dataset: AuditDataset, indices: np.ndarray, workers: int | None
) -> Iterator[dict[str, Any]]:
    """Batches (collate_samples) of the dataset items `indices`, through the pass's loader:
    worker processes only when there are enough items to repay starting them."""
    from auditor.data import make_loader

    if len(indices) == 0:
        return iter(())
    workers = 0 if len(indices) < PARALLEL_LOAD_ITEMS else workers
    return iter(make_loader(dataset, LOAD_BATCH, workers, indices=[int(i) for i in indices]))


def class_mean_maps(maps: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """Mean of each class's max-normalised maps: float32 [k, h, w] (zeros for a class without
    maps). maps: float [N, h, w] (non-finite values count as 0; a map whose max is not
    positive is left undivided); labels: int [N] class of each map, -1 for none.

    One pass in blocks of rows (grouped sums, float64): memory is a block, not rows x classes.
    """
    sums = np.zeros((k, int(np.prod(maps.shape[1:]))), dtype=np.float64)
    for start in range(0, len(maps), MEAN_BLOCK_ROWS):
        block = np.nan_to_num(np.asarray(maps[start : start + MEAN_BLOCK_ROWS], np.float32),
                              nan=0.0, posinf=0.0, neginf=0.0).reshape(-1, sums.shape[1])
        peak = block.max(axis=1)
        block /= np.where(peak > 0, peak, 1.0)[:, None]
        mine = labels[start : start + MEAN_BLOCK_ROWS]
        keep = (mine >= 0) & (mine < k)
        torch.from_numpy(sums).index_add_(
            0, torch.from_numpy(mine[keep]), torch.from_numpy(block[keep].astype(np.float64)))
    counts = np.bincount(labels[(labels >= 0) & (labels < k)], minlength=k)
    mean = sums / np.maximum(counts, 1)[:, None]
    return mean.reshape(k, *maps.shape[1:]).astype(np.float32)


def write_suspect_maps(
    run_dir: Path, suspects: pd.DataFrame, context: PassContext
) -> tuple[list[str], dict[str, str]]:
    """Compute config.suspect_methods for the gallery's suspects and store one map per suspect
    and method (store.write_suspect_map), at the method's native resolution.

    Each suspect is explained for its `target_index` (the class the pass explained). Batches
    of config.batch_size suspects are decoded, normalised on context.device and passed
    through cams.compute.compute_maps one method at a time, so a method that fails (e.g. guided
    backprop on an unusual model) only loses its own maps: it is logged and returned.

    Returns:
        (methods whose maps were stored, {failed method: reason}).
    """
    from auditor.cams import reshape_from_spec
    from auditor.cams.compute import compute_maps
    from auditor.runtime import normalise_images

    config = context.config
    dataset = context.dataset
    device = context.device
    reshape = reshape_from_spec(config.reshape, context.model, config.image_size)
    errors: dict[str, str] = {}
    rows = suspects[suspects["target_index"] >= 0]
    if rows.empty:
        return [], errors
    for start in range(0, len(rows), config.batch_size):
        chunk = rows.iloc[start : start + config.batch_size]
        items = [dataset[int(i)] for i in chunk["index"]]
        keep = [k for k, item in enumerate(items) if item["ok"]]
        if not keep:
            continue
        images = normalise_images(
            torch.stack([items[k]["image"] for k in keep]), config.mean, config.std, device
        )
        targets = torch.as_tensor(chunk["target_index"].to_numpy()[keep], device=device)
        for method in config.suspect_methods:
            if method in errors:
                continue
            try:
                maps = compute_maps(
                    context.model, images, targets, [method],
                    target_layer=context.layers, reshape=reshape,
                    batch_size=config.batch_size, occlusion_patch=config.occlusion_patch,
                    scorecam_channels=config.scorecam_channels,
                )[method].cpu().numpy()
            except Exception as exc:  # any model error: the run keeps its other results
                errors[method] = f"{type(exc).__name__}: {str(exc)[:300]}"
                log.warning("suspect maps: %s failed and is left out (%s)", method,
                            errors[method])
                clear_suspect_maps(run_dir, method)
                continue
            for k, cam in zip(keep, maps, strict=True):
                write_suspect_map(run_dir, method, int(chunk["index"].iloc[k]), cam)
    return [m for m in config.suspect_methods if m not in errors], errors
