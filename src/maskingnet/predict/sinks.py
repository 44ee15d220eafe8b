"""Where ``predict``'s photos end up: their files through the one picture path and their rows in
``manifest.csv`` (:class:`ManifestSink`), or, with ``--listing``, a folder's framed pictures placed
together when its last photo is done (:class:`ListingSink`)."""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path, PurePosixPath

import cv2
import numpy as np

from maskingnet.data.io import BadInputError
from maskingnet.inference import Failed, FileSink, Predictor
from maskingnet.inference.preprocess import Prepared
from maskingnet.inference.sinks import OUTPUT_SIDE_ERRNOS, OutputError, write_output
from maskingnet.outputs.files import FRAMED_KINDS
from maskingnet.outputs.framing import Box, Framing, canvas_scale, car_box
from maskingnet.outputs.layout import (
    kind_format,
)
from maskingnet.outputs.listing import ListingFrame, Staging, listing_frame
from maskingnet.outputs.manifest import (
    ManifestRow,
    relative_output,
    write_manifest,
)
from maskingnet.outputs.review import MAX_UPSCALE, Review, review_photo, turned_flag
from maskingnet.predict.config import Job, PredictConfig
from maskingnet.utils.messages import one_line

MANIFEST_EVERY_S = 10.0


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
        return ManifestRow(
            str(job.rel),
            "done",
            outputs,
            car_fraction,
            item.seconds,
            self.key,
            unsure=review.unsure,
            review=" ".join(review.flags),
        )

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
            [
                self.staging.path(index, kind) if kind in FRAMED_KINDS else target
                for kind, target in zip(config.save, job.targets, strict=True)
            ]
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
