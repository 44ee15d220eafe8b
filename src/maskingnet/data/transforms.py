"""Transforms that keep a photo, its coordinate maps and its mask in register.

The coordinate maps of a photo (:mod:`maskingnet.data.coords` defines and builds them: ``X[i, j] = j / W -
0.5``, ``Y[i, j] = i / H - 0.5``, channels ``[X, Y]``) are defined once on the *original* photo. Every
geometric transform here moves the three together, so after any resize, crop, flip or shift/scale/rotate each
pixel's coordinates still say where in the original photo it came from:

- the image is resampled with PIL (bilinear, antialiased when shrinking),
- the coordinate maps bilinearly, extrapolating linearly past the edge (the maps are ramps, so this is exact
  and "extends the ramp" for pixels that come from outside the photo),
- the mask with nearest neighbour (no new labels appear).

Colour jitter touches the image only. All randomness comes from an explicit ``numpy.random.Generator``;
``sample_rng(seed, epoch, index)`` gives one per sample that does not depend on the worker that draws it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import torch
from PIL import Image, ImageEnhance

from maskingnet.data.coords import resized_coord_maps  # noqa: F401 - still importable from here

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
FILL_RGB = tuple(round(255 * m) for m in IMAGENET_MEAN)
"""Colour of pixels that come from outside the photo: the ImageNet mean, i.e. 0 after normalisation."""
_UINT8_TO_NORMALISED = (
    (np.arange(256, dtype=np.float32)[None, :] / 255 - np.asarray(IMAGENET_MEAN, np.float32)[:, None])
    / np.asarray(IMAGENET_STD, np.float32)[:, None]
).astype(np.float32)


def to_tensor(image: Image.Image | np.ndarray) -> torch.Tensor:
    """An RGB image (PIL, or H x W x 3 array: uint8 0..255 or float 0..1) as a (3, H, W) normalised tensor."""
    if isinstance(image, Image.Image):
        array = np.asarray(image if image.mode == "RGB" else image.convert("RGB"))
    else:
        array = np.asarray(image)
        if array.ndim == 2:
            array = np.repeat(array[:, :, None], 3, axis=2)
        if array.ndim != 3 or array.shape[2] != 3:
            raise ValueError(f"to_tensor needs an H x W x 3 image, got shape {array.shape}")
    if array.dtype == np.uint8:
        planes = np.empty((3, *array.shape[:2]), dtype=np.float32)
        for channel in range(3):
            np.take(_UINT8_TO_NORMALISED[channel], array[..., channel], out=planes[channel])
        return torch.from_numpy(planes)
    planes = np.ascontiguousarray(array.transpose(2, 0, 1), dtype=np.float32)
    mean = np.asarray(IMAGENET_MEAN, np.float32)[:, None, None]
    std = np.asarray(IMAGENET_STD, np.float32)[:, None, None]
    return torch.from_numpy((planes - mean) / std)


def denormalize(tensor: torch.Tensor) -> np.ndarray:
    """Undo ``to_tensor``: a (3, H, W) normalised tensor back to an H x W x 3 uint8 array."""
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    rgb = (tensor.detach().float().cpu() * std + mean).clamp(0, 1) * 255
    return rgb.round().to(torch.uint8).permute(1, 2, 0).numpy()


@dataclass
class Sample:
    """One photo in flight: the RGB image, its (2, h, w) coordinate maps and its (h, w) bool mask (or None).

    All three have the same size, except before ``resize``, which accepts any sizes (each covers the whole
    photo: an image decoded at reduced scale can come with a full-size mask).
    """

    image: Image.Image
    coords: np.ndarray
    mask: np.ndarray | None = None

    @property
    def size(self) -> tuple[int, int]:
        return self.image.size


def resize(sample: Sample, size: tuple[int, int]) -> Sample:
    """Resize image, coords and mask to ``size`` = (w, h), each covering the whole frame."""
    w, h = size
    image = sample.image if sample.image.size == size else sample.image.resize(size, Image.BILINEAR)
    coords = sample.coords if sample.coords.shape[1:] == (h, w) else _resize_coords(sample.coords, size)
    mask = None if sample.mask is None else _resize_nearest(sample.mask, size)
    return Sample(image, coords, mask)


def crop(sample: Sample, left: int, top: int, width: int, height: int) -> Sample:
    """Cut the window (left, top, width, height) out of image, coords and mask alike."""
    _check_same_size(sample)
    full_w, full_h = sample.size
    if left < 0 or top < 0 or width < 1 or height < 1 or left + width > full_w or top + height > full_h:
        raise ValueError(f"crop window {(left, top, width, height)} is not inside a {full_w}x{full_h} image")
    rows, cols = slice(top, top + height), slice(left, left + width)
    return Sample(
        sample.image.crop((left, top, left + width, top + height)),
        np.ascontiguousarray(sample.coords[:, rows, cols]),
        None if sample.mask is None else np.ascontiguousarray(sample.mask[rows, cols]),
    )


def random_crop(sample: Sample, size: tuple[int, int], rng: np.random.Generator) -> Sample:
    """A ``size`` = (w, h) window at a random position (the whole frame when it is not larger)."""
    w, h = min(size[0], sample.size[0]), min(size[1], sample.size[1])
    left = int(rng.integers(0, sample.size[0] - w + 1))
    top = int(rng.integers(0, sample.size[1] - h + 1))
    return crop(sample, left, top, w, h)


def center_crop(sample: Sample, size: tuple[int, int]) -> Sample:
    """A ``size`` = (w, h) window in the middle (the whole frame when it is not larger)."""
    w, h = min(size[0], sample.size[0]), min(size[1], sample.size[1])
    return crop(sample, (sample.size[0] - w) // 2, (sample.size[1] - h) // 2, w, h)


def hflip(sample: Sample) -> Sample:
    """Mirror left-right; the coordinate maps are mirrored too (each pixel keeps its original position)."""
    _check_same_size(sample)
    return Sample(
        sample.image.transpose(Image.FLIP_LEFT_RIGHT),
        np.ascontiguousarray(sample.coords[:, :, ::-1]),
        None if sample.mask is None else np.ascontiguousarray(sample.mask[:, ::-1]),
    )


def shift_scale_rotate(
    sample: Sample, angle: float = 0.0, scale: float = 1.0, shift: tuple[float, float] = (0.0, 0.0)
) -> Sample:
    """Rotate by ``angle`` degrees (counter-clockwise) and scale about the centre, then shift by
    ``shift`` = (dx, dy) as fractions of the width and height. Size is kept; pixels from outside the photo
    get ``FILL_RGB``, mask 0 and the extended coordinate ramp."""
    _check_same_size(sample)
    w, h = sample.size
    matrix, offset = _inverse_affine(w, h, angle, scale, shift)
    xs, ys = np.arange(w, dtype=np.float64)[None, :], np.arange(h, dtype=np.float64)[:, None]
    src_x = matrix[0, 0] * xs + matrix[0, 1] * ys + offset[0]
    src_y = matrix[1, 0] * xs + matrix[1, 1] * ys + offset[1]
    pil_data = _pil_affine_data(matrix, offset)
    image = sample.image.transform((w, h), Image.AFFINE, pil_data, Image.BILINEAR, fillcolor=FILL_RGB)
    coords = _bilinear_extrapolating(sample.coords, src_x, src_y)
    mask = None
    if sample.mask is not None:
        mask_image = Image.fromarray(sample.mask.astype(np.uint8))
        mask = (
            np.asarray(mask_image.transform((w, h), Image.AFFINE, pil_data, Image.NEAREST, fillcolor=0)) > 0
        )
    return Sample(image, coords, mask)


def color_jitter(
    image: Image.Image,
    rng: np.random.Generator,
    brightness: float = 0.2,
    contrast: float = 0.2,
    saturation: float = 0.2,
    hue: float = 0.02,
) -> Image.Image:
    """Random brightness, contrast and saturation factors in ``[1 - x, 1 + x]`` and a hue shift in
    ``[-hue, hue]`` turns of the colour wheel. Image only: coords and mask are not colours."""
    factors = [float(rng.uniform(1 - amount, 1 + amount)) for amount in (brightness, contrast, saturation)]
    turn = float(rng.uniform(-hue, hue))
    for enhancer, factor in zip(
        (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color), factors, strict=True
    ):
        image = enhancer(image).enhance(factor)
    if turn:
        hsv = np.asarray(image.convert("HSV")).copy()
        hsv[..., 0] = (hsv[..., 0].astype(np.int16) + round(turn * 256)) % 256
        image = Image.fromarray(hsv, "HSV").convert("RGB")
    return image


@dataclass(frozen=True)
class AugmentConfig:
    """Training augmentations, the usual Carvana set. Probabilities are per sample; ranges are symmetric."""

    hflip: float = 0.5
    affine: float = 0.5
    shift: float = 0.0625
    scale: float = 0.1
    rotate: float = 10.0
    jitter: float = 0.5
    brightness: float = 0.2
    contrast: float = 0.2
    saturation: float = 0.2
    hue: float = 0.02
    band: float = 0.25
    band_size: float = 0.08


def sample_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The random generator of one sample in one epoch: the same numbers in any worker, any order."""
    return np.random.default_rng([seed, epoch, index])


