"""torchrun support: one process per GPU (or CPU worker), the data sharded by rank.

`torchrun --nproc_per_node N -m auditor audit ...` sets RANK, WORLD_SIZE and LOCAL_RANK; each
rank audits positions rank, rank + N, ... and writes its own chunks; rank 0 merges, runs the
detectors and renders the report. NCCL on GPUs, gloo on the CPU.

No rank waits forever on another: at each meeting point every rank says whether it got there
cleanly (`agree`), so one rank's error stops all of them with that error; a rank that hangs
makes the others fail after AUDITOR_DIST_TIMEOUT seconds (default 1800); a rank that dies is
ended by torchrun together with the rest.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from auditor.errors import AuditorError, UsageError

DEFAULT_TIMEOUT_S = 1800


@dataclass(frozen=True)
class Ranks:
    """This process's place in the job (a single process is rank 0 of 1)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def ranks_from_env() -> Ranks:
    """Ranks set by torchrun (or any launcher using the same variables)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Ranks()
    return Ranks(
        int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")),
        int(os.environ.get("LOCAL_WORLD_SIZE", "1")),
    )


def timeout_seconds() -> int:
    """How long a rank waits for the others at a meeting point (AUDITOR_DIST_TIMEOUT)."""
    text = os.environ.get("AUDITOR_DIST_TIMEOUT", str(DEFAULT_TIMEOUT_S))
    try:
        seconds = int(text)
    except ValueError:
        seconds = 0
    if seconds < 1:
        raise UsageError(
            f"AUDITOR_DIST_TIMEOUT must be a whole number of seconds >= 1, not {text!r}"
        )
    return seconds


def init(ranks: Ranks, device: torch.device) -> None:
    """Join the process group (no-op for a single process)."""
    if not ranks.distributed or dist.is_initialized():
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(
        backend=backend, rank=ranks.rank, world_size=ranks.world_size,
        timeout=datetime.timedelta(seconds=timeout_seconds()),
    )


def agree(ranks: Ranks, error: BaseException | None) -> None:
    """Meeting point of all ranks: each says whether it got here cleanly.

    Raises on every rank when any rank failed: the failing rank re-raises its own error, the
    others an AuditorError naming it, so no rank waits for one that will not come.
    """
    if not (ranks.distributed and dist.is_initialized()):
        if error is not None:
            raise error
        return
    report = None if error is None else f"{type(error).__name__}: {error}"
    reports: list[str | None] = [None] * ranks.world_size
    dist.all_gather_object(reports, report)
    if error is not None:
        raise error
    failed = [(rank, text) for rank, text in enumerate(reports) if text is not None]
    if failed:
        rank, text = failed[0]
        raise AuditorError(
            f"rank {rank} of the torchrun job failed ({text}); this rank stopped too"
        )


def workers_per_rank(workers: int | None, ranks: Ranks, cores: int) -> int | None:
    """Loader workers of this rank: the given number; None (make_loader's default) for a
    single process; else this node's `cores` shared among its ranks, one core per rank left
    to the rank itself, at most 8 (so N ranks do not start N times the cores in workers)."""
    if workers is not None or not ranks.distributed:
        return workers
    return min(8, max(cores // max(ranks.local_world_size, 1) - 1, 0))


def rank_device(device: torch.device, ranks: Ranks) -> torch.device:
    """On CUDA each rank takes the GPU of its local rank."""
    if ranks.distributed and device.type == "cuda":
        return torch.device("cuda", ranks.local_rank)
    return device


def barrier(ranks: Ranks) -> None:
    if ranks.distributed and dist.is_initialized():
        dist.barrier()


def close(ranks: Ranks) -> None:
    if ranks.distributed and dist.is_initialized():
        dist.destroy_process_group()
