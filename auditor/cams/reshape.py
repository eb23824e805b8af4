"""Layer outputs that are not [B, C, h, w] feature maps, laid out as one: vision-transformer
patch tokens [B, N, C] and channels-last maps [B, h, w, C] (timm Swin)."""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial

from torch import Tensor

from auditor.errors import AuditorError, UsageError


def vit_reshape(
    tokens: Tensor,
    grid: tuple[int, int] | None = None,
    prefix_tokens: int | None = None,
) -> Tensor:
    """Drop the class/register tokens and lay the patch tokens out on their grid.

    Usable as ``CamEngine(..., reshape=vit_reshape)`` (or a ``functools.partial`` of it with
    ``grid`` for non-square inputs). Tokens are batch-first, in row-major patch order, after
    ``prefix_tokens`` leading class/register tokens (torchvision ``VisionTransformer`` and timm).
    Target the last block's first norm (torchvision ``encoder.layers.encoder_layer_{L-1}.ln_1``,
    timm ``blocks.{L-1}.norm1``): after the last block only the class token reaches the head, so
    the patch tokens of a block's output get no gradient there.

    Args:
        tokens: [B, N, C].
        grid: (gh, gw) patch grid; the prefix is then N - gh * gw.
        prefix_tokens: leading non-patch tokens. When neither is given: N minus the largest
            square <= N (1 for a class token, 5 for a class token and 4 registers on grids of
            at least 3 x 3).

    Returns:
        [B, C, gh, gw] (a view: no copy).
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
                + f", but the layer gives {count} tokens; check grid and prefix_tokens."
            )
    else:
        prefix = count - math.isqrt(count) ** 2 if prefix_tokens is None else prefix_tokens
        side = math.isqrt(max(count - prefix, 0))
        if prefix < 0 or side * side != count - prefix or side == 0:
            raise AuditorError(
                f"{count} tokens minus {prefix} prefix tokens is not a square patch grid; pass "
                "grid=(gh, gw) for non-square inputs (functools.partial(vit_reshape, grid=...))."
            )
        height = width = side
    return tokens[:, prefix:, :].reshape(batch, height, width, channels).permute(0, 3, 1, 2)


def nhwc_reshape(features: Tensor) -> Tensor:
    """Channels-last map [B, h, w, C] -> [B, C, h, w] (a view: no copy), as timm's Swin
    transformers give."""
    if features.dim() != 4:
        raise AuditorError(
            f"nhwc_reshape expects a channels-last map [B, h, w, C]; got shape "
            f"{tuple(features.shape)}."
        )
    return features.permute(0, 3, 1, 2)


def reshape_from_spec(spec: str | None) -> Callable[[Tensor], Tensor] | None:
    """The `--reshape` option as a function for CamEngine: None/"none" (feature maps already
    [B, C, h, w]), "vit" (tokens, grid inferred), "vit:GHxGW" (tokens on that grid) or "nhwc"
    (channels-last maps)."""
    if spec is None or spec == "none":
        return None
    if spec == "nhwc":
        return nhwc_reshape
    kind, _, grid = spec.partition(":")
    if kind != "vit":
        raise UsageError(f"--reshape must be none, vit, vit:GHxGW or nhwc, not {spec!r}")
    if not grid:
        return vit_reshape
    try:
        gh, gw = (int(v) for v in grid.lower().split("x"))
    except ValueError:
        raise UsageError(f"--reshape {spec!r}: the grid must look like 14x14") from None
    return partial(vit_reshape, grid=(gh, gw))
