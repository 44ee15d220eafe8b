"""TODO"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tqdm import tqdm

from maskingnet.data.io import list_images
from maskingnet.errors import MaskingnetError
from maskingnet.inference import Predictor, rank_predictor, run
from maskingnet.inference.fingerprint import describe_changes, fingerprint
from maskingnet.outputs.layout import (
    input_root,
    output_stems,
    output_suffix,
    relative_inputs,
)
from maskingnet.outputs.manifest import (
    ManifestRow,
    manifest_name,
    read_manifests,
    read_settings,
    record_settings,
    relative_output,
)
from maskingnet.outputs.review import summary_lines
from maskingnet.predict.config import (
    Job,
    PredictConfig,
    PredictSummary,
    check_config,
    one_picture_for_jpg,
    pixel_settings,
)
from maskingnet.predict.sinks import ListingSink, ManifestBook, ManifestSink
from maskingnet.predict.temps import is_earlier_output, remove_stale_temps
from maskingnet.runtime import context_from_env
from maskingnet.utils.interrupts import flushed_on_exit
from maskingnet.utils.messages import one_line
from maskingnet.utils.progress import progress_bar

"""How often a long run rewrites its manifest, so a killed run loses at most this much of its record."""


def say(line: str) -> None:
    """One line on stderr, above the progress bar."""
    tqdm.write(line, file=sys.stderr)


def plan_jobs(config: PredictConfig, files: list[Path], root: Path | None) -> list[Job]:
    """Every input with its relative path and output files (the input tree mirrored under ``out``)."""
    relative = relative_inputs(files, root)
    stems = output_stems(list(relative.values()))
    out = Path(config.out)
    suffixes = [output_suffix(kind, config.fmt, config.background) for kind in config.save]
    jobs = []
    for path in files:
        stem = stems[relative[path]]
        jobs.append(Job(path, relative[path], [out / f"{stem}{suffix}" for suffix in suffixes]))
    return jobs


def redo_reason(job: Job, row: ManifestRow | None, key: str, config: PredictConfig) -> str | None:
    """Why a photo whose outputs exist is done again (None: it is skipped)."""
    out = Path(config.out)
    recorded = row is not None and all(
        row.outputs.get(kind) == relative_output(target, out)
        for kind, target in zip(config.save, job.targets, strict=True)
    )
    if row is None or not row.settings or not recorded:
        return "no record of the settings that made the outputs (no manifest.csv row)"
    if row.settings != key or row.status != "done":
        return "settings changed since the last run"
    return None


def choose_work(
    config: PredictConfig,
    jobs: list[Job],
    previous: dict[str, ManifestRow],
    key: str,
    settings: dict[str, Any],
    say: Callable[[str], None],
) -> tuple[list[Job], int]:
    """The jobs to do (an output missing, or outputs another model or other settings made: one line per
    reason; all of them with ``overwrite``), and how many of them are redone."""
    if config.overwrite:
        return list(jobs), 0
    known = read_settings(Path(config.out))
    todo: list[Job] = []
    reasons: Counter[str] = Counter()
    for job in jobs:
        if not all(target.exists() for target in job.targets):
            todo.append(job)
            continue
        row = previous.get(str(job.rel))
        reason = redo_reason(job, row, key, config)
        if reason is None:
            continue
        if row is not None and row.settings and row.settings != key:
            change = describe_changes(known.get(row.settings), settings)
            reason = f"{reason} ({change})" if change else reason
        reasons[reason] += 1
        todo.append(job)
    for reason, count in reasons.items():
        say(f"{config.out}: {reason}: redoing {count} photo{'s' if count != 1 else ''}")
    return todo, sum(reasons.values())


def rank_share(jobs: list[Job], rank: int, world: int, by_folder: bool = False) -> list[Job]:
    """This torchrun rank's photos: every ``world``-th one, or (``by_folder``, a listing, framed together)
    every ``world``-th folder."""
    if not by_folder:
        return jobs[rank::world]
    folders = list(dict.fromkeys(job.rel.parent for job in jobs))
    chosen = set(folders[rank::world])
    return [job for job in jobs if job.rel.parent in chosen]


def whole_folders(jobs: list[Job], todo: list[Job]) -> list[Job]:
    """Every photo of each folder with a photo to do: a listing is framed together or not at all."""
    folders = {job.rel.parent for job in todo}
    return [job for job in jobs if job.rel.parent in folders]


def find_inputs(config: PredictConfig) -> tuple[list[Path], list[str]]:
    """The images of ``config.inputs`` (earlier outputs aside) and the problems found listing them."""
    files, problems = list_images([str(item) for item in config.inputs], recursive=config.recursive)
    return [path for path in files if not is_earlier_output(path, Path(config.out))], problems


def predict_files(
    config: PredictConfig, report: Callable[[str], None] = say, predictor: Predictor | None = None
) -> PredictSummary:
    """Predict every image under ``config.inputs`` into ``config.out``; see the module docstring.
    ``predictor``: a loaded model to reuse (one is loaded from ``config`` when there is work)."""
    started = time.perf_counter()
    check_config(config)
    summary = PredictSummary()

    def say(line: str) -> None:
        report(one_line(line))

    one_picture_for_jpg(config, say)

    files, problems = find_inputs(config)
    ctx = context_from_env()
    if not files:  # a mistyped path: say so, and leave no output folder behind
        for problem in problems[:-1]:
            say(problem)
        raise MaskingnetError(str(problems[-1]) if problems else "no images among the inputs")
    out = Path(config.out)
    root = input_root(config.inputs, files)
    jobs = plan_jobs(config, files, root)
    mine = rank_share(jobs, ctx.rank, ctx.world_size, by_folder=config.listing)
    settings = pixel_settings(config)
    key = fingerprint(settings)
    out.mkdir(parents=True, exist_ok=True)
    previous = read_manifests(out)
    todo, summary.redone = choose_work(config, mine, previous, key, settings, say)
    if config.listing:
        todo = whole_folders(mine, todo)
    summary.skipped = len(mine) - len(todo)
    record_settings(out, key, settings)
    book = start_manifest(out, mine, jobs, previous, ctx.rank, ctx.world_size)
    summary.manifest = book.path
    for problem in problems if ctx.is_main else []:  # every rank sees them; one reports
        summary.problems.append(one_line(problem))
        summary.failed += 1
        say(problem)
        if getattr(problem, "path", None) is not None:
            book.add(ManifestRow(problem_input(problem.path, root), "failed", error=str(problem)))
    remove_stale_temps(out, [target for job in todo for target in job.targets])
    try:
        with flushed_on_exit(book.flush):
            predict_into(config, todo, book, key, previous, summary, say, predictor)
    except BaseException:
        with contextlib.suppress(OSError):
            book.flush()
        raise
    book.flush()
    summary.seconds = time.perf_counter() - started
    return summary


def problem_input(path: Path, root: Path | None) -> str:
    """The manifest's name for an input that could not be listed: relative to the input folder when it
    lies inside it, else as given (a bad loose file must not move the good photos' outputs)."""
    if root is not None and Path(os.path.abspath(path)).is_relative_to(root):
        return str(relative_inputs([path], root)[path])
    return str(path)


def start_manifest(
    out: Path, mine: list[Job], jobs: list[Job], previous: dict[str, ManifestRow], rank: int, world: int
) -> ManifestBook:
    """The manifest this rank keeps: its photos' earlier rows, and (rank 0) those of photos in no rank's
    share of this run, so the manifest still describes every output in the folder."""
    order = [str(job.rel) for job in mine]
    rows = [previous[key] for key in order if key in previous]
    if rank == 0:
        listed = {str(job.rel) for job in jobs}
        rows += [row for key, row in previous.items() if key not in listed]
    return ManifestBook(out / manifest_name(rank, world), order, rows)


def predict_into(
    config: PredictConfig,
    todo: list[Job],
    book: ManifestBook,
    key: str,
    previous: dict[str, ManifestRow],
    summary: PredictSummary,
    say: Callable[[str], None],
    predictor: Predictor | None = None,
) -> None:
    """Run the pipeline over ``todo`` into a :class:`ManifestSink`; the counts go into ``summary``."""
    if not todo:
        return
    predictor = predictor or rank_predictor(config.model, config.batch_size)
    sink = (ListingSink if config.listing else ManifestSink)(todo, book, key, config, previous, say)
    with progress_bar(len(todo), desc="predict", enabled=config.progress) as bar:
        try:
            run(
                [job.path for job in todo],
                predictor,
                sink,
                batch_size=config.batch_size,
                workers=config.workers,
                tick=bar.update,
            )
        finally:
            sink.cleanup()
            summary.done, summary.failed = sink.done, summary.failed + sink.failed
            summary.problems += sink.problems
    sink.check_turned(predictor)
    summary.review = summary_lines((str(job.rel), review.flags) for job, review in sink.flagged)
    for line in summary.review:
        say(line)
