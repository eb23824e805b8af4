"""How categorical file properties are spelled wherever they are shown: in probe flags, in the
report's property-by-class tables and in summary.json."""

from __future__ import annotations

import numpy as np
import pandas as pd

MISSING = "(missing)"
NONE = "(none)"
OTHER = "(other)"


def category_strings(series: pd.Series) -> pd.Series:
    """Display strings per row: integral floats print as ints (8.0 -> "8"), NaN as MISSING,
    the empty string (e.g. a PNG's chroma subsampling) as NONE."""
    s = series
    if pd.api.types.is_float_dtype(s):
        values = s.dropna().to_numpy()
        # An infinity is not integral (and np.mod of one warns).
        if len(values) and np.isfinite(values).all() and (np.mod(values, 1) == 0).all():
            s = s.astype("Int64")
    out = s.astype(object).where(s.notna(), MISSING).astype(str)
    return out.where(out != "", NONE)
