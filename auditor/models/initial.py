"""Whether a model runs on the random initial weights of its architecture.

A model built from a SPEC without --weights is either pretrained by its factory (which loaded
weights itself) or random. The test: build it again from the same SPEC under another random
seed; a random initialisation gives other weights, loaded weights the same. A factory that
seeds the random generator itself looks pretrained to this test.
"""

from __future__ import annotations

from pathlib import Path

import torch

from auditor.models.loading import LoadedModel, load_model

#: The seed of the second build (any seed other than the one the first build happened to use).
_OTHER_SEED = 2_147_483_629


def runs_on_random_weights(loaded: LoadedModel, num_classes: int | None = None,
                           data_classes: int | None = None) -> bool:
    """True when auditor loaded no trained weights into `loaded` (``weights_loaded``; a
    torchvision, timm or factory SPEC) and building it again under another seed, with the same
    ``num_classes`` and ``data_classes`` as the first build, gives different parameters or
    buffers."""
    if loaded.weights_loaded or loaded.scripted or Path(loaded.spec).is_file():
        return False
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(_OTHER_SEED)
        again = load_model(loaded.spec, None, num_classes, data_classes=data_classes).module
    first = loaded.module.state_dict()
    second = again.state_dict()
    return any(
        name in second and value.is_floating_point()
        and not torch.equal(value.detach().cpu(), second[name].detach().cpu())
        for name, value in first.items()
    )


def random_weights_note(spec: str) -> str:
    """The sentence the log and the report give for a model on random initial weights."""
    return (f"the model {spec} runs on random initial weights: no --weights was given and "
            "it is not pretrained, so its predictions and maps say nothing about the data; "
            "pass the trained weights with --weights")
