"""MaskingNet's naive fp32 eager model against the fast path ``predict`` uses, their masks' agreement on
real photos, and the torch and onnxruntime backends side by side."""

from __future__ import annotations

import copy
import importlib.util
import os
import statistics
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from maskingnet.bench.timing import BenchConfig, Plan, best_seconds, sample_photos, say
from maskingnet.data.metrics import dice
from maskingnet.export import export_onnx
from maskingnet.inference import (
    DTYPES,
    FusedConv2d,
    OnnxBackend,
    TorchBackend,
    full_resolution,
    logits_to_probs,
    prepare,
)
from maskingnet.models import (
    create_model,
    load_model,
    model_report,
    model_spec,
    read_config,
    resolve_model,
    save_model,
)


def find_trained_maskingnet(root: Path = Path("runs")) -> Path | None:
    """The best-trained MaskingNet under ``root``: the ``best.safetensors`` of a ``maskingnet`` run with the
    highest validation Dice in its meta (header only; unreadable files are passed over)."""
    best: tuple[float, Path] | None = None
    for path in sorted(root.glob("*/checkpoints/best.safetensors")) + sorted(
        root.glob("*/*/checkpoints/best.safetensors")
    ):
        try:
            config, meta = read_config(path)
        except (ValueError, OSError):
            continue
        score = meta.get("val_dice")
        if config.name != "maskingnet" or not isinstance(score, (int, float)):
            continue
        if best is None or score > best[0]:
            best = (float(score), path)
    return best[1] if best else None


def agreement_model(config: BenchConfig) -> tuple[nn.Module, str]:
    """The model whose masks the two paths are compared on: ``config.checkpoint``, else the best-trained
    MaskingNet under ``runs/``, else the bundled model (a fresh clone); without ``auto_checkpoint``, the
    untrained full-width network (then the figure says little)."""
    path = config.checkpoint
    if path is None and config.auto_checkpoint:
        path = find_trained_maskingnet() or resolve_model(None)
    if path is not None:
        model = load_model(path)
        dice = model.meta.get("val_dice")
        trained = f"trained, val Dice {dice:.4f}" if isinstance(dice, float) else "trained"
        return model, f"{path} ({model.config.name}, width {model.config.width}, {trained})"
    torch.manual_seed(0)
    return create_model("maskingnet", width=config.width).eval(), "maskingnet, random init (untrained)"


def photo_batch(paths: Sequence[Path], size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor, list]:
    """The photos as ``predict`` prepares them (:func:`maskingnet.inference.prepare`): model inputs
    ``(N, 3, H, W)``, their coordinate maps and the photos' own sizes."""
    items = [prepare(path, size, need_photo=False) for path in paths]
    images = torch.stack([item.tensor for item in items])
    coords = torch.stack([item.coords for item in items])
    return images, coords, [item.size for item in items]


def mask_dice(a: np.ndarray, b: np.ndarray) -> float:
    return float(dice(a, b))


def measure_agreement(config: BenchConfig, plan: Plan) -> dict[str, Any]:
    """Mean Dice between the naive fp32 and the fast path's masks at the photos' full resolution."""
    model, description = agreement_model(config)
    size = model_spec(model).size or (config.fast_size, config.fast_size)
    paths = sample_photos(config.data, plan.photos)
    if not paths:
        return {"agreement_model": description, "mask_agreement_dice": None, "photos": 0}
    naive = TorchBackend(model, device=plan.device, precision="fp32", fast=False)
    fast = TorchBackend(model, device=plan.device, precision="auto")
    scores, changed = [], []
    for path in paths:
        images, coords, sizes = photo_batch([path], size)
        reference = full_resolution(naive(images, coords)[0], None, sizes[0], None) > 0.5
        candidate = full_resolution(fast(images, coords)[0], None, sizes[0], None) > 0.5
        scores.append(mask_dice(reference, candidate))
        changed.append(int((reference != candidate).sum()))
    return {
        "agreement_model": description,
        "agreement_input_size": list(size),
        "photos": len(paths),
        "mask_agreement_dice": round(statistics.fmean(scores), 6),
        "min_dice": round(min(scores), 6),
        "pixels_changed_per_image": round(statistics.fmean(changed), 1),
    }


def bench_fast_path(config: BenchConfig, plan: Plan) -> dict[str, Any]:
    """MaskingNet at ``fast_size`` batch 1: naive fp32 eager NCHW vs the fast path (what predict runs)."""
    side = config.fast_size
    torch.manual_seed(0)
    model = create_model("maskingnet", width=config.width).eval()
    gflops = float(model_report(model, size=(side, side))["gflops"])
    images = torch.randn(1, 3, side, side, generator=torch.Generator().manual_seed(1))
    naive = TorchBackend(model, device=plan.device, precision="fp32", fast=False)
    fast = TorchBackend(model, device=plan.device, precision="auto")
    variants = {"naive_fp32": naive, "fast": fast}
    if not config.quick:
        variants["fast_fp32"] = TorchBackend(model, device=plan.device, precision="fp32")
        if fast.precision != "fp32":
            variants["autocast_channels_last"] = _autocast_channels_last(model, plan.device, fast.precision)
        onnx = _onnx_variant(model, plan.device)
        if onnx is not None:
            variants["onnxruntime_fp32"] = onnx
    timings = {name: float("inf") for name in variants}
    for backend in variants.values():
        backend(images, None)
    for _ in range(plan.fast_repeats):
        for name, backend in variants.items():
            say(config, f"fast path: {name}")
            seconds = best_seconds(lambda backend=backend: backend(images, None), plan.device, 1, warmup=0)
            timings[name] = min(timings[name], seconds)
    naive_ms, fast_ms = timings["naive_fp32"] * 1000, timings["fast"] * 1000
    result = {
        "model": "maskingnet",
        "size": [side, side],
        "batch": 1,
        "fast_precision": fast.precision,
        "fast_recipe": _recipe(fast),
        "naive_ms": round(naive_ms, 1),
        "fast_ms": round(fast_ms, 1),
        "speedup": round(naive_ms / fast_ms, 2),
        "naive_gflops_per_s": round(gflops / timings["naive_fp32"], 1),
        "fast_gflops_per_s": round(gflops / timings["fast"], 1),
        "variants_ms": {name: round(seconds * 1000, 1) for name, seconds in timings.items()},
    }
    result.update(measure_agreement(config, plan))
    return result


