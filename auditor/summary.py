"""summary.json: its one schema, its builders, its one writer and its reader.

``Summary`` is what an audit (``auditor.analysis``) and a probe (``auditor.probe``) write and what
the report reads back; ``ModelFacts`` and ``DataFacts`` are its model and data sections. The
file keeps the key order of the fields below; a probe run (no model) has no model-only keys
(``MODEL_ONLY_KEYS``). Reading is lenient: a key an older run lacks takes its default.
"""

from __future__ import annotations

import datetime as _dt
import json
import platform
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import pandas as pd

from auditor import __version__
from auditor.errors import RunDirectoryError
from auditor.store import set_json_key, write_json

SUMMARY_FILE = "summary.json"
#: Keys an audit writes and a probe (no model) leaves out.
MODEL_ONLY_KEYS = frozenset(
    {"suspect_methods", "suspect_methods_errors", "model_check", "interventions", "clusters",
     "sanity", "withheld_flags", "pass"}
)


def versions() -> dict[str, str]:
    """Versions of Python, torch, torchvision and auditor (read without importing them)."""
    from importlib.metadata import PackageNotFoundError, version

    def installed(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "not installed"

    return {
        "python": platform.python_version(),
        "torch": installed("torch"),
        "torchvision": installed("torchvision"),
        "auditor": __version__,
    }


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


@dataclass
class ModelFacts:
    """The ``model`` section: what was audited and where its maps come from."""

    spec: str = ""
    weights: str | None = None
    weights_sha256: str | None = None
    parameters: int = 0
    outputs: int | None = None
    target_layers: list[str] = field(default_factory=list)
    target_layers_given: bool = True
    warnings: list[str] = field(default_factory=list)
    input_size: list[int] = field(default_factory=list)
    device: str = ""
    random_weights: bool = False


@dataclass
class DataFacts:
    """The ``data`` section: root, source kind, counts, errors, foreground.

    Multi-label: counts are images with each label; n_samples, n_ok and n_errors count images
    (files), and n_pairs the (image, label) rows; single-label runs write neither
    ``multi_label`` nor ``n_pairs``.
    """

    root: str = ""
    source: str = ""
    classes: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    counts_ok: dict[str, int] = field(default_factory=dict)
    n_samples: int = 0
    n_ok: int = 0
    n_errors: int = 0
    multi_label: bool = False
    n_pairs: int | None = None
    has_masks: bool = False
    foreground_source: str = "none"
    foreground_sources: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, samples: pd.DataFrame, root: str, classes: list[str], warnings: list[str],
           source: str, multi_label: bool = False) -> DataFacts:
        """The facts of the samples.parquet table of a run on data of the kind ``source``
        (``DatasetIndex.source``: folder, manifest, parquet, arrow, webdataset)."""
        files = samples.drop_duplicates("path") if multi_label else samples
        counts = samples["label"].value_counts()
        readable = samples["status"] == "ok"
        ok_counts = samples.loc[readable, "label"].value_counts()
        sources = samples.loc[readable, "foreground_source"].value_counts()
        return cls(
            root=root,
            source=source,
            classes=list(classes),
            counts={c: int(counts.get(c, 0)) for c in classes},
            counts_ok={c: int(ok_counts.get(c, 0)) for c in classes},
            n_samples=len(files),
            n_ok=int((files["status"] == "ok").sum()),
            n_errors=int((files["status"] == "error").sum()),
            multi_label=multi_label,
            n_pairs=len(samples) if multi_label else None,
            has_masks=bool(samples["has_mask"].any()),
            foreground_source=sources.index[0] if len(sources) else "none",
            foreground_sources={k: int(v) for k, v in sources.items()},
            warnings=list(warnings)[:50],
        )

    def to_dict(self) -> dict[str, Any]:
        """The ``data`` object of summary.json (no multi-label keys for a single-label run)."""
        out = _plain_fields(self)
        if not self.multi_label:
            del out["multi_label"], out["n_pairs"]
        return out


def accuracy(samples: pd.DataFrame, classes: list[str]) -> dict[str, Any]:
    """Top-1 accuracy over readable, labelled samples, overall and per class (NaN: none)."""
    ok = samples.loc[(samples["status"] == "ok") & (samples["label_index"] >= 0),
                     ["correct", "label_index"]]
    means = ok["correct"].astype(float).groupby(ok["label_index"]).mean()
    per_class = {name: float(means.get(k, float("nan"))) for k, name in enumerate(classes)}
    return {
        "overall": float(ok["correct"].mean()) if len(ok) else float("nan"),
        "per_class": per_class,
    }


