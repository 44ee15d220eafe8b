"""maskingnet.outputs.framing: crop to the car with a margin, fit a canvas; and maskingnet.outputs.encode
round trips."""

import io

import numpy as np
import pytest
from PIL import Image, features

from maskingnet.outputs.encode import encode
from maskingnet.outputs.framing import Framing, car_box, frame_image


def car_alpha(shape=(40, 60), box=(10, 5, 30, 25)) -> np.ndarray:
    alpha = np.zeros(shape, np.uint8)
    left, top, right, bottom = box
    alpha[top:bottom, left:right] = 255
    return alpha


def test_car_box_is_the_smallest_box_around_the_car():
    assert car_box(car_alpha()) == (10, 5, 30, 25) and car_box(np.zeros((4, 4), np.uint8)) is None


def test_crop_keeps_the_car_box_plus_the_margin():
    alpha = car_alpha()
    framed = frame_image(alpha, alpha, Framing(margin=0.1), (0,))
    assert framed.shape == (24, 24) and framed[2:22, 2:22].min() == 255 and framed[:2].max() == 0


def test_a_margin_past_the_photo_edge_is_filled():
    rgb = np.full((40, 60, 3), 90, np.uint8)
    framed = frame_image(rgb, car_alpha(box=(0, 0, 20, 20)), Framing(margin=0.5), (255, 255, 255))
    assert framed.shape == (40, 40, 3) and framed[0, 0].tolist() == [255, 255, 255]
    assert framed[20, 20].tolist() == [90, 90, 90]


def test_canvas_holds_the_framed_car_scaled_and_centred():
    alpha = car_alpha()
    framed = frame_image(alpha, alpha, Framing(margin=0.0, canvas=(100, 50)), (0,))
    rows, cols = np.nonzero(framed > 127)
    assert framed.shape == (50, 100) and (rows.min(), rows.max(), cols.min(), cols.max()) == (0, 49, 25, 74)


def test_a_photo_with_no_car_is_framed_whole():
    rgb = np.full((40, 60, 3), 7, np.uint8)
    assert frame_image(rgb, np.zeros((40, 60), np.uint8), Framing(), (255, 255, 255)).shape == (40, 60, 3)


def test_scaling_a_cutout_does_not_bleed_the_hidden_backdrop_into_the_car():
    rgba = np.zeros((40, 60, 4), np.uint8)
    rgba[..., :3] = (0, 255, 0)  # a green backdrop under alpha 0
    rgba[5:25, 10:30] = (200, 0, 0, 255)
    framed = frame_image(rgba, rgba[..., 3], Framing(margin=0.5, canvas=(17, 13)), (0, 0, 0, 0))
    visible = framed[framed[..., 3] > 0]
    assert visible.size and visible[:, 1].max() == 0 and visible[:, 0].min() == 200


def test_a_negative_margin_is_refused():
    with pytest.raises(ValueError, match="margin"):
        Framing(margin=-0.1)


@pytest.mark.parametrize("channels", [1, 3, 4])
def test_png_round_trips_exactly_through_pil(channels):
    rng = np.random.default_rng(channels)
    array = rng.integers(0, 256, (23, 37, channels) if channels > 1 else (23, 37), dtype=np.uint8)
    decoded = np.asarray(Image.open(io.BytesIO(encode(array, "png"))))
    assert np.array_equal(decoded, array)


def test_channels_keep_their_order():
    red = np.zeros((4, 4, 3), np.uint8)
    red[..., 0] = 255
    assert Image.open(io.BytesIO(encode(red, "jpg"))).getpixel((1, 1))[0] > 240


@pytest.mark.skipif(not features.check("webp"), reason="PIL without WebP")
def test_webp_keeps_the_alpha_channel():
    rgba = np.zeros((16, 16, 4), np.uint8)
    rgba[4:12, 4:12] = (10, 20, 30, 255)
    decoded = np.asarray(Image.open(io.BytesIO(encode(rgba, "webp", 90))))
    assert np.array_equal(decoded[..., 3], rgba[..., 3])


def test_jpg_refuses_an_alpha_channel():
    with pytest.raises(ValueError, match="no alpha"):
        encode(np.zeros((4, 4, 4), np.uint8), "jpg")
