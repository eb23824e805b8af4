"""``hf:PATH_OR_ID`` models: a Hugging Face image classifier
(``AutoModelForImageClassification``) from a local folder or the local hub cache, offline.

Nothing is downloaded (``local_files_only``) and no code from the model's repository is run
(no ``trust_remote_code``). The forward returns an output object; ``load_model`` reads its
``logits``.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from auditor.errors import ModelLoadError
from auditor.extras import require


def _not_found(path: str, exc: Exception) -> ModelLoadError:
    from huggingface_hub import constants

    return ModelLoadError(
        f"no Hugging Face model {path!r} in a local folder or in the hub cache "
        f"{constants.HF_HUB_CACHE} (auditor works offline: save the model with "
        f"save_pretrained, or fetch it once where there is network): {str(exc)[:300]}"
    )


def hf_config(path: str) -> Any:
    """The model's configuration, read locally."""
    transformers = require("transformers", f"--model hf:{path}", ModelLoadError)
    try:
        return transformers.AutoConfig.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise _not_found(path, exc) from exc


def hf_processor(path: str) -> Any | None:
    """The model's image processor, read locally; None when the model has none saved."""
    transformers = require("transformers", f"--model hf:{path}", ModelLoadError)
    try:
        return transformers.AutoImageProcessor.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError):
        return None


def hf_model(path: str) -> nn.Module:
    """The image classifier at ``path`` (a folder or a hub id in the local cache).

    Raises:
        ModelLoadError: not found locally, or not an image classifier.
    """
    transformers = require("transformers", f"--model hf:{path}", ModelLoadError)
    try:
        return transformers.AutoModelForImageClassification.from_pretrained(
            path, local_files_only=True)
    except OSError as exc:
        raise _not_found(path, exc) from exc
    except (ValueError, KeyError) as exc:
        raise ModelLoadError(
            f"{path} is not a Hugging Face image classifier that transformers can load "
            f"offline: {str(exc)[:300]}"
        ) from exc
