"""auditor.jsonsafe.json_ready: by hand, and equal to the plain walk it speeds up (plain
floats, ints, bools and None checked first by exact type) on random nested structures."""

from __future__ import annotations

import enum
import math
from pathlib import Path
from typing import Any

import numpy as np

from auditor.jsonsafe import json_ready, storable_text


def reference_json_ready(obj: Any) -> Any:
    """json_ready as it was: one isinstance chain for every value."""
    if isinstance(obj, str):
        return storable_text(obj)
    if isinstance(obj, dict):
        return {storable_text(str(k)): reference_json_ready(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [reference_json_ready(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, Path):
        return storable_text(str(obj))
    return obj


class Level(enum.IntEnum):
    LOW = 1


class Ratio(float):
    """A float subclass: json_ready's exact-type fast path must not take it."""


def test_json_ready_by_hand():
    out = json_ready({"a": [1.5, math.nan, -math.inf, (2, None)], 3: np.float32(0.5),
                      True: np.int64(7), "p": Path("x/caf\udce9.png"), "b": np.bool_(True),
                      "r": Ratio("nan"), "e": Level.LOW, "s": "caf\udce9"})
    assert out == {"a": [1.5, None, None, [2, None]], "3": 0.5, "True": 7,
                   "p": "x/caf\\xe9.png", "b": True, "r": None, "e": Level.LOW,
                   "s": "caf\\xe9"}
    assert type(out["True"]) is int
    assert type(out["e"]) is Level  # an int subclass passes as it is, as before


def random_value(rng: np.random.Generator, depth: int = 0) -> Any:
    leaves = [lambda: float(rng.normal()), lambda: math.nan, lambda: math.inf,
              lambda: -0.0, lambda: int(rng.integers(-5, 5)), lambda: bool(rng.random() < .5),
              lambda: None, lambda: "t\udce9xt", lambda: "plain", lambda: np.float64(math.nan),
              lambda: np.float32(1.25), lambda: np.int16(3), lambda: Ratio(2.5),
              lambda: Ratio("inf"), lambda: Level.LOW, lambda: Path("a/b"), lambda: np.str_("s")]
    if depth < 4 and rng.random() < 0.4:
        items = [random_value(rng, depth + 1) for _ in range(rng.integers(0, 5))]
        kind = rng.integers(0, 3)
        if kind == 0:
            keys = [rng.choice(["k", "\udce9", "1"]) + str(i) if rng.random() < .8 else i
                    for i in range(len(items))]
            return dict(zip(keys, items, strict=True))
        return items if kind == 1 else tuple(items)
    return leaves[rng.integers(0, len(leaves))]()


def test_json_ready_equals_the_plain_walk():
    rng = np.random.default_rng(0)
    for _ in range(2000):
        value = random_value(rng)
        got, want = json_ready(value), reference_json_ready(value)
        assert repr(got) == repr(want)
        assert type(got) is type(want)
