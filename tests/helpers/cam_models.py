"""Tiny models with known structure for the CAM tests (importable by other test modules).

Every builder takes a seed and is deterministic; all run in milliseconds on a CPU at 32 x 32.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models import VisionTransformer


class TwoStageNet(nn.Module):
    """``head(features(x))``: the target layer is ``features``; tests can call both halves."""

    def __init__(self, features: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.features = features
        self.head = head

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


def tiny_gap_net(num_classes: int = 3, channels: int = 8, seed: int = 0) -> TwoStageNet:
    """conv-BN-ReLU(inplace)-conv(stride 2)-ReLU(inplace) then GAP + linear.

    Layers: ``features.0`` conv [B,8,H,W], ``features.3`` conv [B,8,H/2,W/2] (followed by an
    in-place ReLU), ``features`` [B,8,H/2,W/2] (the discovered target), ``head.2`` the Linear.
    """
    torch.manual_seed(seed)
    features = nn.Sequential(
        nn.Conv2d(3, channels, 3, padding=1),
        nn.BatchNorm2d(channels),
        nn.ReLU(inplace=True),
        nn.Conv2d(channels, channels, 3, padding=1, stride=2),
        nn.ReLU(inplace=True),
    )
    with torch.no_grad():
        # Non-trivial running statistics, so train-mode BN would visibly differ from eval.
        features[1].running_mean.uniform_(-0.5, 0.5)
        features[1].running_var.uniform_(0.5, 2.0)
    head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, num_classes))
    return TwoStageNet(features, head).eval()


def spatial_head_net(
    height: int = 8, width: int = 6, num_classes: int = 3, seed: int = 0
) -> TwoStageNet:
    """conv(stride 2)-ReLU features, then a head whose gradient varies over space and sign.

    Head: 1x1 conv - ReLU - flatten - Linear over every position (no GAP: no CAM head).
    Input [B, 3, 2*height, 2*width]; ``features`` gives [B, 4, height, width]. Piecewise
    linear after ``features``, so the score's 2nd and higher derivatives w.r.t. it vanish.
    """
    torch.manual_seed(seed)
    features = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, stride=2), nn.ReLU())
    head = nn.Sequential(
        nn.Conv2d(4, 5, 1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(5 * height * width, num_classes),
    )
    return TwoStageNet(features, head).eval()


def max_pool_head_net(seed: int = 0) -> TwoStageNet:
    """Global MAX pooling + Linear(K, C): a Linear with in_features == K that is not CAM's."""
    torch.manual_seed(seed)
    features = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, stride=2), nn.ReLU())
    head = nn.Sequential(nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(4, 3))
    return TwoStageNet(features, head).eval()


class CornerNet(nn.Module):
    """Sees only one corner of the image: the input is multiplied by a fixed corner mask.

    gate (mask of ``corner`` region, size ``region``) - conv(bias-free, positive weights) -
    ReLU - conv(stride 2) - ReLU = ``body`` - GAP - ``fc`` with class 0 weights +1 and class 1
    weights -1. For positive images every activation outside the corner's receptive field is
    exactly 0, so every map must peak in that corner.
    """

    def __init__(
        self,
        corner: str = "top_left",
        image_size: tuple[int, int] = (32, 48),
        region: int = 8,
        seed: int = 0,
    ) -> None:
        super().__init__()
        torch.manual_seed(seed)
        height, width = image_size
        gate = torch.zeros(1, 1, height, width)
        if corner == "top_left":
            gate[..., :region, :region] = 1
        elif corner == "bottom_right":
            gate[..., height - region :, width - region :] = 1
        else:
            raise ValueError(f"corner must be 'top_left' or 'bottom_right', got {corner!r}")
        self.register_buffer("gate", gate)
        self.body = nn.Sequential(
            nn.Conv2d(3, 4, 3, padding=1, bias=False),
            nn.ReLU(),
            nn.Conv2d(4, 4, 3, padding=1, stride=2, bias=False),
            nn.ReLU(),
        )
        self.fc = nn.Linear(4, 2)
        with torch.no_grad():
            for conv in (self.body[0], self.body[2]):
                conv.weight.abs_()
            self.fc.weight.copy_(torch.tensor([[1.0] * 4, [-1.0] * 4]))
            self.fc.bias.zero_()
        self.eval()

    def forward(self, x: Tensor) -> Tensor:
        features = self.body(x * self.gate)
        return self.fc(features.mean(dim=(2, 3)))


