"""After the pass: detectors, per-sample suspicion, what the report shows, summary.json, report.

Reads the merged run directory (never holds more than the per-sample table and the
feature-resolution maps of the readable samples, float32 [N, h, w]).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from auditor.detect.attention import attention_flags, class_statistics
from auditor.detect.clusters import cluster_maps
from auditor.detect.flags import Flag, flag_sort_key
from auditor.detect.location import fixed_location_flags
from auditor.detect.per_label import label_sets, one_error_row_per_file
from auditor.detect.probe_run import probe_samples
from auditor.detect.suspicion import sample_flag_codes, suspicion_scores, top_suspects
from auditor.run import PassContext, PhaseTimer
from auditor.store import (
    RunReader,
    clear_suspect_maps,
    write_class_means,
    write_samples,
    write_suspect_map,
    write_thumb,
)
from auditor.summary import DataFacts, ModelFacts, Summary, accuracy, write_summary

if TYPE_CHECKING:
    from auditor.data import AuditDataset

log = logging.getLogger("auditor")

#: Samples per class whose inputs are averaged into the report's mean image.
MEAN_IMAGE_SAMPLES = 64


def analyse_run(run_dir: Path, context: PassContext, timer: PhaseTimer) -> dict[str, Any]:
    """Run the detectors on a merged run directory, write summary.json and report.html;
    returns the summary.json object."""
    config = context.config
    index = context.index
    classes: list[str] = index.classes
    reader = RunReader(run_dir)
    samples = reader.samples().copy()
    if config.multi_label:
        samples = one_error_row_per_file(samples)
    ok = samples[samples["status"] == "ok"]
    primary = config.primary_method
    with timer.phase("detect"):
        maps = reader.load_maps(ok["index"].tolist(), primary)
        flags = attention_flags(samples, classes)
        flags += fixed_location_flags(samples, maps, classes)
        clusters = cluster_maps(samples, maps, classes, seed=config.seed)
        probes = probe_samples(
            samples, reader, classes, config.border, config.seed, config.multi_label
        )
        if probes is not None:
            flags += probes.flags
        if config.interventions:
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
    samples["suspicion"] = suspicion_scores(samples)
    samples["flags"] = sample_flag_codes(samples, flags)
    write_samples(run_dir, samples)
    suspects = top_suspects(samples, config.gallery_size)
    with timer.phase("figures"):
        _write_class_means(run_dir, samples, maps, context.dataset, len(classes))
        _write_thumbs(run_dir, samples, context.dataset, suspects)
    clear_suspect_maps(run_dir)  # maps of an earlier analysis may belong to other suspects
    suspect_methods: list[str] = []
    suspect_errors: dict[str, str] = {}
    if config.suspect_methods:
        with timer.phase("suspect maps"):
            suspect_methods, suspect_errors = write_suspect_maps(run_dir, suspects, context)
    summary = Summary(
        command=context.command,
        config=config.to_dict(),
        model=model_facts(context),
        data=DataFacts.of(samples, index.root, index.classes, index.warnings, config.data,
                          multi_label=index.multi_label),
        methods=list(config.methods),
        primary=primary,
        suspect_methods=suspect_methods,
        suspect_methods_errors=suspect_errors,
        accuracy=label_metrics(samples, classes, config.threshold)
        if config.multi_label else accuracy(samples, classes),
        class_stats=class_statistics(samples, classes),
        probes=probes.to_dict() if probes is not None else None,
        interventions=interventions,
        clusters=clusters,
        sanity=sanity,
        flags=[f.to_dict() for f in sorted(flags, key=_flag_order)],
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
    write_summary(run_dir, summary)  # again, with the report's time
    return summary.to_dict()


def _flag_order(flag: Flag) -> tuple[int, float]:
    return flag_sort_key(flag.severity, flag.score)


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


def model_facts(context: PassContext) -> ModelFacts:
    """The model section of summary.json."""
    loaded = context.loaded
    return ModelFacts(
        spec=loaded.spec,
        weights=loaded.weights,
        weights_sha256=loaded.weights_sha256,
        parameters=loaded.parameters,
        outputs=context.num_outputs,
        target_layers=list(context.layers),
        target_layers_given=context.layers_given,
        warnings=[context.layer_warning] if context.layer_warning else [],
        input_size=list(context.config.image_size),
        device=str(context.device),
    )


def _write_class_means(
    run_dir: Path, samples: pd.DataFrame, maps: np.ndarray, dataset: AuditDataset, k: int
) -> None:
    """Mean max-normalised primary map per class (all readable samples) over the mean input of
    up to MEAN_IMAGE_SAMPLES samples of the class."""
    ok = samples[samples["status"] == "ok"].reset_index(drop=True)
    if ok.empty or maps.size == 0:
        return
    finite = np.nan_to_num(maps, nan=0.0, posinf=0.0, neginf=0.0)
    peak = finite.reshape(len(finite), -1).max(axis=1)
    norm = finite / np.where(peak > 0, peak, 1.0)[:, None, None]
    mean_map = np.zeros((k, *maps.shape[1:]), dtype=np.float32)
    images = None
    for c in range(k):
        rows = np.flatnonzero(ok["label_index"].to_numpy() == c)
        if rows.size == 0:
            continue
        mean_map[c] = norm[rows].mean(axis=0)
        acc = None
        for r in rows[:MEAN_IMAGE_SAMPLES]:
            item = dataset[int(ok.at[r, "index"])]
            if item["ok"]:
                img = item["image"].numpy().astype(np.float64)
                acc = img if acc is None else acc + img
        if acc is not None:
            mean = (acc / min(rows.size, MEAN_IMAGE_SAMPLES)).transpose(1, 2, 0)
            if images is None:
                images = np.zeros((k, *mean.shape), dtype=np.uint8)
            images[c] = np.clip(mean.round(), 0, 255).astype(np.uint8)
    if images is not None:
        write_class_means(run_dir, images, mean_map)


def _write_thumbs(
    run_dir: Path, samples: pd.DataFrame, dataset: AuditDataset, suspects: pd.DataFrame
) -> None:
    """Store the inputs the report shows: the gallery's suspects and a few samples per class."""
    ok = samples[samples["status"] == "ok"]
    chosen = set(suspects["index"].tolist())
    for _, group in ok.groupby("label"):
        chosen.update(group["index"].head(4).tolist())
    for position in sorted(chosen):
        item = dataset[int(position)]
        if item["ok"]:
            mask = item["mask"].numpy().astype(bool) if item["has_mask"] else None
            write_thumb(run_dir, int(position), item["image"].permute(1, 2, 0).numpy(), mask)


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
    import torch

    from auditor.cams import reshape_from_spec
    from auditor.cams.compute import compute_maps
    from auditor.runtime import normalise_images

    config = context.config
    dataset = context.dataset
    device = context.device
    reshape = reshape_from_spec(config.reshape)
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
