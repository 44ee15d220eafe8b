"""Where the pipeline's masks go: the one place that says how a mask is written.

- :class:`FileSink`: image files per photo (mask, cut-out, on-a-colour, overlay), framed, encoded with
  OpenCV (``maskingnet.outputs.encode``) and written atomically (``maskingnet predict``);
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
from maskingnet.outputs import EdgeConfig, render_all
from maskingnet.outputs.encode import as_array, encode
from maskingnet.outputs.framing import Framing, frame_image
from maskingnet.outputs.layout import kind_format
from maskingnet.utils import atomic_save
from maskingnet.utils.messages import one_line

from .pipeline import Failed, Sink
from .preprocess import Prepared

FRAMED_KINDS = ("cutout", "white")
"""The outputs ``--crop-to-car`` frames: the product pictures (masks and overlays keep the whole photo)."""
OUTPUT_SIDE_ERRNOS = frozenset({errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EPERM, errno.EDQUOT})
"""Write errors that no other photo can avoid (disk full, read-only, no permission): the run stops."""


class OutputError(MaskingnetError):
    """The output folder cannot take any more files; one line, and the run stops."""


def write_output(path: Path, data: bytes) -> None:
    """``data`` as the file ``path``, atomically (temp file + rename)."""
    atomic_save(path, lambda tmp: Path(tmp).write_bytes(data))


class FileSink(Sink):
    """Every output kind of ``kinds`` for photo ``i`` written to ``targets[i]`` (one path per kind).

    ``fmt`` is the format of the cut-out and the photo on a colour (``auto``: PNG and JPEG; masks and
    overlays are always PNG; a JPEG cut-out is the car on ``background``), ``quality`` that of JPEG and WebP;
    ``framing`` crops those two to the car (``maskingnet.outputs.framing``). ``consume`` returns the photo's
    car fraction. A write that fails for a reason every photo would share raises :class:`OutputError`.
    """

    def __init__(
        self,
        names: Sequence[str | os.PathLike],
        targets: Sequence[Sequence[Path]],
        kinds: tuple[str, ...],
        edges: EdgeConfig = EdgeConfig(),
        background: tuple[int, int, int] = (255, 255, 255),
        report: Callable[[str], None] | None = None,
        *,
        fmt: str = "auto",
        quality: int | None = None,
        framing: Framing | None = None,
    ) -> None:
        super().__init__(report)
        self.names, self.targets, self.kinds = names, targets, kinds
        self.edges, self.background = edges, background
        self.fmt, self.quality, self.framing = fmt, quality, framing
        self.need_photo = any(kind != "mask" for kind in kinds)
        jpeg_cutout = "cutout" in kinds and kind_format("cutout", fmt) == "jpg"
        self.rendered_as = {kind: "white" if kind == "cutout" and jpeg_cutout else kind for kind in kinds}

    def consume(self, item: Prepared, probs: np.ndarray) -> float | Failed:
        renders = tuple(dict.fromkeys(self.rendered_as.values()))
        images = render_all(renders, item.photo_array(), probs, self.edges, background=self.background)
        arrays = {kind: as_array(image) for kind, image in images.items()}
        hard = probs > self.edges.threshold
        name = self.names[item.index]
        for kind, target in zip(self.kinds, self.targets[item.index], strict=True):
            fmt = kind_format(kind, self.fmt)
            try:
                data = encode(self._framed(kind, arrays, hard), fmt, self.quality)
            except (ValueError, cv2.error) as error:
                return Failed(f"{name}: cannot encode {target.name} as {fmt} ({one_line(str(error))})")
            try:
                write_output(target, data)
            except OSError as error:
                if error.errno in OUTPUT_SIDE_ERRNOS:
                    stop = one_line(f"{target.parent}: cannot write outputs ({error.strerror}): stopping")
                    raise OutputError(stop) from None
                return Failed(f"{name}: cannot write outputs: {error}")
        return float(np.count_nonzero(hard)) / max(hard.size, 1)

    def _framed(self, kind: str, arrays: dict[str, np.ndarray], hard: np.ndarray) -> np.ndarray:
        array = arrays[self.rendered_as[kind]]
        if self.framing is None or kind not in FRAMED_KINDS:
            return array
        cutout = arrays.get("cutout")
        alpha = cutout[..., 3] if cutout is not None and cutout.ndim == 3 else hard
        fill = (0, 0, 0, 0) if array.ndim == 3 and array.shape[2] == 4 else tuple(self.background)
        return frame_image(array, alpha, self.framing, fill)


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
            return Failed(f"{name}: mask is {truth.shape[1]}x{truth.shape[0]}, photo is {item.size[0]}x"
                          f"{item.size[1]}")
        return Scored(item.index, compare_masks(pred, truth), truth, pred)

    def finish(self, item: Prepared, result: Scored) -> None:
        super().finish(item, result)
        self.on_scored(result)