@dataclass
class Summary:
    """summary.json. Sections other detectors own (probes, clusters, interventions, sanity,
    class_stats, accuracy, model_check) are their own JSON-ready dicts; ``flags`` are
    ``Flag.to_dict()``s, model-level first, then most severe first; ``withheld_flags`` the
    class-level flags the model check held back (auditor.detect.model_check)."""

    command: str
    config: dict[str, Any]
    data: DataFacts | None
    model: ModelFacts | None = None
    methods: list[str] = field(default_factory=list)
    primary: str | None = None
    suspect_methods: list[str] = field(default_factory=list)
    suspect_methods_errors: dict[str, str] = field(default_factory=dict)
    accuracy: dict[str, Any] | None = None
    model_check: dict[str, Any] | None = None
    class_stats: dict[str, Any] | None = None
    probes: dict[str, Any] | None = None
    interventions: list[dict[str, Any]] | None = None
    clusters: dict[str, Any] | None = None
    sanity: dict[str, Any] | None = None
    flags: list[dict[str, Any]] = field(default_factory=list)
    withheld_flags: list[dict[str, Any]] = field(default_factory=list)
    #: With --baseline: {run, appeared, disappeared, n_persisting, overlap} (auditor.compare).
    baseline: dict[str, Any] | None = None
    pass_stats: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    auditor_version: str = __version__
    created: str = field(default_factory=_now)
    versions: dict[str, str] = field(default_factory=versions)

    def to_dict(self) -> dict[str, Any]:
        """The summary.json object, keys in the file's order."""
        out: dict[str, Any] = {
            "auditor_version": self.auditor_version,
            "created": self.created,
            "command": self.command,
            "config": self.config,
            "versions": self.versions,
            "model": None if self.model is None else _plain_fields(self.model),
            "data": None if self.data is None else self.data.to_dict(),
            "methods": list(self.methods),
            "primary": self.primary,
            "suspect_methods": list(self.suspect_methods),
            "suspect_methods_errors": dict(self.suspect_methods_errors),
            "accuracy": self.accuracy,
            "model_check": self.model_check,
            "class_stats": self.class_stats,
            "probes": self.probes,
            "interventions": self.interventions,
            "clusters": self.clusters,
            "sanity": self.sanity,
            "flags": list(self.flags),
            "withheld_flags": list(self.withheld_flags),
            "baseline": self.baseline,
            "pass": self.pass_stats,
            "timings": dict(self.timings),
        }
        if self.model is None:
            out = {k: v for k, v in out.items() if k not in MODEL_ONLY_KEYS}
        return out

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Summary:
        """A summary.json object read back; absent keys take their defaults."""
        model, data = raw.get("model"), raw.get("data")
        return cls(
            command=str(raw.get("command") or ""),
            config=dict(raw.get("config") or {}),
            data=None if not data else _from_fields(DataFacts, data),
            model=None if not model else _from_fields(ModelFacts, model),
            methods=[str(m) for m in raw.get("methods") or []],
            primary=raw.get("primary"),
            suspect_methods=[str(m) for m in raw.get("suspect_methods") or []],
            suspect_methods_errors=dict(raw.get("suspect_methods_errors") or {}),
            accuracy=raw.get("accuracy"),
            model_check=raw.get("model_check"),
            class_stats=raw.get("class_stats"),
            probes=raw.get("probes"),
            interventions=raw.get("interventions"),
            clusters=raw.get("clusters"),
            sanity=raw.get("sanity"),
            flags=_records(raw.get("flags")),
            withheld_flags=_records(raw.get("withheld_flags")),
            baseline=raw["baseline"] if isinstance(raw.get("baseline"), dict) else None,
            pass_stats=dict(raw.get("pass") or {}),
            timings=dict(raw.get("timings") or {}),
            auditor_version=str(raw.get("auditor_version") or ""),
            created=str(raw.get("created") or ""),
            versions=dict(raw.get("versions") or {}),
        )


def _records(value: Any) -> list[dict[str, Any]]:
    """A list of flag records read back; anything that is not a record is left out."""
    return [f for f in value if isinstance(f, dict)] if isinstance(value, list) else []


def _plain_fields(record: Any) -> dict[str, Any]:
    return {f.name: getattr(record, f.name) for f in fields(record)}


def _from_fields(cls: type, raw: dict[str, Any]) -> Any:
    """``cls`` from a JSON section: missing keys take their defaults, unknown keys are left."""
    return cls(**{f.name: raw[f.name] for f in fields(cls) if f.name in raw})


def write_summary(run_dir: Path, summary: Summary) -> None:
    """Write RUN_DIR/summary.json (atomically; NaN written as null)."""
    write_json(Path(run_dir) / SUMMARY_FILE, summary.to_dict())


def write_timings(run_dir: Path, timings: dict[str, float]) -> None:
    """Give RUN_DIR/summary.json, written by write_summary, these timings (its last key): the
    same file as write_summary with them, without encoding the rest again (the analysis adds
    the report's time after rendering the report from the file)."""
    set_json_key(Path(run_dir) / SUMMARY_FILE, "timings", dict(timings))


def read_summary_json(run_dir: str | Path) -> dict[str, Any]:
    """RUN_DIR/summary.json as the plain object (RunDirectoryError when there is none)."""
    path = Path(run_dir) / SUMMARY_FILE
    if not path.is_file():
        raise RunDirectoryError(f"{run_dir} has no summary.json: the audit did not finish")
    return json.loads(path.read_text(encoding="utf-8"))


def read_summary(run_dir: str | Path) -> Summary:
    """RUN_DIR/summary.json as a Summary (RunDirectoryError when there is none)."""
    return Summary.from_dict(read_summary_json(run_dir))
