"""Process-group plumbing for ``torchrun`` training: one process per device, NCCL on GPU, gloo on CPU.

Without torchrun's environment (``WORLD_SIZE`` unset or 1) everything here is a no-op, so training code calls
it unconditionally. Where a process sits (its rank, its device) is :mod:`maskingnet.runtime`'s to say.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from maskingnet.runtime import DistContext, context_from_env

__all__ = [
    "DistContext",
    "all_reduce_sum",
    "backend_for",
    "barrier",
    "broadcast_flag",
    "context_from_env",
    "init",
    "shutdown",
]


def backend_for(device: torch.device) -> str:
    return "nccl" if device.type == "cuda" else "gloo"


def init(ctx: DistContext, device: torch.device) -> None:
    """Join the process group (torchrun's env:// rendezvous) unless running alone or already joined."""
    if not ctx.enabled or dist.is_initialized():
        return
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend=backend_for(device), rank=ctx.rank, world_size=ctx.world_size)


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def all_reduce_sum(values: list[float], device: torch.device) -> list[float]:
    """Sum a list of numbers over all processes (float64, so counts of pixels stay exact)."""
    if not (dist.is_available() and dist.is_initialized()):
        return list(values)
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor.tolist()


def broadcast_flag(flag: bool, device: torch.device) -> bool:
    """True everywhere when any process says so (used to stop every rank on a non-finite loss)."""
    if not (dist.is_available() and dist.is_initialized()):
        return flag
    tensor = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return bool(tensor.item() > 0)
