"""`auditor explain`: every map method on a few images, side by side, with the raw maps.

``explain_images`` (images.py) decodes image files, explains them in batches and returns plain
``Explanation`` records (records.py); ``explanation_figure`` (figure.py) draws one;
``write_explanations`` (files.py) writes its PNG, one ``.npy`` per method and a JSON per image.
Import them from here: ``from auditor.explain import explain_images, write_explanations``.
"""

from auditor.explain.figure import explanation_figure
from auditor.explain.files import write_explanations
from auditor.explain.images import explain_images, resolve_target
from auditor.explain.records import Explanation, Peak, map_peak

__all__ = [
    "Explanation",
    "Peak",
    "explain_images",
    "explanation_figure",
    "map_peak",
    "resolve_target",
    "write_explanations",
]
