"""Wall-clock timing shared by the benchmarks."""

from __future__ import annotations

import time
from collections.abc import Callable

import torch


def wall_seconds(run: Callable[[], object], device: torch.device) -> float:
    """Seconds `run()` takes, with the device's queued work finished before and after (CUDA
    kernels run asynchronously, so an unsynchronised clock would time only the launches)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    run()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start
