"""auditor.indented_json: the same bytes as json.dumps(json_ready(obj), indent=2, ...)."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from auditor.indented_json import indented_json, with_last_key
from auditor.jsonsafe import json_ready

# Text that looks like JSON structure, escapes, non-finite tokens and multi-byte UTF-8.
PIECES = ['"', "\\", '\\"', '\\\\"', "[", "]", "{", "}", ",", ": ", "NaN", "Infinity",
          "-Infinity", "é", "日本", "😀", "\n", "\t", "\x00", "\x1f", "\u2028", "a", " ", "\x7f"]
SCALARS: list[Any] = [None, True, False, 0, -3, 1.5, float("nan"), float("inf"), -float("inf"),
                      1e-05, 1e16, np.float32(0.1), np.int64(7), np.bool_(True),
                      np.float64("nan")]


def reference(obj: Any) -> bytes:
    return json.dumps(json_ready(obj), indent=2, ensure_ascii=False, allow_nan=False).encode()


def _text(rng: random.Random) -> str:
    return "".join(rng.choice(PIECES) for _ in range(rng.randint(0, 6)))


def _value(rng: random.Random, depth: int = 0) -> Any:
    r = rng.random()
    if depth > 4 or r < 0.4:
        pick = rng.randrange(len(SCALARS) + 2)
        if pick < len(SCALARS):
            return SCALARS[pick]
        return _text(rng) if pick == len(SCALARS) else Path("/d") / _text(rng).replace("\x00", "")
    if r < 0.6:
        return [_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    if r < 0.7:
        return tuple(_value(rng, depth + 1) for _ in range(rng.randint(0, 3)))
    return {_text(rng): _value(rng, depth + 1) for _ in range(rng.randint(0, 4))}


def test_indentation_by_hand() -> None:
    obj = {"a": [1, 2.5], "b": {}, "c": [], "d": 'x,[y]"z\\', "e": [[]], "f": {"g": None}}
    expected = ('{\n  "a": [\n    1,\n    2.5\n  ],\n  "b": {},\n  "c": [],\n'
                '  "d": "x,[y]\\"z\\\\",\n  "e": [\n    []\n  ],\n  "f": {\n    "g": null\n  }\n}')
    assert indented_json(obj) == expected.encode()
    assert indented_json(3) == b"3"
    assert indented_json("[") == b'"["'
    assert indented_json([]) == b"[]"


def test_plain_data_takes_the_fast_path(monkeypatch: pytest.MonkeyPatch) -> None:
    obj = {"a": [np.float32(0.5), Path("/x"), (1, float("nan"))], "b": {"c": "d"}}
    expected = reference(obj)

    def refuse(_: Any) -> Any:
        raise AssertionError("the slow path ran")

    monkeypatch.setattr("auditor.indented_json.json_ready", refuse)
    assert indented_json(obj) == expected


def test_non_finite_numbers_become_null_and_text_stays() -> None:
    obj = [float("nan"), "NaN", {"Infinity": -float("inf")}, np.float32("inf"), "-Infinity"]
    assert indented_json(obj) == (
        b'[\n  null,\n  "NaN",\n  {\n    "Infinity": null\n  },\n  null,\n  "-Infinity"\n]')


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_equals_the_python_encoder_on_hostile_structures(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(1500):
        obj = _value(rng)
        assert indented_json(obj) == reference(obj), repr(obj)


def test_what_json_ready_rewrites_takes_the_exact_path() -> None:
    # Keys that are not text (True is "True" in json_ready, "true" in the C encoder), numpy
    # keys, and text that is not valid UTF-8.
    for obj in ({True: 1, None: [2], 1.5: {}}, {np.int64(3): "x"}, ["caf\udce9.png", {"a": 1}],
                {"k": {Path("p"): 3}}):
        assert indented_json(obj) == reference(obj)


def test_unserialisable_objects_raise_like_json() -> None:
    with pytest.raises(TypeError):
        indented_json({"a": {1, 2}})
    with pytest.raises(TypeError):
        indented_json([np.zeros(2)])


def test_last_key_by_hand() -> None:
    text = indented_json({"a": {"timings": 1}, "timings": {"x": 1.5}})
    assert with_last_key(text, "timings", {"x": 2, "y": [3]}) == (
        b'{\n  "a": {\n    "timings": 1\n  },\n  "timings": {\n    "x": 2,\n    "y": [\n'
        b"      3\n    ]\n  }\n}")
    assert with_last_key(indented_json({"t": 1}), "t", {}) == b'{\n  "t": {}\n}'
    # Not the last key, not a key at all (only nested, or only text), not an object.
    assert with_last_key(indented_json({"t": 1, "u": 2}), "t", 3) is None
    assert with_last_key(indented_json({"a": {"t": 1}}), "t", 3) is None
    assert with_last_key(indented_json({"a": '\n  "t": '}), "t", 3) is None
    assert with_last_key(indented_json(["t"]), "t", 3) is None


@pytest.mark.parametrize("seed", [0, 1])
def test_last_key_equals_encoding_the_whole_object(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(1000):
        obj = {_text(rng): _value(rng) for _ in range(rng.randint(0, 4))}
        key, value, other = _text(rng), _value(rng), _value(rng)
        obj.pop(key, None)
        before = {**obj, key: other}
        after = {**obj, key: value}
        assert with_last_key(indented_json(before), key, value) == indented_json(after), (
            repr(before), repr(value))
        if obj:  # key first: not the last key
            assert with_last_key(indented_json({key: other, **obj}), key, value) is None
