"""Plain JSON-ready data: the one cleaner every JSON the package writes goes through.

numpy scalars become Python numbers, non-finite floats become None (JSON has no NaN), paths
become text, and text that is not valid UTF-8 keeps its undecodable bytes as visible escapes.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np


def storable_text(text: str) -> str:
    """`text` as valid UTF-8: a file name that is not UTF-8 (decoded by Python with
    surrogateescape) keeps its undecodable bytes as visible escapes, e.g. caf\\xe9.png."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return text


def json_ready(obj: Any) -> Any:
    """`obj` with every dict, list and tuple inside it made JSON-ready (see the module)."""
    kind = type(obj)  # the commonest leaves first, by exact type (subclasses go on below)
    if kind is float:
        return obj if math.isfinite(obj) else None
    if kind is int or kind is bool or obj is None:
        return obj
    if isinstance(obj, str):
        return storable_text(obj)
    if isinstance(obj, dict):
        return {storable_text(str(k)): json_ready(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_ready(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, Path):
        return storable_text(str(obj))
    return obj
