"""Model specs -> nn.Module in eval mode, loading weights without running untrusted code.

SPEC forms:
    torchvision:NAME         architecture from torchvision, weights from --weights: a file, or
                             DEFAULT / a weights name from the local torch.hub cache
                             (auditor.models.torchvision_weights; nothing is downloaded)
    timm:NAME                timm.create_model; --weights FILE or pretrained (timm's local cache)
    hf:PATH_OR_ID            a Hugging Face image classifier from a folder or the local hub cache
    module.path:factory      a Python factory importable from sys.path
    path/to/file.py:factory  a Python factory in a file
    path/to/model.pt         a TorchScript archive, or (only with trust_pickle) a pickled nn.Module

Head size: a torchvision, timm or factory model that takes ``num_classes`` gets it from
--num-classes, else from the weights (the last Linear's out size where it differs from the
default architecture's), else, for a factory without weights, from the data's classes.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import pickle
import sys
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from auditor.errors import ModelLoadError
from auditor.models.outputs import return_logits

_STATE_DICT_KEYS = ("state_dict", "model_state_dict", "model", "net", "weights")


@dataclass
class LoadedModel:
    """The model and what the report says about it.

    ``weights``: the file the weights were read from (for named torchvision or timm weights,
    the cached file). ``weights_loaded``: auditor read trained weights for this model (a file,
    named weights, timm's pretrained ones, a Hugging Face folder); False when it built the
    model without any (its initial weights are random unless a factory loads its own) and for
    a model handed over from Python.
    """

    module: nn.Module
    spec: str
    weights: str | None
    weights_sha256: str | None
    parameters: int
    scripted: bool
    weights_loaded: bool = False


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_model(
    spec: str,
    weights: str | None = None,
    num_classes: int | None = None,
    trust_pickle: bool = False,
    data_classes: int | None = None,
) -> LoadedModel:
    """Build the model a SPEC names, load `weights`, put it in eval mode, freeze nothing. A model
    whose forward returns a dict, a tuple or an output object with ``logits`` is made to return
    the logits tensor (``auditor.models.outputs.return_logits``).

    Args:
        weights: a weights file; for torchvision also DEFAULT or a weights name, for timm
            also ``pretrained``.
        num_classes: head size (--num-classes); default from the weights, else (a factory
            without weights) ``data_classes``.
        data_classes: the number of classes of the data, for a factory without weights.

    Raises ModelLoadError with the reason and the fix for every way this can fail.
    """
    scripted = False
    kind, _, name = spec.partition(":")
    if kind == "torchvision":
        module, weights_file = _torchvision_model(name, weights, num_classes, trust_pickle)
    elif kind == "timm":
        from auditor.models.timm_models import timm_model

        module, weights_file = timm_model(name, weights, num_classes, trust_pickle)
    elif kind == "hf":
        from auditor.models.hf_models import hf_model

        if weights:
            raise ModelLoadError(f"--model {spec} loads its own weights; drop --weights")
        module, weights_file = hf_model(name), None
    elif _is_factory_spec(spec):
        state = read_state_dict(weights, trust_pickle) if weights else None
        module, weights_file = _factory_model(spec, num_classes, state, data_classes), weights
        if state is not None:
            load_into(module, state)
    else:
        module, scripted = _archive_model(spec, trust_pickle)
        weights_file = weights
        if weights:
            load_into(module, read_state_dict(weights, trust_pickle))
    if not isinstance(module, nn.Module):
        raise ModelLoadError(f"{spec} did not give a torch.nn.Module but a {type(module).__name__}")
    module.eval()
    if not scripted:  # TorchScript modules take no Python hooks (and are refused for maps)
        return_logits(module)
    return LoadedModel(
        module=module,
        spec=spec,
        weights=str(weights_file) if weights_file else None,
        weights_sha256=file_sha256(weights_file) if weights_file else None,
        parameters=sum(p.numel() for p in module.parameters()),
        scripted=scripted,
        weights_loaded=bool(weights_file) or kind == "hf",
    )


def _is_factory_spec(spec: str) -> bool:
    if ":" not in spec:
        return False
    left = spec.rsplit(":", 1)[0]
    return left.endswith(".py") or not Path(spec).exists()


def _torchvision_model(
    name: str, weights: str | None, num_classes: int | None, trust_pickle: bool
) -> tuple[nn.Module, str | None]:
    import torchvision

    from auditor.models.torchvision_weights import is_weights_name, pretrained_torchvision

    available = torchvision.models.list_models()
    if name not in available:
        close = [m for m in available if name.lower() in m or m in name.lower()][:8]
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise ModelLoadError(f"torchvision has no model {name!r}.{hint}")
    if weights and is_weights_name(weights):
        if num_classes is not None:
            raise ModelLoadError(
                f"--weights {weights} fixes the head of {name} to its own categories; drop "
                "--num-classes, or give a weights file of the head size you need"
            )
        return pretrained_torchvision(name, weights)
    state = read_state_dict(weights, trust_pickle) if weights else None
    if num_classes is None and state is not None:
        num_classes = head_size(torchvision.models.get_model(name, weights=None), state)
    kwargs = {"num_classes": num_classes} if num_classes else {}
    try:
        module = torchvision.models.get_model(name, weights=None, **kwargs)
    except (TypeError, ValueError) as exc:
        raise ModelLoadError(f"cannot build torchvision model {name!r}: {exc}") from exc
    if state is not None:
        load_into(module, state)
    return module, weights


def head_size(module: nn.Module, state: Mapping[str, torch.Tensor]) -> int | None:
    """Number of classes the weights were trained for: the out size of the last Linear whose
    weight shape differs from the default architecture's (None when all shapes agree)."""
    own = module.state_dict()
    for name, sub in reversed(list(module.named_modules())):
        if isinstance(sub, nn.Linear):
            key = f"{name}.weight"
            if key in state and key in own and state[key].shape != own[key].shape:
                return int(state[key].shape[0])
            return None
    return None


def _factory_model(
    spec: str,
    num_classes: int | None,
    state: Mapping[str, torch.Tensor] | None,
    data_classes: int | None,
) -> nn.Module:
    """The factory's model; one that takes ``num_classes`` gets it from --num-classes, else
    from the weights' head, else (no weights) from the data's class count."""
    factory = _factory(spec)
    if num_classes is None and "num_classes" in _parameters(factory):
        if state is not None:
            num_classes = head_size(_call(factory, spec, {}), state)
        elif data_classes:
            num_classes = data_classes
    kwargs = {}
    if num_classes is not None and "num_classes" in _parameters(factory):
        kwargs["num_classes"] = num_classes
    return _call(factory, spec, kwargs)


def _call(factory: Any, spec: str, kwargs: dict[str, Any]) -> nn.Module:
    try:
        return factory(**kwargs)
    except Exception as exc:
        raise ModelLoadError(f"calling {spec}() failed: {type(exc).__name__}: {exc}") from exc


def _factory(spec: str) -> Any:
    """The callable a ``module:factory`` or ``file.py:factory`` spec names."""
    target, attr = spec.rsplit(":", 1)
    if target.endswith(".py"):
        path = Path(target)
        if not path.is_file():
            raise ModelLoadError(f"model file {path} does not exist")
        mod_name = (
            f"auditor_user_model_{hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:8]}"
        )
        mod_spec = importlib.util.spec_from_file_location(mod_name, path)
        if mod_spec is None or mod_spec.loader is None:
            raise ModelLoadError(f"cannot import {path} as Python")
        mod = importlib.util.module_from_spec(mod_spec)
        sys.modules[mod_name] = mod
        try:
            mod_spec.loader.exec_module(mod)
        except Exception as exc:
            raise ModelLoadError(f"importing {path} failed: {type(exc).__name__}: {exc}") from exc
    else:
        try:
            mod = importlib.import_module(target)
        except ImportError as exc:
            raise ModelLoadError(f"cannot import module {target!r}: {exc}") from exc
    factory = getattr(mod, attr, None)
    if factory is None or not callable(factory):
        raise ModelLoadError(f"{target} has no callable {attr!r}")
    return factory


def _parameters(fn: object) -> set[str]:
    try:
        return set(inspect.signature(fn).parameters)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return set()


def _archive_model(spec: str, trust_pickle: bool) -> tuple[nn.Module, bool]:
    path = Path(spec)
    if not path.is_file():
        raise ModelLoadError(
            f"--model {spec!r} is neither torchvision:NAME, module:factory, file.py:factory "
            "nor an existing TorchScript file"
        )
    if _is_torchscript(path):
        try:
            return torch.jit.load(str(path), map_location="cpu"), True
        except RuntimeError as exc:
            raise ModelLoadError(f"cannot load TorchScript {path}: {exc}") from exc
    if not trust_pickle:
        raise ModelLoadError(
            f"{path} is a pickled Python object, and unpickling can run arbitrary code. "
            "Save a state_dict or TorchScript instead, or pass --trust-pickle if you trust "
            "where this file came from."
        )
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=False)
    except Exception as exc:
        raise ModelLoadError(f"cannot unpickle {path}: {type(exc).__name__}: {exc}") from exc
    return obj, False


