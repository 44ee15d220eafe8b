"""The full-resolution edge stage and the clean-up: from the network's low-resolution map to the final one.

:class:`EdgeStage` is what every verb runs after the network (``Predictor``, predict, evaluate, submit,
serve): :func:`clean_up` on the network's own map (one car: far blobs dropped, small enclosed holes filled),
then the outline placed from the photo - by the model file's
:class:`~maskingnet.models.refiner.Refiner` on tiles along the outline when it has one, else by the guided
filter (:class:`GuidedUpsample`) - and the result brought to the photo's size.

Bounded work: everything after the network runs at a fixed fraction of the photo's size (half), in float32;
the refiner only on the tiles the outline crosses; the clean-up at the network's size.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch

from maskingnet.data.transforms import to_tensor
from maskingnet.models.refiner import Refiner

from .fastpath import prepare_refiner


@dataclass(frozen=True)
class CleanUp:
    """What :func:`clean_up` keeps. Fractions are of the car's (largest component's) area.

    ``keep_near``: other components are kept when they are at least ``min_part`` of the car and within
    ``keep_near`` of the frame's diagonal from it (a mirror cut off by a thin error), dropped otherwise.
    ``fill_holes``: enclosed background regions smaller than this are filled (real see-through gaps, such
    as under a spoiler, are larger: in the Carvana masks they reach 0.5% of the car).
    """

    enabled: bool = True
    min_part: float = 0.02
    keep_near: float = 0.01
    fill_holes: float = 0.0002


MAX_WORKING_PIXELS = 2_600_000


def working_size(
    size: tuple[int, int], scale: float, max_pixels: int = MAX_WORKING_PIXELS
) -> tuple[int, int]:
    """(w, h) of a photo of ``size`` = (W, H) at ``scale``, at least 1x1, and at most ``max_pixels``: the
    edge stage's memory and time stay those of a real photo (a whole 1918x1280 frame is 2.5 MP) whatever
    the photo's size."""
    scale = min(scale, (max_pixels / max(1, size[0] * size[1])) ** 0.5)
    return max(1, round(size[0] * scale)), max(1, round(size[1] * scale))