class PixelMLP(nn.Module):
    """An MLP on flattened pixels: no convolution, no feature map."""

    def __init__(self, image_size: tuple[int, int] = (16, 16), num_classes: int = 3,
                 seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.net = nn.Sequential(
            nn.Flatten(),
            nn.Linear(3 * image_size[0] * image_size[1], 16),
            nn.ReLU(),
            nn.Linear(16, num_classes),
        )
        self.eval()

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class PatchMeanNet(nn.Module):
    """logits = [scale * mean of x over a known pixel box (all channels), 0].

    The box is rows ``top:top+size`` and columns ``left:left+size``.
    """

    def __init__(self, top: int, left: int, size: int, scale: float = 4.0) -> None:
        super().__init__()
        self.top, self.left, self.size, self.scale = top, left, size, scale
        self.eval()

    def forward(self, x: Tensor) -> Tensor:
        box = x[:, :, self.top : self.top + self.size, self.left : self.left + self.size]
        score = self.scale * box.mean(dim=(1, 2, 3))
        return torch.stack([score, torch.zeros_like(score)], dim=1)


class TwoLayerReluNet(nn.Module):
    """flatten - fc1 - F.relu (functional) - fc2 - nn.ReLU (module) - fc3, bias-free."""

    def __init__(self, in_features: int, hidden: int = 6, num_classes: int = 3,
                 seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.fc1 = nn.Linear(in_features, hidden, bias=False)
        self.fc2 = nn.Linear(hidden, hidden, bias=False)
        self.relu = nn.ReLU()
        self.fc3 = nn.Linear(hidden, num_classes, bias=False)
        self.eval()

    def forward(self, x: Tensor) -> Tensor:
        hidden = F.relu(self.fc1(x.flatten(1)))
        return self.fc3(self.relu(self.fc2(hidden)))


class DetachedHeadNet(nn.Module):
    """The logits are computed from a DETACHED copy of ``features``: no gradient path."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.features = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU())
        self.unused = nn.Conv2d(4, 4, 1)
        self.fc = nn.Linear(4, 3)
        self.eval()

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.features(x).detach().mean(dim=(2, 3)))


def tiny_vit(num_classes: int = 3, seed: int = 0) -> VisionTransformer:
    """torchvision ViT at 32 x 32, patch 8 (4 x 4 grid + class token), 2 layers, width 32."""
    torch.manual_seed(seed)
    model = VisionTransformer(
        image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=32, mlp_dim=64,
        num_classes=num_classes,
    )
    with torch.no_grad():
        # torchvision zero-initialises the head: give it weights so the logits vary.
        model.heads.head.weight.normal_(0, 0.5)
    return model.eval()


class DictOutputNet(nn.Module):
    """Returns {"logits": [B, C]}, as Hugging Face classifiers return an output object."""

    def __init__(self, num_classes: int = 2) -> None:
        super().__init__()
        self.net = tiny_gap_net(num_classes)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        return {"logits": self.net(x)}


class FeatureDictNet(nn.Module):
    """Returns {"features": [B, K, h, w]}: no logits anywhere."""

    def __init__(self, num_classes: int = 2) -> None:
        super().__init__()
        self.net = tiny_gap_net(num_classes)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        return {"features": self.net.features(x)}


def count_hooks(model: nn.Module) -> int:
    """Every forward/backward (pre-)hook on every module, plus the global module hooks."""
    per_module = sum(
        len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
        + len(m._backward_pre_hooks)
        for m in model.modules()
    )
    module_globals = nn.modules.module
    return per_module + sum(
        len(hooks)
        for hooks in (
            module_globals._global_forward_hooks,
            module_globals._global_forward_pre_hooks,
            module_globals._global_backward_hooks,
            module_globals._global_backward_pre_hooks,
        )
    )
