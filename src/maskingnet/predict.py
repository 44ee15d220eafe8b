"""``maskingnet predict``: cut cars out of many photos into files, through the one inference pipeline.

Each photo goes through :func:`maskingnet.inference.run` (decoding ahead where the cores allow, the model on
batches, full resolution and the edge stage in a writer pool) into a :class:`~maskingnet.inference.FileSink`
that frames, encodes and writes every requested output atomically. The input tree is mirrored under the
output folder (:mod:`maskingnet.outputs.layout`) and ``manifest.csv`` there describes every photo
(:mod:`maskingnet.outputs.manifest`). A re-run skips photos whose outputs exist and were made by the same
model and settings (their fingerprint is in the manifest), and says in one line what changed for those it
redoes. Bad inputs get one line each and the run goes on; an output folder that cannot take files (disk full,
read-only) stops the run with one line. Under ``torchrun`` the inputs are split across ranks.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm

from maskingnet.data.io import BadInputError, list_images
from maskingnet.errors import MaskingnetError
from maskingnet.inference import Failed, FileSink, Predictor, rank_predictor, run
from maskingnet.inference.fingerprint import describe_changes, fingerprint
from maskingnet.inference.preprocess import Prepared
from maskingnet.inference.settings import ModelSettings
from maskingnet.inference.sinks import OUTPUT_SIDE_ERRNOS, OutputError, write_output
from maskingnet.outputs import EdgeConfig, check_threshold
from maskingnet.outputs.encode import DEFAULT_QUALITY, check_format
from maskingnet.outputs.files import FRAMED_KINDS, PictureOptions
from maskingnet.outputs.framing import DEFAULT_MARGIN, Box, Framing, canvas_scale, car_box
from maskingnet.outputs.layout import (
    input_root,
    is_output_name,
    kind_format,
    output_stems,
    output_suffix,
    relative_inputs,
)
from maskingnet.outputs.listing import ListingFrame, Staging, listing_frame
from maskingnet.outputs.manifest import (
    ManifestRow,
    manifest_name,
    read_manifests,
    read_settings,
    record_settings,
    relative_output,
    write_manifest,
)
from maskingnet.outputs.review import MAX_UPSCALE, Review, review_photo, summary_lines, turned_flag
from maskingnet.runtime import context_from_env
from maskingnet.utils.interrupts import flushed_on_exit
from maskingnet.utils.messages import one_line
from maskingnet.utils.processes import process_alive
from maskingnet.utils.progress import progress_bar

__all__ = ["PredictConfig", "PredictSummary", "Predictor", "predict_files"]

MANIFEST_EVERY_S = 10.0
"""How often a long run rewrites its manifest, so a killed run loses at most this much of its record."""


@dataclass
class PredictConfig:
    """Options of ``maskingnet predict`` (see ``maskingnet predict --help``); ``model``: the model's
    settings, or just a checkpoint (run with the default settings)."""

    model: ModelSettings
    inputs: Sequence[str | os.PathLike]
    out: Path
    save: tuple[str, ...] = ("mask", "cutout")
    batch_size: int = 4
    workers: int | None = None
    threshold: float = 0.5
    background: tuple[int, int, int] = (255, 255, 255)
    soft_edges: bool = False
    overwrite: bool = False
    recursive: bool = True
    progress: bool = True
    fmt: str = "auto"
    quality: int | None = None
    crop_to_car: bool = False
    margin: float = DEFAULT_MARGIN
    canvas: tuple[int, int] | None = None
    listing: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.model, ModelSettings):
            self.model = ModelSettings(self.model)

    def framing(self) -> Framing | None:
        return Framing(self.margin, self.canvas) if self.crop_to_car else None

    def pictures(self) -> PictureOptions:
        """How the outputs look and are encoded (the same options on every surface)."""
        edges = EdgeConfig(threshold=self.threshold, soft=self.soft_edges)
        return PictureOptions(edges, self.background, self.fmt, self.quality, self.framing())


@dataclass
class PredictSummary:
    """What a predict run did; ``failed`` counts unusable inputs (with one line each in ``problems``);
    ``redone``: photos whose earlier outputs were made with other settings (or unknown ones)."""

    done: int = 0
    skipped: int = 0
    failed: int = 0
    redone: int = 0
    problems: list[str] = field(default_factory=list)
    review: list[str] = field(default_factory=list)
    seconds: float = 0.0
    manifest: Path | None = None

    @property
    def images_per_second(self) -> float:
        return self.done / self.seconds if self.seconds > 0 else 0.0


@dataclass
class Job:
    """One input photo: its path, its path relative to the input folder, and its output files."""

    path: Path
    rel: PurePosixPath
    targets: list[Path]


def pixel_settings(config: PredictConfig) -> dict[str, Any]:
    """The model and every setting that changes the outputs' pixels (or their encoding)."""
    formats = {kind_format(kind, config.fmt) for kind in config.save}
    settings: dict[str, Any] = {
        **config.model.as_dict(),
        "threshold": config.threshold,
        "soft_edges": config.soft_edges,
        "format": config.fmt,
    }
    if "white" in config.save or ("cutout" in config.save and kind_format("cutout", config.fmt) == "jpg"):
        settings["background"] = "#{:02x}{:02x}{:02x}".format(*config.background)
    for fmt in sorted(formats & set(DEFAULT_QUALITY)):
        settings[f"{fmt}_quality"] = config.quality or DEFAULT_QUALITY[fmt]
    if config.crop_to_car:
        settings["crop_to_car"] = {"margin": config.margin, "canvas": list(config.canvas or []) or None}
        if config.listing:
            settings["crop_to_car"]["listing"] = True
    return settings


