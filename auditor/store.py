"""The run directory: chunked, atomic, resumable writes, and the readers the report uses.

Layout (see docs/architecture.md):
    run.json                     fingerprint of the run (config, model, data) and its state
    parts/<part>.parquet         result rows of one chunk; its presence marks the chunk complete
    maps/<method>/<part>.npy     float16 [n, h, w] maps of that chunk's readable samples
    samples.parquet              all parts merged and sorted by `index` when the pass is done
    thumbs/<index>.png           resized inputs of the samples the report shows
    suspects/<method>/<index>.npy  float16 [h, w] map of a report suspect by a costly method
    class_means.npz              mean input image and mean normalised map per class
    class_sums/r<rank>-<k>.npz   one pass's per-class sums of its mean-image inputs
                                 (auditor.class_image_sums)
    summary.json, report.html

A chunk is written maps first, rows last, each through a temporary file and a rename, so a run
killed at any moment leaves only whole chunks behind; resume skips the indices they hold.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from auditor.errors import RunDirectoryError, RunMismatchError
from auditor.indented_json import indented_json, with_last_key
from auditor.jsonsafe import json_ready

RUN_FILE = "run.json"
CLASS_SUMS = "class_sums"
LOCK_FILE = ".lock"


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise RunDirectoryError(f"cannot write {path}: {exc.strerror or exc}") from exc


def write_json(path: Path, obj: Any) -> None:
    """Write `obj` as indented JSON, atomically (NaN written as null; auditor.indented_json)."""
    _atomic_write_bytes(path, indented_json(obj))


def set_json_key(path: Path, key: str, value: Any) -> None:
    """Give `key` of the JSON object that write_json wrote at `path` the value `value`: the
    bytes write_json writes for the object so changed. When `key` is the object's last key
    (summary.json's timings), only `value` is encoded again (indented_json.with_last_key)."""
    text = path.read_bytes()
    changed = with_last_key(text, key, value)
    if changed is None:
        obj = json.loads(text)
        obj[key] = value
        changed = indented_json(obj)
    _atomic_write_bytes(path, changed)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class RunLock:
    """An exclusive lock file in the run directory: a second audit writing there refuses.

    A lock left by a process that no longer exists (killed with SIGKILL) is taken over.
    """

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / LOCK_FILE
        self._held = False

    def acquire(self) -> None:
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                try:
                    pid = int(self.path.read_text().strip() or "0")
                except (OSError, ValueError):
                    pid = 0
                if pid and _pid_alive(pid) and pid != os.getpid():
                    raise RunDirectoryError(
                        f"{self.path.parent} is in use by another audit (process {pid}); "
                        "wait for it to finish or choose another --out"
                    ) from None
                self.path.unlink(missing_ok=True)
                continue
            with os.fdopen(fd, "w") as fh:
                fh.write(str(os.getpid()))
            self._held = True
            return
        raise RunDirectoryError(f"cannot take the lock {self.path}")

    def release(self) -> None:
        if self._held:
            self.path.unlink(missing_ok=True)
            self._held = False

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class RunWriter:
    """Writes the results of a pass in chunks; knows what an earlier, interrupted pass did.

    `fingerprint` identifies the run (config hash, model and data fingerprints). Opening a
    directory that holds another run's fingerprint is refused (RunMismatchError) unless
    `overwrite`. `details` (optional, plain JSON data such as {"config": {option: value}}) is
    stored beside it, so a refusal can name the options that changed.
    """

    def __init__(
        self,
        run_dir: str | Path,
        fingerprint: dict[str, Any],
        overwrite: bool = False,
        details: dict[str, Any] | None = None,
    ) -> None:
        self.run_dir = Path(run_dir)
        self.fingerprint = fingerprint
        self.details = details or {}
        self._prepare(overwrite)
        self.parts_dir = self.run_dir / "parts"
        self.parts_dir.mkdir(exist_ok=True)

    def _prepare(self, overwrite: bool) -> None:
        run_dir = self.run_dir
        run_file = run_dir / RUN_FILE
        if run_dir.exists() and not run_dir.is_dir():
            raise RunDirectoryError(f"--out {run_dir} exists and is not a directory")
        if run_dir.exists() and overwrite:
            for child in run_dir.iterdir():
                if child.name == LOCK_FILE:
                    continue
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child)
                else:
                    child.unlink()
        elif run_file.exists():
            try:
                previous = json.loads(run_file.read_text())
            except (OSError, ValueError) as exc:
                raise RunDirectoryError(
                    f"{run_file} is unreadable ({exc}); use --overwrite to start again"
                ) from exc
            stored = previous.get("fingerprint", {})
            mismatched = [k for k in self.fingerprint if stored.get(k) != self.fingerprint[k]]
            if mismatched:
                changed = _changed_details(previous.get("details", {}), self.details)
                raise RunMismatchError(
                    f"{run_dir} holds a different run (differs in: {', '.join(mismatched)}"
                    f"{changed}), so it cannot be resumed with this command; use --overwrite "
                    "to replace it or choose another --out"
                )
        elif run_dir.exists() and any(p.name != LOCK_FILE for p in run_dir.iterdir()):
            raise RunMismatchError(
                f"{run_dir} is not empty and is not an auditor run directory; "
                "choose another --out or use --overwrite"
            )
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RunDirectoryError(f"cannot create {run_dir}: {exc.strerror or exc}") from exc
        if not run_file.exists():
            write_json(run_file, self._run_record("running"))

    def _run_record(self, state: str) -> dict[str, Any]:
        return {"fingerprint": self.fingerprint, "details": self.details, "state": state}

    def done_indices(self) -> set[int]:
        """Sample indices already stored by complete chunks (for resume)."""
        done: set[int] = set()
        for part in sorted(self.parts_dir.glob("*.parquet")):
            done.update(pd.read_parquet(part, columns=["index"])["index"].tolist())
        return done

    def next_part_name(self, rank: int = 0) -> str:
        """A part name not used yet by this rank: r<rank>-<k>."""
        existing = list(self.parts_dir.glob(f"r{rank:03d}-*.parquet"))
        k = max((int(p.stem.split("-")[1]) for p in existing), default=-1) + 1
        return f"r{rank:03d}-{k:06d}"

    def write_chunk(
        self, part: str, rows: pd.DataFrame, map_rows: np.ndarray, arrays: dict[str, np.ndarray]
    ) -> None:
        """Store one chunk.

        rows: one per sample; map_rows[i]: row of sample i in the arrays (-1: none, e.g. an
        unreadable file); arrays: folder -> array [n, ...] of those rows, e.g.
        {"maps/gradcam": float16 [n, h, w], "probe/thumb16": uint8 [n, 3, 16, 16]}.
        """
        rows = rows.copy()
        rows["map_part"] = np.where(map_rows >= 0, part, "")
        rows["map_row"] = map_rows.astype(np.int32)
        for folder_name, array in arrays.items():
            folder = self.run_dir / folder_name
            folder.mkdir(parents=True, exist_ok=True)
            _atomic_write_bytes(folder / f"{part}.npy", _npy_bytes(np.ascontiguousarray(array)))
        _atomic_write_bytes(self.parts_dir / f"{part}.parquet", _parquet_bytes(rows))

    def merge(self) -> None:
        """Merge every part into samples.parquet (RunReader reads it), sorted by index; of rows
        with the same index the one in the first part by name is kept.

        Arrow tables throughout (no pandas frame per part): the columns are the union of the
        parts' in order of appearance, a column a part lacks is null there, and types widen as
        pandas' concat would (null or int to the other part's type)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        parts = sorted(self.parts_dir.glob("*.parquet"))
        if not parts:
            _atomic_write_bytes(self.run_dir / "samples.parquet", _parquet_bytes(pd.DataFrame()))
            return
        tables = [pq.read_table(p).replace_schema_metadata() for p in parts]
        table = pa.concat_tables(tables, promote_options="permissive")
        index = table["index"].to_numpy()
        if not (index[1:] > index[:-1]).all():  # parts of one pass are in order already
            order = np.argsort(index, kind="stable")  # equal indices stay in part order
            first = np.ones(len(order), dtype=bool)
            first[1:] = index[order[1:]] != index[order[:-1]]
            table = table.take(order[first])
        buf = pa.BufferOutputStream()
        pq.write_table(table, buf)
        _atomic_write_bytes(self.run_dir / "samples.parquet", buf.getvalue().to_pybytes())

    def mark_complete(self) -> None:
        write_json(self.run_dir / RUN_FILE, self._run_record("complete"))


def _changed_details(before: dict[str, Any], now: dict[str, Any]) -> str:
    """'; options changed: image_size [64, 64] -> [32, 32], ...' for a refusal message."""
    old, new = before.get("config", {}), json_ready(now.get("config", {}))
    changed = [
        f"{key} {old.get(key)!r} -> {new.get(key)!r}"
        for key in sorted(set(old) | set(new))
        if old.get(key) != new.get(key)
    ]
    return f"; options changed: {', '.join(changed)}" if changed else ""


def _npy_bytes(array: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


def _parquet_bytes(frame: pd.DataFrame) -> bytes:
    import io

    buf = io.BytesIO()
    frame.to_parquet(buf, index=False)
    return buf.getvalue()


class RunReader:
    """Reads a finished run directory; everything `auditor report` needs, no model."""

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)
        if not (self.run_dir / "samples.parquet").is_file():
            raise RunDirectoryError(
                f"{self.run_dir} has no samples.parquet: not a finished auditor run directory "
                "(an interrupted audit resumes when you run the same `auditor audit` again)"
            )
        self._samples: pd.DataFrame | None = None

    def samples(self) -> pd.DataFrame:
        """samples.parquet as a DataFrame (cached)."""
        if self._samples is None:
            self._samples = pd.read_parquet(self.run_dir / "samples.parquet")
        return self._samples

    def load_map(self, index: int, method: str) -> np.ndarray | None:
        """The stored map of one sample, float32 [h, w]; None for a sample without one.

        Memory-maps its shard, so only that map is read from disk."""
        frame = self.samples()
        row = frame.loc[frame["index"] == index]
        if row.empty or not row.iloc[0]["map_part"]:
            return None
        path = self.run_dir / "maps" / method / f"{row.iloc[0]['map_part']}.npy"
        if not path.is_file():
            return None
        shard = np.load(path, mmap_mode="r", allow_pickle=False)
        return np.asarray(shard[int(row.iloc[0]["map_row"])], dtype=np.float32)

    def load_maps(self, indices: Iterable[int], method: str) -> np.ndarray:
        """Maps of many samples, float32 [n, h, w], in the order given (NaN where none)."""
        return self.load_rows(indices, f"maps/{method}").astype(np.float32, copy=False)

    def load_rows(self, indices: Iterable[int], folder: str) -> np.ndarray:
        """Per-sample arrays stored under `folder` (e.g. "maps/gradcam", "probe/thumb16")
        for the samples `indices`, in that order; rows of samples without one are NaN/zero.

        One memory-mapped read per shard (rows grouped by shard), no per-row Python: memory is
        the output array. Raises KeyError for an index not in samples.parquet."""
        frame = self.samples()
        wanted = np.fromiter(indices, dtype=np.int64)
        position = pd.Index(frame["index"].to_numpy()).get_indexer(wanted)
        if (position < 0).any():
            raise KeyError(f"sample index {int(wanted[position < 0][0])} is not in the run")
        parts = frame["map_part"].to_numpy(dtype=object)[position]
        rows = frame["map_row"].to_numpy(dtype=np.int64)[position]
        codes, names = pd.factorize(parts)
        order = np.argsort(codes, kind="stable")
        bounds = np.searchsorted(codes[order], np.arange(len(names) + 1))
        out: np.ndarray | None = None
        for code, part in enumerate(names):
            if not part:
                continue
            shard = np.load(self.run_dir / folder / f"{part}.npy", mmap_mode="r",
                            allow_pickle=False)
            if out is None:
                fill = np.nan if np.issubdtype(shard.dtype, np.floating) else 0
                out = np.full((len(wanted), *shard.shape[1:]), fill, dtype=shard.dtype)
            chosen = order[bounds[code] : bounds[code + 1]]
            out[chosen] = shard[rows[chosen]]
        return out if out is not None else np.zeros((len(wanted), 0, 0), dtype=np.float32)

    def thumb(self, index: int) -> np.ndarray | None:
        """The stored resized input of a sample, uint8 [H, W, 3] RGB, or None."""
        import cv2

        path = self.run_dir / "thumbs" / f"{index}.png"
        if not path.is_file():
            return None
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        return None if bgr is None else cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

    def thumb_mask(self, index: int) -> np.ndarray | None:
        """The stored foreground mask of a shown sample, bool [H, W], or None."""
        import cv2

        path = self.run_dir / "thumbs" / f"{index}.mask.png"
        if not path.is_file():
            return None
        grey = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        return None if grey is None else grey > 127

    def suspect_map(self, index: int, method: str) -> np.ndarray | None:
        """The stored `method` map of report suspect `index` (see write_suspect_map), float32
        [h, w] at the method's own resolution, or None when there is none."""
        path = _suspect_map_path(self.run_dir, method, index)
        if not path.is_file():
            return None
        return np.load(path, allow_pickle=False).astype(np.float32)

    def class_means(self) -> dict[str, np.ndarray] | None:
        """{'mean_image': uint8 [K,H,W,3], 'mean_map': float32 [K,h,w]} or None."""
        path = self.run_dir / "class_means.npz"
        if not path.is_file():
            return None
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}


