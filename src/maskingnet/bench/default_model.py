"""``maskingnet bench``'s default-model section: what a shop's photo costs with the model in the box.

Four pipelines write masks of the same real 1918x1280 photos, in turns, best of two; the first three are
``predict`` (decode, network, up-sampling or edge stage, mask written):

- ``previous``: the earlier recipe's network, MaskingNet width 0.25 at 240x160, bilinear up-sampling (timed
  untrained: the cost of a network does not depend on its weights);
- ``default, plain``: the bundled model, bilinear up-sampling, no clean-up;
- ``default``: the bundled model with its edge stage and clean-up, as ``maskingnet predict`` runs it;
- ``naive``: the bundled model the way a peer script runs a network (Pytorch-UNet's ``predict.py``): each
  photo decoded whole by PIL, the network in eager fp32 without the fast path, one photo at a time,
  bilinear up-sampling with ``F.interpolate``, the mask thresholded and written by PIL; the same masks as
  ``default, plain`` (the model's input contract is the product's ``prepare``).

Given a ``baseline`` model (the file a new model replaces), a fifth pipeline times its default ``predict`` in
the same turns, for ``default`` / ``baseline``. The ratios ``default`` / ``previous``, ``default`` /
``default, plain``, ``naive`` / ``default, plain`` and ``default`` / ``baseline`` come from the same run.

:func:`bench_int8` (the ``int8`` section) times the bundled model's network alone at its input size, batch 4,
in fp32, bf16 and int8 (:mod:`maskingnet.inference.quantize`, calibrated on synthetic photos at load), in
turns, and scores int8's masks against fp32's at the real photos' full resolution.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from maskingnet.data.metrics import dice
from maskingnet.inference import (
    ModelSettings,
    TorchBackend,
    cpu_bf16_supported,
    full_resolution,
    prepare,
    resolve_precision,
)
from maskingnet.models import create_model, load_model, model_spec, resolve_model
from maskingnet.predict import PredictConfig, predict_files

PREVIOUS_SIZE = (240, 160)
INT8_BATCH = 4
INT8_TARGET_SPEEDUP = 1.6  # the int8 target against the fast path, with mask agreement >= 0.999
INT8_TARGET_DICE = 0.999


def _previous_network() -> TorchBackend:
    torch.manual_seed(0)
    model = create_model("maskingnet", width=0.25).eval()
    model.meta = {"input_size": list(PREVIOUS_SIZE)}
    return TorchBackend(model, device="cpu", precision="auto")


def _seconds_per_photo(checkpoint: Any, paths: Sequence[Path], refine: bool, clean: bool, size=None) -> float:
    with tempfile.TemporaryDirectory(prefix="maskingnet-bench-") as tmp:
        model = ModelSettings(checkpoint, size=size, device="cpu", refine=refine, clean=clean)
        config = PredictConfig(model, [str(p) for p in paths], Path(tmp), save=("mask",), progress=False)
        summary = predict_files(config, lambda line: None)
    return summary.seconds / max(summary.done, 1)


def naive_masks(checkpoint: str | Path, paths: Sequence[Path], out: Path) -> None:
    """The ``naive`` pipeline of the module docstring: ``out/<stem>_mask.png`` for each photo (the model
    loaded from its file first, as a script does and as ``predict`` does)."""
    model = load_model(resolve_model(checkpoint))
    backend = TorchBackend(model, device="cpu", precision="fp32", fast=False)
    size = tuple(model.meta["input_size"])
    spec = model_spec(model)
    for path in paths:
        with Image.open(path) as image:
            photo = image.convert("RGB")
        item = prepare(photo, size, need_photo=False, spec=spec)
        probs = backend(item.tensor[None], item.coords[None])
        full = F.interpolate(probs[:, None], size=photo.size[::-1], mode="bilinear", align_corners=False)
        mask = (full[0, 0] > 0.5).numpy().astype(np.uint8) * 255
        Image.fromarray(mask).save(out / f"{path.stem}_mask.png")


def _naive_seconds_per_photo(model: str | Path, paths: Sequence[Path]) -> float:
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="maskingnet-bench-") as tmp:
        naive_masks(model, paths, Path(tmp))
    return (time.perf_counter() - started) / max(len(paths), 1)


def _describe(model: Path) -> str:
    network = load_model(model)
    config = network.config
    return f"{model.name} ({config.name} width {config.width:g}, input {network.meta.get('input_size')})"


def bench_default_model(
    paths: Sequence[Path],
    model: Path | None = None,
    say: Callable[[str], None] = print,
    rounds: int = 2,
    baseline: str | Path | None = None,
) -> dict[str, Any]:
    """Seconds per photo of the pipelines of the module docstring on ``paths``, best of ``rounds`` (the
    ``baseline`` model's default pipeline too when one is given)."""
    if not paths:
        return {"images": 0, "note": "no real photos given (--data)"}
    model = resolve_model(model)
    previous = _previous_network()
    runs: dict[str, Callable[[], float]] = {
        "previous": lambda: _seconds_per_photo(previous, paths, False, False, PREVIOUS_SIZE),
        "default_plain": lambda: _seconds_per_photo(model, paths, False, False),
        "default": lambda: _seconds_per_photo(model, paths, True, True),
        "naive": lambda: _naive_seconds_per_photo(model, paths),
    }
    if baseline is not None:
        baseline = resolve_model(baseline)
        runs["baseline"] = lambda: _seconds_per_photo(baseline, paths, True, True)
    _seconds_per_photo(model, paths[:1], True, True)  # warm-up
    best: dict[str, float] = {}
    for round_ in range(rounds):
        for name, run in runs.items():
            say(f"default model: {name}, round {round_ + 1}/{rounds}")
            best[name] = min(best.get(name, float("inf")), run())
    section = {
        "images": len(paths),
        "model": _describe(model),
        "seconds_per_photo": {name: round(value, 4) for name, value in best.items()},
        "default_vs_previous": round(best["default"] / best["previous"], 2),
        "edge_stage_share": round((best["default"] - best["default_plain"]) / best["default"], 3),
        "plain_vs_naive": round(best["naive"] / best["default_plain"], 2),
    }
    if baseline is not None:
        section["baseline"] = _describe(baseline)
        section["default_vs_baseline"] = round(best["default"] / best["baseline"], 2)
    return section


def default_model_markdown(section: dict[str, Any] | None) -> list[str]:
    """The section as a Markdown table (nothing when it did not run)."""
    if not section or not section.get("images"):
        return []
    seconds = section["seconds_per_photo"]
    return [
        f"## The default model, end to end ({section['images']} real 1918x1280 JPEGs, masks written)",
        "",
        f"Model: {section['model']}.",
        "",
        "| pipeline | s/photo |",
        "|---|---:|",
        f"| previous recipe: width 0.25 at 240x160, bilinear | {seconds['previous']:.3f} |",
        f"| default model, bilinear, no clean-up | {seconds['default_plain']:.3f} |",
        f"| **default model with edge stage and clean-up** | **{seconds['default']:.3f}** |",
        f"| default model, peer-style naive script (eager fp32, one photo at a time, bilinear) "
        f"| {seconds['naive']:.3f} |",
        *_baseline_rows(section),
        "",
        f"Default / previous: {section['default_vs_previous']:.2f}x the time per photo; the edge stage and "
        f"clean-up are {100 * section['edge_stage_share']:.0f}% of the default pipeline's time; the naive "
        f"script takes {section['plain_vs_naive']:.2f}x the time `predict` takes for the same masks."
        + _baseline_sentence(section),
        "",
    ]


def _baseline_rows(section: dict[str, Any]) -> list[str]:
    if "baseline" not in section:
        return []
    seconds = section["seconds_per_photo"]["baseline"]
    return [f"| baseline model {section['baseline']}, edge stage and clean-up | {seconds:.3f} |"]


def _baseline_sentence(section: dict[str, Any]) -> str:
    if "baseline" not in section:
        return ""
    return f" Default / baseline: {section['default_vs_baseline']:.2f}x the time per photo."


def bench_int8(
    paths: Sequence[Path],
    model: Path | None = None,
    say: Callable[[str], None] = print,
    rounds: int = 3,
    quick: bool = False,
) -> dict[str, Any]:
    """int8 against fp32 and bf16 on the bundled model (module docstring): ms per image, speed-ups, Dice.
    ``quick`` leaves out bf16 where it is emulated (its speed-up is then None)."""
    if not paths:
        return {"images": 0, "note": "no real photos given (--data)"}
    network = load_model(resolve_model(model))
    size = model_spec(network).size or (512, 512)
    say("int8: calibrating on synthetic photos")
    started = time.perf_counter()
    int8 = TorchBackend(network, device="cpu", precision="int8")
    calibration_s = time.perf_counter() - started
    floats = ("fp32", "bf16") if cpu_bf16_supported() or not quick else ("fp32",)
    backends = {name: TorchBackend(network, device="cpu", precision=name) for name in floats}
    backends["int8"] = int8
    items = [prepare(path, size, need_photo=False) for path in paths]
    batch = [items[i % len(items)] for i in range(INT8_BATCH)]
    images, coords = torch.stack([i.tensor for i in batch]), torch.stack([i.coords for i in batch])
    best = _best_in_turns(backends, images, coords, rounds, say)
    dices = _int8_dices(network, int8, items)
    fast = resolve_precision("auto", "cpu")
    speedup = {name: round(best[name] / best["int8"], 2) if name in best else None for name in floats}
    speedup.setdefault("bf16", None)
    return {
        "model": f"{network.config.name} width {network.config.width:g}",
        "size": list(size),
        "batch": INT8_BATCH,
        "images": len(items),
        "calibration": "8 synthetic photos rendered at load",
        "calibration_seconds": round(calibration_s, 1),
        "ms_per_image": {name: round(seconds * 1000 / INT8_BATCH, 1) for name, seconds in best.items()},
        "bf16": "native" if cpu_bf16_supported() else "emulated (no AVX512-BF16 or AMX): slower than fp32",
        "fast_path_precision": fast,
        "speedup_vs_bf16": speedup["bf16"],
        "speedup_vs_fp32": speedup["fp32"],
        "speedup_vs_fast_path": speedup[fast],
        "mask_agreement_dice": round(statistics.fmean(dices), 6),
        "min_dice": round(min(dices), 6),
        "meets_targets": speedup[fast] >= INT8_TARGET_SPEEDUP and statistics.fmean(dices) >= INT8_TARGET_DICE,
    }


def _best_in_turns(backends: dict, images: torch.Tensor, coords: torch.Tensor, rounds: int, say) -> dict:
    """Best seconds per batch of each backend, one call each in turns (a warm-up call first)."""
    best = {name: float("inf") for name in backends}
    for backend in backends.values():
        backend(images, coords)
    for round_ in range(rounds):
        say(f"int8: round {round_ + 1}/{rounds}")
        for name, backend in backends.items():
            started = time.perf_counter()
            backend(images, coords)
            best[name] = min(best[name], time.perf_counter() - started)
    return best


def _int8_dices(network: torch.nn.Module, int8: TorchBackend, items: list) -> list[float]:
    """Dice between the int8 and the plain fp32 masks of each photo at its full resolution (bilinear)."""
    reference = TorchBackend(network, device="cpu", precision="fp32", fast=False)
    scores = []
    for item in items:
        images, coords = item.tensor[None], item.coords[None]
        want = full_resolution(reference(images, coords)[0], None, item.size, None) > 0.5
        got = full_resolution(int8(images, coords)[0], None, item.size, None) > 0.5
        scores.append(float(dice(got, want)))
    return scores


def int8_markdown(section: dict[str, Any] | None) -> list[str]:
    """The int8 section as Markdown (nothing when it did not run)."""
    if not section or not section.get("images"):
        return []
    ms = section["ms_per_image"]
    size = "x".join(str(side) for side in section["size"])
    return [
        f"## int8 ({section['model']} at {size}, batch {section['batch']}, network only)",
        "",
        "| precision | ms/image |",
        "|---|---:|",
        *(f"| {name} | {value:.1f} |" for name, value in ms.items()),
        "",
        f"int8 is {section['speedup_vs_fp32']:.2f}x fp32 and {_times(section['speedup_vs_bf16'])} bf16 "
        f"(bf16 {section['bf16']}; the fast path runs {section['fast_path_precision']}). Mask agreement "
        f"with fp32: Dice {section['mask_agreement_dice']:.5f} (min {section['min_dice']:.5f}) on "
        f"{section['images']} real photos at full resolution. Calibration: {section['calibration']}, "
        f"{section['calibration_seconds']} s. Targets (>= {INT8_TARGET_SPEEDUP}x the fast path, Dice >= "
        f"{INT8_TARGET_DICE}): {'met' if section['meets_targets'] else 'not met'}.",
        "",
    ]


def _times(value: float | None) -> str:
    return "untimed" if value is None else f"{value:.2f}x"
