"""AuditConfig: every knob of an audit in one validated, hashable dataclass.

The CLI builds one from its options; Python users build one directly. `fingerprint()` is what
resume compares: two runs with the same fingerprint compute the same numbers.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Literal

from auditor.errors import UsageError
from auditor.map_methods import METHODS

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: The input size when neither the user nor the model gives one.
DEFAULT_IMAGE_SIZE = (224, 224)

#: Options that change how fast or how loudly a run goes, never its numbers: resume ignores them.
RUNTIME_ONLY = frozenset(
    {
        "batch_size",
        "workers",
        "device",
        "quiet",
        "overwrite",
        "fail_on",
        "out",
        "compile",
        "compile_backend",
        "chunk_size",
        "gallery_size",
        "trust_pickle",
        # Maps of the report's suspects are computed after the pass: adding them to a
        # finished run (same --out, same options) reruns only the analysis.
        "suspect_methods",
        "scorecam_channels",
        "occlusion_patch",
        # The baseline only decides what the report marks new and what --fail-on counts.
        "baseline",
    }
)


@dataclass(frozen=True)
class AuditConfig:
    """Every option of `auditor audit` (the CLI's option names, `auditor.cli_options`). Units:
    image_size in pixels (height, width), border as a fraction of each side, mean/std in [0, 1]
    RGB units; chunk_size in rows per stored chunk (None: the pipeline's default).

    image_size, mean, std, classes and reshape left at None are taken from the model when it
    declares them (``auditor.models.defaults``; run_audit calls ``resolved``), else 224 x 224,
    the ImageNet normalisation, the data's classes and no reshape."""

    data: str
    model: str
    out: str
    weights: str | None = None
    num_classes: int | None = None
    classes: tuple[str, ...] | None = None
    masks: str | None = None
    target_layers: tuple[str, ...] = ()
    reshape: str | None = None
    methods: tuple[str, ...] = ("gradcam",)
    primary: str | None = None
    explain: Literal["label", "predicted"] = "label"
    image_size: tuple[int, int] | None = None
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None
    border: float = 0.1
    foreground: Literal["mask", "estimate"] = "mask"
    batch_size: int = 64
    workers: int | None = None
    device: str = "auto"
    amp: Literal["auto", "on", "off"] = "auto"
    compile: bool = False
    trust_pickle: bool = False
    allow_outside: bool = False
    image_column: str = "image"
    label_column: str = "label"
    max_pixels: int = 89_478_485
    dicom_window: tuple[float, float] | None = None
    multi_label: bool = False
    threshold: float = 0.5
    quiet: bool = False
    overwrite: bool = False
    fail_on: Literal["high", "medium", "low"] | None = None
    #: An earlier run of the same data: the report marks what is new, --fail-on counts only it.
    baseline: str | None = None
    gallery_size: int = 48
    suspect_methods: tuple[str, ...] = ()
    scorecam_channels: int | None = None
    occlusion_patch: int | None = None
    interventions: bool = True
    sanity: bool = False
    seed: int = 0
    chunk_size: int | None = None
    compile_backend: str = "inductor"

    def __post_init__(self) -> None:
        if self.explain not in ("label", "predicted"):
            raise UsageError(f"--explain must be 'label' or 'predicted', not {self.explain!r}")
        if self.foreground not in ("mask", "estimate"):
            raise UsageError(f"--foreground must be 'mask' or 'estimate', not {self.foreground!r}")
        if not 0.0 < self.border < 0.5:
            raise UsageError(f"--border must be a fraction in (0, 0.5), not {self.border}")
        if self.image_size is not None and (len(self.image_size) != 2
                                            or min(self.image_size) < 8):
            raise UsageError(f"--image-size must be at least 8 pixels, not {self.image_size}")
        if any(v is not None and len(v) != 3 for v in (self.mean, self.std)):
            raise UsageError("--mean and --std take three numbers (R, G, B)")
        if self.std is not None and min(self.std) <= 0:
            raise UsageError(f"--std values must be positive, not {self.std}")
        if self.batch_size < 1:
            raise UsageError(f"--batch-size must be at least 1, not {self.batch_size}")
        if self.workers is not None and self.workers < 0:
            raise UsageError(f"--workers must be 0 or more, not {self.workers}")
        if self.num_classes is not None and self.num_classes < 1:
            raise UsageError(f"--num-classes must be at least 1, not {self.num_classes}")
        if not self.methods:
            raise UsageError("--methods needs at least one method")
        if self.primary is not None and self.primary not in self.methods:
            raise UsageError(
                f"--primary {self.primary!r} is not among --methods ({', '.join(self.methods)})"
            )
        if self.amp not in ("auto", "on", "off"):
            raise UsageError(f"--amp must be auto, on or off, not {self.amp!r}")
        if self.device not in ("auto", "cpu") and not self.device.startswith("cuda"):
            raise UsageError(f"--device must be auto, cpu or cuda[:N], not {self.device!r}")
        if self.dicom_window is not None and (
            len(self.dicom_window) != 2 or not self.dicom_window[1] > 0
        ):
            raise UsageError(
                f"--dicom-window takes CENTER,WIDTH with a width > 0, not {self.dicom_window}"
            )
        if not 0.0 < self.threshold < 1.0:
            raise UsageError(f"--threshold must be a probability in (0, 1), not {self.threshold}")
        if self.multi_label and self.explain != "label":
            raise UsageError(
                "--multi-label explains each positive label of an image; --explain predicted "
                "does not apply"
            )
        self._check_suspect_methods()
        for name in ("scorecam_channels", "occlusion_patch", "chunk_size"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise UsageError(f"--{name.replace('_', '-')} must be at least 1, not {value}")

    def _check_suspect_methods(self) -> None:
        names = self.suspect_methods
        # A bare string is one name, not a sequence of letters; duplicates are dropped.
        names = tuple(dict.fromkeys((names,) if isinstance(names, str) else names))
        object.__setattr__(self, "suspect_methods", names)
        if not names:
            return
        unknown = [name for name in names if name not in METHODS]
        if unknown:
            raise UsageError(
                f"unknown --suspect-methods {', '.join(unknown)}; choose from "
                f"{', '.join(n for n in METHODS if n not in self.methods)}"
            )
        in_pass = [name for name in names if name in self.methods]
        if in_pass:
            raise UsageError(
                f"--suspect-methods {', '.join(in_pass)} already run on every sample "
                "(--methods); drop them from --suspect-methods"
            )

    def resolved(
        self,
        image_size: tuple[int, int] | None = None,
        mean: tuple[float, float, float] | None = None,
        std: tuple[float, float, float] | None = None,
        classes: tuple[str, ...] | None = None,
        reshape: str | None = None,
    ) -> AuditConfig:
        """This config with the options the user left at None filled in: from the arguments
        (what the model declares), else 224 x 224 and the ImageNet normalisation; classes and
        reshape stay None when neither gives them."""
        return replace(
            self,
            image_size=self.image_size or image_size or DEFAULT_IMAGE_SIZE,
            mean=self.mean or mean or IMAGENET_MEAN,
            std=self.std or std or IMAGENET_STD,
            classes=self.classes or classes,
            reshape=self.reshape or reshape,
        )

    @property
    def primary_method(self) -> str:
        """The method whose maps feed the measures and flags."""
        return self.primary or self.methods[0]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data (for summary.json)."""
        out = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}

    def fingerprint(self) -> str:
        """sha256 of the options that change results (runtime-only options left out)."""
        relevant = {
            f.name: getattr(self, f.name)
            for f in fields(self)
            if f.name not in RUNTIME_ONLY
        }
        text = json.dumps(relevant, sort_keys=True, default=list)
        return hashlib.sha256(text.encode()).hexdigest()