class _AutocastChannelsLast:
    """Comparison variant: eager model (BN not folded), channels-last, under bf16/fp16 autocast."""

    def __init__(self, model: nn.Module, device: torch.device, precision: str) -> None:

        self.model = model.to(device).to(memory_format=torch.channels_last)
        self.device, self.dtype = device, DTYPES[precision]

    def __call__(self, images: torch.Tensor, coords: torch.Tensor | None) -> torch.Tensor:

        images = images.to(self.device).contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), torch.autocast(self.device.type, dtype=self.dtype):
            return logits_to_probs(self.model(images, coords))


def _autocast_channels_last(model: nn.Module, device: torch.device, precision: str) -> _AutocastChannelsLast:
    return _AutocastChannelsLast(copy.deepcopy(model).eval(), device, precision)


def _onnx_variant(model: nn.Module, device: torch.device):
    """ONNX Runtime (fp32, all graph optimisations) on the same weights, when the onnx extra is installed."""
    if importlib.util.find_spec("onnxruntime") is None:
        return None

    with tempfile.TemporaryDirectory(prefix="maskingnet-bench-onnx-") as tmp:
        path = Path(tmp) / "maskingnet.safetensors"
        save_model(model, path)
        try:
            return OnnxBackend(path, device=str(device))
        except Exception as error:  # an exporter failure must not cost the rest of the benchmark
            print(f"[bench] onnxruntime variant skipped: {error}", flush=True)
            return None


def _recipe(backend) -> str:
    parts = [backend.precision, "BN folded", "channels-last", "inference_mode"]
    if any(isinstance(m, FusedConv2d) for m in backend.model.modules()):
        parts.append("oneDNN conv+ReLU fused, weights pre-packed")
    return " + ".join(parts)


def utilization(fast_path: dict[str, Any], peak: dict[str, Any]) -> dict[str, Any]:
    """Achieved GFLOP/s over the measured peak of the same precision."""
    fp32_peak = peak.get("fp32", {}).get("gflops_per_s")
    fast_peak = peak.get(fast_path["fast_precision"], {}).get("gflops_per_s")
    return {
        "fp32": round(fast_path["naive_gflops_per_s"] / fp32_peak, 3) if fp32_peak else None,
        "fast": round(fast_path["fast_gflops_per_s"] / fast_peak, 3) if fast_peak else None,
        "fast_precision": fast_path["fast_precision"],
    }


# ---------------------------------------------------------------------------------- torch vs onnxruntime


def benchmark_backends(
    checkpoint: str | os.PathLike | nn.Module,
    size: tuple[int, int] = (512, 512),
    batch: int = 1,
    repeats: int = 3,
    precision: str = "auto",
    threads: int | None = None,
) -> dict[str, Any]:
    """ONNX Runtime (fp32) against the torch fast path on this CPU, side by side on the same weights.

    Exports the model to a temporary file, runs both backends on the same random batch (``size`` = (W, H)),
    and reports the best of ``repeats`` timings (taking turns) after one warm-up call, in ms per image, plus
    the largest probability difference between the two.
    """
    model = checkpoint.eval() if isinstance(checkpoint, nn.Module) else load_model(checkpoint)
    torch_backend = TorchBackend(model, device="cpu", precision=precision)
    width, height = size
    images = torch.randn(batch, 3, height, width, generator=torch.Generator().manual_seed(0))
    with tempfile.TemporaryDirectory(prefix="maskingnet-bench-onnx-") as tmp:
        export = export_onnx(model, Path(tmp) / "model.onnx")
        onnx_backend = OnnxBackend(export.path, threads=threads)
        backends = {"torch": torch_backend, "onnxruntime": onnx_backend}
        outputs = {name: backend(images) for name, backend in backends.items()}
        best = {name: float("inf") for name in backends}
        for _ in range(max(1, repeats)):  # taking turns, so a busy spell on the machine hits both alike
            for name, backend in backends.items():
                seconds = best_seconds(lambda b=backend: b(images), torch.device("cpu"), 1, warmup=0)
                best[name] = min(best[name], seconds)
    ms = {name: seconds * 1000 / batch for name, seconds in best.items()}
    return {
        "model": getattr(getattr(model, "config", None), "name", "model"),
        "size": [width, height],
        "batch": batch,
        "torch_precision": torch_backend.precision,
        "torch_ms_per_image": round(ms["torch"], 2),
        "onnxruntime_ms_per_image": round(ms["onnxruntime"], 2),
        "faster": min(ms, key=ms.get),
        "speedup_of_faster": round(max(ms.values()) / min(ms.values()), 2),
        "max_abs_probability_diff": float((outputs["torch"] - outputs["onnxruntime"]).abs().max()),
        "export_seconds": round(export.seconds, 1),
        "torch_threads": torch.get_num_threads(),
    }
