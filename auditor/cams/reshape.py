"""Layer outputs that are not [B, C, h, w] feature maps, laid out as one: vision-transformer
patch tokens [B, N, C] and channels-last maps [B, h, w, C] (timm Swin)."""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial

from torch import Tensor, nn

from auditor.errors import AuditorError, TokenGridError, UsageError

#: Most leading non-patch tokens a ViT is assumed to have when it does not say (a class token,
#: a distillation token, registers), for inferring its grid from the token count.
MAX_PREFIX_TOKENS = 8


def vit_reshape(
    tokens: Tensor,
    grid: tuple[int, int] | None = None,
    prefix_tokens: int | None = None,
    input_size: tuple[int, int] | None = None,
) -> Tensor:
    """Drop the class/register tokens and lay the patch tokens out on their grid.

    Usable as ``CamEngine(..., reshape=vit_reshape)``, better as a ``functools.partial`` of it
    with the grid (``vit_reshape_for(model, input_size)`` reads it from the model). Tokens are
    batch-first, in row-major patch order, after ``prefix_tokens`` leading class/register
    tokens (torchvision ``VisionTransformer`` and timm). Target the last block's first norm
    (torchvision ``encoder.layers.encoder_layer_{L-1}.ln_1``, timm ``blocks.{L-1}.norm1``):
    after the last block only the class token reaches the head, so the patch tokens of a
    block's output get no gradient there.

    Args:
        tokens: [B, N, C].
        grid: (gh, gw) patch grid; the prefix is then N - gh * gw.
        prefix_tokens: leading non-patch tokens, when known.
        input_size: (H, W) of the model input. Without ``grid`` the grid is inferred from N
            (``token_grids``): square patches that tile this input, or without it a square
            grid, after up to MAX_PREFIX_TOKENS prefix tokens (or exactly ``prefix_tokens``).

    Returns:
        [B, C, gh, gw] (a view: no copy).

    Raises:
        TokenGridError (exit 2) when N fits several grids; AuditorError when it fits none.
    """
    if tokens.dim() != 3:
        raise AuditorError(
            f"vit_reshape expects tokens [B, N, C]; got shape {tuple(tokens.shape)}."
        )
    batch, count, channels = tokens.shape
    if grid is not None:
        height, width = grid
        prefix = count - height * width
        if prefix < 0 or (prefix_tokens is not None and prefix != prefix_tokens):
            raise AuditorError(
                f"grid {grid} needs {height * width} patch tokens"
                + (f" after {prefix_tokens} prefix tokens" if prefix_tokens is not None else "")
                + f", but the layer gives {count} tokens; check grid and prefix_tokens "
                "(--reshape vit:GHxGW, --image-size)."
            )
    else:
        candidates = token_grids(count, input_size, prefix_tokens)
        if not candidates:
            shape = "a grid of square patches that tile the input" if input_size else \
                "a square patch grid"
            raise AuditorError(
                f"{count} tokens are not {shape} after "
                + (f"{prefix_tokens}" if prefix_tokens is not None
                   else f"0 to {MAX_PREFIX_TOKENS}")
                + " prefix tokens; pass the grid: --reshape vit:GHxGW "
                "(functools.partial(vit_reshape, grid=(gh, gw)) in Python)."
            )
        if len(candidates) > 1:
            readings = "; ".join(f"{gh}x{gw} patches after {k} prefix token(s)"
                                 for k, gh, gw in candidates)
            size = f" of a {input_size[0]}x{input_size[1]} input" if input_size else ""
            raise TokenGridError(
                f"the layer's {count} tokens{size} fit more than one patch grid ({readings}), "
                "and the model does not say its patch size: pass the grid, e.g. "
                f"--reshape vit:{candidates[0][1]}x{candidates[0][2]} (rows x columns of "
                "patches; functools.partial(vit_reshape, grid=(gh, gw)) in Python)."
            )
        prefix, height, width = candidates[0]
    return tokens[:, prefix:, :].reshape(batch, height, width, channels).permute(0, 3, 1, 2)


