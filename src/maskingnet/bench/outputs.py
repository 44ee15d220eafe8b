"""``maskingnet bench``'s output stage: what turning a probability map into files costs.

On real 1918x1280 photos, with the probabilities the bundled model gives them (edge stage included), the
outputs ``predict`` writes by default (mask and cut-out) are made four ways, in turns, with and without
soft edges:

- ``render``: :func:`maskingnet.outputs.render_all` (the matte, the mask and cut-out pictures), against
  the same step as it was before (``benchmarks/outputs_reference.py``, frozen at commit
  174ee64; in the checkout, not in the wheel);
- ``write``: render and write the files, end to end: a :class:`maskingnet.inference.FileSink` as
  ``predict`` uses it, against the old render with the old writer (PIL, zlib level 3), each file atomic.

Every figure is seconds per photo, best round of ``rounds``; ``speedup`` = before / after and cut-outs/s
come from the same run. ``max_pixel_difference`` checks that both renders give the same pictures.
"""

from __future__ import annotations

import functools
import importlib.util
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from maskingnet.data.io import read_image
from maskingnet.inference import Failed, FileSink, Predictor, Prepared
from maskingnet.outputs import EdgeConfig, render_all
from maskingnet.outputs.files import PictureOptions
from maskingnet.outputs.layout import output_suffix
from maskingnet.utils import atomic_save

KINDS = ("mask", "cutout")
MODES = {"hard": EdgeConfig(), "soft": EdgeConfig(soft=True)}
REFERENCE = Path(__file__).resolve().parents[3] / "benchmarks" / "outputs_reference.py"
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
"""Wall-clock time, and this process's CPU time (all its threads): on a machine shared with other work the
CPU time is the steadier measure of the work done, the wall-clock time what a user waits."""


