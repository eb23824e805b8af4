"""The registry of map methods: every method's name, what it needs, its description, its function.

Each map method is described here once; the CAM engine, the dispatcher (``auditor.cams.compute``),
``auditor explain``, the sanity check, the config, the CLI help and the report all read this
table. It is plain data with no torch import, so the config and ``auditor --help`` stay light:
``MapMethod.function`` imports the implementation on first use.

| name | pass | needs | in |
|---|---|---|---|
| gradcam, gradcam++, xgradcam, layercam, hirescam, counterfactual | one | A, G | cams.methods |
| cam | one | A, GAP+linear head, targets | cams.methods |
| eigencam, eigencam-uncentred | one | A | cams.methods |
| scorecam | separate | one layer's A, a forward per channel | cams.compute |
| occlusion | separate | the input only, a forward per patch | cams.compute |
| guided-backprop | separate | input gradients | cams.compute |
| guided-gradcam | separate | one layer, input gradients | cams.compute |

A one-pass function takes the target layer's ``activations`` [B, K, h, w], plus ``gradients``
[B, K, h, w] when it needs them, plus ``head`` (HeadWeights) and ``targets`` [B] when it needs
the head; it returns a map [B, h, w] >= 0. A separate-pass function takes
``(model, images, targets, layer, options: MapOptions)`` and returns maps [B, h, w].
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from auditor.errors import UsageError


@dataclass(frozen=True)
class MapMethod:
    """One map method.

    Attributes:
        name: the name users type (``--methods``, ``--suspect-methods``, ``explain``).
        description: one sentence for the report (gallery cards, method notes).
        implementation: ``module:function`` of the function (see the module docstring for
            the two call shapes).
        separate: True when it needs passes of its own (run on chosen samples, never over a
            whole data set); False for the methods of the one engine pass.
        needs_gradients: reads gradients (of a layer, or of the input for the guided ones).
        needs_head: reads the class weights of a GAP+linear head (and the explained classes).
        needs_layer: reads a target layer's activations (all but occlusion and guided
            backprop, which see only the input and the logits).
        single_layer: takes exactly one target layer (separate methods that read a layer).
    """

    name: str
    description: str
    implementation: str
    separate: bool = False
    needs_gradients: bool = False
    needs_head: bool = False
    needs_layer: bool = True
    single_layer: bool = False

    @property
    def function(self) -> Callable[..., Any]:
        """The implementation, imported on first use."""
        module, _, attribute = self.implementation.partition(":")
        return getattr(importlib.import_module(module), attribute)


def _one_pass(name: str, function: str, description: str, **needs: bool) -> MapMethod:
    return MapMethod(name, description, f"auditor.cams.methods:{function}", **needs)


def _separate(name: str, function: str, description: str, **needs: bool) -> MapMethod:
    return MapMethod(name, description, f"auditor.cams.compute:{function}", separate=True,
                     **needs)


_REGISTRY = (
    _one_pass(
        "gradcam", "gradcam",
        "Grad-CAM: the target layer's channels weighted by the mean gradient of the "
        "explained class's score over each channel, summed, negative part dropped.",
        needs_gradients=True,
    ),
    _one_pass(
        "gradcam++", "gradcam_plus_plus",
        "Grad-CAM++: like Grad-CAM, but each channel is weighted by its positive "
        "gradients with position-wise higher-order factors, so several instances of "
        "the class can show up.",
        needs_gradients=True,
    ),
    _one_pass(
        "xgradcam", "xgradcam",
        "XGrad-CAM: each channel weighted by the sum of gradient times activation "
        "over its total activation.",
        needs_gradients=True,
    ),
    _one_pass(
        "layercam", "layercam",
        "Layer-CAM: each position of each channel weighted by its own positive "
        "gradient, which keeps finer detail.",
        needs_gradients=True,
    ),
    _one_pass(
        "hirescam", "hirescam",
        "HiRes-CAM: activations times gradients summed over channels, position by "
        "position, without averaging the gradients first.",
        needs_gradients=True,
    ),
    _one_pass(
        "counterfactual", "counterfactual",
        "Counterfactual map: Grad-CAM with the gradient negated: the regions "
        "whose presence lowers the explained class's score.",
        needs_gradients=True,
    ),
    _one_pass(
        "cam", "cam",
        "CAM: the target layer's channels weighted by the classifier weights of the "
        "explained class (models with global average pooling and one linear layer).",
        needs_head=True,
    ),
    _one_pass(
        "eigencam", "eigencam",
        "Eigen-CAM: the target layer's activations, centred over the positions, projected "
        "on their first principal direction (as pytorch-grad-cam computes it); the same for "
        "every class, no gradients.",
    ),
    _one_pass(
        "eigencam-uncentred", "eigencam_uncentred",
        "Eigen-CAM as in its paper: the target layer's activations, not centred, projected "
        "on their first principal direction; the same for every class, no gradients.",
    ),
    _separate(
        "scorecam", "scorecam_map",
        "Score-CAM: each channel of the target layer, upsampled and scaled to [0, 1], "
        "masks the input, and its weight is the explained class's probability for "
        "that masked input; no gradients.",
        single_layer=True,
    ),
    _separate(
        "occlusion", "occlusion_map",
        "Occlusion: a square patch filled with the normalisation mean slides over "
        "the image, and the map is how much the explained class's probability drops "
        "when each patch is hidden (cells where it rose are shown as none).",
        needs_layer=False,
    ),
    _separate(
        "guided-backprop", "guided_backprop_map",
        "Guided backpropagation: the gradient of the class score with respect "
        "to the input pixels, passing only positive gradients back through "
        "positive activations; sharp edges, but nearly the same for every class.",
        needs_gradients=True, needs_layer=False,
    ),
    _separate(
        "guided-gradcam", "guided_gradcam_map",
        "Guided Grad-CAM: guided backpropagation times the Grad-CAM map "
        "upsampled to the input: pixel detail inside the region Grad-CAM points "
        "at.",
        needs_gradients=True, single_layer=True,
    ),
)

#: Every map method by name, one-pass methods first (the order of the CLI help).
METHODS: dict[str, MapMethod] = {method.name: method for method in _REGISTRY}
#: The methods of the one engine pass (``--methods``).
ONE_PASS_METHODS: tuple[str, ...] = tuple(m.name for m in _REGISTRY if not m.separate)
#: The methods that need passes of their own (``--suspect-methods``, ``auditor explain``).
SEPARATE_METHODS: tuple[str, ...] = tuple(m.name for m in _REGISTRY if m.separate)
#: The one-pass methods that need the gradients (one backward serves all of them).
GRADIENT_METHODS: tuple[str, ...] = tuple(
    name for name in ONE_PASS_METHODS if METHODS[name].needs_gradients
)


def validate_names(
    methods: Iterable[str] | str, valid: Iterable[str] = METHODS, note: str = ""
) -> tuple[str, ...]:
    """Method names checked against `valid`, duplicates dropped (order kept); a UsageError
    names the unknown ones and lists the valid ones (plus `note`)."""
    if isinstance(methods, str):
        methods = (methods,)
    valid = sorted(valid)
    names = tuple(dict.fromkeys(methods))
    if not names:
        raise UsageError(f"no map method requested; choose from {', '.join(valid)}.")
    unknown = [name for name in names if name not in valid]
    if unknown:
        raise UsageError(
            f"unknown map method(s) {unknown}; valid names are {', '.join(valid)}{note}."
        )
    return names


def validate_one_pass(methods: Iterable[str] | str) -> tuple[str, ...]:
    """`validate_names` against the one-pass engine methods."""
    return validate_names(
        methods, ONE_PASS_METHODS,
        " (score-CAM, occlusion and guided backprop are separate functions)",
    )


def needs_target_layer(methods: Iterable[str]) -> bool:
    """True when a method among ``methods`` reads a layer's activations."""
    return any(METHODS[name].needs_layer for name in methods)
