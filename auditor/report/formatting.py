"""How the report spells numbers, and small helpers shared by its sections."""

from __future__ import annotations

import json
import math
from typing import Any

from markupsafe import Markup, escape


def finite(value: Any) -> float | None:
    """`value` as a float, or None when it is missing, not a number, or not finite."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def fmt_number(value: Any, digits: int = 2) -> str:
    """A number with `digits` decimals; '–' for missing or non-finite values."""
    v = finite(value)
    # "+ 0.0" turns a negative value that rounds to zero into "0.00", not "-0.00".
    return "–" if v is None else f"{round(v, digits) + 0.0:.{digits}f}"


def fmt_percent(value: Any, digits: int = 0) -> str:
    """A fraction as a percentage ('–' when missing)."""
    v = finite(value)
    return "–" if v is None else f"{100 * v:.{digits}f}%"


def fmt_count(value: Any) -> str:
    """An integer with thousands separators ('–' when missing)."""
    v = finite(value)
    return "–" if v is None else f"{round(v):,}"


def fmt_identifier(value: Any) -> Markup:
    """An identifier (a flag kind such as `background_attention`) as escaped HTML that may break
    after an underscore and nowhere else, so a narrow column wraps it between words."""
    return Markup("_<wbr>").join(escape(str(value)).split("_"))


def fmt_parameters(value: Any) -> str:
    """A parameter count: '11.18 M' from a million up, else the integer ('–' when missing)."""
    v = finite(value)
    if v is None:
        return "–"
    return f"{v / 1e6:.2f} M" if v >= 1e6 else f"{round(v):,}"


def evidence_text(value: Any) -> str:
    """One evidence value as short text: floats to 3 decimals, lists and dicts as JSON cut at
    160 characters."""
    if isinstance(value, float):
        return fmt_number(value, 3)
    if isinstance(value, list | dict):
        text = json.dumps(value, ensure_ascii=False)
        return text if len(text) <= 160 else text[:159] + "…"
    return str(value)


def is_table(value: Any) -> bool:
    """True for a non-empty list of non-empty lists (a grid of counts)."""
    return (isinstance(value, list) and bool(value)
            and all(isinstance(r, list) and r for r in value))


def fit_size(shape: tuple[int, ...], side: int) -> tuple[int, int]:
    """(height, width) of `shape` scaled so its longer side is `side` pixels."""
    h, w = shape[:2]
    scale = side / max(h, w)
    return max(1, round(h * scale)), max(1, round(w * scale))


def names_list(names: list[str], shown: int = 3, total: int | None = None) -> str:
    """'a, b and c' or 'a, b, c and 7 more': a list of names for a sentence; `total` counts
    names not passed (default: len(names))."""
    if not names:
        return ""
    head = names[:shown]
    rest = (len(names) if total is None else total) - len(head)
    if rest > 0:
        return f"{', '.join(head)} and {rest:,} more"
    return head[0] if len(head) == 1 else f"{', '.join(head[:-1])} and {head[-1]}"
