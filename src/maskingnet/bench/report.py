"""``maskingnet bench``'s run: every section in turn, then ``bench.json`` and ``bench.md``."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from maskingnet.bench.default_model import (
    bench_default_model,
    bench_int8,
    default_model_markdown,
    int8_markdown,
)
from maskingnet.bench.fastpath import bench_fast_path, utilization
from maskingnet.bench.networks import bench_models
from maskingnet.bench.outputs import bench_output_stage, output_stage_markdown
from maskingnet.bench.peer import bench_peer, peer_markdown
from maskingnet.bench.pipeline import bench_pipeline, pipeline_markdown
from maskingnet.bench.rle import bench_rle
from maskingnet.bench.startup import bench_startup, startup_markdown
from maskingnet.bench.timing import (
    PEAK_SHAPES,
    BenchConfig,
    Plan,
    best_peak,
    machine_info,
    make_plan,
    measure_peak,
    sample_photos,
    say,
)
from maskingnet.utils import atomic_write, write_json


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
        say(config, "peak: 3x3 convs, fp32 and bf16")
        result["peak"] = measure_peak(plan, 2 if config.quick else 4, config.peak_shapes or PEAK_SHAPES)
    if "fast_path" in config.sections:
        result["fast_path"] = bench_fast_path(config, plan)
        second = measure_peak(plan, 2 if config.quick else 4, config.peak_shapes or PEAK_SHAPES)
        result["peak"] = best_peak(result["peak"], second)
        result["utilization"] = utilization(result["fast_path"], result["peak"])
    for name, section in PHOTO_SECTIONS.items():
        if name in config.sections:
            result[name] = section(config, plan, lambda line: say(config, line))
    result["machine"]["load_average_end"] = [round(v, 2) for v in os.getloadavg()]
    result["seconds"] = round(time.perf_counter() - started, 1)
    write_report(result, Path(config.out))
    return result


def _pipeline(config: BenchConfig, plan: Plan, report: Callable[[str], None]) -> dict[str, Any]:
    paths = sample_photos(config.data, plan.pipeline_images)
    return bench_pipeline(paths, config.checkpoint, str(plan.device), report, rounds=1 if config.quick else 2)


def _default_model(config: BenchConfig, plan: Plan, report: Callable[[str], None]) -> dict[str, Any]:
    paths = sample_photos(config.data, plan.pipeline_images)
    rounds = 1 if config.quick else 2
    return bench_default_model(paths, config.checkpoint, report, rounds=rounds, baseline=config.baseline)


def _int8(config: BenchConfig, plan: Plan, report: Callable[[str], None]) -> dict[str, Any]:
    paths = sample_photos(config.data, plan.photos)
    return bench_int8(paths, config.checkpoint, report, 1 if config.quick else 3, config.quick)


def _output_stage(config: BenchConfig, plan: Plan, report: Callable[[str], None]) -> dict[str, Any]:
    paths = sample_photos(config.data, plan.photos)
    return bench_output_stage(paths, config.checkpoint, report, rounds=1 if config.quick else 2)


def _rle(config: BenchConfig, plan: Plan, report: Callable[[str], None]) -> dict[str, Any]:
    return bench_rle(config.data, config.quick)


def _startup(config: BenchConfig, plan: Plan, report: Callable[[str], None]) -> dict[str, Any]:
    photos = sample_photos(config.data, 1)
    out = Path(config.out) / "startup"
    return bench_startup(photos, config.checkpoint, out, report, rounds=1 if config.quick else 2)


def _peer(config: BenchConfig, plan: Plan, report: Callable[[str], None]) -> dict[str, Any]:
    quick = config.quick
    return bench_peer(
        config.data,
        config.checkpoint,
        report,
        peers=config.peers,
        photos=8 if quick else None,
        timing_photos=4 if quick else 16,
        matting_photos=2 if quick else 4,
        slow_photos=2 if quick else 8,
        rounds=1 if quick else 2,
    )


PHOTO_SECTIONS: dict[str, Callable[[BenchConfig, Plan, Callable[[str], None]], dict[str, Any]]] = {
    "pipeline": _pipeline,
    "default_model": _default_model,
    "int8": _int8,
    "output_stage": _output_stage,
    "rle": _rle,
    "startup": _startup,
    "peer": _peer,
}
"""The sections after the networks' and the fast path's, in the order they run, each from the options."""


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
    lines += startup_markdown(result.get("startup"))
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
