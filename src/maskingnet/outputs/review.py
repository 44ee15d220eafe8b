"""Which cut-outs a person should look at: cheap checks on each photo's masks, a column in the manifest.

Every check compares the photo with what the bundled model was trained on (Carvana's studio: the car whole,
upright, filling a good part of a 3:2 frame) or with the network's own certainty, so its threshold keeps its
meaning for any model of that kind:

- ``unsure``: the share of the car that the network is unsure about: pixels of its own map (at its input
  size, before the edge stage, so the photo's resolution does not matter) with a car probability between
  :data:`UNSURE_LOW` and :data:`UNSURE_HIGH`, over the pixels it calls car. A sure mask has such pixels
  only along the outline (a band one or two pixels wide at the network's scale); a photo it does not
  understand has whole unsure regions. Flagged above :data:`UNSURE_SHARE`.
- ``frame``: the car touches the photo's edge, so it is probably cut off (or a floor piece runs out of it).
- ``sideways``: the car's box is much taller than wide, as a car photographed upright never is (below
  :data:`MIN_UPRIGHT_ASPECT`): a photo turned by 90 degrees without an EXIF tag saying so.
- ``upside-down``: the car is wider at the top of its box than at the bottom (:data:`UPSIDE_DOWN_RATIO`):
  a standing car is widest at its body, with the narrower cabin above.
- ``small``: the car's box spans less than :data:`SMALL_SHARE` of the photo both ways (the network then sees
  it with few pixels).
- ``upscale``: ``--canvas`` enlarges the framed car more than :data:`MAX_UPSCALE` times (soft pixels).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

UNSURE_LOW, UNSURE_HIGH = 0.1, 0.9
UNSURE_SHARE = 0.05
"""Flag a photo when more than this share of its car is unsure (a sure car's outline band is ~1-3 %)."""
MIN_UPRIGHT_ASPECT = 0.8
"""Box width over height below which a car is taken for sideways (upright cars in Carvana's photos, seen
from 16 angles: 0.92 and more)."""
UPSIDE_DOWN_RATIO = 2.0
"""Mean width of the box's top third over its bottom third above which a car is taken for upside-down
(upright cars in Carvana's photos: at most 1.95)."""
SMALL_SHARE = 0.2
"""Box share of the photo's width and height below which a car is small (Carvana's: at least 0.28 of the
width and 0.37 of the height)."""
MAX_UPSCALE = 2.0
"""Largest enlargement onto ``--canvas`` that keeps a photo's own detail (each pixel on four or fewer)."""

FLAGS = ("unsure", "frame", "sideways", "upside-down", "small", "upscale")
EXPLAIN = {
    "unsure": f"the network is unsure about over {UNSURE_SHARE:.0%} of the car",
    "frame": "the car touches the photo's edge (cut off?)",
    "sideways": "the car is taller than wide (a photo turned sideways?)",
    "upside-down": "the car is wider at the top than at the bottom (a photo upside down?)",
    "small": f"the car spans under {SMALL_SHARE:.0%} of the photo",
    "upscale": f"the car is enlarged over {MAX_UPSCALE:g}x onto the canvas",
}


@dataclass
class Review:
    """One photo's checks: ``unsure`` (share of the car, None without the network's map) and the flags."""

    unsure: float | None = None
    flags: list[str] = field(default_factory=list)

    @property
    def needed(self) -> bool:
        return bool(self.flags)


def unsure_share(network_map: np.ndarray) -> float:
    """Share of the car (probability > 0.5) in the network's map with a probability between
    :data:`UNSURE_LOW` and :data:`UNSURE_HIGH`; 1.0 when the map holds no car at all."""
    probs = np.asarray(network_map, dtype=np.float32)
    car = np.count_nonzero(probs > 0.5)
    unsure = np.count_nonzero((probs > UNSURE_LOW) & (probs < UNSURE_HIGH))
    return min(1.0, unsure / car) if car else 1.0


def shape_flags(hard: np.ndarray) -> list[str]:
    """The checks on the full-resolution mask: frame, sideways, upside-down, small (none without a car)."""
    rows = np.flatnonzero(hard.any(axis=1))
    if rows.size == 0:
        return []
    cols = np.flatnonzero(hard[rows[0] : rows[-1] + 1].any(axis=0))
    top, bottom, left, right = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    height, width = hard.shape
    flags = []
    if top == 0 or left == 0 or bottom == height or right == width:
        flags.append("frame")
    box_width, box_height = right - left, bottom - top
    if box_width < MIN_UPRIGHT_ASPECT * box_height:
        flags.append("sideways")
    elif upside_down(hard[top:bottom, left:right]):
        flags.append("upside-down")
    if box_width < SMALL_SHARE * width and box_height < SMALL_SHARE * height:
        flags.append("small")
    return flags


def upside_down(box: np.ndarray) -> bool:
    """Whether the car in ``box`` (its bounding box of the mask) is much wider in its top third."""
    third = max(1, box.shape[0] // 3)
    widths = np.count_nonzero(box, axis=1)
    return float(widths[:third].mean()) > UPSIDE_DOWN_RATIO * max(float(widths[-third:].mean()), 1.0)


def review_photo(hard: np.ndarray, network_map: np.ndarray | None, upscale: float | None = None) -> Review:
    """Every check on one photo: ``hard`` its (H, W) bool mask, ``network_map`` the network's own map,
    ``upscale`` the enlargement onto the canvas (None without one)."""
    share = None if network_map is None else unsure_share(network_map)
    flags = ["unsure"] if share is not None and share > UNSURE_SHARE else []
    flags += shape_flags(hard)
    if upscale is not None and upscale > MAX_UPSCALE:
        flags.append("upscale")
    return Review(share, flags)


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
