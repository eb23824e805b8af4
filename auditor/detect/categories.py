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
        finite = s.dropna()
        if len(finite) and np.all(np.equal(np.mod(finite.to_numpy(), 1), 0)):
            s = s.astype("Int64")
    out = s.astype(object).where(s.notna(), MISSING).astype(str)
    return out.where(out != "", NONE)
