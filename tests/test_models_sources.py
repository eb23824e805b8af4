"""Models where users keep them: torchvision weights by name from TORCH_HOME, timm models (a
weights file, or `pretrained` from timm's hub cache), Hugging Face image classifiers saved with
save_pretrained; the defaults they give (size, mean, std, classes, reshape); head sizes of
factories; missing extras. Everything is made in the test: nothing is downloaded."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image
from safetensors.torch import save_file
from torch import nn

from auditor import extras
from auditor.cli import main
from auditor.errors import ModelLoadError
from auditor.models.defaults import model_defaults, timm_reshape, torchvision_reshape
from auditor.models.loading import load_model
from auditor.models.torchvision_weights import cached_file, weights_entry

FACTORY = """
from torch import nn

def build(num_classes=2):
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(4, num_classes))
"""


def _folder(root: Path, classes: list[str], per_class: int = 2, size: int = 24) -> Path:
    rng = np.random.default_rng(0)
    for name in classes:
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}.png")
    return root


def _audit(args: list[str]) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["audit", *args, "--workers", "0", "--quiet",
                                       "--no-interventions"], catch_exceptions=False)
    return result.exit_code, result.output


def _same_weights(module: nn.Module, state: dict[str, torch.Tensor]) -> bool:
    own = module.state_dict()
    return all(torch.equal(own[k], v) for k, v in state.items())


# --- torchvision weights by name -------------------------------------------------------------

@pytest.fixture
def torch_home(tmp_path, monkeypatch) -> Path:
    home = tmp_path / "torch_home"
    monkeypatch.setenv("TORCH_HOME", str(home))
    return home


def _place_weights(arch: str, name: str) -> dict[str, torch.Tensor]:
    """A state_dict of the architecture (seeded, not ImageNet's) where torch.hub keeps it."""
    import torchvision

    entry = weights_entry(arch, name)
    torch.manual_seed(0)
    state = torchvision.models.get_model(arch, num_classes=len(entry.meta["categories"])
                                         ).state_dict()
    path = cached_file(entry)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return state


def test_torchvision_default_weights_load_from_torch_home(torch_home):
    state = _place_weights("mobilenet_v3_small", "DEFAULT")
    loaded = load_model("torchvision:mobilenet_v3_small", "DEFAULT")
    assert loaded.weights_loaded
    assert loaded.weights == str(torch_home / "hub" / "checkpoints"
                                 / "mobilenet_v3_small-047dcff4.pth")
    assert _same_weights(loaded.module, state)


def test_torchvision_weights_missing_from_the_cache_name_the_file_and_folder(torch_home):
    with pytest.raises(ModelLoadError) as caught:
        load_model("torchvision:mobilenet_v3_small", "IMAGENET1K_V1")
    message = str(caught.value)
    assert "mobilenet_v3_small-047dcff4.pth" in message
    assert str(torch_home / "hub" / "checkpoints") in message


def test_torchvision_unknown_weights_name_lists_the_choices():
    with pytest.raises(ModelLoadError, match=r"no weights 'IMAGENET9K'.*IMAGENET1K_V1"):
        load_model("torchvision:resnet18", "IMAGENET9K")


def test_torchvision_weights_give_their_preprocessing_and_categories():
    defaults = model_defaults("torchvision:efficientnet_b1", "IMAGENET1K_V2")
    assert defaults.image_size == (240, 240)  # the weights' crop, not auditor's 224
    assert defaults.mean == pytest.approx((0.485, 0.456, 0.406))
    assert defaults.classes is not None
    assert len(defaults.classes) == 1000
    assert defaults.classes[0] == "tench"
    assert model_defaults("torchvision:efficientnet_b1", None).image_size is None


def test_torchvision_reshape_by_architecture():
    assert torchvision_reshape("vit_b_16") == "vit"
    assert torchvision_reshape("swin_t") == "nhwc"
    assert torchvision_reshape("resnet50") is None


def test_cli_audit_with_default_weights_uses_their_classes(torch_home, tmp_path):
    _place_weights("mobilenet_v3_small", "DEFAULT")
    data = _folder(tmp_path / "data", ["goldfish", "tench"])
    code, output = _audit([str(data), "--model", "torchvision:mobilenet_v3_small",
                           "--weights", "DEFAULT", "--image-size", "64",
                           "--out", str(tmp_path / "run")])
    assert code == 0, output
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["data"]["classes"][:2] == ["tench", "goldfish"]
    assert summary["data"]["counts"]["goldfish"] == 2


def test_cli_missing_torchvision_weights_exit_2(torch_home, tmp_path):
    data = _folder(tmp_path / "data", ["tench"])
    result = CliRunner().invoke(main, ["audit", str(data), "--model", "torchvision:resnet18",
                                       "--weights", "DEFAULT", "--out", str(tmp_path / "r")])
    assert result.exit_code == 2
    assert "resnet18-f37072fd.pth" in result.output


# --- timm -------------------------------------------------------------------------------------

def test_timm_weights_file_sets_the_head_size(tmp_path):
    import timm

    torch.manual_seed(0)
    original = timm.create_model("test_resnet", num_classes=4).eval()
    save_file(original.state_dict(), tmp_path / "w.safetensors")
    loaded = load_model("timm:test_resnet", str(tmp_path / "w.safetensors"))
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(loaded.module(x), original(x))
    assert loaded.weights_loaded


@pytest.fixture
def hub_cache(tmp_path, monkeypatch) -> Path:
    from huggingface_hub import constants

    cache = tmp_path / "hub"
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    return cache


def _place_timm_pretrained(cache: Path, name: str) -> dict[str, torch.Tensor]:
    """timm's pretrained file of NAME in the hub cache layout (refs/main -> snapshot)."""
    import timm

    repo = cache / ("models--" + timm.models.get_pretrained_cfg(name).hf_hub_id.replace("/", "--"))
    snapshot = repo / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    torch.manual_seed(1)
    state = timm.create_model(name).state_dict()
    save_file(state, snapshot / "model.safetensors")
    return state


def test_timm_pretrained_reads_the_hub_cache_offline(hub_cache):
    state = _place_timm_pretrained(hub_cache, "test_vit")
    loaded = load_model("timm:test_vit", "pretrained")
    assert _same_weights(loaded.module, state)
    defaults = model_defaults("timm:test_vit", "pretrained")
    assert defaults.image_size == (160, 160)
    assert defaults.mean == (0.5, 0.5, 0.5)
    assert defaults.reshape == "vit"
    assert defaults.classes is not None
    assert defaults.classes[0] == "n01440764"


def test_timm_pretrained_not_cached_says_where_it_looked(hub_cache):
    with pytest.raises(ModelLoadError, match=r"not in the local cache.*models--timm--test_resnet"):
        load_model("timm:test_resnet", "pretrained")


def test_timm_family_picks_the_reshape():
    assert timm_reshape("vit_small_patch16_224") == "vit"
    assert timm_reshape("swin_tiny_patch4_window7_224") == "nhwc"
    assert timm_reshape("resnet50") is None


def test_cli_audit_timm_vit_pretrained_needs_no_layer_size_or_reshape(hub_cache, tmp_path):
    _place_timm_pretrained(hub_cache, "test_vit")
    data = _folder(tmp_path / "data", ["n01440764", "n01443537"])
    code, output = _audit([str(data), "--model", "timm:test_vit", "--weights", "pretrained",
                           "--out", str(tmp_path / "run")])
    assert code == 0, output
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["model"]["input_size"] == [160, 160]
    # the last of its 6 blocks, read as tokens on the patch grid (--reshape vit by family)
    assert summary["model"]["target_layers"] == ["blocks.5.norm1"]


# --- Hugging Face -------------------------------------------------------------------------------

@pytest.fixture
def hf_vit(tmp_path) -> Path:
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    torch.manual_seed(0)
    config = ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2,
                       num_attention_heads=2, intermediate_size=64, num_labels=2,
                       id2label={0: "cat", 1: "dog"}, label2id={"cat": 0, "dog": 1})
    folder = tmp_path / "hf_vit"
    ViTForImageClassification(config).save_pretrained(folder)
    ViTImageProcessor(size={"height": 32, "width": 32}, image_mean=[0.4, 0.5, 0.6],
                      image_std=[0.2, 0.25, 0.3]).save_pretrained(folder)
    return folder


