"""The render path of commit 174ee64, frozen: ``maskingnet.outputs`` before its faster rewrite.

**Kept for the benchmark's ratio only** (``maskingnet.bench.outputs`` times it beside the current
``maskingnet.outputs`` on the same photos in the same run, and a test checks that both give the same
pixels); nothing else may import it. Do not optimise or restyle it: it is the baseline. Its PNG and JPEG
writer (:func:`save`) is the one ``FileSink`` used at that commit (PIL, zlib level 3, JPEG quality 95).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from maskingnet.outputs import OUTPUT_KINDS, EdgeConfig

EDGE_TILE = 256
MAX_CELLS = 1 << 20


def save(image: Image.Image, path: Path) -> None:
    """Write ``image`` as ``FileSink`` did: JPEG at quality 95; PNG at zlib level 3."""
    if path.suffix.lower() in (".jpg", ".jpeg"):
        image.save(path, quality=95)
    else:
        image.save(path, compress_level=3)


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


def edge_band(hard: np.ndarray, band_px: int | None = None) -> np.ndarray:
    """Pixels within the band width of the thresholded boundary, on either side."""
    radius = edge_band_px(hard.shape, band_px)
    return dilate(hard, radius) & ~erode(hard, radius)


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


def _near_colours(
    rgb: np.ndarray, source: np.ndarray, part: tuple[slice, slice], fill: np.ndarray, radius: int
) -> tuple[np.ndarray, np.ndarray]:
    """Mean source colour in the (2r+1)-square around each ``fill`` pixel of the tile ``part`` (float32
    box sums on the tile and a ``radius`` margin), and which fill pixels had a source pixel in reach."""
    outer = grown(part, radius, source.shape)
    weight = source[outer].astype(np.float32)
    counts = _window_sums(weight, radius)
    sums = _window_sums(rgb[outer].astype(np.float32) * weight[..., None], radius)
    inner = (
        slice(part[0].start - outer[0].start, part[0].stop - outer[0].start),
        slice(part[1].start - outer[1].start, part[1].stop - outer[1].start),
    )
    total = counts[inner][fill]
    found = total > 0
    return _as_colour(sums[inner][fill][found] / total[found][:, None]), found


def _as_colour(values: np.ndarray) -> np.ndarray:
    return np.clip(np.round(values), 0, 255).astype(np.uint8)


def decontaminate(rgb: np.ndarray, fill: np.ndarray, source: np.ndarray, reach: int = 2) -> np.ndarray:
    """Give the ``fill`` pixels the colour of the nearby ``source`` pixels (the car's interior).

    Edge pixels of a photo mix car and backdrop; painting them with the interior's colour keeps the backdrop
    out of a soft cut-out (no halo). Mean colour of the source pixels in a ``reach``-pixel window around each
    fill pixel, in float32 on the tiles of the frame that hold fill pixels (memory: a tile, not the frame);
    the few without a source pixel in reach take the mean of wider and wider neighbourhoods from a coarse
    grid of cell sums (:class:`CellColours`), the last one the whole car.
    """
    if not fill.any() or not source.any():
        return rgb
    out = rgb.copy()
    missing = np.zeros(fill.shape, dtype=bool)
    for part in frame_tiles(fill.shape, EDGE_TILE):
        wanted = fill[part]
        if not wanted.any():
            continue
        colours, found = _near_colours(rgb, source, part, wanted, reach)
        ys, xs = np.nonzero(wanted)
        out[part][ys[found], xs[found]] = colours
        missing[part][ys[~found], xs[~found]] = True
    if missing.any():
        CellColours(rgb, source, max(reach, 1)).paint(out, missing, 4 * reach)
    return out


class CellColours:
    """Sums of the source pixels' colours on a coarse grid (cells of at least ``cell`` pixels, at most
    :data:`MAX_CELLS` cells), built in strips of rows: the mean colour of any neighbourhood of cells in
    memory that does not grow with the photo."""

    def __init__(self, rgb: np.ndarray, source: np.ndarray, cell: int) -> None:
        height, width = source.shape
        self.cell = max(cell, math.ceil(math.sqrt(height * width / MAX_CELLS)))
        rows, cols = -(-height // self.cell), -(-width // self.cell)
        self.counts = np.zeros((rows, cols), np.float32)
        self.sums = np.zeros((rows, cols, 3), np.float32)
        starts = np.arange(0, width, self.cell)
        for row, top in enumerate(range(0, height, self.cell)):
            strip = slice(top, top + self.cell)
            weight = source[strip].astype(np.float32)
            self.counts[row] = np.add.reduceat(weight.sum(axis=0), starts)
            colour = (rgb[strip].astype(np.float32) * weight[..., None]).sum(axis=0)
            self.sums[row] = np.add.reduceat(colour, starts, axis=0)

    def paint(self, out: np.ndarray, missing: np.ndarray, radius: int) -> None:
        """Give the ``missing`` pixels of ``out`` the mean source colour of the cells within ``radius``
        pixels, widening (x4) until every pixel has one; the whole car's mean is the last resort."""
        ys, xs = np.nonzero(missing)
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
    return Image.fromarray(np.dstack([matte.rgb, matte.alpha]), mode="RGBA")


def background_image(
    image: Image.Image | np.ndarray,
    probs: np.ndarray,
    color: tuple[int, int, int] = (255, 255, 255),
    edges: EdgeConfig = EdgeConfig(),
    matte: Matte | None = None,
) -> Image.Image:
    """The car composited onto a plain colour (RGB, e.g. the white-background shop photo)."""
    matte = matte or make_matte(image, probs, edges)
    out = np.empty_like(matte.rgb)
    out[:] = np.asarray(color, dtype=np.uint8)
    opaque = matte.alpha == 255
    out[opaque] = matte.rgb[opaque]
    partial = (matte.alpha > 0) & ~opaque
    weight = matte.alpha[partial].astype(np.float32)[:, None] / 255.0
    mixed = matte.rgb[partial] * weight + np.asarray(color, dtype=np.float32) * (1.0 - weight)
    out[partial] = np.round(mixed).astype(np.uint8)
    return Image.fromarray(out, mode="RGB")


def overlay_image(
    image: Image.Image | np.ndarray,
    probs: np.ndarray,
    threshold: float = 0.5,
    color: tuple[int, int, int] = (255, 0, 64),
    opacity: float = 0.4,
) -> Image.Image:
    """The photo with the car tinted and its outline drawn, for checking a mask by eye."""
    rgb = as_rgb_array(image).astype(np.float32)
    mask = binary_mask(probs, threshold)
    tint = np.asarray(color, dtype=np.float32)
    rgb[mask] = rgb[mask] * (1 - opacity) + tint * opacity
    outline = mask & ~erode(mask, edge_band_px(mask.shape))
    rgb[outline] = tint
    return Image.fromarray(np.round(rgb).astype(np.uint8), mode="RGB")


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
