"""Where the pipeline's masks go: the one place that says how a mask is written.

- :class:`FileSink`: image files per photo (mask, cut-out, on-a-colour, overlay) from the one picture path
  (``maskingnet.outputs.files``), written atomically (``maskingnet predict``);
- :class:`RleSink`: Kaggle ``img,rle_mask`` rows in input order, in chunks (``maskingnet submit``);
- :class:`DiceSink`: the thresholded mask compared with the true one (``maskingnet evaluate``).
"""

from __future__ import annotations

import csv
import errno
import io
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from maskingnet.data.io import BadInputError
from maskingnet.data.metrics import MaskComparison, compare_masks
from maskingnet.data.rle import rle_encode
from maskingnet.errors import MaskingnetError
from maskingnet.outputs.files import PictureOptions, finished_pictures, picture_bytes
from maskingnet.utils import atomic_save
from maskingnet.utils.messages import one_line

from .pipeline import Failed, Sink
from .preprocess import Prepared

OUTPUT_SIDE_ERRNOS = frozenset({errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EPERM, errno.EDQUOT})
"""Write errors that no other photo can avoid (disk full, read-only, no permission): the run stops."""


class OutputError(MaskingnetError):
    """The output folder cannot take any more files; one line, and the run stops."""


def write_output(path: Path, data: bytes) -> None:
    """``data`` as the file ``path``, atomically (temp file + rename)."""
    atomic_save(path, lambda tmp: Path(tmp).write_bytes(data))


class FileSink(Sink):
    """Every output kind of ``kinds`` for photo ``i`` written to ``targets[i]`` (one path per kind), as
    ``options`` say (:class:`~maskingnet.outputs.files.PictureOptions`: edges, background, format,
    quality, framing), through the one picture path (:mod:`maskingnet.outputs.files`). ``consume`` returns
    the photo's car fraction. A write that fails for a reason every photo would share raises
    :class:`OutputError`.
    """

    def __init__(
        self,
        names: Sequence[str | os.PathLike],
        targets: Sequence[Sequence[Path]],
        kinds: tuple[str, ...],
        options: PictureOptions = PictureOptions(),
        report: Callable[[str], None] | None = None,
    ) -> None:
        super().__init__(report)
        self.names, self.targets, self.kinds, self.options = names, targets, kinds, options
        self.need_photo = any(kind != "mask" for kind in kinds)

    def consume(self, item: Prepared, probs: np.ndarray) -> float | Failed:
        pictures = finished_pictures(self.kinds, item.photo_array(), probs, self.options)
        name = self.names[item.index]
        for kind, target in zip(self.kinds, self.targets[item.index], strict=True):
            try:
                data = picture_bytes(kind, pictures[kind], self.options)
            except (ValueError, cv2.error) as error:
                fmt = self.options.format_of(kind)
                return Failed(f"{name}: cannot encode {target.name} as {fmt} ({one_line(str(error))})")
            try:
                write_output(target, data)
            except OSError as error:
                if error.errno in OUTPUT_SIDE_ERRNOS:
                    stop = one_line(f"{target.parent}: cannot write outputs ({error.strerror}): stopping")
                    raise OutputError(stop) from None
                return Failed(f"{name}: cannot write outputs: {error}")
        hard = probs > self.options.edges.threshold
        return float(np.count_nonzero(hard)) / max(hard.size, 1)


def csv_row(*fields: str) -> str:
    """One CSV line as the csv module quotes it (a name holding a comma or a quote stays one field)."""
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(fields)
    return buffer.getvalue()


def encode_row(name: str, probs: np.ndarray, threshold: float) -> str:
    """One CSV row: threshold the full-resolution probabilities, run-length encode."""
    return csv_row(name, rle_encode(probs > threshold))


class RleSink(Sink):
    """``name,rle`` rows, handed to ``write(text, rows)`` in input order every ``flush_every`` rows.

    A photo that cannot be used gets an empty mask (``name,``), which keeps the file valid.
    """

    def __init__(
        self,
        names: Sequence[str],
        write: Callable[[str, int], None],
        threshold: float = 0.5,
        flush_every: int = 64,
        report: Callable[[str], None] | None = None,
    ) -> None:
        super().__init__(report)
        self.names, self.write, self.threshold = names, write, threshold
        self.flush_every = max(1, flush_every)
        self.buffer: list[str] = []

    def consume(self, item: Prepared, probs: np.ndarray) -> str:
        return encode_row(self.names[item.index], probs, self.threshold)

    def finish(self, item: Prepared, result: str) -> None:
        super().finish(item, result)
        self._add(result)

    def fail(self, item: Prepared, message: str) -> None:
        super().fail(item, message or f"{self.names[item.index]}: cannot be read")
        self._add(csv_row(self.names[item.index], ""))

    def _add(self, row: str) -> None:
        self.buffer.append(row)
        if len(self.buffer) >= self.flush_every:
            self.flush()

    def flush(self) -> None:
        if self.buffer:
            self.write("".join(self.buffer), len(self.buffer))
            self.buffer = []

    def close(self) -> None:
        self.flush()


@dataclass
class Scored:
    """One photo's thresholded mask against the truth (both full-resolution bool arrays)."""

    index: int
    comparison: MaskComparison
    truth: np.ndarray
    pred: np.ndarray


class DiceSink(Sink):
    """The mask of photo ``i`` (probability > ``threshold``) compared with ``load_truth(i)``; every
    :class:`Scored` goes to ``on_scored`` in input order. A truth that cannot be read, or whose size is
    not the photo's, makes the photo a failure."""

    def __init__(
        self,
        load_truth: Callable[[int], np.ndarray],
        on_scored: Callable[[Scored], None],
        threshold: float = 0.5,
        names: Sequence[str | os.PathLike] | None = None,
        report: Callable[[str], None] | None = None,
    ) -> None:
        super().__init__(report)
        self.load_truth, self.on_scored, self.threshold = load_truth, on_scored, threshold
        self.names = names

    def consume(self, item: Prepared, probs: np.ndarray) -> Scored | Failed:
        try:
            truth = self.load_truth(item.index)
        except BadInputError as error:
            return Failed(str(error))
        pred = probs > self.threshold
        if truth.shape != pred.shape:
            name = self.names[item.index] if self.names is not None else f"photo {item.index}"
            return Failed(
                f"{name}: mask is {truth.shape[1]}x{truth.shape[0]}, photo is {item.size[0]}x{item.size[1]}"
            )
        return Scored(item.index, compare_masks(pred, truth), truth, pred)

    def finish(self, item: Prepared, result: Scored) -> None:
        super().finish(item, result)
        self.on_scored(result)