@functools.cache
def load_reference(path: Path = REFERENCE) -> Any:
    """The frozen render path as a module, from the checkout (None where maskingnet runs from a wheel)."""
    if not path.is_file():
        return None
    spec = importlib.util.spec_from_file_location("maskingnet_outputs_reference", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


@dataclass
class Photo:
    """One photo and its full-resolution car probabilities."""

    name: str
    rgb: np.ndarray
    probs: np.ndarray


def load_photos(paths: Sequence[Path], predictor: Predictor) -> list[Photo]:
    """The photos decoded (upright RGB) with the probabilities ``predictor`` gives them."""
    return [Photo(path.stem, np.array(read_image(path)), predictor.predict(path)) for path in paths]


def render_after(photo: Photo, edges: EdgeConfig) -> dict:
    return render_all(KINDS, photo.rgb, photo.probs, edges)


def render_before(photo: Photo, edges: EdgeConfig) -> dict:
    return load_reference().render_all(KINDS, photo.rgb, photo.probs, edges)


def write_after(photo: Photo, edges: EdgeConfig, folder: Path) -> None:
    """Render and write as ``predict`` does: one :class:`FileSink` call."""
    targets = [[folder / f"{photo.name}{output_suffix(kind)}" for kind in KINDS]]
    sink = FileSink([photo.name], targets, KINDS, PictureOptions(edges))
    height, width = photo.probs.shape
    item = Prepared(index=0, size=(width, height), photo=torch.from_numpy(photo.rgb))
    if isinstance(result := sink.consume(item, photo.probs), Failed):
        raise RuntimeError(f"output stage: {result.message}")


def write_before(photo: Photo, edges: EdgeConfig, folder: Path) -> None:
    """Render and write as ``predict`` did before: the frozen render, PIL's writer, atomic files."""
    for kind, image in render_before(photo, edges).items():
        target = folder / f"{photo.name}{output_suffix(kind)}"
        atomic_save(target, lambda tmp, image=image: load_reference().save(image, Path(tmp)))


def max_pixel_difference(photos: Sequence[Photo]) -> int:
    """Largest absolute difference, over every photo, mode, kind and pixel, of the two renders."""
    worst = 0
    for photo in photos:
        for edges in MODES.values():
            before, after = render_before(photo, edges), render_after(photo, edges)
            for kind in KINDS:
                delta = np.abs(np.asarray(before[kind], np.int16) - np.asarray(after[kind], np.int16))
                worst = max(worst, int(delta.max()))
    return worst


def time_in_turns(
    tasks: dict[str, Callable[[Photo], None]], photos: Sequence[Photo], rounds: int
) -> dict[str, dict[str, float]]:
    """Best-round mean seconds per photo of every task on each of :data:`CLOCKS`; each round runs every
    task once per photo, in turns, so that load from other work falls on all of them alike."""
    best = {clock: dict.fromkeys(tasks, float("inf")) for clock in CLOCKS}
    for _ in range(rounds):
        spent = {clock: dict.fromkeys(tasks, 0.0) for clock in CLOCKS}
        for photo in photos:
            for name, task in tasks.items():
                start = {clock: read() for clock, read in CLOCKS.items()}
                task(photo)
                for clock, read in CLOCKS.items():
                    spent[clock][name] += read() - start[clock]
        for clock, times in spent.items():
            best[clock] = {name: min(best[clock][name], times[name] / len(photos)) for name in tasks}
    return best


def _tasks(folder: Path) -> dict[str, Callable[[Photo], None]]:
    tasks: dict[str, Callable[[Photo], None]] = {}
    for mode, edges in MODES.items():
        tasks[f"render_{mode}_before"] = lambda photo, edges=edges: render_before(photo, edges)
        tasks[f"render_{mode}_after"] = lambda photo, edges=edges: render_after(photo, edges)
        tasks[f"write_{mode}_before"] = lambda photo, edges=edges: write_before(photo, edges, folder)
        tasks[f"write_{mode}_after"] = lambda photo, edges=edges: write_after(photo, edges, folder)
    return tasks


def bench_output_stage(
    paths: Sequence[Path], model: Any = None, say: Callable[[str], None] = print, rounds: int = 2
) -> dict[str, Any]:
    """The output stage before and after on ``paths`` (module docstring); ``model``: the probabilities'
    model (None: the bundled default)."""
    if not paths:
        return {"images": 0, "note": "no real photos given (--data)"}
    if load_reference() is None:
        return {"images": 0, "note": f"the frozen reference render path is not here ({REFERENCE})"}
    say(f"output stage: probabilities of {len(paths)} real photos")
    photos = load_photos(paths, Predictor(model, device="cpu"))
    say(f"output stage: render and write {'/'.join(KINDS)}, before and after, {rounds} round(s)")
    with tempfile.TemporaryDirectory(prefix="maskingnet-bench-outputs-") as tmp:
        clocks = time_in_turns(_tasks(Path(tmp)), photos, rounds)
    seconds, cpu = clocks["wall"], clocks["cpu"]
    height, width = photos[0].probs.shape
    section: dict[str, Any] = {
        "images": len(photos),
        "size": [width, height],
        "kinds": list(KINDS),
        "rounds": rounds,
        "seconds_per_photo": {name: round(value, 4) for name, value in seconds.items()},
        "cpu_seconds_per_photo": {name: round(value, 4) for name, value in cpu.items()},
        "max_pixel_difference": max_pixel_difference(photos),
    }
    for step in ("render", "write"):
        for mode in MODES:
            section[f"{step}_{mode}_speedup"] = round(
                seconds[f"{step}_{mode}_before"] / seconds[f"{step}_{mode}_after"], 2
            )
            section[f"{step}_{mode}_cpu_speedup"] = round(
                cpu[f"{step}_{mode}_before"] / cpu[f"{step}_{mode}_after"], 2
            )
    for mode in MODES:
        for when in ("before", "after"):
            section[f"cutouts_per_s_{mode}_{when}"] = round(1 / seconds[f"write_{mode}_{when}"], 2)
        before, after = section[f"cutouts_per_s_{mode}_before"], section[f"cutouts_per_s_{mode}_after"]
        speedup = section[f"render_{mode}_speedup"]
        say(f"output stage, {mode} edges: render {speedup}x faster, {before} -> {after} cut-outs/s")
    return section


def output_stage_markdown(section: dict[str, Any] | None) -> list[str]:
    """The section as a Markdown table (empty without a section; a note when there were no photos)."""
    if not section:
        return []
    lines = ["## Output stage: mask and cut-out from the probabilities", ""]
    if not section.get("images"):
        return lines + [f"Skipped: {section.get('note')}.", ""]
    seconds = section["seconds_per_photo"]
    lines += [
        f"{section['images']} real photos at {section['size'][0]}x{section['size'][1]}, "
        f"{' + '.join(section['kinds'])}, best of {section['rounds']} round(s) in turns; before = the "
        "render path of commit 174ee64 with PIL's PNG writer (`benchmarks/outputs_reference.py`).",
        "",
        "| edges | render before, ms | render after, ms | speed-up | write before, ms | write after, ms "
        "| speed-up | cut-outs/s before | cut-outs/s after |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for mode in MODES:
        row = [mode]
        for step in ("render", "write"):
            row += [f"{seconds[f'{step}_{mode}_{when}'] * 1e3:,.1f}" for when in ("before", "after")]
            row.append(f"{section[f'{step}_{mode}_speedup']:.2f}x")
        row += [f"{section[f'cutouts_per_s_{mode}_{when}']:.2f}" for when in ("before", "after")]
        lines.append("| " + " | ".join(row) + " |")
    cpu = section["cpu_seconds_per_photo"]
    lines += ["", "CPU time of this process per photo, ms, before -> after (speed-up):", ""]
    for mode in MODES:
        steps = [
            f"{step} {cpu[f'{step}_{mode}_before'] * 1e3:,.1f} -> {cpu[f'{step}_{mode}_after'] * 1e3:,.1f} "
            f"({section[f'{step}_{mode}_cpu_speedup']:.2f}x)"
            for step in ("render", "write")
        ]
        lines.append(f"- {mode} edges: " + "; ".join(steps))
    lines += ["", f"Largest pixel difference between the two renders: {section['max_pixel_difference']}.", ""]
    return lines
