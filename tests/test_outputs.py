import numpy as np
import pytest

from maskingnet.outputs import (
    EdgeConfig,
    alpha_from_probs,
    background_image,
    binary_mask,
    cutout_image,
    decontaminate,
    dilate,
    mask_image,
    output_suffix,
    overlay_image,
    parse_color,
    parse_kinds,
)


def disc_probs(height: int = 40, width: int = 60, radius: float = 12.0, ramp: float = 3.0) -> np.ndarray:
    """A car-like blob: probability 1 inside a disc, falling linearly to 0 over ``ramp`` pixels."""
    ys, xs = np.mgrid[0:height, 0:width]
    distance = np.hypot(ys - height / 2, xs - width / 2)
    return np.clip((radius - distance) / ramp + 0.5, 0, 1).astype(np.float32)


def two_tone_photo(probs: np.ndarray) -> np.ndarray:
    """Red car on a green backdrop, the hard mask deciding which is which."""
    photo = np.zeros((*probs.shape, 3), np.uint8)
    photo[..., 1] = 200
    car = probs > 0.5
    photo[car] = (220, 0, 0)
    return photo


def test_mask_image_is_0_or_255_and_thresholded_strictly():
    probs = np.array([[0.2, 0.5], [0.51, 1.0]], np.float32)
    assert np.array_equal(np.asarray(mask_image(probs)), [[0, 0], [255, 255]])


def test_hard_alpha_equals_the_binary_mask():
    probs = disc_probs()
    assert np.array_equal(alpha_from_probs(probs) == 255, binary_mask(probs))


def test_soft_alpha_is_hard_outside_the_edge_band():
    probs = disc_probs()
    hard = binary_mask(probs)
    alpha = alpha_from_probs(probs, EdgeConfig(soft=True, band_px=1))
    far = ~dilate(hard, 1) | ~dilate(~hard, 1)
    assert np.array_equal(alpha[far], hard[far].astype(np.uint8) * 255)


def test_soft_alpha_has_intermediate_values_on_the_boundary():
    alpha = alpha_from_probs(disc_probs(), EdgeConfig(soft=True, band_px=2))
    assert ((alpha > 0) & (alpha < 255)).sum() > 10


def test_soft_alpha_leaves_no_halo_beyond_the_band():
    probs = disc_probs(ramp=12.0)  # a very blurry model: probability leaks far out
    hard = binary_mask(probs)
    alpha = alpha_from_probs(probs, EdgeConfig(soft=True, band_px=2))
    assert alpha[~dilate(hard, 2)].max() == 0


def test_soft_cutout_edges_carry_no_background_colour():
    probs = disc_probs()
    photo = two_tone_photo(probs)
    photo[(probs > 0.2) & (probs < 0.8)] = (110, 100, 0)  # edge pixels mixed with the green backdrop
    cut = np.asarray(cutout_image(photo, probs, EdgeConfig(soft=True, band_px=2)))
    visible = cut[..., 3] > 0
    assert cut[visible, 1].max() < 50


def test_cutout_is_rgba_at_the_photo_size():
    probs = disc_probs()
    cut = cutout_image(two_tone_photo(probs), probs)
    assert cut.mode == "RGBA" and cut.size == (60, 40)


def test_background_image_fills_the_background_with_the_colour():
    probs = disc_probs()
    out = np.asarray(background_image(two_tone_photo(probs), probs, (255, 255, 255)))
    assert (out[~binary_mask(probs)] == 255).all()


def test_background_image_keeps_the_car_pixels():
    probs = disc_probs()
    photo = two_tone_photo(probs)
    out = np.asarray(background_image(photo, probs, (0, 0, 255)))
    car = binary_mask(probs)
    assert np.array_equal(out[car], photo[car])


def test_overlay_changes_only_the_car():
    probs = disc_probs()
    photo = two_tone_photo(probs)
    out = np.asarray(overlay_image(photo, probs))
    assert np.array_equal(out[~binary_mask(probs)], photo[~binary_mask(probs)])


def test_parse_color_accepts_names_hex_and_triplets():
    assert [parse_color("white"), parse_color("#ff0000"), parse_color("0,128,255")] == [
        (255, 255, 255),
        (255, 0, 0),
        (0, 128, 255),
    ]


def test_parse_color_rejects_out_of_range_triplets():
    with pytest.raises(ValueError):
        parse_color("0,300,0")


def test_parse_kinds_rejects_unknown_names():
    with pytest.raises(ValueError, match="choose from"):
        parse_kinds("mask,sticker")


def test_non_white_background_output_is_not_named_white():
    assert output_suffix("white", (0, 0, 0)) == "_bg.jpg"


def test_decontaminate_reaches_far_for_isolated_edge_pixels():
    rgb = np.zeros((50, 50, 3), np.uint8)
    rgb[0, 0] = (10, 20, 30)
    source = np.zeros((50, 50), bool)
    source[0, 0] = True
    fill = np.zeros((50, 50), bool)
    fill[49, 49] = True
    assert decontaminate(rgb, fill, source)[49, 49].tolist() == [10, 20, 30]
