"""samples.csv: the column-wise writer gives pandas' to_csv bytes (after the formula guard) on
hostile text and every column type a run directory holds, in any block size; floats as numpy
writes them over the whole float range; the guard and the quoting by hand."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from auditor.report import samples_csv
from auditor.report.samples_csv import _float_text, write_samples_csv

HOSTILE = ["=1+1", "+SUM(A1)", "-2", "@cmd", "\tx", "\rx", "a,b", 'say "hi"', "line\nbreak",
           "cr\rmid", "crlf\r\n", "ünïcödé", "日本語,テキスト", "emoji 😀", "", " =lead space",
           "trail ", "'quoted'", "=", "-", '"', ",", "\n", "x\x00y", "\u2028sep", "\x85nel",
           "a;b", "plain.png", "\\back", '=HYPERLINK("http://x")', '"=a,b"']


def _pandas_csv(run: Path) -> bytes:
    """samples.csv as the writer before this one made it: the guard cell by cell, then pandas'
    to_csv (the reference the column-wise writer must equal)."""

    def guard(value: Any) -> Any:
        if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
            return "'" + value
        return value

    frame = pd.read_parquet(run / "samples.parquet").drop(
        columns=["map_part", "map_row"], errors="ignore")
    for column in frame.columns:
        kind = frame[column].dtype
        if not (pd.api.types.is_numeric_dtype(kind) or pd.api.types.is_bool_dtype(kind)):
            frame[column] = frame[column].map(guard)
    path = run / "reference.csv"
    frame.to_csv(path, index=False, encoding="utf-8-sig")
    return path.read_bytes()


def _hostile_samples(n: int, seed: int) -> pd.DataFrame:
    """Every column type samples.parquet holds (text with and without gaps, int, uint, bool,
    bool with gaps, float32/64 across magnitudes, list, categorical, bytes) and hostile text."""
    rng = np.random.default_rng(seed)
    alphabet = list('ab,"\n\r=+-@\t xé😀\'')
    text = [HOSTILE[i] if i < len(HOSTILE)
            else "".join(rng.choice(alphabet, rng.integers(0, 8))) for i in range(n)]
    specials = [0.0, -0.0, 1.0, 32.0, 1e-4, 9.99e-5, 1e-5, 1e6, 999999.0, 1e10, 1e16,
                np.inf, -np.inf, np.nan, 3.0e38]
    magnitude = 10.0 ** rng.integers(-12, 20, n)
    f64 = rng.standard_normal(n) * magnitude
    f64[: len(specials)] = specials
    f64[len(specials) :: 9] = np.round(f64[len(specials) :: 9])
    return pd.DataFrame({
        "index": np.arange(n),
        "path": text,
        "rel_path": pd.Series(text, dtype="str").where(rng.uniform(size=n) > 0.1),
        "flags": pd.Series([None if i % 7 == 0 else text[(i * 13) % n] for i in range(n)],
                           dtype=object),
        "label_index": rng.integers(-5, 10**12, n),
        "small": rng.integers(0, 255, n).astype(np.uint8),
        "correct": rng.uniform(size=n) > 0.5,
        "file_has_alpha": pd.Series([None if i % 5 == 0 else bool(i % 3) for i in range(n)],
                                    dtype=object),
        "confidence": f64.astype(np.float32),
        "file_width": f64,
        "gaps": pd.Series([None if i % 4 == 2 else i for i in range(n)], dtype=object),
        "category": pd.Categorical([HOSTILE[i % len(HOSTILE)] for i in range(n)]),
        "raw": [bytes([i % 256, 44]) for i in range(n)],
        "scores": [np.array([0.1, 0.25 * i]) for i in range(n)],
        "map_part": ["r000-000000"] * n,
        "map_row": np.arange(n, dtype=np.int32),
    })


@pytest.mark.parametrize("seed", [0, 1])
def test_samples_csv_equals_pandas_to_csv_on_hostile_text_and_every_column_type(
    tmp_path: Path, seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    _hostile_samples(3000, seed).to_parquet(tmp_path / "samples.parquet", index=False)
    reference = _pandas_csv(tmp_path)
    assert write_samples_csv(tmp_path).read_bytes() == reference
    # Blocks that cut the rows anywhere give the same file.
    monkeypatch.setattr(samples_csv, "BLOCK_ROWS", 7)
    assert write_samples_csv(tmp_path).read_bytes() == reference


def test_samples_csv_of_one_column_and_of_no_rows_equals_pandas(tmp_path: Path) -> None:
    # A row of one empty field is the csv module's one quoted empty field.
    pd.DataFrame({"flags": ["", "a", None, "=x"]}).to_parquet(tmp_path / "samples.parquet")
    assert write_samples_csv(tmp_path).read_bytes() == _pandas_csv(tmp_path)
    pd.DataFrame({"flags": pd.Series([], dtype="str"), "x": np.zeros(0)}).to_parquet(
        tmp_path / "samples.parquet")
    assert write_samples_csv(tmp_path).read_bytes() == _pandas_csv(tmp_path)


def test_samples_csv_guards_formulas_and_quotes_by_hand(tmp_path: Path) -> None:
    pd.DataFrame({
        "index": [0, 1, 2, 3],
        "path": ["=1+1", '=HYPERLINK("x"),y', " =not at the start", "a\nb"],
        "fg_energy": np.array([0.5, np.nan, 1e-5, 3.0], dtype=np.float32),
        "correct": [True, False, True, False],
        "map_part": ["p", "p", "p", "p"],
    }).to_parquet(tmp_path / "samples.parquet")
    body = write_samples_csv(tmp_path).read_bytes().decode("utf-8-sig")
    lines = body.split("\n")
    assert lines[0] == "index,path,fg_energy,correct"
    assert lines[1] == "0,'=1+1,0.5,True"
    assert lines[2] == '1,"\'=HYPERLINK(""x""),y",,False'
    assert lines[3] == "2, =not at the start,1e-05,True"
    assert lines[4:] == ['3,"a', 'b",3.0,False', ""]


def _around(values: list[float], dtype: type) -> np.ndarray:
    """Each value, its float neighbours and their negatives, as `dtype`."""
    out = []
    for v in np.array(values, dtype=dtype):
        up, down = np.nextafter(v, dtype(np.inf)), np.nextafter(v, dtype(-np.inf))
        out += [v, up, down, np.nextafter(up, dtype(np.inf)), np.nextafter(down, dtype(-np.inf))]
    return np.concatenate([np.array(out, dtype=dtype), -np.array(out, dtype=dtype)])


@pytest.mark.parametrize(("dtype", "bits"), [(np.float32, np.uint32), (np.float64, np.uint64)])
def test_float_text_equals_numpy_astype_str_over_the_whole_range(dtype: type, bits: type) -> None:
    rng = np.random.default_rng(0)
    borders = _around([0.0, 1e-6, 1e-4, 1.0, 1e6, 1e10, 1e16, 1e17, np.inf], dtype)
    patterns = rng.integers(0, np.iinfo(bits).max, 200_000, dtype=bits, endpoint=True)
    spread = rng.uniform(-10, 10, 200_000) * 10.0 ** rng.integers(-6, 12, 200_000)
    spread[::5] = np.round(spread[::5])
    with np.errstate(over="ignore"):
        values = np.concatenate([borders, patterns.view(dtype), spread.astype(dtype),
                                 np.array([np.nan], dtype=dtype)])
    expected = values.astype(str).astype(object)
    expected[np.isnan(values)] = ""
    got = np.array(_float_text(values).to_pylist(), dtype=object)
    wrong = np.flatnonzero(got != expected)
    assert wrong.size == 0, [(values[i], expected[i], got[i]) for i in wrong[:5]]


def test_quote_characters_are_the_csv_modules() -> None:
    # Delimiter, quote and LF always; CR too on the Pythons that quote it (3.12 on, not 3.11).
    assert {",", '"', "\n"} <= set(samples_csv.QUOTE_CHARACTERS) <= {",", '"', "\n", "\r"}


@pytest.mark.parametrize("kind", [pa.string(), pa.large_string()])
def test_byte_tests_of_text_equal_the_character_tests(kind: pa.DataType) -> None:
    rng = np.random.default_rng(1)
    text = [HOSTILE[i % len(HOSTILE)] + "".join(rng.choice(list("ab,é😀=\n"), i % 4))
            for i in range(200)]
    for start, stop in [(0, 200), (7, 150), (199, 200), (50, 50)]:
        part = pa.array(text, type=kind).slice(start, stop - start)
        values = text[start:stop]
        assert samples_csv._holding(part, samples_csv._QUOTE_BYTES).tolist() == [
            any(c in v for c in samples_csv.QUOTE_CHARACTERS) for v in values]
        if kind == pa.large_string():  # the writer's text is string (offsets int32)
            continue
        quoted = samples_csv._quoted(part, only_column=False).to_pylist()
        assert quoted == [('"' + v.replace('"', '""') + '"')
                          if any(c in v for c in samples_csv.QUOTE_CHARACTERS) else v
                          for v in values]


@pytest.mark.parametrize("kind", [pa.string(), pa.large_string()])
def test_a_slice_of_text_is_scanned_alone(kind: pa.DataType) -> None:
    # A block of a longer column shares the column's buffer; only the block's bytes count
    # (scanning the whole buffer per block made samples.csv quadratic in rows).
    text = ["é" * (i % 5) + str(i) for i in range(100)]
    for start, stop in [(0, 100), (30, 60), (99, 100), (40, 40)]:
        data, offsets = samples_csv._utf8(pa.array(text, type=kind).slice(start, stop - start))
        values = [v.encode() for v in text[start:stop]]
        assert data.tobytes() == b"".join(values)
        assert offsets.tolist() == np.cumsum([0] + [len(v) for v in values]).tolist()
