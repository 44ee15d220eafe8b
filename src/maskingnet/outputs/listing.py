"""One look across a listing: every photo of one car framed on the canvas at the same scale, standing on the
same baseline, so the car does not change size from angle to angle on a shop's page.

``--canvas`` alone fits each photo's car to the canvas, so a front view (narrow) is blown up more than a
side view (wide). For a listing, the scale is chosen once per folder: the largest car box of the folder
(widest and tallest, with the margin) fits the canvas; every photo is scaled by that factor, its car centred
left to right and its box's bottom on the baseline (where the tallest box's bottom lands when centred).

The scale depends on every car of the folder, so a photo's framed outputs cannot be placed when the photo is
done: :class:`Staging` keeps them whole and lossless (PNG) in a hidden folder inside the output folder until
the folder's last photo is done, then :meth:`Staging.place` frames and encodes each.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from maskingnet.outputs.encode import encode
from maskingnet.outputs.framing import Box, crop_padded, resize_straight_alpha
from maskingnet.utils.processes import process_alive

STAGING_PREFIX = ".maskingnet-listing-"


@dataclass(frozen=True)
class ListingFrame:
    """One folder's placement: ``scale`` (canvas pixels per photo pixel), ``baseline`` (the canvas row the
    cars' boxes stand on) and the ``canvas`` (W, H)."""

    scale: float
    baseline: float
    canvas: tuple[int, int]


def listing_frame(boxes: Sequence[Box], margin: float, canvas: tuple[int, int]) -> ListingFrame | None:
    """The placement of a folder whose cars have ``boxes`` (None when no photo has a car)."""
    if not boxes:
        return None
    width = max(right - left for left, _, right, _ in boxes) * (1 + 2 * margin)
    height = max(bottom - top for _, top, _, bottom in boxes) * (1 + 2 * margin)
    scale = min(canvas[0] / max(width, 1), canvas[1] / max(height, 1))
    tallest = max(bottom - top for _, top, _, bottom in boxes)
    return ListingFrame(scale, (canvas[1] + scale * tallest) / 2, canvas)


def place_in_listing(
    image: np.ndarray, box: Box | None, frame: ListingFrame, fill: tuple[int, ...]
) -> np.ndarray:
    """``image`` (H, W[, C]) on the canvas at the folder's scale, its car ``box`` centred left to right with
    its bottom on the baseline (a photo without a car: the whole photo); ``fill`` where the canvas reaches
    past the photo."""
    canvas_width, canvas_height = frame.canvas
    left, _, right, bottom = box if box is not None else (0, 0, image.shape[1], image.shape[0])
    centre, scale = (left + right) / 2, frame.scale
    region = (
        round(centre - canvas_width / 2 / scale),
        round(bottom - frame.baseline / scale),
        round(centre + canvas_width / 2 / scale),
        round(bottom + (canvas_height - frame.baseline) / scale),
    )
    return resize_straight_alpha(crop_padded(image, region, fill), (canvas_width, canvas_height))


class Staging:
    """A hidden folder ``.maskingnet-listing-<pid>-*`` in ``out`` for the whole, lossless (PNG) framed outputs
    of listings still being cut out. Those of runs whose process is gone (killed) are removed on creation."""

    def __init__(self, out: Path) -> None:
        remove_stale_staging(out)
        self.folder = Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{os.getpid()}-", dir=out))

    def path(self, index: int, kind: str) -> Path:
        return self.folder / f"{index}_{kind}.png"

    def place(
        self,
        index: int,
        kind: str,
        fmt: str,
        quality: int | None,
        background: tuple[int, int, int],
        box: Box | None,
        frame: ListingFrame | None,
    ) -> bytes:
        """The staged ``kind`` of photo ``index`` placed by ``frame`` and encoded as ``fmt`` (a transparent
        picture in JPEG: on ``background``); the staged file is removed."""
        staged = self.path(index, kind)
        picture = cv2.imread(str(staged), cv2.IMREAD_UNCHANGED)
        if picture is None:
            raise ValueError(f"staged {kind} unreadable")
        picture = cv2.cvtColor(picture, cv2.COLOR_BGRA2RGBA if picture.shape[2] == 4 else cv2.COLOR_BGR2RGB)
        if fmt == "jpg" and picture.shape[2] == 4:
            picture = on_background(picture, background)
        fill = (0, 0, 0, 0) if picture.shape[2] == 4 else tuple(background)
        placed = picture if frame is None else place_in_listing(picture, box, frame, fill)
        data = encode(placed, fmt, quality)
        staged.unlink(missing_ok=True)
        return data

    def cleanup(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def remove_stale_staging(out: Path) -> None:
    """Staging folders of listing runs whose process is gone (killed half-way)."""
    for folder in Path(out).glob(f"{STAGING_PREFIX}*"):
        pid = folder.name[len(STAGING_PREFIX) :].partition("-")[0]
        if folder.is_dir() and pid.isdigit() and not process_alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)


def on_background(rgba: np.ndarray, background: tuple[int, int, int]) -> np.ndarray:
    """An RGBA picture composited over a plain colour, as RGB."""
    alpha = rgba[..., 3:].astype(np.float32) / 255
    colour = np.asarray(background, np.float32)
    return np.round(rgba[..., :3] * alpha + colour * (1 - alpha)).astype(np.uint8)
