"""Target-layer discovery and lookup by name."""

from __future__ import annotations

import pytest
import timm
import torch
from torchvision.models import convnext_tiny, resnet18

from auditor.cams import CamEngine, nhwc_reshape, vit_reshape_for
from auditor.errors import ModelLoadError
from auditor.models.layers import (
    feature_map_layers,
    find_target_layer,
    get_module,
    plausible_map,
)
from tests.helpers.cam_models import CornerNet, PixelMLP, count_hooks, tiny_gap_net, tiny_vit


def test_resnet18_target_layer_is_layer4() -> None:
    model = resnet18(weights=None)
    assert find_target_layer(model, (1, 3, 64, 64)) == "layer4"


@pytest.mark.parametrize(
    ("build", "expected"),
    [(tiny_gap_net, "features"), (CornerNet, "body"), (tiny_vit, "conv_proj")],
)
def test_tiny_models_target_layer_is_last_feature_map(build, expected: str) -> None:
    size = (32, 48) if build is CornerNet else (32, 32)
    assert find_target_layer(build(), (1, 3, *size)) == expected


def test_feature_map_layers_lists_maps_in_finishing_order_with_shapes() -> None:
    layers = feature_map_layers(tiny_gap_net(), (2, 3, 32, 32))
    assert layers == [
        ("features.0", (2, 8, 32, 32)),
        ("features.1", (2, 8, 32, 32)),
        ("features.2", (2, 8, 32, 32)),
        ("features.3", (2, 8, 16, 16)),
        ("features.4", (2, 8, 16, 16)),
        ("features", (2, 8, 16, 16)),
    ]


def test_discovery_leaves_no_hooks_and_restores_modes() -> None:
    model = tiny_gap_net()
    model.train()
    model.features[1].eval()
    hooks = count_hooks(model)
    running_mean = model.features[1].running_mean.clone()
    find_target_layer(model, (1, 3, 32, 32))
    assert count_hooks(model) == hooks
    assert model.training
    assert not model.features[1].training
    assert model.features[0].training
    assert torch.equal(model.features[1].running_mean, running_mean)


def test_model_without_feature_map_raises_model_load_error() -> None:
    with pytest.raises(ModelLoadError, match="no module of PixelMLP"):
        find_target_layer(PixelMLP(), (1, 3, 16, 16))


def _timm_vit(**options) -> torch.nn.Module:
    return timm.models.vision_transformer.VisionTransformer(
        img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2, num_classes=3, **options
    ).eval()


@pytest.mark.parametrize(
    ("build", "expected"),
    [
        # Class-token pooling: after the last block's attention only the class token reaches
        # the head, so the last norm that passes gradient to the patch tokens is norm1 / ln_1.
        (tiny_vit, "encoder.layers.encoder_layer_1.ln_1"),
        (_timm_vit, "blocks.1.norm1"),
        (lambda: _timm_vit(reg_tokens=4), "blocks.1.norm1"),
        # Average pooling: every token reaches the head through the last block's MLP.
        (lambda: _timm_vit(global_pool="avg"), "blocks.1.norm2"),
        (lambda: _timm_vit(class_token=False, global_pool="avg"), "blocks.1.norm2"),
    ],
)
def test_token_models_default_to_the_last_norm_whose_patch_tokens_get_gradient(
        build, expected: str) -> None:
    model = build()
    hooks = count_hooks(model)
    reshape = vit_reshape_for(model, (32, 32))
    assert find_target_layer(model, (1, 3, 32, 32), reshape=reshape) == expected
    assert count_hooks(model) == hooks
    assert not model.training
    assert all(p.grad is None for p in model.parameters())


def test_token_model_whose_prediction_ignores_every_patch_token_raises() -> None:
    model = tiny_vit()
    with torch.no_grad():
        model.heads.head.weight.zero_()  # constant logits: nothing reaches the tokens
    with pytest.raises(ModelLoadError, match="patch tokens"):
        find_target_layer(model, (1, 3, 32, 32), reshape=vit_reshape_for(model, (32, 32)))


@pytest.mark.parametrize(
    ("size", "input_size", "expected"),
    [
        ((7, 7), (224, 224), True),
        ((7, 10), (224, 320), True),
        ((1, 1), (224, 224), False),  # a pooled vector
        ((7, 768), (224, 224), False),  # a Swin's [B, 7, 7, 768] read as [B, K, h, w]
        ((197, 64), (224, 224), False),  # attention heads [B, 3, 197, 64]: wrong aspect
        ((7, 20), (224, 224), False),
    ],
)
def test_plausible_map_sizes(size, input_size, expected: bool) -> None:
    assert plausible_map(size, input_size) is expected


def _timm_swin() -> torch.nn.Module:
    return timm.models.swin_transformer.SwinTransformer(
        img_size=32, patch_size=4, window_size=4, embed_dim=16, depths=(1, 1), num_heads=(1, 2),
        num_classes=3,
    ).eval()


def test_swin_maps_are_channels_last_and_nhwc_reshape_finds_the_final_norm() -> None:
    model = _timm_swin()
    layer = find_target_layer(model, (1, 3, 32, 32), reshape=nhwc_reshape)
    assert layer == "norm"
    with CamEngine(model, layer, methods=("gradcam",), reshape=nhwc_reshape) as engine:
        maps = engine(torch.randn(2, 3, 32, 32)).maps["gradcam"]
    assert maps.shape == (2, 4, 4)  # 32 px / patch 4 / one 2x merge


@pytest.mark.parametrize("build", [_timm_swin, _timm_vit, tiny_vit])
def test_transformer_without_reshape_warns_that_the_default_layer_is_a_poor_one(
        build, caplog: pytest.LogCaptureFixture) -> None:
    find_target_layer(build(), (1, 3, 32, 32))
    assert "--reshape vit" in caplog.text
    assert "--reshape nhwc" in caplog.text


@pytest.mark.parametrize("build", [resnet18, convnext_tiny])
def test_convolutional_nets_choose_their_last_map_without_a_warning(
        build, caplog: pytest.LogCaptureFixture) -> None:
    # ConvNeXt normalises channels-last inside its blocks and a pooled [B, C, 1, 1] in its
    # head: neither comes after the chosen layer as tokens or a channels-last map.
    assert find_target_layer(build().eval(), (1, 3, 64, 64)) in ("layer4", "features")
    assert caplog.text == ""


def test_get_module_resolves_dotted_names() -> None:
    model = resnet18(weights=None)
    assert get_module(model, "layer4.1.conv2") is model.layer4[1].conv2


def test_bad_layer_name_lists_the_available_layers() -> None:
    with pytest.raises(ModelLoadError) as caught:
        get_module(resnet18(weights=None), "layer5")
    message = str(caught.value)
    assert "'layer5'" in message
    assert "Did you mean" in message
    for name in ("conv1", "layer1", "layer4"):
        assert name in message
    assert "more" in message  # the long list is truncated
