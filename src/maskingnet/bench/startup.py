"""Bench section ``startup``: what one ``maskingnet cutout`` costs before its photo, against a warm photo.

Each round runs a fresh Python process (nothing imported, the model file in the page cache after the first
round) that times the steps of ``cutout`` in order: importing the command line, importing the inference
stack (torch, OpenCV), loading the model, the first photo (decode, network, edge stage, PNG), and then the
same photo again in the same process (warm). The whole command is timed too, from outside, as a user sees
it. Best of ``rounds`` for each figure.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

CHILD = r"""
import json, sys, time
started = time.perf_counter()
marks = {}
def mark(name):
    marks[name] = time.perf_counter()
import maskingnet.cli  # noqa: F401
mark("import_cli")
from maskingnet.inference import Predictor
mark("import_inference")
predictor = Predictor(sys.argv[1] if sys.argv[1] != "-" else None)
mark("load_model")
predictor.cutout(sys.argv[2]).save(sys.argv[3], format="PNG")
mark("first_photo")
predictor.cutout(sys.argv[2]).save(sys.argv[3], format="PNG")
mark("warm_photo")
previous, steps = started, {}
for name, moment in marks.items():
    steps[name] = moment - previous
    previous = moment
print(json.dumps(steps))
"""
STEPS = ("import_cli", "import_inference", "load_model", "first_photo", "warm_photo")


def _child_steps(checkpoint: str, photo: Path, out: Path) -> dict[str, float]:
    result = subprocess.run(
        [sys.executable, "-c", CHILD, checkpoint, str(photo), str(out / "startup.png")],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def _command_seconds(checkpoint: str | None, photo: Path, out: Path) -> float:
    command = [sys.executable, "-m", "maskingnet", "cutout", str(photo), "-o", str(out / "command.png")]
    if checkpoint:
        command += ["-m", checkpoint]
    started = time.perf_counter()
    subprocess.run(command, capture_output=True, check=True)
    return time.perf_counter() - started


def bench_startup(
    photos: Sequence[Path], checkpoint: Path | None, out: Path, say: Callable[[str], None], rounds: int = 2
) -> dict[str, Any]:
    """The ``startup`` section: best-of-``rounds`` seconds of each step and of the whole command."""
    if not photos:
        return {"skipped": "no photos (--data)"}
    out.mkdir(parents=True, exist_ok=True)
    photo, model = photos[0], str(checkpoint) if checkpoint else "-"
    best: dict[str, float] = {}
    command = float("inf")
    for round_index in range(rounds):
        say(f"startup: round {round_index + 1}/{rounds}")
        for name, seconds in _child_steps(model, photo, out).items():
            best[name] = min(best.get(name, float("inf")), seconds)
        command = min(command, _command_seconds(checkpoint and str(checkpoint), photo, out))
    before_photo = best["import_cli"] + best["import_inference"] + best["load_model"]
    return {
        "photo": photo.name,
        "rounds": rounds,
        "steps_s": {name: round(best[name], 3) for name in STEPS},
        "start_before_first_photo_s": round(before_photo, 3),
        "first_over_warm_photo": round(best["first_photo"] / max(best["warm_photo"], 1e-9), 2),
        "command_s": round(command, 3),
    }


def startup_markdown(section: dict[str, Any] | None) -> list[str]:
    if not section:
        return []
    if "skipped" in section:
        return ["## cutout start-up", "", f"Skipped: {section['skipped']}.", ""]
    steps = section["steps_s"]
    return [
        "## cutout start-up",
        "",
        f"One `maskingnet cutout` of `{section['photo']}` in a fresh process, best of {section['rounds']}:",
        "",
        "| import CLI, s | import torch + inference, s | load model, s | first photo, s | warm photo, s "
        "| whole command, s |",
        "|---:|---:|---:|---:|---:|---:|",
        f"| {steps['import_cli']:.2f} | {steps['import_inference']:.2f} | {steps['load_model']:.2f} "
        f"| {steps['first_photo']:.2f} | {steps['warm_photo']:.2f} | {section['command_s']:.2f} |",
        "",
        f"Start before the first photo: {section['start_before_first_photo_s']:.2f} s; the first photo costs "
        f"{section['first_over_warm_photo']:.2f}x a warm one.",
        "",
    ]
