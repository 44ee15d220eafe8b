"""From a car-probability map to what people want: masks, cut-outs, plain-background photos, overlays.

Everything here works at the photo's own resolution on numpy arrays / PIL images; the probability map has
already been up-sampled to that resolution (bilinear on probabilities, then thresholded, as Kaggle scores it).

Soft edges: a hard threshold gives a stair-stepped outline. With ``soft_edges`` the alpha follows the
probability, but only in a thin band around the thresholded boundary, so the background never shows as a faint
veil further out. Pixels in that band also get their colour from the nearby car interior ("decontamination"),
so a cut-out shot against a grey studio wall does not carry a grey fringe onto a white page (no halo).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageColor

OUTPUT_KINDS = ("mask", "cutout", "white", "overlay")
OUTPUT_SUFFIXES = {
    "mask": "_mask.png",
    "cutout": "_cutout.png",
    "white": "_white.jpg",
    "overlay": "_overlay.png",
}


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


def output_suffix(kind: str, background: tuple[int, int, int] = (255, 255, 255)) -> str:
    """File-name suffix of an output kind; on a non-white background ``_bg.jpg``, not ``_white.jpg``."""
    if kind == "white" and background != (255, 255, 255):
        return "_bg.jpg"
    return OUTPUT_SUFFIXES[kind]


def binary_mask(probs: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Car where the probability exceeds the threshold (strictly, so an all-0.5 map is empty)."""
    return np.asarray(probs) > threshold


def _max_filter(mask: np.ndarray, radius: int) -> np.ndarray:
    """Binary dilation by a (2r+1)-square, as a row pass then a column pass of shifted ORs."""
    out = np.asarray(mask, dtype=bool)
    for axis in (0, 1):
        source, out = out, out.copy()
        size = source.shape[axis]
        for shift in range(1, min(radius, size - 1) + 1):
            head = (slice(None),) * axis + (slice(0, size - shift),)
            tail = (slice(None),) * axis + (slice(shift, size),)
            out[head] |= source[tail]
            out[tail] |= source[head]
    return out


def dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """Binary dilation with a (2r+1)-square structuring element."""
    return _max_filter(mask, radius) if radius > 0 else mask.copy()


def erode(mask: np.ndarray, radius: int) -> np.ndarray:
    """Binary erosion with a (2r+1)-square structuring element (outside the image counts as car)."""
    return ~_max_filter(~mask, radius) if radius > 0 else mask.copy()


def edge_band_px(shape: tuple[int, int], band_px: int | None = None) -> int:
    """Soft-edge band width: given, or 1/500 of the short side (3 px on a 1918x1280 photo), at least 1."""
    if band_px is not None:
        return max(0, int(band_px))
    return max(1, round(min(shape) / 500))


def edge_band(hard: np.ndarray, band_px: int | None = None) -> np.ndarray:
    """Pixels within the band width of the thresholded boundary, on either side."""
    radius = edge_band_px(hard.shape, band_px)
    return dilate(hard, radius) & ~erode(hard, radius)


def alpha_from_probs(probs: np.ndarray, edges: EdgeConfig = EdgeConfig()) -> np.ndarray:
    """Alpha channel (H, W) uint8: 0/255 from the threshold, or soft in a thin band around the boundary."""
    hard = binary_mask(probs, edges.threshold)
    if not edges.soft:
        return hard.astype(np.uint8) * 255
    band = edge_band(hard, edges.band_px)
    ramp = np.clip((np.asarray(probs, dtype=np.float32) - edges.threshold) / (2 * edges.softness) + 0.5, 0, 1)
    alpha = hard.astype(np.float32)
    alpha[band] = ramp[band]
    return np.round(alpha * 255).astype(np.uint8)


def integral_image(values: np.ndarray) -> np.ndarray:
    """Summed-area table with a zero first row and column: (H+1, W+1, ...) float64."""
    table = np.zeros((values.shape[0] + 1, values.shape[1] + 1, *values.shape[2:]), dtype=np.float64)
    np.cumsum(np.cumsum(values, axis=0, dtype=np.float64), axis=1, out=table[1:, 1:])
    return table


