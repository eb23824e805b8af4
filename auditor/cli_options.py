"""The CLI's options, each declared once, and the groups the commands share.

An option's destination is the name of the ``AuditConfig`` field it fills, so ``auditor audit``
builds its config from the parsed options directly. Values are checked where they are parsed
(click types and callbacks) and again by ``AuditConfig`` for Python users.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from auditor.map_methods import METHODS, ONE_PASS_METHODS, SEPARATE_METHODS

Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]


def _floats3(
    ctx: click.Context, param: click.Parameter, value: str | None
) -> tuple[float, float, float] | None:
    if value is None:  # not given: the model's own, else ImageNet's (AuditConfig.resolved)
        return None
    try:
        parts = tuple(float(v) for v in value.split(","))
    except ValueError:
        raise click.BadParameter(
            f"expected three numbers like 0.5,0.5,0.5, got {value!r}"
        ) from None
    if len(parts) != 3:
        raise click.BadParameter(f"expected three comma-separated numbers, got {value!r}")
    return parts  # type: ignore[return-value]


def _size(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[int, int] | None:
    if value is None:  # not given: the model's own, else 224 (AuditConfig.resolved)
        return None
    try:
        parts = [int(v) for v in value.lower().replace("x", ",").split(",")]
    except ValueError:
        raise click.BadParameter(f"expected N or HxW, got {value!r}") from None
    if len(parts) == 1:
        parts = parts * 2
    if len(parts) != 2:
        raise click.BadParameter(f"expected N or HxW, got {value!r}")
    return parts[0], parts[1]


def csv_list(
    ctx: click.Context, param: click.Parameter, value: str | None
) -> tuple[str, ...] | None:
    """A comma-separated option as a tuple of its items (None when the option is absent)."""
    if value is None:
        return None
    items = tuple(v.strip() for v in value.split(",") if v.strip())
    if not items:
        raise click.BadParameter("expected a comma-separated list")
    return items


def _csv_or_empty(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[str, ...]:
    return csv_list(ctx, param, value) or ()


def _window(
    ctx: click.Context, param: click.Parameter, value: str | None
) -> tuple[float, float] | None:
    from auditor.data.dicom import parse_window
    from auditor.errors import UsageError

    if value is None:
        return None
    try:
        return parse_window(value)
    except UsageError as exc:
        raise click.BadParameter(str(exc)) from None


def group(*options: Decorator) -> Decorator:
    """Several options as one decorator, listed in --help in the order given."""

    def apply(fn: Callable[..., Any]) -> Callable[..., Any]:
        for option in reversed(options):
            fn = option(fn)
        return fn

    return apply


# -- single options ---------------------------------------------------------------------------

model = click.option(
    "--model",
    required=True,
    help="torchvision:NAME, timm:NAME, hf:PATH_OR_ID, module.path:factory, "
    "path/file.py:factory, or a TorchScript file.",
)
weights = click.option(
    "--weights",
    help="Weights: a state_dict file (.pt/.pth, loaded with weights_only) or .safetensors; "
    "for torchvision: also DEFAULT or a weights name (IMAGENET1K_V2), for timm: also "
    "pretrained, both from the local cache (nothing is downloaded).",
)
num_classes = click.option(
    "--num-classes", type=int, help="Head size, when the weights do not say it."
)
trust_pickle = click.option(
    "--trust-pickle",
    is_flag=True,
    help="Allow loading full pickled models/weights (unpickling can run code).",
)
data_classes = click.option(
    "--classes",
    callback=csv_list,
    help="Class names in the model's output order, comma-separated "
    "(default: the model's own categories, else sorted folder names / labels).",
)
masks = click.option(
    "--masks",
    type=click.Path(exists=True),
    help="Foreground masks: a folder of mask images at the same relative paths as the "
    "images (any image extension; nonzero = foreground), a COCO JSON file (polygons, RLE) "
    "or a Pascal VOC folder of XML boxes, matched by file name.",
)
image_column = click.option(
    "--image-column",
    default="image",
    show_default=True,
    help="Parquet / Hugging Face data: the column of the images (bytes, a path or the "
    "{bytes, path} struct).",
)
label_column = click.option(
    "--label-column",
    default="label",
    show_default=True,
    help="Parquet / Hugging Face data: the column of the labels (indices or names).",
)
image_size = click.option(
    "--image-size",
    callback=_size,
    help="Model input size, N or HxW pixels (images are resized, not cropped; default: the "
    "model's own, else 224).",
)
border = click.option(
    "--border",
    default=0.1,
    show_default=True,
    type=float,
    help="Width of the border band, as a fraction of each side.",
)
workers = click.option(
    "--workers",
    type=int,
    default=None,
    help="DataLoader worker processes, and at most as many for the analysis's clustering "
         "(default: from the core count; 0: none, all in this process).",
)
allow_outside = click.option(
    "--allow-outside",
    is_flag=True,
    help="Allow manifest paths outside the manifest's folder.",
)
multi_label = click.option(
    "--multi-label",
    is_flag=True,
    help="Several labels per image: a manifest column `labels` separated by | (empty "
    "= no finding); maps, statistics and probes per label.",
)
dicom_window = click.option(
    "--dicom-window",
    callback=_window,
    help="CENTER,WIDTH in modality units (e.g. HU) for every DICOM file, replacing "
    "the files' own VOI LUT or window (default: each file's; its min..max without).",
)
quiet = click.option("--quiet", "-q", is_flag=True, help="Only warnings and errors on stderr.")
target_layers = click.option(
    "--target-layer",
    "target_layers",
    multiple=True,
    help="Dotted module name of the layer to explain; repeat to average several "
    "(default: the last layer with a spatial feature map, see --reshape).",
)
reshape = click.option(
    "--reshape",
    help="How the target layer's output becomes a feature map (default: from the model's "
    "family for torchvision:, timm: and hf: models, else none): none (already [B,C,h,w]), "
    "vit (transformer tokens [B,N,C]; class/register tokens dropped, square grid inferred), "
    "vit:GHxGW, or nhwc (channels-last [B,h,w,C], timm Swin). With vit or nhwc the default "
    "layer is the last norm layer whose positions the prediction depends on.",
)
mean = click.option(
    "--mean",
    callback=_floats3,
    help="Normalisation mean (RGB, 0-1 units; default: the model's own, else ImageNet's).",
)
std = click.option(
    "--std",
    callback=_floats3,
    help="Normalisation std (RGB, 0-1 units; default: the model's own, else ImageNet's).",
)
device = click.option(
    "--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N."
)
fail_on = click.option(
    "--fail-on",
    type=click.Choice(["high", "medium", "low"]),
    help="Exit with code 3 when a flag at or above this severity is raised.",
)
occlusion_patch = click.option(
    "--occlusion-patch",
    type=click.IntRange(min=1),
    help="Occlusion patch side in pixels (default: an eighth of the shorter image side).",
)
scorecam_channels = click.option(
    "--scorecam-channels",
    type=click.IntRange(min=1),
    help="Score-CAM uses only the N channels of highest mean activation (default: all; "
    "Score-CAM costs one forward per channel).",
)
pass_methods = click.option(
    "--methods",
    default="gradcam",
    show_default=True,
    callback=csv_list,
    help=f"Map methods computed in the pass, comma-separated ({', '.join(ONE_PASS_METHODS)}).",
)
suspect_methods = click.option(
    "--suspect-methods",
    callback=_csv_or_empty,
    default=None,
    help="Costly map methods run on the report's suspects only (the --gallery-size most "
    f"suspicious samples), never the whole pass, comma-separated: {', '.join(SEPARATE_METHODS)}, "
    "or a one-pass method not in --methods. Each adds an overlay to every suspect's card.",
)
#: Every registered method, for `explain`.
explain_methods = click.option(
    "--methods",
    default="gradcam,gradcam++,layercam,occlusion,guided-gradcam",
    show_default=True,
    callback=csv_list,
    help=f"Comma-separated: {', '.join(METHODS)}.",
)

# -- options of one command ----------------------------------------------------------------

# audit (each destination the AuditConfig field of that name)
audit_out = click.option(
    "--out",
    required=True,
    type=click.Path(file_okay=False),
    help="Run directory to write (an unfinished one is resumed).",
)
primary = click.option(
    "--primary",
    help="The method whose maps feed the measures and flags (default: the first of --methods).",
)
explain_class = click.option(
    "--explain",
    type=click.Choice(["label", "predicted"]),
    default="label",
    show_default=True,
    help="Which class the maps explain.",
)
label_threshold = click.option(
    "--threshold",
    default=0.5,
    show_default=True,
    type=float,
    help="With --multi-label: a label is predicted when its sigmoid probability is at least "
    "this.",
)
foreground = click.option(
    "--foreground",
    type=click.Choice(["mask", "estimate"]),
    default="mask",
    show_default=True,
    help="Where there is no mask: 'estimate' finds the object from the image "
    "(flood fill of a uniform border, else GrabCut); estimates are marked.",
)
batch_size = click.option(
    "--batch-size", default=64, show_default=True, type=int, help="Images per batch."
)
amp = click.option(
    "--amp",
    type=click.Choice(["auto", "on", "off"]),
    default="auto",
    show_default=True,
    help="Mixed precision for the forward pass (auto: on for CUDA, off on the CPU).",
)
compile_model = click.option(
    "--compile",
    is_flag=True,
    help="torch.compile the model (checked against eager on the first batch; falls "
    "back with a warning). Pays off on GPUs for long runs.",
)
chunk_size = click.option(
    "--chunk-size",
    type=click.IntRange(min=1),
    default=None,
    hidden=True,
    help="Rows per stored chunk (default 2048): what an interruption can lose.",
)
overwrite = click.option("--overwrite", is_flag=True, help="Replace an existing run directory.")
baseline = click.option(
    "--baseline",
    type=click.Path(exists=True, file_okay=False),
    help="An earlier run directory of the same data: the report marks what is new against it, "
    "summary.json gains `baseline` {appeared, disappeared}, and --fail-on counts only new flags.",
)
gallery_size = click.option(
    "--gallery-size",
    default=48,
    show_default=True,
    type=int,
    help="Suspect samples shown in the report.",
)
no_interventions = click.option(
    "--no-interventions", is_flag=True, help="Skip the confirmation runs on edited inputs."
)
sanity = click.option(
    "--sanity",
    is_flag=True,
    help="Also run the model-randomisation sanity check of each method on 16 "
    "samples (see `auditor sanity`); the report says which methods passed.",
)

# probe, report, compare, demo
probe_out = click.option(
    "--out",
    required=True,
    type=click.Path(file_okay=False),
    help="Directory for probe.json, samples.parquet and report.html.",
)
report_output = click.option(
    "--output",
    type=click.Path(dir_okay=False),
    help="Where to write the HTML (default: RUN_DIR/report.html).",
)
report_format = click.option(
    "--format",
    "fmt",
    type=click.Choice(["html", "json"]),
    default="html",
    show_default=True,
    help="html renders the report; json prints summary.json.",
)
report_gallery_size = click.option(
    "--gallery-size", default=48, show_default=True, type=int, help="Suspect samples shown."
)
compare_out = click.option(
    "--out",
    required=True,
    type=click.Path(file_okay=False),
    help="Directory for compare.json and compare.html.",
)
demo_out = click.option(
    "--out",
    default="auditor-demo",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Where to write the generated data, the model and the run.",
)
per_class = click.option(
    "--per-class", default=150, show_default=True, type=int, help="Images generated per class."
)
epochs = click.option("--epochs", default=4, show_default=True, type=int, help="Training epochs.")

# explain, sanity
map_batch_size = click.option(
    "--batch-size",
    default=16,
    show_default=True,
    type=click.IntRange(min=1),
    help="Images per batch.",
)
explain_out = click.option(
    "--out",
    required=True,
    type=click.Path(file_okay=False),
    help="Folder for <stem>.png, <stem>.<method>.npy and <stem>.json.",
)
explain_target = click.option(
    "--target",
    help="Class to explain, by index or by name (names need --classes); "
    "default: each image's predicted class.",
)
explain_classes = click.option(
    "--classes",
    callback=csv_list,
    help="Class names in the model's output order, comma-separated.",
)
sanity_out = click.option(
    "--out", type=click.Path(file_okay=False), help="Folder to write sanity.json to."
)
sanity_methods = click.option(
    "--methods",
    default="gradcam",
    show_default=True,
    callback=csv_list,
    help="Map methods to check, comma-separated (as for `explain`).",
)
sanity_samples = click.option(
    "--n-samples",
    default=32,
    show_default=True,
    type=click.IntRange(min=1),
    help="Images drawn (seeded) from DATA.",
)
sanity_steps = click.option(
    "--steps",
    default=10,
    show_default=True,
    type=click.IntRange(min=0),
    help="Cascade steps from the head down (0: one per parametrised layer).",
)
sanity_threshold = click.option(
    "--threshold",
    default=0.5,
    show_default=True,
    type=float,
    help="A method passes when the mean Spearman correlation with every layer "
    "randomised is below this.",
)
sanity_seed = click.option(
    "--seed",
    default=0,
    show_default=True,
    type=int,
    help="Seeds the sample choice and the re-initialisation.",
)

# -- groups ------------------------------------------------------------------------------------

#: Every command that reads a data set (audit, probe).
data_options = group(
    data_classes, masks, image_column, label_column, image_size, border, workers, allow_outside,
    multi_label, dicom_window, quiet,
)
#: The model and how it is loaded (audit, explain, sanity).
model_options = group(model, weights, num_classes, trust_pickle)
#: Where the maps come from (audit, explain, sanity).
layer_options = group(target_layers, reshape)
#: How images are normalised for the model (audit, explain, sanity).
normalisation_options = group(mean, std)
#: Settings of the separate-pass methods (audit's --suspect-methods, explain, sanity).
separate_method_options = group(occlusion_patch, scorecam_channels)
#: The model, its input and the map settings (explain, sanity).
map_model_options = group(
    model_options, layer_options, image_size, normalisation_options, separate_method_options,
    map_batch_size, device, quiet,
)
