"""``timm:NAME`` models: ``timm.create_model`` with weights from a file or, with ``--weights
pretrained``, from timm's local caches (offline: nothing is downloaded).

timm keeps pretrained weights in the Hugging Face hub cache (``model.safetensors`` or
``pytorch_model.bin`` of ``pretrained_cfg.hf_hub_id``) or, for older models, in torch.hub's
checkpoint folder (the file name of ``pretrained_cfg.url``). Files are read as tensors only.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
from torch import nn

from auditor.errors import ModelLoadError
from auditor.extras import require

_HUB_FILES = ("model.safetensors", "pytorch_model.bin")


def _timm(name: str) -> Any:
    timm = require("timm", f"--model timm:{name}", ModelLoadError)
    if not timm.is_model(name.split(".")[0]):
        close = timm.list_models(f"*{name.split('.')[0]}*")[:8]
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise ModelLoadError(f"timm has no model {name!r}.{hint}")
    return timm


def pretrained_cfg(name: str) -> dict[str, Any]:
    """timm's pretrained config of NAME (``arch`` or ``arch.tag``) as a dict ({} if none)."""
    timm = _timm(name)
    cfg = timm.models.get_pretrained_cfg(name, allow_unregistered=True)
    return cfg.to_dict() if cfg is not None else {}


def _expected_files(cfg: dict[str, Any]) -> list[Path]:
    """Where timm's caches would hold the pretrained file of a config, in timm's order."""
    places: list[Path] = []
    if cfg.get("hf_hub_id"):
        from huggingface_hub import constants

        repo = "models--" + str(cfg["hf_hub_id"]).replace("/", "--")
        places.append(Path(constants.HF_HUB_CACHE) / repo)
    if cfg.get("url"):
        places.append(Path(torch.hub.get_dir()) / "checkpoints"
                      / os.path.basename(urlparse(str(cfg["url"])).path))
    return places


def cached_pretrained_file(name: str) -> str:
    """The local file of timm's pretrained weights of NAME.

    Raises:
        ModelLoadError: not in any local cache; the message names where it was looked for.
    """
    cfg = pretrained_cfg(name)
    if cfg.get("file") and os.path.isfile(str(cfg["file"])):
        return str(cfg["file"])
    if cfg.get("hf_hub_id"):
        from huggingface_hub import try_to_load_from_cache

        for filename in _HUB_FILES:
            found = try_to_load_from_cache(str(cfg["hf_hub_id"]), filename)
            if isinstance(found, str):
                return found
    places = _expected_files(cfg)
    for place in places:
        if place.is_file():
            return str(place)
    where = " or ".join(str(p) for p in places) or "(timm names no file for it)"
    raise ModelLoadError(
        f"timm's pretrained weights of {name} are not in the local cache: looked in {where} "
        "(auditor downloads nothing: fetch them once with timm.create_model(name, "
        "pretrained=True) where there is network, or pass --weights FILE)"
    )


def timm_model(
    name: str, weights: str | None, num_classes: int | None, trust_pickle: bool
) -> tuple[nn.Module, str | None]:
    """A timm model and the weights file it was given (None: random initial weights).

    ``--weights pretrained`` reads timm's cached file; ``--weights FILE`` a state_dict whose
    head size (unless ``num_classes``) sets the model's.
    """
    from auditor.models.loading import head_size, load_into, read_state_dict

    timm = _timm(name)
    path = cached_pretrained_file(name) if weights == "pretrained" else weights
    state = read_state_dict(path, trust_pickle) if path else None
    try:
        module = timm.create_model(name, pretrained=False)
        if state is not None and num_classes is None:
            num_classes = head_size(module, state)
        if num_classes is not None:
            module = timm.create_model(name, pretrained=False, num_classes=num_classes)
    except (RuntimeError, ValueError, TypeError) as exc:
        raise ModelLoadError(f"cannot build timm model {name!r}: {exc}") from exc
    if state is not None:
        load_into(module, state)
    return module, path
