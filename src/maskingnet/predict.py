"""``maskingnet predict``: cut cars out of many photos into files, through the one inference pipeline.

Each photo goes through :func:`maskingnet.inference.run` (decode ahead in worker processes, the model on
batches, full resolution and the edge stage in a writer pool) into a :class:`~maskingnet.inference.FileSink`
that writes every requested output atomically. A re-run skips inputs whose outputs all exist; bad inputs get
one line each and the run goes on. Under ``torchrun`` the inputs are split across ranks.
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from maskingnet.data.io import list_images
from maskingnet.inference import FileSink, Predictor, rank_predictor, run
from maskingnet.outputs import OUTPUT_SUFFIXES, EdgeConfig, output_suffix
from maskingnet.runtime import context_from_env

__all__ = ["PredictConfig", "PredictSummary", "Predictor", "output_stems", "predict_files"]


@dataclass
class PredictConfig:
    """Options of ``maskingnet predict`` (see ``maskingnet predict --help``)."""

    checkpoint: Any
    inputs: Sequence[str | os.PathLike]
    out: Path
    save: tuple[str, ...] = ("mask", "cutout")
    size: tuple[int, int] | None = None
    batch_size: int = 4
    workers: int | None = None
    device: str = "auto"
    precision: str = "auto"
    backend: str = "auto"
    tta: bool = False
    refine: bool = True
    clean: bool = True
    threshold: float = 0.5
    background: tuple[int, int, int] = (255, 255, 255)
    soft_edges: bool = False
    overwrite: bool = False
    recursive: bool = True
    progress: bool = True


@dataclass
class PredictSummary:
    """What a predict run did; ``failed`` counts unusable inputs (with one line each in ``problems``)."""

    done: int = 0
    skipped: int = 0
    failed: int = 0
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def images_per_second(self) -> float:
        return self.done / self.seconds if self.seconds > 0 else 0.0


def output_paths(config: PredictConfig, stem: str) -> list[Path]:
    return [Path(config.out) / f"{stem}{output_suffix(kind, config.background)}" for kind in config.save]


def stale_temp_target(name: str) -> tuple[str, str] | None:
    """(stem, suffix) of the output an ``atomic_save`` temp file (``.<stem>.<pid>.tmp<suffix>``) was for."""
    if not name.startswith("."):
        return None
    head, marker, suffix = name.rpartition(".tmp")
    stem, dot, pid = head[1:].rpartition(".")
    if not marker or not dot or not pid.isdigit():
        return None
    return stem, suffix


def process_alive(pid: int) -> bool:
    """Whether a process with this id runs now (signal 0 checks without sending anything). On Windows
    ``os.kill`` would end the process instead, so every owner counts as alive there."""
    if pid <= 0:
        return False
    if os.name == "nt":
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError):
        return True  # someone else's process, or we cannot tell: leave its files alone
    return True


def temp_owner_pid(name: str) -> int:
    """The process id in an ``atomic_save`` temp name ``.<stem>.<pid>.tmp<suffix>`` (0 if none)."""
    head = name.rpartition(".tmp")[0]
    pid = head.rpartition(".")[2]
    return int(pid) if pid.isdigit() else 0


def remove_stale_temps(out: Path, targets: Iterable[Path]) -> None:
    """Delete temp files that a killed run left behind for these outputs.

    Only files whose owning process is gone: another run writing to the same folder right now keeps its
    in-flight temp files (each process names its own, so the two never collide)."""
    wanted = {(target.stem, target.suffix) for target in targets}
    if not out.is_dir() or not wanted:
        return
    for entry in out.iterdir():
        if stale_temp_target(entry.name) in wanted and not process_alive(temp_owner_pid(entry.name)):
            entry.unlink(missing_ok=True)


def is_earlier_output(path: Path, out: Path) -> bool:
    """A file in the output folder named like one of our outputs: never an input (the output folder may
    lie inside, or be, an input folder)."""
    suffixes = (*OUTPUT_SUFFIXES.values(), output_suffix("white", (0, 0, 0)))
    return path.name.endswith(suffixes) and path.resolve().is_relative_to(out.resolve())


def output_stems(files: Sequence[Path]) -> dict[Path, str]:
    """Output name stem per input: its own stem, or stem~hash when two inputs share a stem (no overwrites).

    The hash is of the resolved path, so names are stable across runs over the same inputs.
    """
    counts = Counter(path.stem.casefold() for path in files)
    stems = {}
    for path in files:
        stem = path.stem
        if counts[stem.casefold()] > 1:
            stem = f"{stem}~{hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:8]}"
        stems[path] = stem
    return stems


def _say(line: str) -> None:
    """One line on stderr, above the progress bar."""
    tqdm.write(line, file=sys.stderr)


def files_to_predict(config: PredictConfig, summary: PredictSummary, report) -> tuple[list[Path], dict]:
    """This rank's inputs whose outputs are not all there yet (or all, with ``overwrite``), and the output
    name stem of every input. Unusable inputs found while listing are reported by rank 0."""
    files, problems = list_images([str(item) for item in config.inputs], recursive=config.recursive)
    files = [path for path in files if not is_earlier_output(path, Path(config.out))]
    ctx = context_from_env()
    for line in problems if ctx.is_main else []:  # every rank sees them; one reports
        summary.problems.append(line)
        summary.failed += 1
        report(line)
    stems = output_stems(files)
    mine = files[ctx.rank :: ctx.world_size]
    todo = [
        path
        for path in mine
        if config.overwrite or not all(p.exists() for p in output_paths(config, stems[path]))
    ]
    summary.skipped = len(mine) - len(todo)
    return todo, stems


def predict_files(config: PredictConfig, report: Callable[[str], None] = _say) -> PredictSummary:
    """Predict every image under ``config.inputs`` into ``config.out``; see the module docstring."""
    started = time.perf_counter()
    summary = PredictSummary()
    todo, stems = files_to_predict(config, summary, report)
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    targets = [output_paths(config, stems[path]) for path in todo]
    remove_stale_temps(out, [target for paths in targets for target in paths])
    if todo:
        edges = EdgeConfig(threshold=config.threshold, soft=config.soft_edges)
        sink = FileSink(todo, targets, config.save, edges, config.background, report)
        with tqdm(
            total=len(todo), unit="img", disable=not config.progress, file=sys.stderr, dynamic_ncols=True
        ) as bar:
            run(todo, rank_predictor(config), sink, batch_size=config.batch_size, workers=config.workers,
                tick=bar.update)
        summary.done, summary.failed = sink.done, summary.failed + sink.failed
        summary.problems += sink.problems
    summary.seconds = time.perf_counter() - started
    return summary
