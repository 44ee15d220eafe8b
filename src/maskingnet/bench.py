"""``maskingnet bench``: the benchmarks of SPEC section 9, measured side by side in one run.

Writes ``OUT/bench.json`` and ``OUT/bench.md`` with these sections:

- ``machine``: CPU model, cores, threads, torch version, device, precision support, load average.
- ``models``: the six networks' parameters, GFLOPs at 512x512, train and test ms/image (the thesis's two
  timing columns), each as a ratio to U-Net beside the thesis's 1080Ti ratio.
- ``peak``: this machine's own conv throughput (GFLOP/s), fp32 and bf16, channels-last.
- ``fast_path``: MaskingNet at 512x512, the naive fp32 eager NCHW model vs the fast path ``predict`` uses;
  the masks of both on real photos are compared (Dice).
- ``utilization``: achieved GFLOP/s of each path over the same-precision peak.
- ``pipeline``: end-to-end ``predict`` with the bundled model and its edge stage on real 1918x1280 JPEGs
  against each stage alone and the bound the cores set (``maskingnet.bench_pipeline``).
- ``int8``: the bundled model's network in fp32, bf16 and int8 side by side, and int8's mask agreement
  with fp32 on real photos (``maskingnet.bench_default.bench_int8``).
- ``output_stage``: mask and cut-out from the probabilities, rendered and written, with and without soft
  edges, against the render path before issue 14 (``maskingnet.bench_outputs``): speed-ups, cut-outs/s.
- ``rle``: Kaggle RLE encode/decode of a 1918x1280 mask (``benchmarks/bench_rle.py``).
- ``peer``: rembg (``rembg p -m u2netp``) and IMG.LY's IS-Net against ``maskingnet predict`` on the
  model's held-out photos: Dice and the time per photo of each as a whole process
  (``maskingnet.bench_peer``; skipped with one line when rembg is not installed: ``make peer``).

Timings are the best of a few runs (the least disturbed by other work on the machine); on a shared
machine they are contended, which is why every comparison is a ratio measured in the same run.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import importlib.util
import json
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from maskingnet.bench_default import bench_default_model, bench_int8, default_model_markdown, int8_markdown
from maskingnet.bench_outputs import bench_output_stage, output_stage_markdown
from maskingnet.bench_peer import PEERS, bench_peer, peer_markdown
from maskingnet.bench_pipeline import bench_pipeline, pipeline_markdown
from maskingnet.data.rle import rle_decode, rle_encode
from maskingnet.export import export_onnx
from maskingnet.inference import (
    DTYPES,
    FusedConv2d,
    OnnxBackend,
    TorchBackend,
    full_resolution,
    logits_to_probs,
    onednn_fusion_available,
    precision_support,
    prepare,
    resolve_device,
)
from maskingnet.metrics import dice
from maskingnet.models import (
    create_model,
    list_models,
    load_model,
    model_report,
    model_spec,
    read_config,
    resolve_model,
    save_model,
)
from maskingnet.utils import atomic_write, write_json

MODEL_NAMES = tuple(list_models())

# The thesis's table (NVIDIA 1080Ti, cuDNN v7, batch 4 at 512x512): training and test ms/image.
THESIS_MS = {
    "unet": (137.6, 34.42),
    "segnet": (165.13, 30.50),
    "arc1": (171.75, 42.793),
    "arc2": (172.59, 42.901),
    "arc3": (170.50, 42.839),
    "maskingnet": (180.46, 46.609),
}


@dataclass
class BenchConfig:
    """Options of ``maskingnet bench``. ``None`` sizes and counts take the defaults of the mode and device:
    the thesis's 512x512 batch 4 on a GPU; on a CPU a smaller size for the six-model table (stated in the
    report), 512x512 for the fast path always. ``data``: a Carvana-layout folder of real
    photos for the mask agreement, the pipeline and the RLE timings (None: those are skipped, or use a
    synthetic mask)."""

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


def _say(config: BenchConfig, line: str) -> None:
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


# ------------------------------------------------------------------------------------------------ models


def _batch(
    batch: int, size: int | tuple[int, int], device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random images and targets; ``size`` is a side or ``(W, H)``."""
    width, height = (size, size) if isinstance(size, int) else size
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(batch, 3, height, width, generator=generator).to(device)
    targets = torch.randint(0, 2, (batch, height, width), generator=generator).to(device)
    return images, targets


def training_step(model: nn.Module, plan: Plan) -> Callable[[], None]:
    """One training step: forward, pixel-wise softmax cross-entropy, backward, Adam (fp32)."""
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.9, 0.999))
    images, targets = _batch(plan.batch, plan.size, plan.device)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(images), targets).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def test_pass(model: nn.Module, plan: Plan) -> Callable[[], None]:
    """The plain eval-mode fp32 forward pass (the thesis's test column)."""
    images, _ = _batch(plan.batch, plan.size, plan.device)

    def forward() -> None:
        model.eval()
        with torch.inference_mode():
            model(images)

    return forward


