"""Where the pipeline's masks go: the one place that says how a mask is written.

- :class:`FileSink`: image files per photo (mask, cut-out, on-a-colour, overlay), written atomically
  (``maskingnet predict``);
- :class:`RleSink`: Kaggle ``img,rle_mask`` rows in input order, in chunks (``maskingnet submit``);
- :class:`DiceSink`: the thresholded mask compared with the true one (``maskingnet evaluate``).
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from maskingnet.data.io import BadInputError
from maskingnet.data.rle import rle_encode
from maskingnet.metrics import MaskComparison, compare_masks
from maskingnet.outputs import EdgeConfig, render_all
from maskingnet.utils import atomic_save

from .pipeline import Failed, Sink
from .preprocess import Prepared


def save_options(path: Path) -> dict[str, Any]:
    """JPEG at quality 95; PNG at zlib level 3 (a third of the time of the default, a few % larger)."""
    if path.suffix.lower() in (".jpg", ".jpeg"):
        return {"quality": 95}
    return {"compress_level": 3}


class FileSink(Sink):
    """Every output kind of ``kinds`` for photo ``i`` written to ``targets[i]`` (one path per kind)."""

    def __init__(
        self,
        names: Sequence[str | os.PathLike],
        targets: Sequence[Sequence[Path]],
        kinds: tuple[str, ...],
        edges: EdgeConfig = EdgeConfig(),
        background: tuple[int, int, int] = (255, 255, 255),
        report: Callable[[str], None] | None = None,
    ) -> None:
        super().__init__(report)
        self.names, self.targets, self.kinds = names, targets, kinds
        self.edges, self.background = edges, background
        self.need_photo = any(kind != "mask" for kind in kinds)

    def consume(self, item: Prepared, probs: np.ndarray) -> Any:
        images = render_all(self.kinds, item.photo_array(), probs, self.edges, background=self.background)
        try:
            for kind, target in zip(self.kinds, self.targets[item.index], strict=True):
                image, options = images[kind], save_options(target)
                atomic_save(target, lambda tmp, image=image, options=options: image.save(tmp, **options))
        except OSError as error:
            return Failed(f"{self.names[item.index]}: cannot write outputs: {error}")
        return None


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