def augment(sample: Sample, rng: np.random.Generator, config: AugmentConfig = AugmentConfig()) -> Sample:
    """Apply h-flip, shift/scale/rotate (image, coords, mask together) and colour jitter (image only)."""
    if rng.random() < config.hflip:
        sample = hflip(sample)
    if rng.random() < config.affine:
        angle = float(rng.uniform(-config.rotate, config.rotate))
        scale = float(rng.uniform(1 - config.scale, 1 + config.scale))
        shift = (
            float(rng.uniform(-config.shift, config.shift)),
            float(rng.uniform(-config.shift, config.shift)),
        )
        sample = shift_scale_rotate(sample, angle, scale, shift)
    if rng.random() < config.jitter:
        image = color_jitter(
            sample.image, rng, config.brightness, config.contrast, config.saturation, config.hue
        )
        sample = replace(sample, image=image)
    if rng.random() < config.band:
        sample = frame_band(sample, rng, config.band_size)
    return sample


_BAND_EDGES = ("bottom", "top", "left", "right")
_BAND_EDGE_ODDS = (0.55, 0.15, 0.15, 0.15)


def frame_band(sample: Sample, rng: np.random.Generator, max_fraction: float = 0.08) -> Sample:
    """Paint a strip of one flat, mostly dark colour along one edge of the frame, labelled background.

    Studio photos sometimes carry a dark or coloured band at the frame's edge (a floor edge, a scanner
    border); a network that never saw one calls it car. The band covers up to ``max_fraction`` of the
    frame's height (or width) and is drawn with a little noise so it is not a perfectly flat colour.
    """
    _check_same_size(sample)
    w, h = sample.size
    edge = _BAND_EDGES[int(rng.choice(len(_BAND_EDGES), p=_BAND_EDGE_ODDS))]
    across = h if edge in ("bottom", "top") else w
    thickness = max(1, int(round(rng.uniform(0.01, max_fraction) * across)))
    if rng.random() < 0.7:
        colour = np.full(3, rng.uniform(0, 70))
    else:
        colour = rng.uniform(0, 255, size=3)
    rows = {"bottom": slice(h - thickness, h), "top": slice(0, thickness)}.get(edge, slice(0, h))
    cols = {"left": slice(0, thickness), "right": slice(w - thickness, w)}.get(edge, slice(0, w))
    pixels = np.asarray(sample.image.convert("RGB")).copy()
    region = pixels[rows, cols]
    noise = rng.normal(0, 6, size=region.shape[:2] + (1,))
    pixels[rows, cols] = np.clip(colour[None, None, :] + noise, 0, 255).astype(np.uint8)
    mask = None
    if sample.mask is not None:
        mask = sample.mask.copy()
        mask[rows, cols] = False
    return Sample(Image.fromarray(pixels), sample.coords, mask)


