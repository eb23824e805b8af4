"""Model specs and safe weight loading."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from auditor.errors import ModelLoadError
from auditor.models.loading import load_model, read_state_dict
from auditor.models.outputs import logits_of

FACTORY = """
import torch
from torch import nn

def build(num_classes=3):
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(4, num_classes))
"""


class _Evil:
    """Unpickling this object creates a file: the proof that loading ran code."""

    def __init__(self, target: str) -> None:
        self.target = target

    def __reduce__(self):  # type: ignore[override]
        return (Path.touch, (Path(self.target),))


@pytest.fixture
def factory_file(tmp_path: Path) -> Path:
    path = tmp_path / "my_model.py"
    path.write_text(FACTORY)
    return path


def test_file_factory_builds_model_in_eval_mode(factory_file: Path) -> None:
    loaded = load_model(f"{factory_file}:build", num_classes=5)
    assert not loaded.module.training
    assert loaded.module(torch.zeros(1, 3, 8, 8)).shape == (1, 5)
    assert loaded.parameters == sum(p.numel() for p in loaded.module.parameters())


def test_module_factory_spec() -> None:
    loaded = load_model("auditor.demo:build_demo_model", num_classes=3)
    assert loaded.module(torch.zeros(2, 3, 64, 64)).shape == (2, 3)


def test_torchvision_head_size_inferred_from_weights(tmp_path: Path) -> None:
    import torchvision

    net = torchvision.models.get_model("resnet18", weights=None, num_classes=7)
    weights = tmp_path / "r18.pt"
    torch.save(net.state_dict(), weights)
    loaded = load_model("torchvision:resnet18", weights=str(weights))
    assert loaded.module.fc.out_features == 7
    assert len(loaded.weights_sha256 or "") == 64


def test_safetensors_and_checkpoint_dicts_load(tmp_path: Path, factory_file: Path) -> None:
    net = load_model(f"{factory_file}:build").module
    st = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(st))
    ckpt = tmp_path / "ckpt.pt"
    torch.save(
        {"epoch": 3, "state_dict": {f"module.{k}": v for k, v in net.state_dict().items()}}, ckpt
    )
    for weights in (st, ckpt):
        loaded = load_model(f"{factory_file}:build", weights=str(weights))
        x = torch.randn(1, 3, 8, 8)
        assert torch.allclose(loaded.module(x), net(x))


def test_crafted_pickle_is_refused_and_runs_nothing(tmp_path: Path, factory_file: Path) -> None:
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    with open(evil, "wb") as fh:
        pickle.dump({"weight": _Evil(str(marker))}, fh)
    with pytest.raises(ModelLoadError, match="--trust-pickle"):
        read_state_dict(evil)
    with pytest.raises(ModelLoadError, match="--trust-pickle"):
        load_model(f"{factory_file}:build", weights=str(evil))
    with pytest.raises(ModelLoadError, match="--trust-pickle"):
        load_model(str(evil))
    assert not marker.exists()


def test_full_pickled_model_needs_trust_pickle(tmp_path: Path) -> None:
    path = tmp_path / "full.pt"
    torch.save(nn.Sequential(nn.Flatten(), nn.Linear(12, 2)), path)
    with pytest.raises(ModelLoadError, match="pickled"):
        load_model(str(path))
    loaded = load_model(str(path), trust_pickle=True)
    assert loaded.module(torch.zeros(1, 3, 2, 2)).shape == (1, 2)


def test_torchscript_file_loads(tmp_path: Path) -> None:
    path = tmp_path / "scripted.pt"
    torch.jit.script(nn.Sequential(nn.Flatten(), nn.Linear(12, 2))).save(str(path))
    loaded = load_model(str(path))
    assert loaded.scripted
    assert loaded.module(torch.zeros(1, 3, 2, 2)).shape == (1, 2)


def test_mismatched_weights_name_the_keys(tmp_path: Path, factory_file: Path) -> None:
    weights = tmp_path / "other.pt"
    torch.save({"0.weight": torch.zeros(4, 3, 3, 3), "bogus.bias": torch.zeros(2)}, weights)
    with pytest.raises(ModelLoadError) as info:
        load_model(f"{factory_file}:build", weights=str(weights))
    message = str(info.value)
    assert "missing: 0.bias" in message
    assert "unexpected: bogus.bias" in message


def test_unknown_specs_give_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="resnet18"):
        load_model("torchvision:resnet1")
    with pytest.raises(ModelLoadError, match="cannot import module"):
        load_model("no_such_module_xyz:build")
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_model(f"{tmp_path / 'missing.py'}:build")
    with pytest.raises(ModelLoadError, match="neither"):
        load_model(str(tmp_path / "nothing.pt"))


class _Output:
    """Stands in for a Hugging Face ImageClassifierOutput: logits as an attribute."""

    def __init__(self, logits: torch.Tensor) -> None:
        self.logits = logits


def test_logits_are_found_in_every_usual_output_shape() -> None:
    logits = torch.randn(2, 3)
    assert logits_of(logits) is logits
    assert logits_of({"logits": logits, "hidden": torch.zeros(1)}) is logits
    assert logits_of(_Output(logits)) is logits
    assert logits_of((logits, torch.zeros(2, 3))) is logits
    junk = {"features": torch.zeros(2, 4, 3, 3)}
    assert logits_of(junk) is junk  # unchanged, so the caller's error names it
    assert logits_of([]) == []


def test_a_loaded_model_returning_a_dict_returns_its_logits() -> None:
    loaded = load_model("tests.helpers.cam_models:DictOutputNet")
    x = torch.randn(2, 3, 16, 16)
    out = loaded.module(x)
    assert isinstance(out, torch.Tensor)
    assert torch.equal(out, loaded.module.net(x))
    assert "net.features" in dict(loaded.module.named_modules())  # names unchanged
