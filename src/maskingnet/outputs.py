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
import torch
import torch.nn.functional as F
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
    tensor = torch.from_numpy(np.ascontiguousarray(mask, dtype=np.float32))[None, None]
    out = F.max_pool2d(tensor, kernel_size=2 * radius + 1, stride=1, padding=radius)
    return out[0, 0].numpy() > 0.5


def dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """Binary dilation with a (2r+1)-square structuring element."""
    return _max_filter(mask, radius) if radius > 0 else mask.copy()


def erode(mask: np.ndarray, radius: int) -> np.ndarray:
    """Binary erosion with a (2r+1)-square structuring element (outside the image counts as car)."""
    return ~_max_filter(~mask, radius) if radius > 0 else mask.copy()


def edge_band_px(shape: tuple[int, int], band_px: int | None = None) -> int:
    """Width of the soft-edge band: given, or ~2 px on a 1918x1280 photo, at least 1."""
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


def decontaminate(rgb: np.ndarray, fill: np.ndarray, source: np.ndarray) -> np.ndarray:
    """Give the ``fill`` pixels the colour of the nearby ``source`` pixels (the car's interior).

    Edge pixels of a photo mix car and backdrop; painting them with the interior's colour keeps the backdrop
    out of a soft cut-out (no halo). Normalised box filtering, widened until every fill pixel has a source
    pixel in reach (or the image has none).
    """
    if not fill.any() or not source.any():
        return rgb
    out = rgb.copy()
    weights = torch.from_numpy(source.astype(np.float32))[None, None]
    colours = torch.from_numpy(rgb.astype(np.float32)).permute(2, 0, 1)[None] * weights
    todo = fill.copy()
    radius = 2
    while todo.any() and radius <= 4 * max(rgb.shape[:2]):
        kernel = 2 * radius + 1
        total = F.avg_pool2d(weights, kernel, stride=1, padding=radius, count_include_pad=False)[0, 0].numpy()
        summed = F.avg_pool2d(colours, kernel, stride=1, padding=radius, count_include_pad=False)[0].numpy()
        ready = todo & (total > 0)
        mean = summed[:, ready] / total[ready]
        out[ready] = np.clip(np.round(mean.T), 0, 255).astype(np.uint8)
        todo &= ~ready
        radius *= 4
    return out


def soft_edge_colours(rgb: np.ndarray, probs: np.ndarray, alpha: np.ndarray, edges: EdgeConfig) -> np.ndarray:
    """The photo with its visible edge-band pixels recoloured from the car's interior."""
    hard = binary_mask(probs, edges.threshold)
    band = edge_band(hard, edges.band_px)
    return decontaminate(rgb, band & (alpha > 0), hard & ~band)


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
    image: Image.Image | np.ndarray, probs: np.ndarray, edges: EdgeConfig = EdgeConfig()
) -> Image.Image:
    """The car on a transparent background (RGBA)."""
    rgb = as_rgb_array(image)
    alpha = alpha_from_probs(probs, edges)
    if edges.soft:
        rgb = soft_edge_colours(rgb, probs, alpha, edges)
    return Image.fromarray(np.dstack([rgb, alpha]), mode="RGBA")


def background_image(
    image: Image.Image | np.ndarray,
    probs: np.ndarray,
    color: tuple[int, int, int] = (255, 255, 255),
    edges: EdgeConfig = EdgeConfig(),
) -> Image.Image:
    """The car composited onto a plain colour (RGB, e.g. the white-background shop photo)."""
    rgb = as_rgb_array(image)
    alpha = alpha_from_probs(probs, edges)
    if edges.soft:
        rgb = soft_edge_colours(rgb, probs, alpha, edges)
    weight = alpha.astype(np.float32)[..., None] / 255.0
    plain = np.asarray(color, dtype=np.float32)
    out = rgb.astype(np.float32) * weight + plain * (1.0 - weight)
    return Image.fromarray(np.round(out).astype(np.uint8), mode="RGB")


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


def render(
    kind: str,
    image: Image.Image | np.ndarray | None,
    probs: np.ndarray,
    edges: EdgeConfig = EdgeConfig(),
    background: tuple[int, int, int] = (255, 255, 255),
) -> Image.Image:
    """One output kind (see ``OUTPUT_KINDS``); ``image`` may be None for ``mask``."""
    if kind == "mask":
        return mask_image(probs, edges.threshold)
    if image is None:
        raise ValueError(f"output {kind!r} needs the photo")
    if kind == "cutout":
        return cutout_image(image, probs, edges)
    if kind == "white":
        return background_image(image, probs, background, edges)
    if kind == "overlay":
        return overlay_image(image, probs, edges.threshold)
    raise ValueError(f"unknown output kind {kind!r}: choose from {', '.join(OUTPUT_KINDS)}")