def token_grids(
    count: int,
    input_size: tuple[int, int] | None = None,
    prefix_tokens: int | None = None,
) -> list[tuple[int, int, int]]:
    """Every (prefix, gh, gw) with prefix + gh * gw = count and gh * gw > 1: with
    ``input_size`` (H, W), the grids of square patches of one size p that tile it exactly
    (gh = H / p, gw = W / p); without, square grids. The prefix is ``prefix_tokens`` when
    given, else 0 to MAX_PREFIX_TOKENS. Fewest prefix tokens first."""
    prefixes = [prefix_tokens] if prefix_tokens is not None else range(MAX_PREFIX_TOKENS + 1)
    found = []
    for prefix in prefixes:
        patches = count - prefix
        if patches <= 1:
            continue
        if input_size is None:
            side = math.isqrt(patches)
            if side * side == patches:
                found.append((prefix, side, side))
            continue
        height, width = input_size
        found.extend((prefix, height // p, width // p)
                     for p in range(1, math.gcd(height, width) + 1)
                     if height % p == 0 and width % p == 0
                     and (height // p) * (width // p) == patches)
    return found


def model_patch_layout(model: nn.Module) -> tuple[tuple[int, int] | None, int | None, bool]:
    """What a vision transformer says of its tokens: (patch size (ph, pw) or None, prefix
    tokens or None, whether a partial patch at the right/bottom edge is padded into one).

    Read from torchvision ``VisionTransformer`` (``patch_size``; a ``class_token``: 1 prefix
    token), timm (``patch_embed.patch_size``, ``num_prefix_tokens``,
    ``patch_embed.dynamic_img_pad``) and Hugging Face (``config.patch_size``).
    """
    embed = getattr(model, "patch_embed", None)
    config = getattr(model, "config", None)
    patch = next((size for size in (getattr(model, "patch_size", None),
                                    getattr(embed, "patch_size", None),
                                    getattr(config, "patch_size", None))
                  if isinstance(size, int | tuple | list)), None)
    if isinstance(patch, int):
        patch = (patch, patch)
    prefix = getattr(model, "num_prefix_tokens", None)
    if not isinstance(prefix, int):
        prefix = 1 if isinstance(getattr(model, "class_token", None), nn.Parameter) else None
    padded = bool(getattr(embed, "dynamic_img_pad", False))
    return (None if patch is None else (int(patch[0]), int(patch[1]))), prefix, padded


def vit_reshape_for(
    model: nn.Module | None, input_size: tuple[int, int] | None
) -> Callable[[Tensor], Tensor]:
    """``vit_reshape`` with the grid of ``model`` at ``input_size`` (H, W): the input size
    over the patch size when the model says it (``model_patch_layout``), else inferred from
    the token count and the input size (``token_grids``)."""
    patch, prefix, padded = model_patch_layout(model) if model is not None else (None, None,
                                                                                  False)
    if patch is None or input_size is None:
        return partial(vit_reshape, prefix_tokens=prefix, input_size=input_size)
    cells = [-(-size // p) if padded else size // p for size, p in zip(input_size, patch,
                                                                         strict=True)]
    return partial(vit_reshape, grid=(cells[0], cells[1]), prefix_tokens=prefix)


def nhwc_reshape(features: Tensor) -> Tensor:
    """Channels-last map [B, h, w, C] -> [B, C, h, w] (a view: no copy), as timm's Swin
    transformers give."""
    if features.dim() != 4:
        raise AuditorError(
            f"nhwc_reshape expects a channels-last map [B, h, w, C]; got shape "
            f"{tuple(features.shape)}."
        )
    return features.permute(0, 3, 1, 2)


def reshape_from_spec(
    spec: str | None,
    model: nn.Module | None = None,
    input_size: tuple[int, int] | None = None,
) -> Callable[[Tensor], Tensor] | None:
    """The `--reshape` option as a function for CamEngine: None/"none" (feature maps already
    [B, C, h, w]), "vit" (tokens on the grid of ``model`` at ``input_size``,
    ``vit_reshape_for``), "vit:GHxGW" (tokens on that grid) or "nhwc" (channels-last maps)."""
    if spec is None or spec == "none":
        return None
    if spec == "nhwc":
        return nhwc_reshape
    kind, _, grid = spec.partition(":")
    if kind != "vit":
        raise UsageError(f"--reshape must be none, vit, vit:GHxGW or nhwc, not {spec!r}")
    if not grid:
        return vit_reshape_for(model, input_size)
    try:
        gh, gw = (int(v) for v in grid.lower().split("x"))
    except ValueError:
        raise UsageError(f"--reshape {spec!r}: the grid must look like 14x14") from None
    return partial(vit_reshape, grid=(gh, gw))
