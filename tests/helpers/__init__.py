"""What the tests share: generated images, tiny models, finished runs, shortcut data sets.

Imported one way only: ``from tests.helpers import images`` / ``from tests.helpers.cam_models
import CornerNet``. No test module imports another test module.
"""
