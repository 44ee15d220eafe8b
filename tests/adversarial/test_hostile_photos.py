"""Photos whose size is the attack: the soft-edge step's memory follows the outline's band, not the frame.
The served side (a per-request pixel budget) is in ``test_hostile_serve.py``."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import peak_rss_growth_mb

from maskingnet.outputs.pictures import EdgeConfig, cutout_image, decontaminate, make_matte

SIDE = 3000


def disc(side: int) -> np.ndarray:
    ys, xs = np.ogrid[0:side, 0:side]
    distance = np.hypot(ys - side / 2, xs - side / 2).astype(np.float32)
    return np.clip((side * 0.35 - distance) / 8 + 0.5, 0, 1).astype(np.float32)


def test_a_soft_cutout_costs_a_few_bytes_a_pixel_not_float64_tables_of_the_frame():
    probs = disc(SIDE)
    photo = np.full((SIDE, SIDE, 3), 120, np.uint8)
    try:
        image, grown = peak_rss_growth_mb(lambda: cutout_image(photo, probs, EdgeConfig(soft=True)))
    except OSError:
        pytest.skip("no /proc/self/clear_refs to reset the peak RSS")
    assert image.size == (SIDE, SIDE)
    # the RGBA answer is 4 bytes a pixel and the masks 1 each; float64 summed-area tables were 64
    assert grown < 16 * SIDE * SIDE / 2**20


def test_far_edge_pixels_get_the_colour_of_the_nearest_car_pixels_not_the_frame_average():
    rgb = np.zeros((600, 600, 3), np.uint8)
    rgb[:, :300] = (200, 0, 0)
    rgb[:, 300:] = (0, 0, 200)
    source = np.zeros((600, 600), bool)
    source[0:5, 0:5] = True  # red car pixels, top left
    source[595:, 595:] = True  # blue car pixels, bottom right
    fill = np.zeros((600, 600), bool)
    fill[100, 100] = fill[500, 500] = True
    out = decontaminate(rgb, fill, source, reach=2)
    assert out[100, 100].tolist() == [200, 0, 0] and out[500, 500].tolist() == [0, 0, 200]


def test_soft_matte_colours_come_only_from_the_car():
    probs = disc(400)
    photo = np.zeros((400, 400, 3), np.uint8)
    photo[..., 1] = 200
    photo[probs > 0.5] = (220, 0, 0)
    matte = make_matte(photo, probs, EdgeConfig(soft=True, band_px=6))
    partial = (matte.alpha > 0) & (matte.alpha < 255)
    assert partial.any() and (matte.rgb[partial] == (220, 0, 0)).all()
