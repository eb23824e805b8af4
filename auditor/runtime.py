"""Where the pass runs: device selection, mixed precision, host-to-device copies."""

from __future__ import annotations

import torch

from auditor.errors import UsageError


def select_device(name: str = "auto") -> torch.device:
    """`auto` -> the first CUDA device when there is one, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"--device {name} asked for CUDA, but torch sees no CUDA device")
    return device


def autocast_dtype(device: torch.device, mode: str = "auto") -> torch.dtype | None:
    """The autocast dtype of the forward pass, or None for full float32.

    auto: on CUDA bfloat16 where supported (else float16), off on the CPU (bfloat16 there is
    slower than float32 on most CPUs); on: the same, with bfloat16 on the CPU too; off: None.
    """
    if mode == "off" or (mode == "auto" and device.type != "cuda"):
        return None
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16


def normalise_images(
    images: torch.Tensor,
    mean: tuple[float, float, float],
    std: tuple[float, float, float],
    device: torch.device,
) -> torch.Tensor:
    """uint8 [B,3,H,W] on the host -> normalised float32 [B,3,H,W] on `device`.

    The uint8 batch crosses the bus (4x less than float32), asynchronously from pinned memory.
    """
    x = images.to(device, non_blocking=True).float().div_(255.0)
    m = torch.tensor(mean, device=device, dtype=x.dtype).view(1, 3, 1, 1)
    s = torch.tensor(std, device=device, dtype=x.dtype).view(1, 3, 1, 1)
    x = x.sub_(m).div_(s)
    if device.type == "cuda":
        x = x.contiguous(memory_format=torch.channels_last)
    return x
