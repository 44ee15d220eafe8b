"""From a car-probability map to what people want: masks, cut-outs, plain-background photos, overlays.

Everything here works at the photo's own resolution on numpy arrays / PIL images; the probability map has
already been up-sampled to that resolution (bilinear on probabilities, then thresholded, as Kaggle scores it).

Soft edges: a hard threshold gives a stair-stepped outline. With ``soft_edges`` the alpha follows the
probability, but only in a thin band around the thresholded boundary, so the background never shows as a faint
veil further out. Pixels in that band also get their colour from the nearby car interior ("decontamination"),
so a cut-out shot against a grey studio wall does not carry a grey fringe onto a white page (no halo).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image, ImageColor

from maskingnet.outputs.framing import car_box

OUTPUT_KINDS = ("mask", "cutout", "white", "overlay")
EDGE_TILE = 512  # side of the frame tiles whose box sums decontaminate computes (20 bytes a pixel)
MAX_CELLS = 1 << 20
STRIP_PIXELS = 1 << 20  # pixels of one strip of rows whose cell sums CellColours computes at once


@dataclass(frozen=True)
class EdgeConfig:
    """How the alpha channel is made from the probability map.

    ``soft``: alpha follows the probability inside a band of ``band_px`` pixels on each side of the
    thresholded boundary (``None``: about 1/500 of the image's short side, at least 1 pixel); ``softness`` is
    the half-width, in probability, of the ramp from transparent to opaque around the threshold.
    """

    threshold: float = 0.5
    soft: bool = False
    band_px: int | None = None
    softness: float = 0.25


def check_threshold(value: float, what: str = "--threshold") -> float:
    """``value`` when it is a number from 0 to 1; otherwise one line (NaN, 5, -1 or inf made empty or
    all-car masks that looked like results)."""
    if not (isinstance(value, (int, float)) and math.isfinite(value) and 0 <= value <= 1):
        raise ValueError(f"{what} {value!r}: expected a number from 0 to 1")
    return float(value)


def parse_kinds(text: str) -> tuple[str, ...]:
    """``"mask,cutout"`` -> ``("mask", "cutout")``; unknown names raise ``ValueError``."""
    kinds = tuple(dict.fromkeys(part.strip().lower() for part in text.split(",") if part.strip()))
    unknown = [kind for kind in kinds if kind not in OUTPUT_KINDS]
    if unknown or not kinds:
        raise ValueError(f"unknown output kind(s) {unknown or [text]}: choose from {', '.join(OUTPUT_KINDS)}")
    return kinds


def parse_color(text: str) -> tuple[int, int, int]:
    """A colour as a name (``white``), ``#rrggbb`` / ``#rgb`` or ``r,g,b``."""
    text = text.strip()
    if "," in text:
        parts = [int(part) for part in text.split(",")]
        if len(parts) != 3 or not all(0 <= part <= 255 for part in parts):
            raise ValueError(f"colour {text!r}: expected r,g,b with values 0-255")
        return parts[0], parts[1], parts[2]
    rgb = ImageColor.getrgb(text)
    return rgb[0], rgb[1], rgb[2]


def binary_mask(probs: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Car where the probability exceeds the threshold (strictly, so an all-0.5 map is empty)."""
    return np.asarray(probs) > threshold


def _square(radius: int) -> np.ndarray:
    return np.ones((2 * radius + 1, 2 * radius + 1), np.uint8)


def dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """Binary dilation with a (2r+1)-square structuring element (bool in, bool out)."""
    if radius <= 0:
        return np.array(mask, dtype=bool)
    return cv2.dilate(np.asarray(mask, dtype=np.uint8), _square(radius)).view(bool)


def erode(mask: np.ndarray, radius: int) -> np.ndarray:
    """Binary erosion with a (2r+1)-square structuring element (outside the image counts as car)."""
    if radius <= 0:
        return np.array(mask, dtype=bool)
    return cv2.erode(np.asarray(mask, dtype=np.uint8), _square(radius)).view(bool)


def edge_band_px(shape: tuple[int, int], band_px: int | None = None) -> int:
    """Soft-edge band width: given, or 1/500 of the short side (3 px on a 1918x1280 photo), at least 1."""
    if band_px is not None:
        return max(0, int(band_px))
    return max(1, round(min(shape) / 500))


def car_region(mask: np.ndarray, margin: int) -> tuple[slice, slice] | None:
    """The car's box (:func:`~maskingnet.outputs.framing.car_box`) widened by ``margin`` and clipped to the
    frame, as slices (None when nothing is set). A dilation or erosion of radius up to ``margin`` gives
    inside it what it gives on the whole frame, and its edge pixels all lie inside: the morphology need not
    see the rest."""
    box = car_box(mask)
    if box is None:
        return None
    left, top, right, bottom = box
    return grown((slice(top, bottom), slice(left, right)), margin, mask.shape)


def edge_band(hard: np.ndarray, band_px: int | None = None) -> np.ndarray:
    """Pixels within the band width of the thresholded boundary, on either side."""
    radius = edge_band_px(hard.shape, band_px)
    band = np.zeros(hard.shape, bool)
    if (box := car_region(hard, radius)) is not None:
        band[box] = dilate(hard[box], radius) & ~erode(hard[box], radius)
    return band


def alpha_from_probs(probs: np.ndarray, edges: EdgeConfig = EdgeConfig()) -> np.ndarray:
    """Alpha channel (H, W) uint8: 0/255 from the threshold, or soft in a thin band around the boundary."""
    hard = binary_mask(probs, edges.threshold)
    alpha = hard.view(np.uint8) * np.uint8(255)
    if edges.soft:
        soften(alpha, probs, edge_band(hard, edges.band_px), edges)
    return alpha


def soften(alpha: np.ndarray, probs: np.ndarray, band: np.ndarray, edges: EdgeConfig) -> None:
    """Set ``alpha`` (uint8, in place) from the probability ramp on the ``band`` pixels only (float32 on
    the band, never on the frame)."""
    ramp = (np.asarray(probs)[band].astype(np.float32) - edges.threshold) / (2 * edges.softness) + 0.5
    alpha[band] = np.round(np.clip(ramp, 0, 1) * 255).astype(np.uint8)


def frame_tiles(shape: tuple[int, int], tile: int) -> Iterator[tuple[slice, slice]]:
    """The (rows, cols) slices of a grid of ``tile`` x ``tile`` cells over a frame of ``shape``."""
    for top in range(0, shape[0], tile):
        for left in range(0, shape[1], tile):
            yield slice(top, min(top + tile, shape[0])), slice(left, min(left + tile, shape[1]))


def grown(part: tuple[slice, slice], margin: int, shape: tuple[int, int]) -> tuple[slice, slice]:
    """``part`` widened by ``margin`` on every side, clipped to the frame."""
    rows, cols = part
    return (
        slice(max(rows.start - margin, 0), min(rows.stop + margin, shape[0])),
        slice(max(cols.start - margin, 0), min(cols.stop + margin, shape[1])),
    )


def _window_sums(values: np.ndarray, radius: int) -> np.ndarray:
    """Sums over the (2r+1)-square windows, clipped at the borders (float32)."""
    size = (2 * radius + 1, 2 * radius + 1)
    return cv2.boxFilter(values, -1, size, normalize=False, borderType=cv2.BORDER_CONSTANT)


def _points(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows and columns of the set pixels of a bool mask, in row-major order (rows ascending)."""
    found = cv2.findNonZero(np.ascontiguousarray(mask).view(np.uint8))
    if found is None:
        return np.empty(0, np.intp), np.empty(0, np.intp)
    found = found.reshape(-1, 2)  # (x, y) pairs; OpenCV 4 adds a middle axis, 5 does not
    return found[:, 1].astype(np.intp), found[:, 0].astype(np.intp)


def _source_sums(
    rgb: np.ndarray, source: np.ndarray, window: tuple[slice, slice], side: int, anchor=(-1, -1)
) -> np.ndarray:
    """(h, w, 4) over ``window``: exact sums of the source pixels' colours (channels 0-2) and their count
    (channel 3) in the ``side``-square around every pixel (centred, or from ``anchor``), nothing outside
    the window counting; int32, or float64 for windows so large that int32 could overflow. 20 bytes a
    window pixel: callers read what they need and let it go."""
    weight = source[window].view(np.uint8)
    colours = rgb[window]
    plane = cv2.merge([cv2.bitwise_and(colours, colours, mask=weight), weight])
    depth = cv2.CV_32S if side * side * 255 < 2**31 else cv2.CV_64F
    return cv2.boxFilter(
        plane, depth, (side, side), anchor=anchor, normalize=False, borderType=cv2.BORDER_CONSTANT
    )


def _near_sums(
    rgb: np.ndarray, source: np.ndarray, ys: np.ndarray, xs: np.ndarray, radius: int
) -> np.ndarray:
    """(N, 4): colour sums and count of the source pixels within ``radius`` of each point (rows ascending),
    tile by tile of the frame: box sums over the bounding box of the tile's points and a ``radius`` margin."""
    sums = np.zeros((ys.size, 4), np.float64)
    for rows, cols in frame_tiles(source.shape, EDGE_TILE):
        first, last = np.searchsorted(ys, (rows.start, rows.stop))
        inside = first + np.flatnonzero((xs[first:last] >= cols.start) & (xs[first:last] < cols.stop))
        if not inside.size:
            continue
        py, px = ys[inside], xs[inside]
        bounds = (slice(py[0], py[-1] + 1), slice(px.min(), px.max() + 1))
        window = grown(bounds, radius, source.shape)
        table = _source_sums(rgb, source, window, 2 * radius + 1)
        sums[inside] = table[py - window[0].start, px - window[1].start]
        del table
    return sums


def _as_colour(values: np.ndarray) -> np.ndarray:
    return np.clip(np.round(values), 0, 255).astype(np.uint8)


def decontaminate(rgb: np.ndarray, fill: np.ndarray, source: np.ndarray, reach: int = 2) -> np.ndarray:
    """Give the ``fill`` pixels the colour of the nearby ``source`` pixels (the car's interior).

    Edge pixels of a photo mix car and backdrop; painting them with the interior's colour keeps the backdrop
    out of a soft cut-out (no halo). Mean colour of the source pixels in a ``reach``-pixel window around each
    fill pixel: exact integer box sums (OpenCV) on the tiles of the frame that hold fill pixels, read at
    the fill pixels only (memory: a tile, not the frame); the few without a source pixel in reach take the
    mean of wider and wider neighbourhoods from a coarse grid of cell sums (:class:`CellColours`), the last
    one the whole car.
    """
    if not fill.any() or not source.any():
        return rgb
    out = rgb.copy()
    ys, xs = _points(fill)
    source = np.asarray(source, dtype=bool)
    sums = _near_sums(rgb, source, ys, xs, max(int(reach), 0)).astype(np.float32)
    found = sums[:, 3] > 0
    out[ys[found], xs[found]] = _as_colour(sums[found, :3] / sums[found, 3:])
    if not found.all():
        CellColours(rgb, source, max(reach, 1)).paint(out, ys[~found], xs[~found], 4 * reach)
    return out


class CellColours:
    """Sums of the source pixels' colours on a coarse grid (cells of at least ``cell`` pixels, at most
    :data:`MAX_CELLS` cells), built in strips of rows over the source's bounding box (exact integer box
    sums, read at every cell's corner): the mean colour of any neighbourhood of cells in memory that does
    not grow with the photo."""

    def __init__(self, rgb: np.ndarray, source: np.ndarray, cell: int) -> None:
        height, width = source.shape
        self.cell = max(cell, math.ceil(math.sqrt(height * width / MAX_CELLS)))
        rows, cols = -(-height // self.cell), -(-width // self.cell)
        self.counts = np.zeros((rows, cols), np.float32)
        self.sums = np.zeros((rows, cols, 3), np.float32)
        cell = self.cell
        left, top, box_width, box_height = cv2.boundingRect(np.ascontiguousarray(source).view(np.uint8))
        first_col, last_col = left // cell, -(-(left + box_width) // cell)
        columns = slice(first_col * cell, min(last_col * cell, width))
        step = max(1, STRIP_PIXELS // (cell * max(columns.stop - columns.start, 1)))  # cell rows per strip
        for first in range(top // cell, -(-(top + box_height) // cell), step):
            strip = (slice(first * cell, (first + step) * cell), columns)
            cells = np.array(_source_sums(rgb, source, strip, cell, (0, 0))[::cell, ::cell])
            self.counts[first : first + len(cells), first_col:last_col] = cells[..., 3]
            self.sums[first : first + len(cells), first_col:last_col] = cells[..., :3]

    def paint(self, out: np.ndarray, ys: np.ndarray, xs: np.ndarray, radius: int) -> None:
        """Give the pixels ``(ys, xs)`` of ``out`` the mean source colour of the cells within ``radius``
        pixels, widening (x4) until every pixel has one; the whole car's mean is the last resort."""
        cells_y, cells_x = ys // self.cell, xs // self.cell
        span = max(1, -(-radius // self.cell))
        while ys.size and span <= max(self.counts.shape):
            counts = _window_sums(self.counts, span)[cells_y, cells_x]
            ready = counts > 0
            sums = _window_sums(self.sums, span)[cells_y[ready], cells_x[ready]]
            out[ys[ready], xs[ready]] = _as_colour(sums / counts[ready][:, None])
            ys, xs, cells_y, cells_x = ys[~ready], xs[~ready], cells_y[~ready], cells_x[~ready]
            span *= 4
        if ys.size:
            out[ys, xs] = _as_colour(self.sums.sum(axis=(0, 1)) / self.counts.sum())


@dataclass
class Matte:
    """What every composite of one photo shares: its RGB (edge colours cleaned when soft) and alpha."""

    rgb: np.ndarray
    alpha: np.ndarray


def make_matte(image: Image.Image | np.ndarray, probs: np.ndarray, edges: EdgeConfig = EdgeConfig()) -> Matte:
    """Alpha from the probabilities; with soft edges, edge-band colours taken from the car's interior."""
    rgb = as_rgb_array(image)
    hard = binary_mask(probs, edges.threshold)
    alpha = hard.view(np.uint8) * np.uint8(255)
    if edges.soft:
        band_px = edge_band_px(hard.shape, edges.band_px)
        band = edge_band(hard, band_px)
        soften(alpha, probs, band, edges)
        rgb = decontaminate(rgb, band & (alpha > 0), hard & ~band, reach=band_px + 2)
    return Matte(rgb, alpha)


def as_rgb_array(image: Image.Image | np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 from a PIL image (any mode) or an array."""
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"))
    array = np.asarray(image)
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=2)
    return np.ascontiguousarray(array[..., :3], dtype=np.uint8)


def mask_image(probs: np.ndarray, threshold: float = 0.5) -> Image.Image:
    """The mask as a greyscale PNG-ready image: car 255, background 0."""
    return Image.fromarray(binary_mask(probs, threshold).astype(np.uint8) * 255, mode="L")


def cutout_image(
    image: Image.Image | np.ndarray,
    probs: np.ndarray,
    edges: EdgeConfig = EdgeConfig(),
    matte: Matte | None = None,
) -> Image.Image:
    """The car on a transparent background (RGBA)."""
    matte = matte or make_matte(image, probs, edges)
    return Image.fromarray(cv2.merge([matte.rgb, matte.alpha]), mode="RGBA")


def background_image(
    image: Image.Image | np.ndarray,
    probs: np.ndarray,
    color: tuple[int, int, int] = (255, 255, 255),
    edges: EdgeConfig = EdgeConfig(),
    matte: Matte | None = None,
) -> Image.Image:
    """The car composited onto a plain colour (RGB, e.g. the white-background shop photo)."""
    matte = matte or make_matte(image, probs, edges)
    out = _filled(matte.alpha.shape, color)
    cv2.copyTo(matte.rgb, (matte.alpha == 255).view(np.uint8), out)
    ys, xs = _points(cv2.inRange(matte.alpha, 1, 254) > 0)
    weight = matte.alpha[ys, xs].astype(np.float32)[:, None] / 255.0
    mixed = matte.rgb[ys, xs] * weight + np.asarray(color, dtype=np.float32) * (1.0 - weight)
    out[ys, xs] = np.round(mixed).astype(np.uint8)
    return Image.fromarray(out, mode="RGB")


def _filled(shape: tuple[int, int], color: tuple[int, int, int]) -> np.ndarray:
    """An (H, W, 3) uint8 frame of one colour (copied a row at a time: numpy broadcasts a 3-vector over a
    frame 50x slower)."""
    out = np.empty((*shape, 3), np.uint8)
    out[:] = np.tile(np.asarray(color, np.uint8), (shape[1], 1))
    return out


def overlay_image(
    image: Image.Image | np.ndarray,
    probs: np.ndarray,
    threshold: float = 0.5,
    color: tuple[int, int, int] = (255, 0, 64),
    opacity: float = 0.4,
) -> Image.Image:
    """The photo with the car tinted and its outline drawn, for checking a mask by eye."""
    rgb = as_rgb_array(image)
    mask = binary_mask(probs, threshold)
    tint = np.asarray(color, dtype=np.float32)
    levels = np.arange(256, dtype=np.float32)[:, None] * (1 - opacity) + tint * opacity
    table = np.round(levels).astype(np.uint8).reshape(256, 1, 3)
    out = rgb.copy()
    cv2.copyTo(cv2.LUT(rgb, table), mask.view(np.uint8), out)
    radius = edge_band_px(mask.shape)
    if (box := car_region(mask, radius)) is not None:
        ys, xs = _points(mask[box] & ~erode(mask[box], radius))
        out[ys + box[0].start, xs + box[1].start] = np.asarray(color, np.uint8)
    return Image.fromarray(out, mode="RGB")


def render_all(
    kinds: tuple[str, ...] | list[str],
    image: Image.Image | np.ndarray | None,
    probs: np.ndarray,
    edges: EdgeConfig = EdgeConfig(),
    background: tuple[int, int, int] = (255, 255, 255),
) -> dict[str, Image.Image]:
    """Several output kinds of one photo, sharing the matte; ``image`` may be None for ``mask`` only."""
    unknown = [kind for kind in kinds if kind not in OUTPUT_KINDS]
    if unknown:
        raise ValueError(f"unknown output kind(s) {unknown}: choose from {', '.join(OUTPUT_KINDS)}")
    if image is None and any(kind != "mask" for kind in kinds):
        raise ValueError(f"outputs {list(kinds)} need the photo")
    matte = make_matte(image, probs, edges) if {"cutout", "white"} & set(kinds) else None
    images = {}
    for kind in kinds:
        if kind == "mask":
            images[kind] = mask_image(probs, edges.threshold)
        elif kind == "cutout":
            images[kind] = cutout_image(image, probs, edges, matte)
        elif kind == "white":
            images[kind] = background_image(image, probs, background, edges, matte)
        else:
            images[kind] = overlay_image(image, probs, edges.threshold)
    return images


def render(
    kind: str,
    image: Image.Image | np.ndarray | None,
    probs: np.ndarray,
    edges: EdgeConfig = EdgeConfig(),
    background: tuple[int, int, int] = (255, 255, 255),
) -> Image.Image:
    """One output kind (see ``OUTPUT_KINDS``); ``image`` may be None for ``mask``."""
    return render_all((kind,), image, probs, edges, background)[kind]