def stale_temp_target(name: str) -> tuple[str, str] | None:
    """(stem, suffix) of the output an ``atomic_save`` temp file (``.<stem>.<pid>-<random>.tmp<suffix>``)
    was for."""
    if not name.startswith("."):
        return None
    head, marker, suffix = name.rpartition(".tmp")
    stem, dot, pid = head[1:].rpartition(".")
    if not marker or not dot or not pid.partition("-")[0].isdigit():
        return None
    return stem, suffix


def temp_owner_pid(name: str) -> int:
    """The process id in an ``atomic_save`` temp name ``.<stem>.<pid>-<random>.tmp<suffix>`` (0 if none)."""
    head = name.rpartition(".tmp")[0]
    pid = head.rpartition(".")[2].partition("-")[0]
    return int(pid) if pid.isdigit() else 0


def remove_stale_temps(out: Path, targets: Iterable[Path]) -> None:
    """Delete temp files that a killed run left behind for these outputs (in their folders).

    Only files whose owning process is gone: another run writing to the same folder right now keeps its
    in-flight temp files (each process names its own, so the two never collide)."""
    wanted: dict[Path, set[tuple[str, str]]] = {}
    for target in targets:
        wanted.setdefault(target.parent, set()).add((target.stem, target.suffix))
    for folder, names in wanted.items():
        if not folder.is_dir():
            continue
        for entry in folder.iterdir():
            if stale_temp_target(entry.name) in names and not process_alive(temp_owner_pid(entry.name)):
                entry.unlink(missing_ok=True)


def is_earlier_output(path: Path, out: Path) -> bool:
    """A file in the output folder named like one of our outputs: never an input (the output folder may
    lie inside, or be, an input folder)."""
    return is_output_name(path.name) and path.resolve().is_relative_to(out.resolve())


def _say(line: str) -> None:
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


class ManifestBook:
    """This run's manifest rows: its photos in input order (the earlier row of each until it is finished
    again), then the earlier rows of photos not in this run. Rewritten every :data:`MANIFEST_EVERY_S`
    seconds and at the end; not rewritten when nothing changed."""

    def __init__(self, path: Path, order: Iterable[str], rows: Iterable[ManifestRow]) -> None:
        self.path = path
        self.order = {key: position for position, key in enumerate(order)}
        self.rows = {row.input: row for row in rows}
        self.written = self.path.read_bytes() if self.path.is_file() else None
        self.last = time.monotonic()

    def add(self, row: ManifestRow) -> None:
        self.rows[row.input] = row
        self.changed()

    def changed(self) -> None:
        """A row was added or changed: rewrite the file when the last write is old enough."""
        if time.monotonic() - self.last > MANIFEST_EVERY_S:
            self.flush()

    def flush(self) -> None:
        self.last = time.monotonic()
        rows = sorted(self.rows.values(), key=lambda row: self.order.get(row.input, len(self.order)))
        self.written = write_manifest(self.path, rows, unless=self.written)