def write_samples(run_dir: Path, samples: pd.DataFrame) -> None:
    """Replace the run's samples.parquet (atomically) with ``samples``."""
    _atomic_write_bytes(Path(run_dir) / "samples.parquet", _parquet_bytes(samples))


def write_thumb(run_dir: Path, index: int, rgb: np.ndarray, mask: np.ndarray | None = None) -> None:
    """Store a sample's resized input (uint8 [H, W, 3] RGB) as PNG for the report, and its
    foreground mask (bool [H, W]) beside it when there is one."""
    import cv2

    folder = Path(run_dir) / "thumbs"
    folder.mkdir(exist_ok=True)
    ok, buf = cv2.imencode(".png", cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR))
    if not ok:
        raise RunDirectoryError(f"cannot encode the thumbnail of sample {index}")
    _atomic_write_bytes(folder / f"{index}.png", buf.tobytes())
    if mask is not None:
        ok, buf = cv2.imencode(".png", np.ascontiguousarray(mask, dtype=np.uint8) * 255)
        if ok:
            _atomic_write_bytes(folder / f"{index}.mask.png", buf.tobytes())


def write_class_sums(run_dir: Path, rank: int, arrays: dict[str, np.ndarray]) -> None:
    """Store one pass's class image sums (auditor.class_image_sums) as
    class_sums/r<rank>-<k>.npz, k the next number free for that rank."""
    import io

    folder = Path(run_dir) / CLASS_SUMS
    folder.mkdir(exist_ok=True)
    taken = [int(p.stem.split("-")[1]) for p in folder.glob(f"r{rank:03d}-*.npz")]
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    _atomic_write_bytes(folder / f"r{rank:03d}-{max(taken, default=-1) + 1:06d}.npz",
                        buf.getvalue())


