"""``maskingnet bench``'s ``pipeline`` section: ``predict`` as a user runs it, against its stages alone.

The bundled model (or ``-m``) at its own input size, batch 4, its default edge stage and clean-up, masks
written, on real 1918x1280 JPEGs. ``predict`` overlaps its stages (decoding, in worker processes where the
cores allow; the network in the main thread; writer threads for the edge stage and encoding), so its rate
is at best the slowest stage's alone; ``slowest_stage_fraction`` is how close it gets.

Overlap cannot create cores: when every stage is CPU work, the photos per second of the whole are also at
most ``cores / (the stages' CPU seconds a photo, summed)``. ``overlap_bound`` is that ceiling as a fraction
of the slowest stage's rate (1 when the cores suffice to hide everything but the slowest stage); a
``slowest_stage_fraction`` near ``overlap_bound`` means the pipeline wastes nothing and only fewer CPU
seconds a photo, or more cores, can raise it.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from maskingnet.inference import ModelSettings, Predictor
from maskingnet.models import resolve_model
from maskingnet.outputs import mask_image
from maskingnet.outputs.encode import encode
from maskingnet.predict import PredictConfig, predict_files
from maskingnet.runtime import usable_cores

STAGES = ("decode", "network", "output")


def _clocks() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def pipeline_stage_seconds(
    predictor: Predictor, paths: Sequence[Path], batch: int
) -> dict[str, dict[str, float]]:
    """Each stage of ``predict`` alone, one after the other in this process, per photo: ``{"wall": s,
    "cpu": s}`` (``cpu``: this process's CPU time, all its threads) for decode (the photo read and prepared
    for the model, and kept whole where the edge stage needs it), network (batches of ``batch``) and output
    (full resolution with the edge stage, the mask encoded as PNG)."""
    marks = [_clocks()]
    items = [predictor.prepare(str(path), need_photo=False, index=i) for i, path in enumerate(paths)]
    marks.append(_clocks())
    batches = [items[start : start + batch] for start in range(0, len(items), batch)]
    probs = [small for chunk in batches for small in predictor.infer_prepared(chunk)]
    marks.append(_clocks())
    for item, small in zip(items, probs, strict=True):
        encode(mask_image(predictor.full_resolution(small, item)), "png")
    marks.append(_clocks())
    count = max(len(items), 1)
    return {
        name: {"wall": (end[0] - start[0]) / count, "cpu": (end[1] - start[1]) / count}
        for name, start, end in zip(STAGES, marks[:-1], marks[1:], strict=True)
    }


def _best_stages(best: dict, new: dict) -> dict:
    return {
        name: {clock: min(best.get(name, new[name])[clock], value) for clock, value in times.items()}
        for name, times in new.items()
    }


def overlap_bound(stages: dict[str, dict[str, float]], cores: int) -> float:
    """The best end-to-end rate ``cores`` allow, over the slowest stage's rate alone (module docstring)."""
    slowest = max(times["wall"] for times in stages.values())
    cpu = sum(times["cpu"] for times in stages.values())
    return min(1.0, cores * slowest / cpu) if cpu > 0 else 1.0


def bench_pipeline(
    paths: Sequence[Path],
    model: str | Path | None = None,
    device: str = "cpu",
    say: Callable[[str], None] = print,
    rounds: int = 2,
) -> dict[str, Any]:
    """The section of the module docstring on ``paths``: in each of ``rounds``, ``predict`` on them, then
    each stage alone; the best of the rounds is kept for every figure."""
    if not paths:
        return {"images": 0, "note": "no real photos given (--data)"}
    path = resolve_model(model)
    predictor = Predictor(path, device=device)
    batch = PredictConfig.batch_size
    e2e, stages, summary = float("inf"), {}, None
    with tempfile.TemporaryDirectory(prefix="maskingnet-bench-") as tmp:
        config = PredictConfig(
            model=ModelSettings(predictor.backend, device=device),
            inputs=[str(p) for p in paths],
            out=Path(tmp) / "masks",
            save=("mask",),
            batch_size=batch,
            progress=False,
            overwrite=True,
        )
        predict_files(dataclasses.replace(config, inputs=[str(paths[0])]), lambda line: None)
        for round_ in range(rounds):
            say(f"pipeline: predict on {len(paths)} photos, then each stage, round {round_ + 1}/{rounds}")
            summary = predict_files(config, lambda line: None)
            e2e = min(e2e, summary.seconds / max(summary.done, 1))
            stages = _best_stages(stages, pipeline_stage_seconds(predictor, paths, batch))
    slowest = max(stages, key=lambda name: stages[name]["wall"])
    cores = usable_cores()
    bound = overlap_bound(stages, cores)
    fraction = stages[slowest]["wall"] / e2e
    network = stages["network"]["wall"]
    return {
        "images": summary.done,
        "failed": summary.failed,
        "model": f"{Path(path).name} at {predictor.size[0]}x{predictor.size[1]}",
        "size": list(predictor.size),
        "batch": batch,
        "precision": predictor.backend.precision,
        "edge_stage": _edge_stage_name(predictor),
        "end_to_end_images_per_s": round(1 / e2e, 3),
        "model_only_images_per_s": round(1 / network, 3),
        "overhead_pct": round(100 * (e2e - network) / network, 1),
        "stage_ms_per_image": {name: round(1000 * t["wall"], 1) for name, t in stages.items()},
        "stage_cpu_ms_per_image": {name: round(1000 * t["cpu"], 1) for name, t in stages.items()},
        "slowest_stage": slowest,
        "slowest_stage_fraction": round(fraction, 3),
        "cores": cores,
        "overlap_bound": round(bound, 3),
        "fraction_of_bound": round(fraction / bound, 3),
    }


def _edge_stage_name(predictor: Predictor) -> str:
    post = predictor.post
    if post is None:
        return "bilinear"
    outline = "refiner" if post.refiner is not None else "guided filter" if post.guided else "bilinear"
    return f"{outline}, clean-up {'on' if post.clean.enabled else 'off'}"


def pipeline_markdown(section: dict[str, Any] | None) -> list[str]:
    """The section as Markdown (nothing when it did not run)."""
    if not section or not section.get("images"):
        return []
    wall, cpu = section["stage_ms_per_image"], section["stage_cpu_ms_per_image"]
    return [
        f"## End-to-end predict ({section['images']} real 1918x1280 JPEGs, {section['model']}, batch "
        f"{section['batch']}, {section['precision']}, {section['edge_stage']}, masks written)",
        "",
        "| | decode | network | output | end to end |",
        "|---|---:|---:|---:|---:|",
        f"| ms per photo, each stage alone | {wall['decode']:.0f} | {wall['network']:.0f} "
        f"| {wall['output']:.0f} | {1000 / section['end_to_end_images_per_s']:.0f} |",
        f"| CPU ms per photo (all threads) | {cpu['decode']:.0f} | {cpu['network']:.0f} "
        f"| {cpu['output']:.0f} | |",
        "",
        f"End to end runs at {100 * section['slowest_stage_fraction']:.0f}% of the slowest stage's "
        f"({section['slowest_stage']}) rate; the {section['cores']} cores allow at most "
        f"{100 * section['overlap_bound']:.0f}% (the stages' CPU time over the cores), so the overlap "
        f"reaches {100 * section['fraction_of_bound']:.0f}% of what this machine allows. The network alone: "
        f"{section['model_only_images_per_s']:.2f} photos/s; end to end "
        f"{section['end_to_end_images_per_s']:.2f}.",
        "",
    ]
