"""top_suspects: the gallery's rows, most suspicious first, ties and NaN in index order."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from auditor.detect.suspicion import top_suspects


def _sorted_table(samples: pd.DataFrame, n: int) -> pd.DataFrame:
    """The rule spelled with pandas: the readable rows sorted by the whole table."""
    ok = samples[samples["status"] == "ok"]
    return ok.sort_values(["suspicion", "index"], ascending=[False, True],
                          kind="stable").head(n)


def test_order_by_hand() -> None:
    samples = pd.DataFrame({"index": [4, 1, 3, 2, 0], "status": ["ok"] * 4 + ["error"],
                            "suspicion": [0.5, np.nan, 0.5, 0.9, 1.0]})
    assert top_suspects(samples, 10)["index"].tolist() == [2, 3, 4, 1]
    assert top_suspects(samples, 2)["index"].tolist() == [2, 3]
    assert top_suspects(samples.drop(columns="suspicion"), 3).empty


@pytest.mark.parametrize("seed", range(5))
def test_equals_sorting_the_whole_table(seed: int) -> None:
    rng = np.random.default_rng(seed)
    m = 300
    samples = pd.DataFrame({
        "index": rng.permutation(m) if seed % 2 else rng.integers(0, 30, m),
        "status": rng.choice(["ok", "error"], m, p=[0.8, 0.2]),
        "suspicion": np.round(rng.random(m), 1), "other": rng.random(m)},
        index=rng.permutation(m) + 5)
    samples.loc[rng.random(m) < 0.2, "suspicion"] = np.nan
    for n in (0, 1, 48, 1000):
        pd.testing.assert_frame_equal(top_suspects(samples, n), _sorted_table(samples, n))