class ManifestSink(FileSink):
    """A :class:`FileSink` that records each photo in the manifest: outputs, car fraction, the review checks
    (:mod:`maskingnet.outputs.review`), the seconds spent on it, or the error."""

    wants_network_map = True

    def __init__(
        self,
        jobs: list[Job],
        book: ManifestBook,
        key: str,
        config: PredictConfig,
        previous: dict[str, ManifestRow],
        report: Callable[[str], None],
    ) -> None:
        targets, fmt, framing = self.file_plan(jobs, config)
        options = dataclasses.replace(config.pictures(), fmt=fmt, framing=framing)
        super().__init__([job.path for job in jobs], targets, config.save, options, report)
        self.jobs, self.book, self.key, self.previous = jobs, book, key, previous
        self.out = Path(config.out)
        self.flagged: list[tuple[Job, Review]] = []

    def file_plan(
        self, jobs: list[Job], config: PredictConfig
    ) -> tuple[list[list[Path]], str, Framing | None]:
        """Where :class:`FileSink` writes each photo's outputs, in which format, framed how."""
        return [job.targets for job in jobs], config.fmt, config.framing()

    def consume(self, item: Prepared, probs: np.ndarray) -> tuple[float, Review] | Failed:
        result = super().consume(item, probs)
        if isinstance(result, Failed):
            return result
        hard = probs > self.options.edges.threshold
        framing = self.options.framing
        upscale = canvas_scale(hard, framing) if framing is not None else None
        review = review_photo(hard, item.network_map, upscale)
        item.network_map = None
        return result, review

    def finish(self, item: Prepared, result: tuple[float, Review]) -> None:
        super().finish(item, result)
        self.book.add(self.done_row(item, *result))

    def done_row(self, item: Prepared, car_fraction: float, review: Review) -> ManifestRow:
        """The manifest row of a finished photo (its review flags kept for the end of the run)."""
        job = self.jobs[item.index]
        earlier = self.previous.get(str(job.rel))
        outputs = dict(earlier.outputs) if earlier is not None and earlier.settings == self.key else {}
        for kind, target in zip(self.kinds, job.targets, strict=True):
            outputs[kind] = relative_output(target, self.out)
        if review.needed:
            self.flagged.append((job, review))
        return ManifestRow(str(job.rel), "done", outputs, car_fraction, item.seconds, self.key,
                           unsure=review.unsure, review=" ".join(review.flags))

    def check_turned(self, predictor: Predictor) -> None:
        """Ask the network again, with the photo turned, about each photo it was unsure of: a sideways or
        upside-down photo gets that flag in its row."""
        for job, review in self.flagged:
            if "unsure" not in review.flags:
                continue
            with contextlib.suppress(BadInputError, OSError):
                turned = turned_flag(predictor, job.path)
                if turned is not None:
                    review.flags.insert(1, turned)
                    self.book.rows[str(job.rel)].review = " ".join(review.flags)
                    self.book.changed()

    def fail(self, item: Prepared, message: str) -> None:
        super().fail(item, one_line(message))
        self.book.add(ManifestRow(str(self.jobs[item.index].rel), "failed", error=message))

    def cleanup(self) -> None:
        """After the run, finished or not: nothing to remove here (a listing's staging folder, there)."""


