"""`run_audit`: the whole audit of one model on one data set, from options to report.

prepare (data index, model, target layer, run directory) -> the pass (pipeline.run_pass)
-> analysis (detectors, summary, report; auditor.analysis). Each phase's duration is logged and
stored in summary.json.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from auditor import distributed
from auditor.analysis import analyse_run
from auditor.cams import reshape_from_spec
from auditor.config import RUNTIME_ONLY, AuditConfig
from auditor.data import AuditDataset, DatasetIndex, open_source
from auditor.errors import DataError, ModelLoadError, UsageError
from auditor.models.defaults import ModelDefaults, model_defaults
from auditor.models.initial import random_weights_note, runs_on_random_weights
from auditor.models.layers import default_target_layer, get_module
from auditor.models.loading import LoadedModel, load_model
from auditor.pipeline import DEFAULT_CHUNK_SIZE, AuditInterrupted, PassSettings, run_pass
from auditor.run import AuditResult, PassContext, PhaseTimer, data_fingerprint
from auditor.runtime import autocast_dtype, select_device
from auditor.store import RunLock, RunWriter

log = logging.getLogger("auditor")


def run_audit(
    config: AuditConfig,
    model: nn.Module | None = None,
    command: str | None = None,
) -> AuditResult:
    """Audit `config.model` (or the given `model`) on `config.data`; write `config.out`.

    Raises UsageError subclasses (exit 2) for input that cannot be audited, RunDirectoryError
    for an unusable run directory, AuditInterrupted when stopped (resume by calling again).
    """
    if config.baseline is not None:  # before the pass: a wrong path must not cost a whole run
        from auditor.compare import check_baseline

        if Path(config.baseline).resolve() == Path(config.out).resolve():
            raise UsageError("--baseline must be an earlier run directory, not --out itself")
        check_baseline(config.baseline)
    timer = PhaseTimer()
    with timer.phase("model"):
        defaults = model_defaults(config.model, config.weights) if model is None \
            else ModelDefaults()
        config = config.resolved(defaults.image_size, defaults.mean, defaults.std,
                                 defaults.classes, defaults.reshape)
    with timer.phase("index"):
        index = open_source(
            config.data, classes=list(config.classes) if config.classes else None,
            masks_dir=config.masks, allow_outside=config.allow_outside,
            image_column=config.image_column, label_column=config.label_column,
            multi_label=config.multi_label,
        )
        for warning in index.warnings:
            log.warning("%s", warning)
        if not index.samples:
            raise DataError(f"no images found in {config.data}")
    ranks = distributed.ranks_from_env()
    with timer.phase("model"):
        loaded = _prepare_model(config, model, len(index.classes))
        if loaded.scripted:
            raise ModelLoadError(
                f"{config.model} is a TorchScript model: its layers cannot be hooked, so no "
                "class-activation map can be computed from it. Audit the eager model instead "
                "(--model module:factory or file.py:factory with --weights), or run "
                "`auditor probe` for the model-free checks."
            )
        device = distributed.rank_device(select_device(config.device), ranks)
        distributed.init(ranks, device)
        module = loaded.module.to(device)
        if device.type == "cuda":
            module = module.to(memory_format=torch.channels_last)
        num_outputs = _output_size(module, config, device)
        _check_labels(index, num_outputs)
        random_weights = model is None and runs_on_random_weights(
            loaded, config.num_classes, len(index.classes))
        if random_weights:
            log.warning("%s", random_weights_note(config.model))
        layers, layer_warning = list(config.target_layers), None
        reshape = reshape_from_spec(config.reshape, module, config.image_size)
        if not layers:
            # A default layer in front of transformer blocks is worth a line in the report.
            default, layer_warning = default_target_layer(
                module, (1, 3, *config.image_size), reshape)
            layers = [default]
            if layer_warning:
                log.warning("%s", layer_warning)
        for name in layers:
            get_module(module, name)
    fingerprint = {
        "config": config.fingerprint(),
        "model": _model_fingerprint(loaded),
        "data": data_fingerprint(index),
    }
    details = {"config": {
        k: v for k, v in config.to_dict().items() if k not in RUNTIME_ONLY
    }}
    out = Path(config.out)
    lock = RunLock(out)
    settings = PassSettings(
        methods=config.methods, primary=config.primary_method, target_layers=layers,
        explain=config.explain, mean=config.mean, std=config.std, border=config.border,
        batch_size=config.batch_size,
        workers=distributed.workers_per_rank(config.workers, ranks, _cores()),
        amp_dtype=autocast_dtype(device, config.amp), progress=not config.quiet,
        rank=ranks.rank, world_size=ranks.world_size, compile=config.compile,
        chunk_size=config.chunk_size or DEFAULT_CHUNK_SIZE,
        compile_backend=config.compile_backend,
        reshape=reshape,
        multi_label=config.multi_label, threshold=config.threshold,
    )
    try:
        # Rank 0 prepares the directory; every rank reads what is already done before any
        # rank writes, so all shard the same list of remaining samples.
        writer: RunWriter | None = None
        error: Exception | None = None
        try:
            if ranks.is_main:
                out.mkdir(parents=True, exist_ok=True)
                lock.acquire()
                writer = RunWriter(out, fingerprint, overwrite=config.overwrite, details=details)
        except Exception as exc:  # told to every rank, so none waits for rank 0
            error = exc
        distributed.agree(ranks, error)
        done: set[int] = set()
        try:
            if writer is None:
                writer = RunWriter(out, fingerprint, overwrite=False, details=details)
            done = writer.done_indices()
        except Exception as exc:
            error = exc
        distributed.agree(ranks, error)
        dataset = AuditDataset(
            index, image_size=config.image_size, border=config.border,
            max_pixels=config.max_pixels, foreground=config.foreground,
            dicom_window=config.dicom_window,
        )
        with timer.phase("pass"):
            try:
                pass_stats = run_pass(module, index, dataset, writer, settings, device, done)
            except AuditInterrupted:
                raise  # every rank got the signal from torchrun; none waits for another
            except Exception as exc:
                error = exc
            distributed.agree(ranks, error)
        distributed.close(ranks)  # the other ranks are done: rank 0 goes on alone
        summary: dict[str, Any] = {}
        if ranks.is_main:
            log.info(
                "pass: %d images at %.1f images/s on %s%s", pass_stats["n_processed"],
                pass_stats.get("images_per_s", 0.0), device,
                f" (rank 0 of {ranks.world_size})" if ranks.distributed else "",
            )
            with timer.phase("merge"):
                writer.merge()
            context = PassContext(
                config=config, index=index, dataset=dataset, model=module, loaded=loaded,
                layers=layers, device=device, num_outputs=num_outputs,
                layers_given=bool(config.target_layers), layer_warning=layer_warning,
                stats=pass_stats, command=command or "", random_weights=random_weights,
            )
            summary = analyse_run(out, context, timer)
            writer.mark_complete()
    finally:
        lock.release()
        distributed.close(ranks)
    return AuditResult(run_dir=out, summary=summary)


def _cores() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _prepare_model(config: AuditConfig, model: nn.Module | None,
                   data_classes: int) -> LoadedModel:
    if model is None:
        return load_model(config.model, config.weights, config.num_classes, config.trust_pickle,
                          data_classes=data_classes)
    model.eval()
    return LoadedModel(
        module=model, spec=config.model, weights=None, weights_sha256=None,
        parameters=sum(p.numel() for p in model.parameters()), scripted=False,
    )


def _output_size(module: nn.Module, config: AuditConfig, device: torch.device) -> int:
    """Number of model outputs, from one forward of a dummy batch of 2 (eval mode)."""
    dummy = torch.zeros((2, 3, *config.image_size), device=device)
    try:
        with torch.inference_mode():
            logits = module(dummy)
    except Exception as exc:
        raise ModelLoadError(
            f"the model fails on a batch of {config.image_size[0]}x{config.image_size[1]} RGB "
            f"images ({type(exc).__name__}: {str(exc)[:300]}); check --image-size and --model"
        ) from exc
    if not isinstance(logits, torch.Tensor) or logits.dim() != 2:
        raise ModelLoadError(
            "the model must return logits of shape [batch, classes]; got "
            f"{type(logits).__name__} {tuple(getattr(logits, 'shape', ()))}. A model loaded by "
            "--model that returns a dict, a tuple or an output object with .logits is unwrapped "
            "for you; from Python, pass auditor.models.outputs.return_logits(model), or wrap "
            "the model in a module whose forward returns the logits tensor"
        )
    return int(logits.shape[1])


def _check_labels(index: DatasetIndex, num_outputs: int) -> None:
    if len(index.classes) > num_outputs:
        beyond = index.classes[num_outputs:]
        raise DataError(
            f"the data has {len(index.classes)} classes but the model has {num_outputs} outputs; "
            f"classes beyond the model's outputs: {', '.join(beyond[:5])}. Use --classes to give "
            "the model's output order, or --num-classes for its head size."
        )


def _model_fingerprint(loaded: LoadedModel) -> str:
    if loaded.weights_sha256:
        return f"{loaded.spec}|{loaded.weights_sha256}"
    digest = hashlib.sha256(loaded.spec.encode())
    for name, tensor in loaded.module.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