def class_sums_files(run_dir: Path) -> list[Path]:
    """The class image sums files of the run's passes, in name order."""
    return sorted((Path(run_dir) / CLASS_SUMS).glob("r*.npz"))


def write_class_means(run_dir: Path, mean_image: np.ndarray, mean_map: np.ndarray) -> None:
    """Store per-class mean input (uint8 [K,H,W,3]) and mean normalised map (float32 [K,h,w])."""
    import io

    buf = io.BytesIO()
    np.savez_compressed(buf, mean_image=mean_image, mean_map=mean_map)
    _atomic_write_bytes(Path(run_dir) / "class_means.npz", buf.getvalue())


SUSPECTS_DIR = "suspects"


def _suspect_map_path(run_dir: Path, method: str, index: int) -> Path:
    return Path(run_dir) / SUSPECTS_DIR / method / f"{int(index)}.npy"


def write_suspect_map(run_dir: Path, method: str, index: int, array: np.ndarray) -> None:
    """Store the `method` map (float [h, w], the method's native resolution: target-layer grid,
    occlusion patch grid or input pixels) of report suspect `index` as float16."""
    path = _suspect_map_path(run_dir, method, index)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunDirectoryError(f"cannot create {path.parent}: {exc.strerror or exc}") from exc
    # float16 saturates at 65504: clip so a large map keeps its shape instead of turning inf.
    half = np.clip(np.asarray(array, dtype=np.float32), -65504.0, 65504.0).astype(np.float16)
    _atomic_write_bytes(path, _npy_bytes(half))


def clear_suspect_maps(run_dir: Path, method: str | None = None) -> None:
    """Remove the stored suspect maps of `method` (None: of every method)."""
    folder = Path(run_dir) / SUSPECTS_DIR
    if method is not None:
        folder = folder / method
    if folder.is_dir():
        shutil.rmtree(folder)