def time_training(model: nn.Module, plan: Plan) -> float:
    """ms per image of one training step (best of ``plan.repeats``)."""
    return best_seconds(training_step(model, plan), plan.device, plan.repeats) * 1000 / plan.batch


def time_testing(model: nn.Module, plan: Plan) -> float:
    """ms per image of the eval-mode forward pass (best of ``plan.repeats``)."""
    return best_seconds(test_pass(model, plan), plan.device, plan.repeats) * 1000 / plan.batch


def round_robin_ms(tasks: dict[str, Callable[[], None]], plan: Plan, say: Callable[[str], None]) -> dict:
    """Best ms per image of each task, timed in turns (one run of each, ``plan.repeats`` rounds) so that
    load from other work on the machine falls on all of them alike rather than on whichever ran then."""
    best = {name: float("inf") for name in tasks}
    for name, task in tasks.items():
        say(f"models: warm-up {name}")
        best_seconds(task, plan.device, 0, warmup=1)
    for round_index in range(plan.repeats):
        say(f"models: round {round_index + 1}/{plan.repeats}")
        for name, task in tasks.items():
            best[name] = min(best[name], best_seconds(task, plan.device, 1, warmup=0))
    return {name: seconds * 1000 / plan.batch for name, seconds in best.items()}


def bench_models(config: BenchConfig, plan: Plan) -> list[dict[str, Any]]:
    _say(config, f"models: {', '.join(config.models)} at {plan.size}x{plan.size}, batch {plan.batch}")
    models, rows = {}, []
    for name in config.models:
        torch.manual_seed(0)
        models[name] = create_model(name, width=config.width).to(plan.device)
        report = model_report(models[name], size=(512, 512))
        rows.append(
            {"name": name, "params": int(report["params"]), "gflops": round(float(report["gflops"]), 2)}
        )
    say = functools.partial(_say, config)
    train = round_robin_ms({name: training_step(m, plan) for name, m in models.items()}, plan, say)
    test = round_robin_ms({name: test_pass(m, plan) for name, m in models.items()}, plan, say)
    for row in rows:
        row["train_ms_per_image"] = round(train[row["name"]], 2)
        row["test_ms_per_image"] = round(test[row["name"]], 2)
    add_thesis_ratios(rows)
    return rows


def add_thesis_ratios(rows: list[dict[str, Any]]) -> None:
    """Each timing as a ratio to U-Net's, beside the thesis's 1080Ti figures and their ratio to U-Net."""
    unet = next((row for row in rows if row["name"] == "unet"), None)
    thesis_unet = THESIS_MS["unet"]
    for row in rows:
        thesis = THESIS_MS.get(row["name"])
        for column, index in (("train", 0), ("test", 1)):
            ours = row[f"{column}_ms_per_image"]
            row[f"{column}_ratio_to_unet"] = round(ours / unet[f"{column}_ms_per_image"], 3) if unet else None
            row[f"thesis_{column}_ms"] = thesis[index] if thesis else None
            row[f"thesis_{column}_ratio_to_unet"] = (
                round(thesis[index] / thesis_unet[index], 3) if thesis else None
            )


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


# --------------------------------------------------------------------------------------------- fast path


def sample_photos(data: Path | None, count: int) -> list[Path]:
    """``count`` real photos spread over different cars (first angle of each car, then the next ...)."""
    if data is None:
        return []
    folder = data / "train" if (data / "train").is_dir() else data
    photos = sorted(p for p in folder.glob("*.jpg"))
    by_angle = sorted(photos, key=lambda p: (p.stem.rsplit("_", 1)[-1], p.stem))
    return by_angle[:count]


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
            _say(config, f"fast path: {name}")
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


def _quiet(line: str) -> None:
    print(line, flush=True)


# --------------------------------------------------------------------------------------------------- rle


def load_masks(data: Path | None, count: int) -> tuple[list[np.ndarray], str]:
    """Up to ``count`` real Carvana masks from ``data/train_masks`` (GIFs), else one synthetic 1918x1280
    ellipse; and a description of which."""
    paths = sorted((Path(data) / "train_masks").glob("*.gif"))[:count] if data is not None else []
    if paths:
        masks = []
        for path in paths:
            with Image.open(path) as gif:
                masks.append(np.asarray(gif) != 0)
        return masks, f"{len(masks)} real Carvana masks"
    yy, xx = np.mgrid[:1280, :1918]
    ellipse = ((xx - 959) / 800) ** 2 + ((yy - 700) / 350) ** 2 <= 1
    return [ellipse], "1 synthetic ellipse mask"