class ListingSink(ManifestSink):
    """``--listing``: a :class:`ManifestSink` whose framed outputs wait, whole and lossless, in a
    :class:`~maskingnet.outputs.listing.Staging` folder until their folder is done; then every photo of the
    folder is placed at one scale and on one baseline, written atomically, and only then gets its manifest
    row (a run killed half-way leaves no framed output of an unfinished folder)."""

    def file_plan(
        self, jobs: list[Job], config: PredictConfig
    ) -> tuple[list[list[Path]], str, Framing | None]:
        self.staging = Staging(Path(config.out))
        self.real_fmt, self.listing_framing = config.fmt, config.framing()
        self.left = Counter(job.rel.parent for job in jobs)
        self.waiting: dict[PurePosixPath, list[tuple[int, ManifestRow, Box | None]]] = {}
        targets = [
            [self.staging.path(index, kind) if kind in FRAMED_KINDS else target
             for kind, target in zip(config.save, job.targets, strict=True)]
            for index, job in enumerate(jobs)
        ]
        return targets, "png", None

    def consume(self, item: Prepared, probs: np.ndarray) -> tuple[float, Review, Box | None] | Failed:
        result = super().consume(item, probs)
        if isinstance(result, Failed):
            return result
        return (*result, car_box(probs > self.options.edges.threshold))

    def finish(self, item: Prepared, result: tuple[float, Review, Box | None]) -> None:
        self.done += 1
        car_fraction, review, box = result
        folder = self.jobs[item.index].rel.parent
        row = self.done_row(item, car_fraction, review)
        self.waiting.setdefault(folder, []).append((item.index, row, box))
        self._one_less(folder)

    def fail(self, item: Prepared, message: str) -> None:
        super().fail(item, message)
        self._one_less(self.jobs[item.index].rel.parent)

    def _one_less(self, folder: PurePosixPath) -> None:
        self.left[folder] -= 1
        if self.left[folder] == 0:
            self._place_folder(self.waiting.pop(folder, []))

    def _place_folder(self, photos: list[tuple[int, ManifestRow, Box | None]]) -> None:
        boxes = [box for _, _, box in photos if box is not None]
        frame = listing_frame(boxes, self.listing_framing.margin, self.listing_framing.canvas)
        for index, row, box in photos:
            job = self.jobs[index]
            if frame is not None and frame.scale > MAX_UPSCALE:
                self._flag_upscale(job, row)
            try:
                self._place_photo(index, box, frame)
            except (OSError, ValueError, cv2.error) as error:
                if isinstance(error, OutputError):
                    raise
                self.done -= 1
                self.failed += 1
                self.problems.append(one_line(f"{job.path}: cannot frame the listing: {error}"))
                self.report(self.problems[-1])
                self.book.add(ManifestRow(str(job.rel), "failed", error=self.problems[-1]))
                continue
            self.book.add(row)

    def _place_photo(self, index: int, box: Box | None, frame: ListingFrame | None) -> None:
        quality, background = self.options.quality, self.options.background
        for kind, target in zip(self.kinds, self.jobs[index].targets, strict=True):
            if kind in FRAMED_KINDS:
                fmt = kind_format(kind, self.real_fmt)
                write_framed(target, self.staging.place(index, kind, fmt, quality, background, box, frame))

    def _flag_upscale(self, job: Job, row: ManifestRow) -> None:
        """The folder's scale enlarges its photos too much: the ``upscale`` flag in the row."""
        row.review = " ".join([*row.review.split(), "upscale"])
        for flagged_job, review in self.flagged:
            if flagged_job is job:
                review.flags.append("upscale")
                return
        self.flagged.append((job, Review(row.unsure, ["upscale"])))

    def cleanup(self) -> None:
        self.staging.cleanup()


def write_framed(target: Path, data: bytes) -> None:
    """A placed output, written atomically; an output folder that cannot take it stops the run."""
    try:
        write_output(target, data)
    except OSError as error:
        if error.errno in OUTPUT_SIDE_ERRNOS:
            stop = one_line(f"{target.parent}: cannot write outputs ({error.strerror}): stopping")
            raise OutputError(stop) from None
        raise


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


def check_config(config: PredictConfig) -> None:
    """Refuse settings that cannot work before any photo is read."""
    check_threshold(config.threshold)
    if config.fmt != "auto":
        config.fmt = check_format(config.fmt, config.quality)
    elif config.quality is not None:
        check_format("jpg", config.quality)
    config.framing()  # checks the margin
    if config.listing and config.canvas is None:
        raise ValueError("--listing places each folder's photos on one canvas: give --canvas WxH too")


def one_picture_for_jpg(config: PredictConfig, say: Callable[[str], None]) -> None:
    """A JPEG cut-out is the car on the background, the very picture ``white`` is: asked for both, only
    ``white`` is written, with one line saying why."""
    if kind_format("cutout", config.fmt) == "jpg" and {"cutout", "white"} <= set(config.save):
        config.save = tuple(kind for kind in config.save if kind != "cutout")
        say("predict: a jpg cut-out is the car on --background, the same picture as 'white': writing 'white' "
            "only (--format png or webp for a transparent cut-out)")


def predict_files(
    config: PredictConfig, report: Callable[[str], None] = _say, predictor: Predictor | None = None
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
            run([job.path for job in todo], predictor, sink, batch_size=config.batch_size,
                workers=config.workers, tick=bar.update)
        finally:
            sink.cleanup()
            summary.done, summary.failed = sink.done, summary.failed + sink.failed
            summary.problems += sink.problems
    sink.check_turned(predictor)
    summary.review = summary_lines((str(job.rel), review.flags) for job, review in sink.flagged)
    for line in summary.review:
        say(line)