def window_sums(table: np.ndarray, ys: np.ndarray, xs: np.ndarray, radius: int) -> np.ndarray:
    """Sums over the (2r+1)-square windows (clipped at the borders) centred on the pixels (ys, xs)."""
    height, width = table.shape[0] - 1, table.shape[1] - 1
    top, bottom = np.maximum(ys - radius, 0), np.minimum(ys + radius + 1, height)
    left, right = np.maximum(xs - radius, 0), np.minimum(xs + radius + 1, width)
    return table[bottom, right] - table[top, right] - table[bottom, left] + table[top, left]


def _near_means(
    rgb: np.ndarray, source: np.ndarray, ys: np.ndarray, xs: np.ndarray, radius: int
) -> tuple[np.ndarray, np.ndarray]:
    """Mean source colour in the (2r+1)-square around each (y, x) by gathering, and whether there was any."""
    height, width = source.shape
    total = np.zeros(ys.size, dtype=np.float32)
    summed = np.zeros((ys.size, 3), dtype=np.float32)
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            yy, xx = ys + dy, xs + dx
            inside = (yy >= 0) & (yy < height) & (xx >= 0) & (xx < width)
            yy, xx = np.clip(yy, 0, height - 1), np.clip(xx, 0, width - 1)
            weight = source[yy, xx] & inside
            total += weight
            summed += rgb[yy, xx] * weight[:, None]
    found = total > 0
    return summed[found] / total[found][:, None], found


def decontaminate(rgb: np.ndarray, fill: np.ndarray, source: np.ndarray, reach: int = 2) -> np.ndarray:
    """Give the ``fill`` pixels the colour of the nearby ``source`` pixels (the car's interior).

    Edge pixels of a photo mix car and backdrop; painting them with the interior's colour keeps the backdrop
    out of a soft cut-out (no halo). Mean colour of the source pixels in a ``reach``-pixel window around each
    fill pixel; the few without a source pixel in reach get wider windows (summed-area tables, whose cost
    does not grow with the window), until all have one (or the image has none).
    """
    if not fill.any() or not source.any():
        return rgb
    out = rgb.copy()
    ys, xs = np.nonzero(fill)
    radius = reach
    if ys.size * (2 * reach + 1) ** 2 < 2 * fill.size:  # a thin band: gathering is cheaper than tables
        means, found = _near_means(rgb, source, ys, xs, reach)
        out[ys[found], xs[found]] = np.clip(np.round(means), 0, 255).astype(np.uint8)
        ys, xs = ys[~found], xs[~found]
        radius = 4 * reach
    if ys.size:
        counts = integral_image(source)
        colours = integral_image(rgb * source[..., None])
    while ys.size:
        total = window_sums(counts, ys, xs, radius)
        ready = total > 0
        mean = window_sums(colours, ys[ready], xs[ready], radius) / total[ready][:, None]
        out[ys[ready], xs[ready]] = np.clip(np.round(mean), 0, 255).astype(np.uint8)
        ys, xs = ys[~ready], xs[~ready]
        radius *= 4
    return out


@dataclass
class Matte:
    """What every composite of one photo shares: its RGB (edge colours cleaned when soft) and alpha."""

    rgb: np.ndarray
    alpha: np.ndarray


def make_matte(image: Image.Image | np.ndarray, probs: np.ndarray, edges: EdgeConfig = EdgeConfig()) -> Matte:
    """Alpha from the probabilities; with soft edges, edge-band colours taken from the car's interior."""
    rgb = as_rgb_array(image)
    alpha = alpha_from_probs(probs, edges)
    if edges.soft:
        hard = binary_mask(probs, edges.threshold)
        band_px = edge_band_px(hard.shape, edges.band_px)
        band = edge_band(hard, band_px)
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


def render(
    kind: str,
    image: Image.Image | np.ndarray | None,
    probs: np.ndarray,
    edges: EdgeConfig = EdgeConfig(),
    background: tuple[int, int, int] = (255, 255, 255),
) -> Image.Image:
    """One output kind (see ``OUTPUT_KINDS``); ``image`` may be None for ``mask``."""
    return render_all((kind,), image, probs, edges, background)[kind]
