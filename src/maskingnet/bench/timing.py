"""The bench's options and plan, its timing harness (best of a few runs), the machine it ran on and that
machine's own conv throughput (the peak every utilization is measured against)."""

from __future__ import annotations

import contextlib
import os
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from maskingnet.bench.peer import PEERS
from maskingnet.inference import (
    DTYPES,
    FusedConv2d,
    onednn_fusion_available,
    precision_support,
    resolve_device,
)
from maskingnet.models import (
    list_models,
)

MODEL_NAMES = tuple(list_models())


@dataclass
class BenchConfig:
    """Options of ``maskingnet bench``. ``None`` sizes and counts take the defaults of the mode and device:
    the thesis's 512x512 batch 4 on a GPU; on a CPU a smaller size for the six-model table (stated in the
    report), 512x512 for the fast path always. ``data``: a Carvana-layout folder of real photos for the mask
    agreement, the pipeline and the RLE timings (None: those are skipped, or use a synthetic mask).
    ``baseline``: another model whose default pipeline the ``default_model`` section times in the same turns
    (the model a new one replaces)."""

    out: Path = Path("runs/bench")
    quick: bool = False
    device: str = "auto"
    models: tuple[str, ...] = MODEL_NAMES
    size: int | None = None
    batch: int | None = None
    fast_size: int = 512
    repeats: int | None = None
    data: Path | None = None
    checkpoint: Path | None = None
    baseline: Path | None = None
    auto_checkpoint: bool = True
    photos: int | None = None
    pipeline_images: int | None = None
    width: float = 1.0
    sections: tuple[str, ...] = (
        "models",
        "peak",
        "fast_path",
        "pipeline",
        "default_model",
        "int8",
        "output_stage",
        "rle",
        "startup",
        "peer",
    )
    peers: tuple[str, ...] = PEERS
    peak_shapes: tuple[tuple[int, int, int], ...] | None = None
    progress: bool = True
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Plan:
    """The concrete sizes and counts one run uses (resolved from :class:`BenchConfig`)."""

    device: torch.device
    size: int | tuple[int, int]
    batch: int
    repeats: int
    fast_repeats: int = 1
    photos: int = 0
    pipeline_images: int = 0
    pipeline_batch: int = 1


def make_plan(config: BenchConfig) -> Plan:
    device = resolve_device(config.device)
    gpu = device.type == "cuda"
    if gpu:
        size, batch, repeats = 512, 4, 10
    elif config.quick:
        size, batch, repeats = 128, 2, 1
    else:
        size, batch, repeats = 256, 1, 2
    return Plan(
        device=device,
        size=config.size or size,
        batch=config.batch or batch,
        repeats=config.repeats or repeats,
        fast_repeats=config.repeats or (10 if gpu else 2 if config.quick else 3),
        photos=config.photos or (2 if config.quick else 8),
        pipeline_images=config.pipeline_images or (4 if config.quick else 8),
        pipeline_batch=4 if gpu else 1,
    )


def say(config: BenchConfig, line: str) -> None:
    if config.progress:
        print(f"[bench] {line}", flush=True)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def best_seconds(fn: Callable[[], Any], device: torch.device, repeats: int, warmup: int = 1) -> float:
    """Best wall time of ``repeats`` calls after ``warmup`` calls (GPU work synchronised)."""
    for _ in range(warmup):
        fn()
    synchronize(device)
    best = float("inf")
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        fn()
        synchronize(device)
        best = min(best, time.perf_counter() - start)
    return best


# ----------------------------------------------------------------------------------------------- machine


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def machine_info(device: torch.device) -> dict[str, Any]:
    info: dict[str, Any] = {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": str(device),
        "precision": precision_support(device),
        "load_average": [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else None,
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["cuda"] = torch.version.cuda
    return info


# -------------------------------------------------------------------------------------------------- peak

# (side, in, out) of a batch-1 3x3 conv; the peak is the best of them
PEAK_SHAPES = ((128, 128, 128), (64, 256, 256), (32, 512, 512), (128, 256, 256))


def conv_gflops(side: int, cin: int, cout: int, batch: int = 1) -> float:
    return 2 * batch * side * side * cin * cout * 9 / 1e9


def measure_peak(plan: Plan, repeats: int, shapes: Sequence[tuple[int, int, int]] = PEAK_SHAPES) -> dict:
    """Best GFLOP/s of a 3x3 conv (channels-last; on CPU also oneDNN's pre-packed kernel) per precision."""
    precisions = ["fp32", "bf16"] + (["fp16"] if plan.device.type == "cuda" else [])
    return {precision: _peak_for(precision, plan.device, repeats, shapes) for precision in precisions}


def best_peak(first: dict[str, Any], second: dict[str, Any]) -> dict[str, Any]:
    """Per precision, the better of two peak measurements (taken before and after the fast path, so that a
    burst of load from other work does not make the peak look lower than what the model achieved)."""
    return {
        precision: max(first.get(precision, {}), row, key=lambda item: item.get("gflops_per_s", 0.0))
        for precision, row in second.items()
    }


def _peak_for(
    precision: str, device: torch.device, repeats: int, shapes: Sequence[tuple[int, int, int]]
) -> dict[str, Any]:
    dtype = DTYPES[precision]
    best: dict[str, Any] = {"gflops_per_s": 0.0}
    for side, cin, cout in shapes:
        conv = nn.Conv2d(cin, cout, 3, padding=1).eval().to(device=device, dtype=dtype)
        conv = conv.to(memory_format=torch.channels_last)
        x = torch.randn(1, cin, side, side, device=device, dtype=dtype).contiguous(
            memory_format=torch.channels_last
        )
        kernels = {"conv2d": conv}
        if device.type == "cpu" and onednn_fusion_available():
            kernels["onednn_packed"] = FusedConv2d(conv, relu=False)
        for kernel_name, kernel in kernels.items():
            try:
                with torch.inference_mode():
                    seconds = best_seconds(lambda k=kernel, x=x: k(x), device, repeats)
            except RuntimeError:  # oneDNN's packed bf16 kernel needs AVX-512 or AVX-NE-CONVERT
                continue
            rate = conv_gflops(side, cin, cout) / seconds
            if rate > best["gflops_per_s"]:
                best = {"gflops_per_s": round(rate, 1), "shape": f"{cin}->{cout} 3x3 at {side}x{side}"}
                best["kernel"] = kernel_name
    return best


def sample_photos(data: Path | None, count: int) -> list[Path]:
    """``count`` real photos spread over different cars (first angle of each car, then the next ...)."""
    if data is None:
        return []
    folder = data / "train" if (data / "train").is_dir() else data
    photos = sorted(p for p in folder.glob("*.jpg"))
    by_angle = sorted(photos, key=lambda p: (p.stem.rsplit("_", 1)[-1], p.stem))
    return by_angle[:count]


def best_ms(function: Callable[[Any], Any], items: list, repeat: int) -> float:
    """Best mean ms per item of ``repeat`` passes of ``function`` over ``items``."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for item in items:
            function(item)
        best = min(best, (time.perf_counter() - start) / len(items))
    return best * 1e3
