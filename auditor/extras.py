"""Optional libraries behind a model spec or a data option: imported on demand, or a clear
exit-2 error that names the install command."""

from __future__ import annotations

import importlib
from types import ModuleType

from auditor.errors import UsageError

#: The extra of auditor's pyproject that installs each optional library.
EXTRAS: dict[str, str] = {"timm": "timm", "transformers": "hf", "pycocotools": "coco"}


def require(module: str, what: str, error: type[UsageError] = UsageError) -> ModuleType:
    """Import an optional library, or raise ``error`` (exit 2) naming the pip command.

    Args:
        module: the import name (a key of ``EXTRAS``).
        what: what needs it, for the message (e.g. ``--model timm:resnet50``).
        error: the UsageError subclass to raise (ModelLoadError, DataError).
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        extra = EXTRAS[module]
        raise error(
            f"{what} needs the optional library {module!r}, which is not installed ({exc}); "
            f"install it with: pip install 'auditor[{extra}]'"
        ) from exc
