"""Where and how this process runs: its torchrun rank, its device, its precision, its threads and workers.

Everything that reads the machine or the torchrun environment is here, so that the tasks (train, evaluate,
predict, submit) agree on it. Process-group operations for training live in
:mod:`maskingnet.train.distributed`.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from maskingnet.errors import MaskingnetError

PRECISIONS = ("fp32", "bf16", "fp16")
# Inference also takes int8 (x86 CPUs; maskingnet.inference.quantize); training does not.
INFERENCE_PRECISIONS = (*PRECISIONS, "int8")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
INT8_ENGINE = "x86"
MAX_HELPERS = 4


# ------------------------------------------------------------------------------------------------ ranks


@dataclass(frozen=True)
class DistContext:
    """Where this process sits: ``rank`` of ``world_size``, its ``local_rank`` on the node."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def context_from_env() -> DistContext:
    """The process's place in a torchrun job, read from ``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK``.

    Without torchrun (``WORLD_SIZE`` unset or 1) this is rank 0 of 1. Inference ranks need no process
    group: they share nothing but the file system.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistContext()
    return DistContext(
        rank=int(os.environ["RANK"]),
        world_size=world_size,
        local_rank=int(os.environ.get("LOCAL_RANK", "0")),
    )


def rank_device(device: str) -> str:
    """Under torchrun each rank takes its own GPU; on CPU the ranks share the cores."""
    ctx = context_from_env()
    if not ctx.enabled or not device.startswith(("auto", "cuda")) or ":" in device:
        return device
    if torch.cuda.is_available():
        return f"cuda:{ctx.local_rank % torch.cuda.device_count()}"
    return "cpu" if device == "auto" else device


# ---------------------------------------------------------------------------------------- cores, workers


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity where the OS says, else all of them)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def share_cpu_threads() -> None:
    """Several CPU ranks on one machine: give each its share of the cores instead of all of them."""
    ctx = context_from_env()
    if ctx.enabled:
        torch.set_num_threads(max(1, usable_cores() // ctx.world_size))


def default_workers(world_size: int = 1) -> int:
    """Decoding processes per process: its share of the cores less one for its own loop, at most 4."""
    return max(0, min(MAX_HELPERS, usable_cores() // max(1, world_size) - 1))


def decode_workers(device: str | torch.device = "cpu", world_size: int = 1) -> int:
    """Processes that decode photos ahead of inference. With the network on a GPU, as
    :func:`default_workers`. On a CPU the network's threads already take every core, and a decoding process
    pays only with cores to spare: the share of the cores less two, at most 4. None on 2 cores, where one
    made ``predict`` 10-25% slower end to end (it competes with the network's threads, and every photo is
    pickled across)."""
    if torch.device(device).type != "cpu":
        return default_workers(world_size)
    return max(0, min(MAX_HELPERS, usable_cores() // max(1, world_size) - 2))


def writer_threads() -> int:
    """Threads that up-sample, encode and write outputs beside the model: one per core, at most 4."""
    return max(1, min(MAX_HELPERS, usable_cores()))


# ---------------------------------------------------------------------------------- device, precision


DEVICE_CHOICES = "auto, cpu, cuda, cuda:N or mps"
CUDA_INSTALL_HINT = "install the CUDA build: make install TORCH=cuda"


class DeviceError(MaskingnetError, ValueError):
    """A device this process cannot run on: one line saying why and what to do."""


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` picks CUDA, then Apple MPS, then the CPU; anything else must name a device this process can
    use (:func:`check_device`), so that a missing GPU is one line, not torch's traceback at the first op."""
    if isinstance(device, torch.device):
        return check_device(device)
    if device != "auto":
        try:
            parsed = torch.device(device)
        except (RuntimeError, ValueError):
            raise DeviceError(f"--device {device}: not a device (choose {DEVICE_CHOICES})") from None
        return check_device(parsed, device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def check_device(device: torch.device, requested: str | None = None) -> torch.device:
    """``device`` when this process can use it, else :class:`DeviceError` (a CPU-only torch build, no GPU
    visible, a GPU index past the count, no MPS)."""
    name = requested or str(device)
    if device.type == "cuda":
        if not torch.backends.cuda.is_built():
            build = f"this torch ({torch.__version__}) was built without CUDA"
            raise DeviceError(f"--device {name}: {build} ({CUDA_INSTALL_HINT})")
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise DeviceError(
                f"--device {name}: no CUDA GPU is visible (check nvidia-smi, the driver and "
                "CUDA_VISIBLE_DEVICES)"
            )
        if device.index is not None and device.index >= count:
            gpus = "1 GPU (cuda:0)" if count == 1 else f"{count} GPUs (cuda:0 to cuda:{count - 1})"
            raise DeviceError(f"--device {name}: only {gpus}")
    elif device.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise DeviceError(f"--device {name}: no Apple MPS device on this machine")
    return device


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU feature flags from ``/proc/cpuinfo`` (empty where that file does not exist)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


@functools.lru_cache(maxsize=1)
def cpu_bf16_supported() -> bool:
    """True when this CPU runs bf16 convolutions natively (AVX512-BF16 or AMX), so bf16 is a speed-up.

    oneDNN's own check is the authority; ``/proc/cpuinfo`` flags are the fallback where that op is missing.
    Emulated bf16 (plain AVX512/AVX2) is slower than fp32, so it does not count.
    """
    if os.environ.get("MASKINGNET_NO_BF16"):
        return False
    check = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    if check is not None and torch.backends.mkldnn.is_available():
        try:
            if not check():
                return False
        except RuntimeError:
            pass
    flags = cpu_flags()
    if flags:
        return bool({"avx512_bf16", "amx_bf16"} & flags)
    return check is not None and torch.backends.mkldnn.is_available()


def resolve_precision(precision: str = "auto", device: str | torch.device = "cpu") -> str:
    """``"auto"``: bf16 on CUDA GPUs that support it (else fp16), fp16 on MPS, bf16 on CPUs with native bf16
    (else fp32). An explicit request for a precision the device cannot run falls back to fp32, except int8,
    which is an error off x86 CPUs. ``auto`` never picks int8: where measured (an AVX2 CPU) it ran 1.0-1.3x
    fp32, short of the 1.6x its small loss of agreement was to buy (docs/benchmarks.md, "int8")."""
    device = resolve_device(device)
    if precision not in ("auto", *INFERENCE_PRECISIONS):
        choices = ", ".join(INFERENCE_PRECISIONS)
        raise ValueError(f"precision must be one of auto, {choices}; got {precision!r}")
    if precision == "int8":
        reason = int8_unavailable_reason(device)
        if reason:
            raise PrecisionError(reason)
        return precision
    if device.type == "cuda":
        if precision == "auto":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return precision
    if device.type == "mps":
        return "fp16" if precision == "auto" else precision
    if precision == "auto":
        return "bf16" if cpu_bf16_supported() else "fp32"
    if precision == "fp16":
        return "fp32"
    return precision


class PrecisionError(MaskingnetError, ValueError):
    """A precision this device cannot run (int8 off the CPU): one line saying why."""


def int8_unavailable_reason(device: torch.device) -> str | None:
    """Why int8 inference cannot run on ``device`` (None when it can): it needs the CPU and PyTorch's x86
    quantized engine."""
    if device.type != "cpu":
        return f"precision int8 runs on the CPU only, not on {device.type} (use auto, fp32, bf16 or fp16)"
    engines = torch.backends.quantized.supported_engines
    if INT8_ENGINE not in engines:
        have = ", ".join(engines)
        return f"precision int8 needs PyTorch's {INT8_ENGINE} quantized engine (this build has {have})"
    return None


def precision_support(device: str | torch.device = "cpu") -> dict[str, Any]:
    """What this machine offers for inference precision (reported by ``maskingnet bench``)."""
    device = resolve_device(device)
    if device.type == "cuda":
        return {
            "device": str(device),
            "bf16": bool(torch.cuda.is_bf16_supported()),
            "fp16": True,
            "auto": resolve_precision("auto", device),
        }
    return {
        "device": str(device),
        "bf16": cpu_bf16_supported() if device.type == "cpu" else False,
        "fp16": device.type == "mps",
        "mkldnn": bool(torch.backends.mkldnn.is_available()),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu_flags": sorted(
            {"avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8", "amx_tile"}
            & cpu_flags()
        ),
        "int8": int8_unavailable_reason(device) is None,
        "auto": resolve_precision("auto", device),
    }
