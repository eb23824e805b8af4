"""What a model says about its own input: size, normalisation, class names, and how its
target layer's output becomes a feature map. These become the defaults of --image-size,
--mean, --std, --classes and --reshape when the user does not give them.

Read without building the model or reading its weights, so the data can be indexed with the
model's classes before the model is loaded:

- ``torchvision:NAME`` with ``--weights DEFAULT`` or a weights name: size (the crop), mean
  and std of the weights' transforms, the weights' categories as classes;
- ``timm:NAME``: size, mean and std of its ``pretrained_cfg``; with ``--weights pretrained``
  the ImageNet label names (synsets) of its head as classes;
- ``hf:PATH_OR_ID``: size, mean and std of its image processor; its ``id2label`` as classes
  (unless the generic LABEL_0, LABEL_1, ...).

Reshape by family: vision transformers ``vit`` (tokens [B, N, C]), timm and torchvision Swin
``nhwc`` (channels-last maps); convolutional networks none.
"""

from __future__ import annotations

from dataclasses import dataclass

from auditor.errors import ModelLoadError

# Hugging Face model types whose layers output tokens [B, N, C] (a Swin's too, unlike timm's).
_HF_TOKEN_TYPES = frozenset({
    "vit", "deit", "beit", "data2vec-vision", "dinov2", "dinov2_with_registers", "vit_msn",
    "vit_mae", "vit_hybrid", "swin", "swinv2", "levit", "pvt", "pvt_v2", "siglip_vision_model",
    "clip_vision_model",
})
# timm model modules by family.
_TIMM_VIT_MODULES = frozenset({
    "vision_transformer", "vision_transformer_hybrid", "vision_transformer_relpos", "deit",
    "eva", "beit", "vision_transformer_sam",
})
_TIMM_SWIN_MODULES = frozenset({"swin_transformer", "swin_transformer_v2",
                                "swin_transformer_v2_cr"})


@dataclass(frozen=True)
class ModelDefaults:
    """Input settings a model declares; None where it declares nothing.

    Attributes:
        image_size: (H, W) in pixels.
        mean, std: normalisation, RGB in [0, 1] units.
        classes: class names in output order.
        reshape: the ``--reshape`` spec its family needs ("vit", "nhwc") or None.
        source: where the defaults came from, for the report (e.g. "ResNet50_Weights.DEFAULT").
    """

    image_size: tuple[int, int] | None = None
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None
    classes: tuple[str, ...] | None = None
    reshape: str | None = None
    source: str = ""


def _triple(values: object) -> tuple[float, float, float] | None:
    try:
        first, second, third = (float(v) for v in values)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        return None
    return first, second, third


def torchvision_reshape(arch: str) -> str | None:
    """--reshape for a torchvision architecture: ViTs give tokens, Swins channels-last maps."""
    if arch.startswith("vit_"):
        return "vit"
    if arch.startswith("swin_"):
        return "nhwc"
    return None


def _torchvision_defaults(arch: str, weights: str | None) -> ModelDefaults:
    from auditor.models.torchvision_weights import is_weights_name, weights_entry

    reshape = torchvision_reshape(arch)
    if not weights or not is_weights_name(weights):
        return ModelDefaults(reshape=reshape)
    entry = weights_entry(arch, weights)
    transforms = entry.transforms()
    crop = list(getattr(transforms, "crop_size", []) or [])
    size = (int(crop[0]), int(crop[-1])) if crop else None
    return ModelDefaults(
        image_size=size, mean=_triple(getattr(transforms, "mean", None)),
        std=_triple(getattr(transforms, "std", None)),
        classes=tuple(str(c) for c in entry.meta.get("categories", [])) or None,
        reshape=reshape, source=str(entry),
    )


def timm_reshape(name: str) -> str | None:
    """--reshape for a timm model, from the module that defines its architecture."""
    from timm.models import model_entrypoint

    module = model_entrypoint(name.split(".")[0]).__module__.rsplit(".", 1)[-1]
    if module in _TIMM_VIT_MODULES:
        return "vit"
    if module in _TIMM_SWIN_MODULES:
        return "nhwc"
    return None


def _timm_defaults(name: str, weights: str | None) -> ModelDefaults:
    from auditor.models.timm_models import pretrained_cfg

    cfg = pretrained_cfg(name)
    input_size = tuple(cfg.get("input_size") or ())
    classes = None
    if weights == "pretrained":
        from timm.data import ImageNetInfo, infer_imagenet_subset

        subset = infer_imagenet_subset(cfg)
        if subset:
            classes = tuple(ImageNetInfo(subset).label_names())
    return ModelDefaults(
        image_size=(int(input_size[1]), int(input_size[2])) if len(input_size) == 3 else None,
        mean=_triple(cfg.get("mean")), std=_triple(cfg.get("std")), classes=classes,
        reshape=timm_reshape(name), source=f"timm pretrained_cfg of {name}",
    )


def _hf_size(processor: object) -> tuple[int, int] | None:
    """The model input (H, W) of a Hugging Face image processor: its crop when it crops,
    else its resize target. Sizes are a dict (transformers 4) or a SizeDict (5)."""
    size = getattr(processor, "crop_size", None) if getattr(
        processor, "do_center_crop", False) else None
    size = size or getattr(processor, "size", None)
    if isinstance(size, int):
        return size, size

    def field(key: str) -> object:
        return size.get(key) if isinstance(size, dict) else getattr(size, key, None)

    height, width, shortest = field("height"), field("width"), field("shortest_edge")
    if isinstance(height, int) and isinstance(width, int):
        return height, width
    if isinstance(shortest, int):
        return shortest, shortest
    return None


def hf_classes(id2label: dict[int, str] | None) -> tuple[str, ...] | None:
    """Class names from ``id2label`` in id order; None for the generic LABEL_0, LABEL_1, ..."""
    if not id2label:
        return None
    names = tuple(str(id2label[i]) for i in sorted(id2label, key=int))
    if all(name == f"LABEL_{i}" for i, name in enumerate(names)):
        return None
    return names


def _hf_defaults(path: str) -> ModelDefaults:
    from auditor.models.hf_models import hf_config, hf_processor

    config = hf_config(path)
    processor = hf_processor(path)
    return ModelDefaults(
        image_size=_hf_size(processor) if processor is not None else None,
        mean=_triple(getattr(processor, "image_mean", None)),
        std=_triple(getattr(processor, "image_std", None)),
        classes=hf_classes(getattr(config, "id2label", None)),
        reshape="vit" if getattr(config, "model_type", "") in _HF_TOKEN_TYPES else None,
        source=f"Hugging Face config and image processor of {path}",
    )


def model_defaults(spec: str, weights: str | None) -> ModelDefaults:
    """The defaults a SPEC (and its --weights) declares (table in the module docstring).

    Raises:
        ModelLoadError: an unknown model or weights name, or a missing optional library.
    """
    kind, _, name = spec.partition(":")
    try:
        if kind == "torchvision":
            return _torchvision_defaults(name, weights)
        if kind == "timm":
            return _timm_defaults(name, weights)
        if kind == "hf":
            return _hf_defaults(name)
    except ModelLoadError:
        raise
    except (KeyError, ValueError, TypeError, AttributeError, RuntimeError) as exc:
        raise ModelLoadError(
            f"cannot read the input settings of {spec}: {type(exc).__name__}: {exc}") from exc
    return ModelDefaults()