def best_ms(function: Callable[[Any], Any], items: list, repeat: int) -> float:
    """Best mean ms per item of ``repeat`` passes of ``function`` over ``items``."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for item in items:
            function(item)
        best = min(best, (time.perf_counter() - start) / len(items))
    return best * 1e3


def bench_rle(data: Path | None, quick: bool) -> dict[str, Any]:
    """Kaggle RLE encode and decode of full-size masks, best of a few passes."""
    masks, source = load_masks(data, 3 if quick else 20)
    shape = masks[0].shape
    rles = [rle_encode(mask) for mask in masks]
    repeat = 2 if quick else 5
    encode = best_ms(rle_encode, masks, repeat)
    decode = best_ms(lambda rle: rle_decode(rle, shape), rles, repeat)
    return {
        "source": source,
        "shape": [shape[1], shape[0]],
        "encode_ms": round(encode, 2),
        "decode_ms": round(decode, 2),
    }


# ------------------------------------------------------------------------------------------------ report


def run_bench(config: BenchConfig) -> dict[str, Any]:
    """Run the benchmarks and write ``bench.json`` and ``bench.md`` into ``config.out``; return the data."""
    plan = make_plan(config)
    started = time.perf_counter()
    result: dict[str, Any] = {
        "command": config.extra.get("command", "maskingnet bench" + (" --quick" if config.quick else "")),
        "quick": config.quick,
        "machine": machine_info(plan.device),
        "settings": {
            "models_size": [plan.size, plan.size],
            "models_batch": plan.batch,
            "repeats": plan.repeats,
            "fast_size": [config.fast_size, config.fast_size],
            "width": config.width,
            "data": str(config.data) if config.data is not None else None,
            "timing": "best of repeats, wall clock",
        },
    }
    if "models" in config.sections:
        result["models"] = bench_models(config, plan)
    if "peak" in config.sections or "fast_path" in config.sections:
        _say(config, "peak: 3x3 convs, fp32 and bf16")
        result["peak"] = measure_peak(plan, 2 if config.quick else 4, config.peak_shapes or PEAK_SHAPES)
    if "fast_path" in config.sections:
        result["fast_path"] = bench_fast_path(config, plan)
        second = measure_peak(plan, 2 if config.quick else 4, config.peak_shapes or PEAK_SHAPES)
        result["peak"] = best_peak(result["peak"], second)
        result["utilization"] = utilization(result["fast_path"], result["peak"])
    if "pipeline" in config.sections:
        result["pipeline"] = bench_pipeline(
            sample_photos(config.data, plan.pipeline_images), config.checkpoint, str(plan.device),
            lambda line: _say(config, line), rounds=1 if config.quick else 2,
        )
    if "default_model" in config.sections:
        paths = sample_photos(config.data, plan.pipeline_images)
        result["default_model"] = bench_default_model(
            paths, config.checkpoint, lambda line: _say(config, line), rounds=1 if config.quick else 2
        )
    if "int8" in config.sections:
        paths = sample_photos(config.data, plan.photos)
        result["int8"] = bench_int8(
            paths, config.checkpoint, lambda line: _say(config, line), 1 if config.quick else 3, config.quick
        )
    if "output_stage" in config.sections:
        result["output_stage"] = bench_output_stage(
            sample_photos(config.data, plan.photos),
            config.checkpoint,
            lambda line: _say(config, line),
            rounds=1 if config.quick else 2,
        )
    if "rle" in config.sections:
        result["rle"] = bench_rle(config.data, config.quick)
    if "peer" in config.sections:
        quick = config.quick
        result["peer"] = bench_peer(
            config.data, config.checkpoint, lambda line: _say(config, line), peers=config.peers,
            photos=8 if quick else None, timing_photos=4 if quick else 16, matting_photos=2 if quick else 4,
            slow_photos=2 if quick else 8, rounds=1 if quick else 2,
        )
    result["machine"]["load_average_end"] = [round(v, 2) for v in os.getloadavg()]
    result["seconds"] = round(time.perf_counter() - started, 1)
    write_report(result, Path(config.out))
    return result


def write_report(result: dict[str, Any], out: Path) -> None:
    write_json(out / "bench.json", result)
    with atomic_write(out / "bench.md", "w") as handle:
        handle.write(format_markdown(result))


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def format_markdown(result: dict[str, Any]) -> str:
    """``bench.md``: every section of ``bench.json`` as Markdown tables."""
    machine = result["machine"]
    lines = [
        f"# maskingnet bench{' --quick' if result['quick'] else ''}",
        "",
        f"`{result['command']}` — {result['seconds']} s.",
        "",
        f"- Machine: {machine['cpu']}, {machine['cores']} cores ({machine['torch_threads']} torch threads), "
        f"torch {machine['torch']}, device `{machine['device']}`"
        + (f" ({machine['gpu']})" if "gpu" in machine else "")
        + ".",
        f"- Precision support: {json.dumps(machine['precision'])}.",
        f"- Load average at start {machine['load_average']}, at end {machine.get('load_average_end')} "
        "(above the core count means the timings are contended).",
        "",
    ]
    for section in (_models_md, _peak_md, _fast_md):
        lines += section(result)
    lines += pipeline_markdown(result.get("pipeline"))
    lines += _rle_md(result)
    lines += default_model_markdown(result.get("default_model"))
    lines += int8_markdown(result.get("int8"))
    lines += output_stage_markdown(result.get("output_stage"))
    lines += peer_markdown(result.get("peer"))
    return "\n".join(lines) + "\n"


def _models_md(result: dict[str, Any]) -> list[str]:
    rows = result.get("models")
    if not rows:
        return []
    settings = result["settings"]
    size, batch = settings["models_size"], settings["models_batch"]
    lines = [
        f"## The six networks (timings at {size[0]}x{size[1]}, batch {batch}, fp32; "
        "thesis: 1080Ti, 512x512, batch 4)",
        "",
        "| model | params | GFLOPs @512 | train ms/img | ratio to U-Net | thesis train ms | thesis ratio "
        "| test ms/img | ratio to U-Net | thesis test ms | thesis ratio |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| `{row['name']}` | {_fmt(row['params'])} | {_fmt(row['gflops'])} "
            f"| {_fmt(row['train_ms_per_image'])} | {_fmt(row['train_ratio_to_unet'], 2)} "
            f"| {_fmt(row['thesis_train_ms'], 2)} | {_fmt(row['thesis_train_ratio_to_unet'], 2)} "
            f"| {_fmt(row['test_ms_per_image'])} | {_fmt(row['test_ratio_to_unet'], 2)} "
            f"| {_fmt(row['thesis_test_ms'], 2)} | {_fmt(row['thesis_test_ratio_to_unet'], 2)} |"
        )
    return lines + [""]


def _peak_md(result: dict[str, Any]) -> list[str]:
    peak = result.get("peak")
    if not peak:
        return []
    lines = [
        "## Conv peak of this machine (channels-last, batch 1)",
        "",
        "| precision | GFLOP/s | best shape | kernel |",
    ]
    lines.append("|---|---:|---|---|")
    for precision, row in peak.items():
        lines.append(
            f"| {precision} | {_fmt(row['gflops_per_s'])} | {row.get('shape', '–')} "
            f"| {row.get('kernel', '–')} |"
        )
    return lines + [""]


def _fast_md(result: dict[str, Any]) -> list[str]:
    fast = result.get("fast_path")
    if not fast:
        return []
    util = result.get("utilization", {})
    lines = [
        f"## CPU fast path: MaskingNet {fast['size'][0]}x{fast['size'][1]}, batch 1",
        "",
        f"Fast path: {fast['fast_recipe']}.",
        "",
        "| path | ms/image | GFLOP/s | of same-precision peak |",
        "|---|---:|---:|---:|",
        f"| naive fp32 eager NCHW | {_fmt(fast['naive_ms'])} | {_fmt(fast['naive_gflops_per_s'])} "
        f"| {_fmt(_pct(util.get('fp32')))}% |",
        f"| fast ({fast['fast_precision']}) | {_fmt(fast['fast_ms'])} | {_fmt(fast['fast_gflops_per_s'])} "
        f"| {_fmt(_pct(util.get('fast')))}% |",
        "",
        f"Speed-up **{_fmt(fast['speedup'], 2)}x**; mask agreement Dice "
        f"**{_fmt(fast.get('mask_agreement_dice'), 6)}** (min {_fmt(fast.get('min_dice'), 6)}, "
        f"{_fmt(fast.get('pixels_changed_per_image'))} pixels changed per "
        f"1918x1280 image) on {fast.get('photos')} real photos with {fast.get('agreement_model')}.",
        "",
        "All variants measured (ms/image): "
        + ", ".join(f"{name} {_fmt(ms)}" for name, ms in fast["variants_ms"].items())
        + ".",
        "",
    ]
    return lines


def _pct(value: float | None) -> float | None:
    return None if value is None else value * 100


def _rle_md(result: dict[str, Any]) -> list[str]:
    rle = result.get("rle")
    if not rle or "encode_ms" not in rle:
        return []
    return [
        f"## RLE ({rle['source']}, {rle['shape'][0]}x{rle['shape'][1]})",
        "",
        f"encode {_fmt(rle['encode_ms'], 2)} ms, decode {_fmt(rle['decode_ms'], 2)} ms per mask.",
        "",
    ]


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
