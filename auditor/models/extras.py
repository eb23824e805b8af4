"""Optional libraries behind a model spec: imported on demand, or a clear exit-2 error that
names the install command."""

from __future__ import annotations

import importlib
from types import ModuleType

from auditor.errors import ModelLoadError

#: The extra of auditor's pyproject that installs each optional library.
EXTRAS: dict[str, str] = {"timm": "timm", "transformers": "hf", "pycocotools": "coco"}


def require(module: str, what: str) -> ModuleType:
    """Import an optional library, or raise ModelLoadError naming the pip command.

    Args:
        module: the import name (a key of ``EXTRAS``).
        what: what needs it, for the message (e.g. ``--model timm:resnet50``).
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        extra = EXTRAS[module]
        raise ModelLoadError(
            f"{what} needs the optional library {module!r}, which is not installed ({exc}); "
            f"install it with: pip install 'auditor[{extra}]'"
        ) from exc
