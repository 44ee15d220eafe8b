"""Framing a cut-out the way a product page shows a car: cropped to the car with a margin, optionally
scaled and centred on a fixed canvas.

Pure numpy/OpenCV on arrays, so the sink only calls :func:`frame_image`. The margin is a fraction of the car's
box (0.05: 5 % of its width on the left and right, 5 % of its height above and below). Where the framed area
reaches past the photo it is filled with ``fill`` (transparent for a cut-out, the background colour for a
photo on a colour). A photo with no car is framed whole, with no margin.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

DEFAULT_MARGIN = 0.05


@dataclass(frozen=True)
class Framing:
    """``margin``: fraction of the car box added on each side; ``canvas``: (W, H) of a fixed output size
    (the framed car scaled to fit it and centred), or None for the framed area at the photo's scale."""

    margin: float = DEFAULT_MARGIN
    canvas: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.margin <= 10:
            raise ValueError(f"margin {self.margin}: expected a fraction of the car box between 0 and 10")
        if self.canvas is not None:
            check_canvas(self.canvas)


MAX_CANVAS_SIDE = 20_000
MAX_CANVAS_PIXELS = 100_000_000
"""Largest framed output: 400 MB as RGBA. Checked before any photo runs (a 100000x100000 canvas ran the
model on every photo, then failed allocating 94 GB for each)."""


def check_canvas(canvas: tuple[int, int]) -> None:
    """Refuse a canvas past :data:`MAX_CANVAS_SIDE` a side or :data:`MAX_CANVAS_PIXELS` in all."""
    width, height = canvas
    if max(width, height) > MAX_CANVAS_SIDE or width * height > MAX_CANVAS_PIXELS:
        raise ValueError(
            f"--canvas {width}x{height}: at most {MAX_CANVAS_SIDE} pixels a side and "
            f"{MAX_CANVAS_PIXELS // 1_000_000} megapixels"
        )


Box = tuple[int, int, int, int]
"""(left, top, right, bottom) in pixels, right and bottom exclusive."""


def car_box(mask: np.ndarray) -> Box | None:
    """The smallest box (left, top, right, bottom) holding every pixel of ``mask`` (bool, or an alpha
    channel) that is set or above 0; None when there is none."""
    set_pixels = mask if mask.dtype == bool else mask > 0
    left, top, width, height = cv2.boundingRect(np.ascontiguousarray(set_pixels).view(np.uint8))
    if not width:
        return None
    return left, top, left + width, top + height


def framed_box(box: Box, margin: float) -> Box:
    """``box`` grown by ``margin`` times its width (left, right) and height (top, bottom); may pass the
    photo's edges."""
    left, top, right, bottom = box
    dx, dy = round((right - left) * margin), round((bottom - top) * margin)
    return left - dx, top - dy, right + dx, bottom + dy


def crop_padded(image: np.ndarray, box: Box, fill: tuple[int, ...]) -> np.ndarray:
    """``image[top:bottom, left:right]``, with ``fill`` wherever the box lies outside the image."""
    left, top, right, bottom = box
    height, width = image.shape[:2]
    inside = image[max(top, 0) : min(bottom, height), max(left, 0) : min(right, width)]
    if (left, top, right, bottom) == (max(left, 0), max(top, 0), min(right, width), min(bottom, height)):
        return inside
    return cv2.copyMakeBorder(
        inside,
        max(-top, 0),
        max(bottom - height, 0),
        max(-left, 0),
        max(right - width, 0),
        cv2.BORDER_CONSTANT,
        value=fill,
    )


def resize_straight_alpha(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize to ``size`` = (W, H); an RGBA image is resized premultiplied, so the colour under transparent
    pixels cannot bleed into the car's edge. Area averaging when shrinking, bicubic when enlarging."""
    height, width = image.shape[:2]
    if (width, height) == size:
        return image
    interpolation = cv2.INTER_AREA if size[0] < width else cv2.INTER_CUBIC
    if image.ndim < 3 or image.shape[2] != 4:
        return cv2.resize(image, size, interpolation=interpolation)
    alpha = image[..., 3:].astype(np.float32) / 255
    premultiplied = np.concatenate([image[..., :3] * alpha, alpha * 255], axis=2)
    scaled = np.clip(cv2.resize(premultiplied, size, interpolation=interpolation), 0, 255)
    rgb = scaled[..., :3] * (255 / np.maximum(scaled[..., 3:], 1e-3))
    out = np.dstack([np.clip(rgb, 0, 255), scaled[..., 3]])
    return np.round(out).astype(np.uint8)


def place_on_canvas(image: np.ndarray, canvas: tuple[int, int], fill: tuple[int, ...]) -> np.ndarray:
    """``image`` scaled to fit ``canvas`` = (W, H) (keeping its aspect ratio) and centred on it."""
    height, width = image.shape[:2]
    scale = min(canvas[0] / width, canvas[1] / height)
    size = (max(1, min(canvas[0], round(width * scale))), max(1, min(canvas[1], round(height * scale))))
    scaled = resize_straight_alpha(image, size)
    out = np.empty((canvas[1], canvas[0], *image.shape[2:]), np.uint8)
    out[:] = np.asarray(fill, np.uint8)
    left, top = (canvas[0] - size[0]) // 2, (canvas[1] - size[1]) // 2
    out[top : top + size[1], left : left + size[0]] = scaled
    return out


def canvas_scale(alpha: np.ndarray, framing: Framing) -> float | None:
    """How much :func:`frame_image` enlarges (> 1) or shrinks the framed car to fit the canvas; None
    without a canvas."""
    if framing.canvas is None:
        return None
    box = car_box(alpha)
    left, top, right, bottom = (
        (0, 0, alpha.shape[1], alpha.shape[0]) if box is None else framed_box(box, framing.margin)
    )
    return min(framing.canvas[0] / max(right - left, 1), framing.canvas[1] / max(bottom - top, 1))


def frame_image(image: np.ndarray, alpha: np.ndarray, framing: Framing, fill: tuple[int, ...]) -> np.ndarray:
    """``image`` (H, W[, C]) cropped to the car of ``alpha`` with the margin, then placed on the canvas when
    there is one; ``fill`` (one value per channel) covers what lies outside the photo."""
    box = car_box(alpha)
    framed = image if box is None else crop_padded(image, framed_box(box, framing.margin), fill)
    if framing.canvas is None:
        return np.ascontiguousarray(framed)
    return place_on_canvas(framed, framing.canvas, fill)
