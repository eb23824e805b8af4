"""Rows of each class, found once for the whole table (a hash grouping, not one scan per class).

A detector that loops over classes and compares every row's label with each class name costs
rows x classes: a million rows in a thousand classes is a billion comparisons. `class_rows`
groups once; each class then reads its own positions.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd


def class_rows(labels: Sequence[object] | np.ndarray | pd.Series,
               classes: Sequence[object]) -> dict[object, np.ndarray]:
    """Positions (int64, ascending) of the rows of each class in `labels`, for every name in
    `classes` (an empty array for a class without rows). Labels may be names or indices."""
    values = pd.Series(np.asarray(labels))
    found = values.groupby(values, sort=False).indices if len(values) else {}
    empty = np.zeros(0, dtype=np.int64)
    return {name: np.asarray(found.get(name, empty), dtype=np.int64) for name in classes}
