"""Which cut-outs a person should look at: cheap checks on each photo's masks, columns in the manifest.

Every check compares the photo with what the network can be sure of, or with what the bundled model was
trained on (Carvana's studio: the car whole, upright, filling a good part of a 3:2 frame), so its threshold
keeps its meaning for another model of that kind:

- ``unsure``: how wide, in the network's own pixels, the band is where it cannot tell car from background:
  the pixels of its map (at its input size, before the edge stage) with a car probability between
  :data:`UNSURE_LOW` and :data:`UNSURE_HIGH`, over the pixels of the car's outline there. A sure network
  goes from background to car within one or two of its pixels; above :data:`MAX_UNSURE_PX` it hesitates
  along the whole outline (a photo unlike anything it was trained on, or a wrong one: turned, no car).
  A map with no car counts as unsure.
- ``sideways`` / ``upside-down``: for an unsure photo, the network is asked again with the photo turned by
  90, 180 and 270 degrees; when a turned photo gives a sure outline, the photo was taken turned and no EXIF
  tag said so.
- ``frame``: the car touches the photo's edge, so it is probably cut off (or a floor piece runs out of it).
- ``small``: the car's box spans less than :data:`SMALL_SHARE` of the photo both ways (the network then sees
  it with few pixels).
- ``upscale``: ``--canvas`` enlarges the framed car more than :data:`MAX_UPSCALE` times (soft pixels).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

UNSURE_LOW, UNSURE_HIGH = 0.1, 0.9
MAX_UNSURE_PX = 2.0
"""Flag a photo whose unsure band is on average wider than this many of the network's pixels."""
SMALL_SHARE = 0.2
"""Box share of the photo's width and height below which a car is small (Carvana's: at least 0.28 of the
width and 0.37 of the height)."""
MAX_UPSCALE = 2.0
"""Largest enlargement onto ``--canvas`` that keeps a photo's own detail (each pixel on four or fewer)."""
TURNS = {90: "sideways", 180: "upside-down", 270: "sideways"}

FLAGS = ("unsure", "sideways", "upside-down", "frame", "small", "upscale")
EXPLAIN = {
    "unsure": f"the network hesitates along the outline (over {MAX_UNSURE_PX:g} of its pixels)",
    "sideways": "the network sees a car only with the photo turned by 90 degrees",
    "upside-down": "the network sees a car only with the photo turned upside down",
    "frame": "the car touches the photo's edge (cut off?)",
    "small": f"the car spans under {SMALL_SHARE:.0%} of the photo",
    "upscale": f"the car is enlarged over {MAX_UPSCALE:g}x onto the canvas",
}


@dataclass
class Review:
    """One photo's checks: ``unsure`` (the unsure band's width in the network's pixels, None without its map)
    and the flags."""

    unsure: float | None = None
    flags: list[str] = field(default_factory=list)

    @property
    def needed(self) -> bool:
        return bool(self.flags)


def unsure_width(network_map: np.ndarray) -> float:
    """The mean width, in the map's pixels, of the band where the probability lies between
    :data:`UNSURE_LOW` and :data:`UNSURE_HIGH`: those pixels over the car's outline pixels (car pixels with a
    background neighbour). Infinite when the map holds no car."""
    probs = np.asarray(network_map, dtype=np.float32)
    car = (probs > 0.5).astype(np.uint8)
    outline = int(np.count_nonzero(car)) - int(np.count_nonzero(cv2.erode(car, np.ones((3, 3), np.uint8))))
    if outline <= 0:
        return float("inf")
    return float(np.count_nonzero((probs > UNSURE_LOW) & (probs < UNSURE_HIGH))) / outline


def shape_flags(hard: np.ndarray) -> list[str]:
    """The checks on the full-resolution mask: frame and small (none without a car)."""
    rows = np.flatnonzero(hard.any(axis=1))
    if rows.size == 0:
        return []
    cols = np.flatnonzero(hard[rows[0] : rows[-1] + 1].any(axis=0))
    top, bottom, left, right = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    height, width = hard.shape
    flags = []
    if top == 0 or left == 0 or bottom == height or right == width:
        flags.append("frame")
    if right - left < SMALL_SHARE * width and bottom - top < SMALL_SHARE * height:
        flags.append("small")
    return flags


def review_photo(hard: np.ndarray, network_map: np.ndarray | None, upscale: float | None = None) -> Review:
    """The checks of one photo that need no second look by the network: ``hard`` its (H, W) bool mask,
    ``network_map`` the network's own map, ``upscale`` the enlargement onto the canvas (None without one)."""
    width = None if network_map is None else unsure_width(network_map)
    flags = ["unsure"] if width is not None and width > MAX_UNSURE_PX else []
    flags += shape_flags(hard)
    if upscale is not None and upscale > MAX_UPSCALE:
        flags.append("upscale")
    return Review(width, flags)


def turned_flag(predictor: Any, source: Any) -> str | None:
    """``sideways`` or ``upside-down`` when the network is sure of the outline only with the photo turned
    (three more runs of the network at its input size), else None."""
    from maskingnet.data.io import read_image
    from maskingnet.inference.pipeline import crop_to_region

    photo = read_image(source, target_size=predictor.size)
    widths = {}
    for degrees in TURNS:
        item = predictor.prepare(photo.rotate(degrees, expand=True), need_photo=False)
        network_map = crop_to_region(predictor.infer_prepared([item])[0], item.region)
        widths[degrees] = unsure_width(network_map.numpy())
    best = min(widths, key=widths.get)
    return TURNS[best] if widths[best] <= MAX_UNSURE_PX else None


def summary_lines(flagged: Iterable[tuple[str, list[str]]], shown: int = 3) -> list[str]:
    """One line per flag for the end of a run: how many photos, why, and the first few names."""
    by_flag: dict[str, list[str]] = {}
    for name, flags in flagged:
        for flag in flags:
            by_flag.setdefault(flag, []).append(name)
    lines = []
    for flag in FLAGS:
        names = by_flag.get(flag)
        if not names:
            continue
        listed = ", ".join(names[:shown]) + (f" and {len(names) - shown} more" if len(names) > shown else "")
        photos = "photo" if len(names) == 1 else "photos"
        lines.append(f"review {flag}: {len(names)} {photos}, {EXPLAIN[flag]}: {listed}")
    return lines
