"""``predict --listing``: the framed outputs of each folder placed at one scale and on one baseline
(:mod:`maskingnet.listing`).

The scale depends on every car of the folder, so a photo's framed outputs cannot be written when the photo is
done. They are first written whole and lossless (PNG) in a hidden staging folder inside ``--out``; when the
last photo of a folder is done, each is placed on the canvas, encoded in its own format and written
atomically to its place, and only then do the folder's photos get their manifest rows. A run killed half-way
leaves no framed output of an unfinished folder (the rerun does that folder again) and the staging folder is
removed at the end of the run.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections import Counter
from pathlib import Path, PurePosixPath

import cv2
import numpy as np

from maskingnet.inference import Failed, Prepared
from maskingnet.inference.sinks import OUTPUT_SIDE_ERRNOS, OutputError, write_output
from maskingnet.outputs.encode import encode
from maskingnet.outputs.files import FRAMED_KINDS
from maskingnet.outputs.framing import Box, Framing, car_box
from maskingnet.outputs.layout import kind_format
from maskingnet.outputs.listing import listing_frame, place_in_listing
from maskingnet.outputs.manifest import ManifestRow
from maskingnet.outputs.review import MAX_UPSCALE, Review
from maskingnet.predict import Job, ManifestSink, PredictConfig
from maskingnet.utils.messages import one_line

STAGING_PREFIX = ".maskingnet-listing-"


class ListingSink(ManifestSink):
    """A :class:`ManifestSink` that frames each folder's cut-outs together (see the module docstring)."""

    def file_plan(
        self, jobs: list[Job], config: PredictConfig
    ) -> tuple[list[list[Path]], str, Framing | None]:
        remove_stale_staging(config.out)
        self.staging = Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{os.getpid()}-", dir=config.out))
        self.real_fmt, self.framing_of = config.fmt, config.framing()
        self.left = Counter(job.rel.parent for job in jobs)
        self.waiting: dict[PurePosixPath, list[tuple[Prepared, ManifestRow, Box | None]]] = {}
        targets = [
            [
                self._staged(index, kind) if kind in FRAMED_KINDS else target
                for kind, target in zip(config.save, job.targets, strict=True)
            ]
            for index, job in enumerate(jobs)
        ]
        return targets, "png", None

    def _staged(self, index: int, kind: str) -> Path:
        return self.staging / f"{index}_{kind}.png"

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
        item.photo = None  # only its staged outputs are needed now
        self.waiting.setdefault(folder, []).append((item, row, box))
        self._one_less(folder)

    def fail(self, item: Prepared, message: str) -> None:
        super().fail(item, message)
        self._one_less(self.jobs[item.index].rel.parent)

    def _one_less(self, folder: PurePosixPath) -> None:
        self.left[folder] -= 1
        if self.left[folder] == 0:
            self._place_folder(self.waiting.pop(folder, []))

    def _place_folder(self, photos: list[tuple[Prepared, ManifestRow, Box | None]]) -> None:
        """Frame the folder's staged outputs at one scale and write them; then their manifest rows."""
        boxes = [box for _, _, box in photos if box is not None]
        frame = listing_frame(boxes, self.framing_of.margin, self.framing_of.canvas)
        if frame is not None and frame.scale > MAX_UPSCALE:
            for item, row, _ in photos:
                self.flag_upscale(self.jobs[item.index], row)
        for item, row, box in photos:
            job = self.jobs[item.index]
            try:
                for kind, target in zip(self.kinds, job.targets, strict=True):
                    if kind in FRAMED_KINDS:
                        self._place(item.index, kind, target, box, frame)
            except OutputError:
                raise
            except (OSError, ValueError, cv2.error) as error:
                self.done -= 1
                super().fail(item, one_line(f"{job.path}: cannot frame the listing: {error}"))
                continue
            self.book.add(row)

    def _place(self, index: int, kind: str, target: Path, box: Box | None, frame) -> None:
        staged = self._staged(index, kind)
        picture = cv2.imread(str(staged), cv2.IMREAD_UNCHANGED)
        if picture is None:
            raise ValueError(f"staged {kind} unreadable")
        picture = cv2.cvtColor(picture, cv2.COLOR_BGRA2RGBA if picture.shape[2] == 4 else cv2.COLOR_BGR2RGB)
        fmt = kind_format(kind, self.real_fmt)
        if fmt == "jpg" and picture.shape[2] == 4:  # JPEG has no transparency: the car on the background
            picture = on_background(picture, self.options.background)
        fill = (0, 0, 0, 0) if picture.shape[2] == 4 else tuple(self.options.background)
        placed = picture if frame is None else place_in_listing(picture, box, frame, fill)
        data = encode(placed, fmt, self.options.quality)
        try:
            write_output(target, data)
        except OSError as error:
            if error.errno in OUTPUT_SIDE_ERRNOS:
                stop = one_line(f"{target.parent}: cannot write outputs ({error.strerror}): stopping")
                raise OutputError(stop) from None
            raise
        staged.unlink(missing_ok=True)

    def flag_upscale(self, job: Job, row: ManifestRow) -> None:
        """The folder's scale enlarges its photos too much: the ``upscale`` flag in every row."""
        flags = row.review.split() + ["upscale"]
        row.review = " ".join(flags)
        for flagged_job, review in self.flagged:
            if flagged_job is job:
                review.flags.append("upscale")
                break
        else:
            self.flagged.append((job, Review(row.unsure, ["upscale"])))

    def cleanup(self) -> None:
        shutil.rmtree(self.staging, ignore_errors=True)


def remove_stale_staging(out: Path) -> None:
    """Staging folders of listing runs whose process is gone (killed half-way)."""
    from maskingnet.predict import process_alive

    for folder in Path(out).glob(f"{STAGING_PREFIX}*"):
        pid = folder.name[len(STAGING_PREFIX) :].partition("-")[0]
        if folder.is_dir() and pid.isdigit() and not process_alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)


def on_background(rgba: np.ndarray, background: tuple[int, int, int]) -> np.ndarray:
    """An RGBA picture composited over a plain colour, as RGB."""
    alpha = rgba[..., 3:].astype(np.float32) / 255
    colour = np.asarray(background, np.float32)
    return np.round(rgba[..., :3] * alpha + colour * (1 - alpha)).astype(np.uint8)
