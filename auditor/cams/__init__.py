"""Class-activation maps: the one-pass engine, the method family, perturbation and guided maps."""

from auditor.cams.engine import CamEngine, CamOutput
from auditor.cams.guided import guided_backprop, guided_gradcam
from auditor.cams.methods import HeadWeights
from auditor.cams.perturbation import occlusion, scorecam
from auditor.cams.reshape import nhwc_reshape, reshape_from_spec, vit_reshape, vit_reshape_for

__all__ = [
    "CamEngine",
    "CamOutput",
    "HeadWeights",
    "guided_backprop",
    "guided_gradcam",
    "nhwc_reshape",
    "occlusion",
    "reshape_from_spec",
    "scorecam",
    "vit_reshape",
    "vit_reshape_for",
]
