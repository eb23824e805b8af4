"""CamEngine: one pass, clean hooks, eval mode, AMP, layer fusion, ViT tokens, orientation."""

from __future__ import annotations

import functools

import pytest
import timm
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from auditor.cams import (
    CamEngine,
    nhwc_reshape,
    reshape_from_spec,
    vit_reshape,
    vit_reshape_for,
)
from auditor.cams.reshape import model_patch_layout, token_grids
from auditor.errors import AuditorError, ModelLoadError, TokenGridError, UsageError
from auditor.map_methods import ONE_PASS_METHODS
from tests.helpers.cam_models import CornerNet, DetachedHeadNet, count_hooks, tiny_gap_net, tiny_vit

ALL_METHODS = ONE_PASS_METHODS


@pytest.fixture
def images() -> Tensor:
    return torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(2))


def test_all_methods_share_exactly_one_forward_and_one_autograd_grad(
    images: Tensor, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = tiny_gap_net()
    forwards = []
    model.register_forward_hook(lambda *_: forwards.append(1))
    grad_calls = []
    real_grad = torch.autograd.grad

    def counting_grad(*args, **kwargs):
        grad_calls.append(1)
        return real_grad(*args, **kwargs)

    def no_backward(*args, **kwargs):
        raise AssertionError("Tensor.backward must not be used")

    monkeypatch.setattr(torch.autograd, "grad", counting_grad)
    monkeypatch.setattr(Tensor, "backward", no_backward)
    with CamEngine(model, "features", methods=ALL_METHODS) as engine:
        out = engine(images)
    assert (len(forwards), len(grad_calls)) == (1, 1)
    assert set(out.maps) == set(ALL_METHODS)
    for name, cam_map in out.maps.items():
        assert cam_map.shape == (4, 16, 16), name
        assert cam_map.dtype == torch.float32, name
        assert not cam_map.requires_grad, name
        assert (cam_map >= 0).all(), name
    assert all(p.grad is None for p in model.parameters())


def test_activation_only_methods_skip_the_backward(
    images: Tensor, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_grad_call(*args, **kwargs):
        raise AssertionError("no gradient is needed for eigencam/cam")

    monkeypatch.setattr(torch.autograd, "grad", no_grad_call)
    with CamEngine(tiny_gap_net(), "features", methods=("eigencam", "cam")) as engine:
        out = engine(images)
    assert out.maps["eigencam"].abs().sum() > 0
    assert not out.logits.requires_grad


def test_no_hooks_flags_or_modes_left_behind_even_after_an_exception(images: Tensor) -> None:
    model = tiny_gap_net()
    model.features[0].weight.requires_grad_(False)
    flags = [p.requires_grad for p in model.parameters()]
    hooks = count_hooks(model)
    relu_classes = [type(m) for m in model.modules()]
    before = model(images)
    with CamEngine(model, "features", methods=ALL_METHODS) as engine:
        engine(images)
        assert count_hooks(model) > hooks
        assert not any(p.requires_grad for p in model.parameters())
    assert count_hooks(model) == hooks
    with CamEngine(model, ["features", "features.0"], methods=("gradcam",)) as engine:
        engine(images)
    assert count_hooks(model) == hooks
    with pytest.raises(ValueError, match="boom"), CamEngine(model, "features") as engine:
        engine(images, lambda logits: (_ for _ in ()).throw(ValueError("boom")))
    with pytest.raises(UsageError), CamEngine(model, "features") as engine:
        engine(images, torch.tensor([0, 1]))  # wrong batch size
    assert count_hooks(model) == hooks
    assert [p.requires_grad for p in model.parameters()] == flags
    assert [type(m) for m in model.modules()] == relu_classes
    assert not model.training
    torch.testing.assert_close(model(images), before, rtol=0, atol=0)


def test_train_mode_model_is_explained_in_eval_mode_and_restored(images: Tensor) -> None:
    model = tiny_gap_net()
    with CamEngine(model, "features", methods=("gradcam",)) as engine:
        expected = engine(images).maps["gradcam"]
    model.train()
    running_mean = model.features[1].running_mean.clone()
    modes = []
    model.features[1].register_forward_pre_hook(lambda m, _: modes.append(m.training))
    with CamEngine(model, "features") as engine, pytest.warns(UserWarning, match="train mode"):
        got = engine(images).maps["gradcam"]
    assert modes == [False]
    torch.testing.assert_close(got, expected)
    assert torch.equal(model.features[1].running_mean, running_mean)
    assert model.training


def test_each_sample_map_is_the_same_alone_and_in_a_batch(images: Tensor) -> None:
    targets = torch.tensor([0, 1, 2, 1])
    with CamEngine(tiny_gap_net(), "features", methods=ALL_METHODS) as engine:
        batched = engine(images, targets)
        for index in range(len(images)):
            alone = engine(images[index : index + 1], targets[index : index + 1])
            for name in ALL_METHODS:
                torch.testing.assert_close(alone.maps[name][0], batched.maps[name][index],
                                           rtol=1e-5, atol=1e-6, msg=name)


def test_bfloat16_autocast_on_cpu_gives_maps_close_to_float32(images: Tensor) -> None:
    model = tiny_gap_net()
    methods = ("gradcam", "layercam", "eigencam", "cam")
    with CamEngine(model, "features", methods=methods) as engine:
        exact = engine(images)
    with CamEngine(model, "features", methods=methods, amp_dtype=torch.bfloat16) as engine:
        fast = engine(images, exact.targets)
    for name in methods:
        assert fast.maps[name].dtype == torch.float32
        cosine = F.cosine_similarity(fast.maps[name].flatten(1), exact.maps[name].flatten(1))
        assert (cosine > 0.95).all(), (name, cosine)


def test_several_layers_are_upsampled_to_the_largest_grid_and_averaged(images: Tensor) -> None:
    model = tiny_gap_net()
    targets = torch.tensor([0, 1, 2, 0])
    with CamEngine(model, ["features", "features.0"], methods=("gradcam", "hirescam")) as engine:
        fused = engine(images, targets)
    for name in ("gradcam", "hirescam"):
        with CamEngine(model, "features", methods=(name,)) as engine:
            coarse = engine(images, targets).maps[name]
        with CamEngine(model, "features.0", methods=(name,)) as engine:
            fine = engine(images, targets).maps[name]
        upsampled = F.interpolate(coarse[:, None], size=(32, 32), mode="bilinear",
                                  align_corners=False)[:, 0]
        assert fused.maps[name].shape == (4, 32, 32)
        torch.testing.assert_close(fused.maps[name], (upsampled + fine) / 2)


def test_target_layer_defaults_to_the_last_feature_map(images: Tensor) -> None:
    with CamEngine(tiny_gap_net()) as engine:
        out = engine(images)
    assert out.layers == ["features"]
    assert out.maps["gradcam"].shape == (4, 16, 16)
    assert torch.equal(out.targets, out.logits.argmax(dim=1))


@pytest.mark.parametrize("method", ALL_METHODS)
@pytest.mark.parametrize("corner", ["top_left", "bottom_right"])
def test_maps_peak_in_the_only_corner_the_model_sees(method: str, corner: str) -> None:
    # Non-square 32 x 48 images (16 x 24 maps) catch height/width swaps as well as flips.
    model = CornerNet(corner)
    images = torch.rand(2, 3, 32, 48, generator=torch.Generator().manual_seed(3)) + 0.1
    target = 1 if method == "counterfactual" else 0  # class 1 has all-negative weights
    with CamEngine(model, "body", methods=(method,)) as engine:
        cam_map = engine(images, torch.full((2,), target)).maps[method]
    assert cam_map.shape == (2, 16, 24)
    quadrant = cam_map[:, :8, :12] if corner == "top_left" else cam_map[:, 8:, 12:]
    assert (quadrant.sum(dim=(1, 2)) > 0.99 * cam_map.sum(dim=(1, 2))).all()
    peak = cam_map.flatten(1).argmax(dim=1)
    rows, cols = peak // 24, peak % 24
    in_corner = (rows < 8) & (cols < 12) if corner == "top_left" else (rows >= 8) & (cols >= 12)
    assert in_corner.all()


def test_vit_gradcam_on_token_layer_matches_manual_gradients() -> None:
    model = tiny_vit()
    images = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(4))
    layer = "encoder.layers.encoder_layer_1.ln_1"
    reshape = vit_reshape_for(model, (32, 32))
    with CamEngine(model, layer, methods=("gradcam", "hirescam"), reshape=reshape) as engine:
        out = engine(images)
    assert out.maps["gradcam"].shape == (2, 4, 4)
    for index in range(2):
        captured = {}

        def swap(_module, _inputs, output, captured=captured):
            captured["tokens"] = output.detach().requires_grad_()
            return captured["tokens"]

        handle = model.get_submodule(layer).register_forward_hook(swap)
        try:
            logits = model(images[index : index + 1])
        finally:
            handle.remove()
        (grads,) = torch.autograd.grad(logits[0, out.targets[index]], captured["tokens"])
        a = captured["tokens"].detach()[0, 1:].T.reshape(32, 4, 4)  # drop the class token
        g = grads[0, 1:].T.reshape(32, 4, 4)
        expected = (g.mean(dim=(1, 2))[:, None, None] * a).sum(0).clamp_min(0)
        torch.testing.assert_close(out.maps["gradcam"][index], expected, rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(out.maps["hirescam"][index], (g * a).sum(0).clamp_min(0),
                                   rtol=1e-4, atol=1e-6)
    assert out.maps["gradcam"].abs().sum() > 0


def test_vit_reshape_drops_prefix_tokens_and_keeps_row_major_order() -> None:
    patches = torch.arange(2 * 6 * 3, dtype=torch.float32).reshape(2, 6, 3)
    prefix = torch.full((2, 5, 3), -1.0)  # class token + 4 registers
    tokens = torch.cat([prefix, patches], dim=1)
    grid = vit_reshape(tokens, grid=(2, 3))
    assert grid.shape == (2, 3, 2, 3)
    assert torch.equal(grid[1, :, 1, 2], patches[1, 5])
    square = torch.cat([prefix[:, :1], torch.randn(2, 16, 3)], dim=1)
    assert torch.equal(vit_reshape(square, input_size=(32, 32)),
                       square[:, 1:].reshape(2, 4, 4, 3).permute(0, 3, 1, 2))
    registers = torch.cat([prefix, torch.randn(2, 9, 3)], dim=1)
    assert torch.equal(vit_reshape(registers, prefix_tokens=5), vit_reshape(registers))
    with pytest.raises(AuditorError, match="not a square patch grid"):
        vit_reshape(torch.randn(2, 14, 3), prefix_tokens=1)
    with pytest.raises(AuditorError, match="grid"):
        functools.partial(vit_reshape, grid=(4, 4))(torch.randn(2, 10, 3))


def test_vit_grid_of_a_non_square_input_comes_from_the_patch_size_not_the_token_count() -> None:
    # 1 class token + 14 x 16 patches of a 224 x 256 input = 225 tokens, which is also 15 x 15.
    model = timm.models.vision_transformer.VisionTransformer(
        img_size=(224, 256), patch_size=16, embed_dim=8, depth=1, num_heads=1, num_classes=2
    ).eval()
    assert model_patch_layout(model) == ((16, 16), 1, False)
    tokens = torch.randn(1, 225, 8)
    expected = tokens[:, 1:].reshape(1, 14, 16, 8).permute(0, 3, 1, 2)
    assert torch.equal(vit_reshape_for(model, (224, 256))(tokens), expected)
    # A model that does not say its patch size: square patches that tile the input fit only
    # 14 x 16 after one prefix token.
    assert token_grids(225, (224, 256)) == [(1, 14, 16)]
    assert torch.equal(vit_reshape_for(nn.Identity(), (224, 256))(tokens), expected)
    with CamEngine(model, "blocks.0.norm1", reshape=vit_reshape_for(model, (224, 256))) as engine:
        assert engine(torch.randn(1, 3, 224, 256)).maps["gradcam"].shape == (1, 14, 16)


def test_a_token_count_that_fits_several_grids_is_an_error_naming_the_option() -> None:
    # 10 tokens of a 48 x 48 input: 3 x 3 patches of 16 after 1 prefix token, or 2 x 2 of 24
    # after 6; without the input size, also 3 x 3 after 1 or 2 x 2 after 6.
    assert token_grids(10, (48, 48)) == [(1, 3, 3), (6, 2, 2)]
    for size in ((48, 48), None):
        with pytest.raises(TokenGridError, match=r"fit more than one.*--reshape vit:3x3") as info:
            vit_reshape(torch.randn(2, 10, 4), input_size=size)
        assert info.value.exit_code == 2
    # The model's own prefix count settles it.
    assert vit_reshape(torch.randn(2, 10, 4), input_size=(48, 48), prefix_tokens=1).shape == (
        2, 4, 3, 3)


def test_nhwc_reshape_and_the_reshape_option_specs() -> None:
    channels_last = torch.randn(2, 3, 5, 8)  # [B, h, w, C]
    assert torch.equal(nhwc_reshape(channels_last)[1, :, 2, 4], channels_last[1, 2, 4])
    with pytest.raises(AuditorError, match="channels-last"):
        nhwc_reshape(torch.randn(2, 9, 8))
    assert reshape_from_spec("none") is None
    assert reshape_from_spec("nhwc") is nhwc_reshape
    assert reshape_from_spec("vit", tiny_vit(), (32, 32)).keywords == {
        "grid": (4, 4), "prefix_tokens": 1}
    assert reshape_from_spec("vit:2x3").keywords == {"grid": (2, 3)}
    for bad in ("grid", "vit:4", "nchw"):
        with pytest.raises(UsageError, match="reshape"):
            reshape_from_spec(bad)


def test_no_differentiable_path_raises_auditor_error(images: Tensor) -> None:
    with pytest.raises(AuditorError, match="does not depend differentiably"), \
            CamEngine(DetachedHeadNet(), "features") as engine:
        engine(images)


def test_layer_that_never_runs_raises_auditor_error(images: Tensor) -> None:
    with pytest.raises(AuditorError, match=r"\['unused'\] did not run"), \
            CamEngine(DetachedHeadNet(), "unused", methods=("eigencam",)) as engine:
        engine(images)


def test_token_output_without_reshape_asks_for_vit_reshape() -> None:
    images = torch.randn(1, 3, 32, 32)
    with pytest.raises(AuditorError, match="reshape=vit_reshape"), \
            CamEngine(tiny_vit(), "encoder.layers.encoder_layer_1.ln_1") as engine:
        engine(images)


def test_bad_layer_name_is_rejected_when_the_engine_is_built() -> None:
    with pytest.raises(ModelLoadError, match=r"'feature'.*Did you mean"):
        CamEngine(tiny_gap_net(), "feature")


def test_bad_targets_and_inference_mode_raise_usage_errors(images: Tensor) -> None:
    with CamEngine(tiny_gap_net(), "features") as engine:
        with pytest.raises(UsageError, match=r"\[0, 3\)"):
            engine(images, torch.tensor([0, 1, 2, 3]))
        with pytest.raises(UsageError, match="integer tensor"):
            engine(images, torch.zeros(4))
        with pytest.raises(UsageError, match="scores \\[B\\]"):
            engine(images, lambda logits: logits)
        with torch.inference_mode(), pytest.raises(UsageError, match="inference_mode"):
            engine(images)
