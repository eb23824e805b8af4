"""torchvision's pretrained weights by name (``--weights DEFAULT`` or ``IMAGENET1K_V2``), read
from the local cache only: ``$TORCH_HOME/hub/checkpoints`` (``torch.hub.get_dir()``).

Nothing is downloaded. The file is read as tensors only (``weights_only``), then handed to
torchvision's own builder, so the builder's per-architecture handling (a ViT's image size, an
Inception's auxiliary head, DenseNet's old key names) applies as if it had fetched the file.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any
from unittest import mock
from urllib.parse import urlparse

import torch
from torch import nn

from auditor.errors import ModelLoadError

# DEFAULT, IMAGENET1K_V2, or the enum's full name ResNet50_Weights.IMAGENET1K_V2.
_WEIGHTS_NAME = re.compile(r"^(?:[A-Za-z0-9_]+_Weights\.)?[A-Z][A-Z0-9_]*$")


def is_weights_name(value: str) -> bool:
    """Whether --weights names torchvision weights rather than a file."""
    return bool(_WEIGHTS_NAME.match(value)) and not os.path.exists(value)


def weights_entry(arch: str, name: str) -> Any:
    """The torchvision ``WeightsEnum`` member ``name`` (``DEFAULT`` included) of ``arch``.

    Raises:
        ModelLoadError: the architecture has no weights, or none of that name.
    """
    import torchvision

    try:
        enum = torchvision.models.get_model_weights(arch)
    except (ValueError, KeyError) as exc:
        raise ModelLoadError(f"torchvision has no pretrained weights for {arch!r}") from exc
    short = name.rsplit(".", 1)[-1]
    if short == "DEFAULT":
        return enum.DEFAULT
    try:
        return enum[short]
    except KeyError:
        raise ModelLoadError(
            f"{arch} has no weights {name!r}; choose DEFAULT or one of "
            f"{', '.join(member.name for member in enum)}"
        ) from None


def cached_file(entry: Any) -> Path:
    """Where torch.hub keeps the file of a weights entry (it may not be there)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(entry.url).path)


def pretrained_torchvision(arch: str, name: str) -> tuple[nn.Module, str]:
    """The architecture with its named weights from the local cache, and the file read.

    Raises:
        ModelLoadError: the file is not in the cache (the message names it and the folder),
            or it does not fit the architecture.
    """
    import torchvision

    from auditor.models.loading import read_state_dict

    entry = weights_entry(arch, name)
    path = cached_file(entry)
    if not path.is_file():
        raise ModelLoadError(
            f"the weights {entry} are not in the local cache: expected the file {path.name} "
            f"in {path.parent} (set TORCH_HOME to the folder above hub/ if they are elsewhere; "
            "auditor downloads nothing)"
        )
    state = read_state_dict(path)
    # The builder asks the weights entry for its state_dict; it gets the tensors read above.
    with mock.patch.object(type(entry), "get_state_dict", return_value=state):
        try:
            module = torchvision.models.get_model(arch, weights=entry)
        except (RuntimeError, ValueError, TypeError) as exc:
            raise ModelLoadError(
                f"the file {path} does not fit {arch} ({type(exc).__name__}: "
                f"{str(exc)[:300]})"
            ) from exc
    return module, str(path)
