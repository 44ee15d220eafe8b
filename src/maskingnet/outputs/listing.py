"""One look across a listing: every photo of one car framed on the canvas at the same scale, standing on the
same baseline, so the car does not change size from angle to angle on a shop's page.

``--canvas`` alone fits each photo's car to the canvas, so a front view (narrow) is blown up more than a
side view (wide). For a listing, the scale is chosen once per folder: the largest car box of the folder
(widest and tallest, with the margin) fits the canvas; every photo is scaled by that factor, its car centred
left to right and its box's bottom on the baseline (where the tallest box's bottom lands when centred).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from maskingnet.outputs.framing import Box, crop_padded, resize_straight_alpha


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
