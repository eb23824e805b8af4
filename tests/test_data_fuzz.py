"""Fuzzed PNG/JPEG bytes: only DecodeError or error rows, never another exception, never slow.

A seeded mutator (bit flips, overwrites, truncations, insertions, duplications, and PNG chunk
edits with a recomputed CRC so they get past the checksum into the decoders) makes 200 cases.
"""

from __future__ import annotations

import struct
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from auditor.data.dataset import AuditDataset
from auditor.data.decode import DecodedImage, decode_image
from auditor.data.sources import DatasetIndex, SampleRef
from auditor.errors import DecodeError
from tests.helpers import images

CASES_PER_BASE = 50
SECONDS_PER_DECODE = 1.0


def png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    """(type, payload) of each chunk of a valid PNG."""
    chunks, offset = [], 8
    while offset + 8 <= len(data):
        (length,) = struct.unpack(">I", data[offset:offset + 4])
        kind = data[offset + 4:offset + 8]
        chunks.append((kind, data[offset + 8:offset + 8 + length]))
        offset += 12 + length
    return chunks


def mutate(data: bytes, rng: np.random.Generator) -> bytes:
    """One random mutation of valid image bytes."""
    buffer = bytearray(data)
    size = len(buffer)
    kind = int(rng.integers(0, 7))
    if kind == 0:  # flip a few bits anywhere
        for position in rng.integers(0, size, size=int(rng.integers(1, 9))):
            buffer[position] ^= 1 << int(rng.integers(0, 8))
    elif kind == 1:  # overwrite a span with random bytes
        start = int(rng.integers(0, size))
        span = rng.integers(0, 256, size=int(rng.integers(1, 32)), dtype=np.uint8).tobytes()
        buffer[start:start + len(span)] = span
    elif kind == 2:  # truncate
        del buffer[int(rng.integers(1, max(size, 2))):]
    elif kind == 3:  # insert random bytes
        start = int(rng.integers(0, size))
        buffer[start:start] = rng.integers(0, 256, size=int(rng.integers(1, 64)),
                                           dtype=np.uint8).tobytes()
    elif kind == 4:  # duplicate a span (repeated markers / chunks)
        start = int(rng.integers(0, size))
        buffer[start:start] = buffer[start:start + int(rng.integers(1, 128))]
    elif kind == 5:  # header bytes to 0xFF (huge sizes, bad depths, odd markers)
        for position in rng.integers(0, min(size, 64), size=int(rng.integers(1, 5))):
            buffer[position] = 0xFF
    elif data.startswith(b"\x89PNG") and png_chunks(data):  # edit a chunk, fix its CRC
        chunks = png_chunks(data)
        target = int(rng.integers(0, len(chunks)))
        edited = []
        for i, (name, payload) in enumerate(chunks):
            if i == target and payload:
                body = bytearray(payload)
                body[int(rng.integers(0, len(body)))] = int(rng.integers(0, 256))
                payload = bytes(body)
            edited.append(images.png_chunk(name, payload))
        return b"\x89PNG\r\n\x1a\n" + b"".join(edited)
    else:  # JPEG: garble the bytes right after a random marker
        markers = [i for i in range(size - 4) if buffer[i] == 0xFF and buffer[i + 1] > 0xC0]
        markers = markers or [0]
        start = markers[int(rng.integers(0, len(markers)))] + 2
        buffer[start:start + 4] = rng.integers(0, 256, size=4, dtype=np.uint8).tobytes()
    return bytes(buffer)


@pytest.fixture(scope="module")
def fuzz_files(tmp_path_factory) -> list[Path]:
    rng = np.random.default_rng(1234)
    photo = Image.fromarray(images.noise_rgb(24, 16, seed=3))
    palette = photo.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    bases = {
        "png": images.encoded(photo, "PNG"),
        "palette.png": images.encoded(palette, "PNG", transparency=0),
        "jpg": images.encoded(photo, "JPEG", quality=80),
        "progressive.jpg": images.encoded(photo, "JPEG", progressive=True, subsampling=2),
    }
    folder = tmp_path_factory.mktemp("fuzz")
    paths = []
    for name, data in bases.items():
        for case in range(CASES_PER_BASE):
            paths.append(images.raw(folder / f"{case:03d}.{name}", mutate(data, rng)))
    return paths


def test_fuzzed_bytes_decode_or_raise_decode_error_quickly(fuzz_files):
    refused = 0
    for path in fuzz_files:
        start = time.perf_counter()
        try:
            decoded = decode_image(str(path))
        except DecodeError:
            refused += 1
        else:
            assert isinstance(decoded, DecodedImage)
            assert decoded.rgb.dtype == np.uint8
            assert decoded.rgb.ndim == 3
            assert decoded.rgb.shape[2] == 3
        assert time.perf_counter() - start < SECONDS_PER_DECODE, path.name
    # The mutator must actually break files, or this test proves nothing.
    assert refused >= len(fuzz_files) // 4


def test_fuzzed_files_become_rows_of_constant_shape(fuzz_files):
    refs = [SampleRef(i, str(path), path.name, 0) for i, path in enumerate(fuzz_files)]
    dataset = AuditDataset(DatasetIndex("/", ["a"], refs), image_size=(12, 12))
    for position in range(len(dataset)):
        item = dataset[position]
        assert item["image"].shape == (3, 12, 12)
        assert item["ok"] is (item["error"] == "")
        assert not item["error"].startswith("unexpected error"), item["error"]
