"""The data layer: sources -> index, decoding + fingerprints, masks/boxes, the Dataset."""

from auditor.data.dataset import AuditDataset, collate_samples, make_loader
from auditor.data.decode import DEFAULT_MAX_PIXELS, PROPS_KEYS, DecodedImage, decode_image
from auditor.data.regions import border_band
from auditor.data.sources import DatasetIndex, SampleRef, open_source

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "PROPS_KEYS",
    "AuditDataset",
    "DatasetIndex",
    "DecodedImage",
    "SampleRef",
    "border_band",
    "collate_samples",
    "decode_image",
    "make_loader",
    "open_source",
]