def resize_probs(probs: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of an (h, w) float32 map to ``size`` = (W, H), pixel centres aligned."""
    if probs.shape == (size[1], size[0]):
        return probs.astype(np.float32, copy=False)
    interpolation = cv2.INTER_LINEAR if size[0] >= probs.shape[1] else cv2.INTER_AREA
    return cv2.resize(probs.astype(np.float32, copy=False), size, interpolation=interpolation)


def outline_band(hard: np.ndarray, radius: int) -> np.ndarray:
    """Pixels within ``radius`` of the boundary of the bool mask ``hard`` (both sides)."""
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    as_u8 = hard.astype(np.uint8)
    return cv2.dilate(as_u8, kernel) != cv2.erode(as_u8, kernel)


def band_around(probs: np.ndarray, radius: int) -> np.ndarray:
    """Pixels within about ``radius`` of the 0.5 contour of ``probs`` (h, w). A wide band is found at half
    size (a quarter of the pixels and a kernel half as wide: 9 ms against 41 for a 1918x1280 map) and
    taken back with nearest neighbours, which places its border to within two pixels."""
    if radius < 4:
        return outline_band(probs > 0.5, radius)
    h, w = probs.shape
    half = cv2.resize(probs, ((w + 1) // 2, (h + 1) // 2), interpolation=cv2.INTER_AREA)
    band = outline_band(half > 0.5, -(-radius // 2)).astype(np.uint8)
    return cv2.resize(band, (w, h), interpolation=cv2.INTER_NEAREST).astype(bool)


def normalise(photo: np.ndarray) -> np.ndarray:
    """An (h, w, 3) uint8 photo as the (3, h, w) float32 the networks take (ImageNet mean and std)."""
    return to_tensor(photo).numpy()


def active_tiles(band: np.ndarray, tile: int) -> list[tuple[int, int]]:
    """Top-left corners (y, x) of the ``tile`` x ``tile`` cells of a grid that contain band pixels."""
    h, w = band.shape
    rows, cols = -(-h // tile), -(-w // tile)
    padded = np.zeros((rows * tile, cols * tile), dtype=bool)
    padded[:h, :w] = band
    hit = padded.reshape(rows, tile, cols, tile).any(axis=(1, 3))
    return [(int(r) * tile, int(c) * tile) for r, c in zip(*np.nonzero(hit), strict=True)]


@torch.inference_mode()
def refine_band(
    refiner: Refiner, photo: np.ndarray, coarse: np.ndarray, band: np.ndarray, batch: int = 32
) -> np.ndarray:
    """``coarse`` with the pixels of ``band`` replaced by the refiner's answer (all at working scale).

    ``photo`` (h, w, 3) uint8 and ``coarse`` (h, w) float32 are cut into tiles of ``refiner.config.tile``
    with ``margin`` pixels of context (edge-replicated at the frame's border); only tiles that hold band
    pixels are run, and only they are normalised.
    """
    config = refiner.config
    tile, margin = config.tile, config.margin
    corners = active_tiles(band, tile)
    if not corners:
        return coarse
    h, w = coarse.shape
    grid_h, grid_w = -(-h // tile) * tile, -(-w // tile) * tile
    border = (margin, margin + grid_h - h, margin, margin + grid_w - w)
    photo = cv2.copyMakeBorder(np.ascontiguousarray(photo), *border, cv2.BORDER_REPLICATE)
    padded = cv2.copyMakeBorder(coarse.astype(np.float32, copy=False), *border, cv2.BORDER_REPLICATE)
    refined = np.zeros((grid_h, grid_w), dtype=np.float32)
    side = tile + 2 * margin
    batch = tiles_per_call(side, config.channels, batch)
    for start in range(0, len(corners), batch):
        chunk = corners[start : start + batch]
        images = _normalised_tiles(np.stack([photo[y : y + side, x : x + side] for y, x in chunk]))
        probs = torch.from_numpy(np.stack([padded[y : y + side, x : x + side] for y, x in chunk])[:, None])
        logits = refiner(images, probs)
        values = torch.sigmoid(logits[:, 0, margin : margin + tile, margin : margin + tile]).numpy()
        for (y, x), tile_values in zip(chunk, values, strict=True):
            refined[y : y + tile, x : x + tile] = tile_values
    out = coarse.copy()
    out[band] = refined[:h, :w][band]
    return out


def tiles_per_call(side: int, channels: int, most: int = 32) -> int:
    """How many ``side`` x ``side`` tiles one refiner call takes: ``most`` at the default 96-pixel tiles of
    8 channels, fewer for larger tiles or wider refiners, so a call's memory stays that of the default."""
    return max(1, min(most, most * 96 * 96 * 8 // (side * side * channels)))


def _normalised_tiles(tiles: np.ndarray) -> torch.Tensor:
    """(B, s, s, 3) uint8 tiles as the (B, 3, s, s) float32 tensor :func:`normalise` makes of each."""
    count, side = tiles.shape[0], tiles.shape[1]
    planes = to_tensor(tiles.reshape(count * side, side, 3)).reshape(3, count, side, side)
    return planes.transpose(0, 1).contiguous()


def _component_stats(hard: np.ndarray, connectivity: int = 8) -> tuple[int, np.ndarray, np.ndarray]:
    as_u8 = hard.astype(np.uint8)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(as_u8, connectivity=connectivity)
    return count, labels, stats


def keep_car(hard: np.ndarray, settings: CleanUp = CleanUp()) -> np.ndarray:
    """The car's connected component, and the other large components close to it; bool (h, w)."""
    count, labels, stats = _component_stats(hard)
    if count <= 2:
        return hard
    areas = stats[1:, cv2.CC_STAT_AREA]
    car = int(np.argmax(areas)) + 1
    keep = labels == car
    reach = max(1, round(settings.keep_near * float(np.hypot(*hard.shape))))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * reach + 1, 2 * reach + 1))
    near_car = cv2.dilate(keep.astype(np.uint8), kernel).astype(bool)
    touching = np.zeros(count, dtype=bool)
    touching[np.unique(labels[near_car])] = True
    large = np.concatenate([[False], areas >= settings.min_part * areas[car - 1]])
    kept_labels = touching & large
    kept_labels[0] = False
    kept_labels[car] = True
    return kept_labels[labels]


def fill_small_holes(hard: np.ndarray, max_fraction: float) -> np.ndarray:
    """``hard`` with enclosed background regions smaller than ``max_fraction`` of the car filled."""
    if max_fraction <= 0:
        return hard
    count, labels, stats = _component_stats(~hard, connectivity=4)
    limit = max_fraction * float(hard.sum())
    h, w = hard.shape
    x, y, bw, bh, area = (stats[:, i] for i in range(5))
    inside = (x > 0) & (y > 0) & (x + bw < w) & (y + bh < h)
    fill = inside & (area < limit)
    fill[0] = False
    return hard | fill[labels]


def clean_up(probs: np.ndarray, settings: CleanUp = CleanUp(), threshold: float = 0.5) -> np.ndarray:
    """``probs`` with far blobs set to 0 and small enclosed holes set to 1 (a float32 copy)."""
    if not settings.enabled:
        return probs
    hard = probs > threshold
    if not hard.any():
        return probs
    kept = keep_car(hard, settings)
    filled = fill_small_holes(kept, settings.fill_holes)
    out = probs.astype(np.float32, copy=True)
    out[hard & ~kept] = 0.0
    out[filled & ~kept] = 1.0
    return out


@dataclass(frozen=True)
class GuidedUpsample:
    """Edge-aware up-sampling: the guided filter (He et al., 2010) of the up-sampled probability with the
    photo's grey levels as guide, at ``scale`` of the photo, window radius ``radius``, regularisation
    ``eps`` (on 0..1 grey levels). Where the probability is flat it is left as it is; across the outline it
    follows the photo's own edges. Six box filters at half scale: about 20 ms for a 1918x1280 photo."""

    scale: float = 0.5
    radius: int = 8
    eps: float = 1e-3


def guided_filter(guide: np.ndarray, probs: np.ndarray, radius: int, eps: float) -> np.ndarray:
    """The guided filter of ``probs`` (h, w) float32 by ``guide`` (h, w) float32 in 0..1."""
    window = (2 * radius + 1, 2 * radius + 1)

    def mean(values: np.ndarray) -> np.ndarray:
        return cv2.boxFilter(values, -1, window, borderType=cv2.BORDER_REFLECT)

    mean_guide, mean_probs = mean(guide), mean(probs)
    slope = (mean(guide * probs) - mean_guide * mean_probs) / (mean(guide * guide) - mean_guide**2 + eps)
    offset = mean_probs - slope * mean_guide
    return np.clip(mean(slope) * guide + mean(offset), 0.0, 1.0)


def guided_upsample(
    probs_small: np.ndarray, photo: np.ndarray, size: tuple[int, int], settings: GuidedUpsample
) -> np.ndarray:
    """``probs_small`` to ``size`` = (W, H) through :func:`guided_filter` at ``settings.scale``."""
    work = working_size(size, settings.scale)
    grey = cv2.cvtColor(cv2.resize(photo, work, interpolation=cv2.INTER_AREA), cv2.COLOR_RGB2GRAY)
    coarse = resize_probs(probs_small, work)
    refined = guided_filter(grey.astype(np.float32) / 255, coarse, settings.radius, settings.eps)
    return resize_probs(refined, size)


@dataclass
class EdgeStage:
    """Low-resolution probabilities + the photo -> full-resolution probabilities.

    First the clean-up, on the network's own map (cheap at its size: one car, small holes filled); then
    the outline: the model's refiner when it has one, else the guided filter, else (or without the
    photo) bilinear up-sampling.
    """

    refiner: Refiner | None = None
    clean: CleanUp = CleanUp()
    guided: GuidedUpsample | None = GuidedUpsample()

    def __post_init__(self) -> None:
        self._fast_refiner = prepare_refiner(self.refiner) if self.refiner is not None else None

    @property
    def needs_photo(self) -> bool:
        return self.refiner is not None or self.guided is not None

    def __call__(
        self, probs_small: torch.Tensor | np.ndarray, photo: np.ndarray | None, size: tuple[int, int]
    ) -> np.ndarray:
        """``probs_small`` (h, w) float32 and the (H, W, 3) uint8 photo of ``size`` = (W, H) -> (H, W)."""
        if isinstance(probs_small, torch.Tensor):
            probs_small = probs_small.detach().float().cpu().numpy()
        probs_small = clean_up(probs_small, self.clean)
        if photo is None:
            return resize_probs(probs_small, size)
        if self.refiner is not None:
            return self._refine(probs_small, photo, size)
        if self.guided is not None:
            return guided_upsample(probs_small, photo, size, self.guided)
        return resize_probs(probs_small, size)

    def _refine(self, probs_small: np.ndarray, photo: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        config = self.refiner.config
        work = working_size(size, config.scale)
        coarse = resize_probs(probs_small, work)
        if (photo.shape[1], photo.shape[0]) != work:
            photo = cv2.resize(photo, work, interpolation=cv2.INTER_AREA)
        band = band_around(coarse, config.band)
        return resize_probs(refine_band(self._fast_refiner, photo, coarse, band), size)


def edge_stage(
    refiner: Refiner | None, refine: bool = True, clean: bool = True, guided: bool = False
) -> EdgeStage | None:
    """The edge stage a predictor runs: with ``refine``, the model file's refiner, or the guided filter when
    it has none or ``guided`` asks for it (the generic filter suits photos unlike the refiner's training
    studio); with ``clean``, the clean-up; None when both are off (plain bilinear up-sampling)."""
    if not refine and not clean:
        return None
    outline = refiner if refine and not guided else None
    return EdgeStage(outline, CleanUp(enabled=clean), GuidedUpsample() if refine else None)
