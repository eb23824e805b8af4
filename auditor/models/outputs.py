"""Models whose forward returns more than the logits tensor: Hugging Face output objects,
dicts, (logits, aux) tuples."""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor, nn


def logits_of(output: object) -> object:
    """The logits in a model's output.

    A tensor is returned as it is; otherwise the ``logits`` attribute or key (Hugging Face's
    ``ImageClassifierOutput``, a dict), else the first element of a tuple or list (a
    ``(logits, aux)`` pair). Anything else comes back unchanged, so that the caller's error
    names what the model really returned.
    """
    if isinstance(output, Tensor):
        return output
    found = getattr(output, "logits", None)
    if found is None and isinstance(output, Mapping):
        found = output.get("logits")
    if found is None and isinstance(output, (tuple, list)) and output:
        found = output[0]
    return found if isinstance(found, Tensor) else output


def return_logits(model: nn.Module) -> nn.Module:
    """Make ``model(x)`` return ``logits_of`` its output, with a forward hook on the model (the
    module names stay the same, so target-layer names still match). Returns the model."""
    model.register_forward_hook(lambda _module, _inputs, output: logits_of(output))
    return model