def _check_same_size(sample: Sample) -> None:
    w, h = sample.size
    if sample.coords.shape[1:] != (h, w) or (sample.mask is not None and sample.mask.shape != (h, w)):
        mask_shape = None if sample.mask is None else sample.mask.shape
        raise ValueError(
            f"image {w}x{h}, coords {sample.coords.shape[1:]} and mask {mask_shape} differ in size: "
            "resize first"
        )


def _resize_coords(coords: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    (w, h), (in_h, in_w) = size, coords.shape[1:]
    src_x = (np.arange(w) + 0.5) * (in_w / w) - 0.5
    src_y = (np.arange(h) + 0.5) * (in_h / h) - 0.5
    return _linear_along(_linear_along(coords, src_x, axis=2), src_y, axis=1)


def _linear_along(maps: np.ndarray, positions: np.ndarray, axis: int) -> np.ndarray:
    """Linear interpolation of ``maps`` at ``positions`` along one axis, extrapolating past the ends."""
    left, offset = _cell(positions, maps.shape[axis])
    right = np.minimum(left + 1, maps.shape[axis] - 1)
    shape = [1] * maps.ndim
    shape[axis] = positions.size
    offset = offset.reshape(shape).astype(np.float32)
    low = np.take(maps, left, axis=axis)
    return (low + (np.take(maps, right, axis=axis) - low) * offset).astype(np.float32)


def _resize_nearest(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    (w, h), (in_h, in_w) = size, mask.shape
    rows = np.minimum(((np.arange(h) + 0.5) * (in_h / h)).astype(np.int64), in_h - 1)
    cols = np.minimum(((np.arange(w) + 0.5) * (in_w / w)).astype(np.int64), in_w - 1)
    return mask[rows[:, None], cols[None, :]]


def _bilinear_extrapolating(maps: np.ndarray, src_x: np.ndarray, src_y: np.ndarray) -> np.ndarray:
    """Sample (C, H, W) ``maps`` at pixel positions ``src_x``, ``src_y`` (both (h, w)), bilinear inside and
    linear extrapolation outside: exact for ramps, which the coordinate maps are."""
    channels, height, width = maps.shape
    x0, tx = _cell(src_x, width)
    y0, ty = _cell(src_y, height)
    x1 = np.minimum(x0 + 1, width - 1)
    y1 = np.minimum(y0 + 1, height - 1)
    flat = maps.reshape(channels, -1)
    tx, ty = tx.astype(np.float32), ty.astype(np.float32)
    top_left, top_right = np.take(flat, y0 * width + x0, axis=1), np.take(flat, y0 * width + x1, axis=1)
    bottom_left, bottom_right = np.take(flat, y1 * width + x0, axis=1), np.take(flat, y1 * width + x1, axis=1)
    top = top_left + (top_right - top_left) * tx
    bottom = bottom_left + (bottom_right - bottom_left) * tx
    return (top + (bottom - top) * ty).astype(np.float32)


def _cell(position: np.ndarray, length: int) -> tuple[np.ndarray, np.ndarray]:
    """Left neighbour index (kept so that a right neighbour exists) and the unclipped fractional offset.
    A single row or column has no slope to extrapolate: its value is used everywhere."""
    if length == 1:
        return np.zeros(position.shape, np.int64), np.zeros(position.shape)
    left = np.clip(np.floor(position), 0, length - 2).astype(np.int64)
    return left, position - left


def _inverse_affine(
    w: int, h: int, angle: float, scale: float, shift: tuple[float, float]
) -> tuple[np.ndarray, np.ndarray]:
    """Matrix and offset mapping output pixel (x, y) to source pixel, for rotate+scale about the centre then
    shift. Pixel centres are integers here."""
    centre = np.array([(w - 1) / 2, (h - 1) / 2])
    move = np.array([shift[0] * w, shift[1] * h])
    radians = math.radians(angle)
    # Counter-clockwise on screen (y points down) is a clockwise rotation in (x, y) array coordinates.
    forward = scale * np.array(
        [[math.cos(radians), math.sin(radians)], [-math.sin(radians), math.cos(radians)]]
    )
    matrix = np.linalg.inv(forward)
    offset = centre - matrix @ (centre + move)
    return matrix, offset


def _pil_affine_data(matrix: np.ndarray, offset: np.ndarray) -> tuple[float, ...]:
    """PIL's AFFINE coefficients: PIL maps continuous output positions (pixel centres at +0.5) to input."""
    a, b = matrix[0]
    d, e = matrix[1]
    c = offset[0] + 0.5 - 0.5 * (a + b)
    f = offset[1] + 0.5 - 0.5 * (d + e)
    return (float(a), float(b), float(c), float(d), float(e), float(f))