def _is_torchscript(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(name.split("/")[1:2] == ["code"] for name in archive.namelist())


def read_state_dict(path: str | Path, trust_pickle: bool = False) -> dict[str, torch.Tensor]:
    """Tensors of a weights file: .safetensors, or a torch state_dict (or a checkpoint dict
    holding one under state_dict/model/...). Loaded with weights_only=True unless
    `trust_pickle`; a `module.` prefix (DataParallel/DDP) is removed."""
    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(f"weights file {path} does not exist")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            state: object = load_file(str(path), device="cpu")
        except (SafetensorError, OSError, ValueError) as exc:
            raise ModelLoadError(f"cannot read safetensors {path}: {exc}") from exc
    else:
        try:
            state = torch.load(str(path), map_location="cpu", weights_only=not trust_pickle)
        except pickle.UnpicklingError as exc:
            raise ModelLoadError(
                f"{path} holds more than tensors (a pickled object whose loading can run code: "
                f"{str(exc).splitlines()[0][:200]}). Save model.state_dict() instead, or pass "
                "--trust-pickle if you trust where this file came from."
            ) from exc
        except Exception as exc:
            raise ModelLoadError(
                f"cannot read weights {path}: {type(exc).__name__}: {exc}"
            ) from exc
    if isinstance(state, nn.Module):
        state = state.state_dict()
    if isinstance(state, Mapping):
        for key in _STATE_DICT_KEYS:
            inner = state.get(key)
            if (
                isinstance(inner, Mapping)
                and inner
                and all(isinstance(v, torch.Tensor) for v in inner.values())
            ):
                state = inner
                break
    if not isinstance(state, Mapping) or not all(
        isinstance(v, torch.Tensor) for v in state.values()
    ):
        raise ModelLoadError(f"{path} does not hold a state_dict (name -> tensor)")
    if all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    return dict(state)


def load_into(module: nn.Module, state: Mapping[str, torch.Tensor]) -> None:
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [
        f"{k} (file {tuple(state[k].shape)}, model {tuple(own[k].shape)})"
        for k in own
        if k in state and tuple(state[k].shape) != tuple(own[k].shape)
    ]
    if missing or unexpected or wrong:
        parts = []
        for label, keys in (
            ("missing", missing),
            ("unexpected", unexpected),
            ("wrong shape", wrong),
        ):
            if keys:
                shown = ", ".join(keys[:6]) + (f" ... (+{len(keys) - 6})" if len(keys) > 6 else "")
                parts.append(f"{label}: {shown}")
        raise ModelLoadError(
            "the weights do not fit the architecture; "
            + "; ".join(parts)
            + ". Check --model, or --num-classes for the head size."
        )
    module.load_state_dict(state, strict=True)