def test_hf_classifier_loads_offline_with_its_processor_and_labels(hf_vit):
    loaded = load_model(f"hf:{hf_vit}")
    logits = loaded.module(torch.zeros(2, 3, 32, 32))
    assert isinstance(logits, torch.Tensor)
    assert logits.shape == (2, 2)
    defaults = model_defaults(f"hf:{hf_vit}", None)
    assert defaults.image_size == (32, 32)
    assert defaults.mean == pytest.approx((0.4, 0.5, 0.6))
    assert defaults.std == pytest.approx((0.2, 0.25, 0.3))
    assert defaults.classes == ("cat", "dog")
    assert defaults.reshape == "vit"


def test_hf_model_not_found_locally_is_a_model_error(tmp_path, hub_cache):
    with pytest.raises(ModelLoadError, match="no Hugging Face model"):
        load_model("hf:someone/not-cached")


def test_cli_audit_hf_vit(hf_vit, tmp_path):
    data = _folder(tmp_path / "data", ["cat", "dog"])
    code, output = _audit([str(data), "--model", f"hf:{hf_vit}", "--out", str(tmp_path / "run")])
    assert code == 0, output
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["model"]["input_size"] == [32, 32]
    assert summary["config"]["mean"] == pytest.approx([0.4, 0.5, 0.6])


# --- factories and extras ----------------------------------------------------------------------

def test_factory_head_size_comes_from_the_weights(tmp_path):
    (tmp_path / "net.py").write_text(FACTORY)
    spec = f"{tmp_path / 'net.py'}:build"
    four = load_model(spec, num_classes=4).module
    torch.save(four.state_dict(), tmp_path / "w.pt")
    loaded = load_model(spec, str(tmp_path / "w.pt"))
    assert loaded.module(torch.zeros(1, 3, 8, 8)).shape == (1, 4)
    assert _same_weights(loaded.module, four.state_dict())


def test_factory_without_weights_takes_the_data_class_count(tmp_path):
    (tmp_path / "net.py").write_text(FACTORY)
    loaded = load_model(f"{tmp_path / 'net.py'}:build", data_classes=3)
    assert loaded.module(torch.zeros(1, 3, 8, 8)).shape == (1, 3)
    assert not loaded.weights_loaded


def test_missing_extra_names_the_install_command(monkeypatch):
    real = extras.importlib.import_module

    def without_timm(name: str, *args):
        if name == "timm":
            raise ImportError("No module named 'timm'")
        return real(name, *args)

    monkeypatch.setattr(extras.importlib, "import_module", without_timm)
    with pytest.raises(ModelLoadError, match=r"pip install 'auditor\[timm\]'"):
        load_model("timm:resnet18")
