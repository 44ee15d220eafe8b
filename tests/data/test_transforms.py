"""Transforms keep image, coordinate maps and mask in register; colour jitter touches the image only."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from maskingnet.data.coords import coord_maps, resized_coord_maps
from maskingnet.data.transforms import (
    IMAGENET_MEAN,
    AugmentConfig,
    Sample,
    augment,
    center_crop,
    color_jitter,
    crop,
    denormalize,
    hflip,
    random_crop,
    resize,
    sample_rng,
    shift_scale_rotate,
    to_tensor,
)

W, H = 60, 40


def coordinate_photo(width: int = W, height: int = H) -> Sample:
    """A photo whose red and green channels spell out its own coordinate maps, with a box for a mask."""
    maps = coord_maps(height, width).numpy()
    rgb = np.zeros((height, width, 3), np.uint8)
    rgb[..., 0] = np.round(255 * (maps[0] + 0.5))
    rgb[..., 1] = np.round(255 * (maps[1] + 0.5))
    mask = np.zeros((height, width), bool)
    mask[height // 4 : height // 2, width // 3 : width // 2] = True
    return Sample(Image.fromarray(rgb), maps, mask)


def test_coord_maps_follow_the_definition():
    maps = coord_maps(H, W).numpy()
    i, j = np.mgrid[0:H, 0:W]
    assert maps.shape == (2, H, W) and maps.dtype == np.float32
    np.testing.assert_allclose(maps[0], j / W - 0.5, atol=1e-7)
    np.testing.assert_allclose(maps[1], i / H - 0.5, atol=1e-7)


def test_crop_coords_are_the_same_window_of_the_full_coords():
    full = coordinate_photo()
    window = crop(full, 7, 5, 30, 20)
    assert np.array_equal(window.coords, full.coords[:, 5:25, 7:37])
    assert np.array_equal(window.mask, full.mask[5:25, 7:37])
    assert np.array_equal(np.asarray(window.image), np.asarray(full.image)[5:25, 7:37])


def test_hflip_coords_are_the_flipped_full_coords():
    full = coordinate_photo()
    flipped = hflip(full)
    assert np.array_equal(flipped.coords, full.coords[:, :, ::-1])
    assert np.array_equal(np.asarray(flipped.image), np.asarray(full.image)[:, ::-1])
    assert np.array_equal(flipped.mask, full.mask[:, ::-1])


@pytest.mark.parametrize("size", [(24, 16), (150, 90), (33, 71)])
def test_resized_coords_stay_a_ramp(size):
    out = resize(coordinate_photo(), size)
    np.testing.assert_allclose(np.diff(out.coords[0], axis=1), 1 / size[0], rtol=1e-4)
    np.testing.assert_allclose(np.diff(out.coords[1], axis=0), 1 / size[1], rtol=1e-4)
    assert np.ptp(out.coords[0], axis=0).max() < 1e-6 and np.ptp(out.coords[1], axis=1).max() < 1e-6


def test_resized_coords_match_the_resized_image():
    out = resize(coordinate_photo(), (150, 90))
    image = np.asarray(out.image).astype(np.float32)
    np.testing.assert_allclose(image[..., 0], 255 * (out.coords[0] + 0.5), atol=1.5)


def test_resized_coord_maps_equal_resizing_the_full_maps():
    full = coordinate_photo()
    np.testing.assert_allclose(resize(full, (30, 20)).coords, resized_coord_maps((30, 20), (W, H)), atol=1e-6)
    np.testing.assert_allclose(resized_coord_maps((W, H), (W, H)), coord_maps(H, W), atol=1e-7)


def test_resize_accepts_a_mask_larger_than_the_image():
    full = coordinate_photo()
    small = Sample(full.image.resize((30, 20)), resized_coord_maps((30, 20), (W, H)), full.mask)
    out = resize(small, (15, 10))
    assert out.mask.shape == (10, 15) and out.coords.shape == (2, 10, 15)


def test_resized_mask_keeps_only_its_labels():
    out = resize(coordinate_photo(), (47, 31))
    assert out.mask.dtype == bool and 0 < out.mask.mean() < 1


def test_crop_refuses_a_sample_whose_parts_differ_in_size():
    full = coordinate_photo()
    with pytest.raises(ValueError, match="resize first"):
        crop(Sample(full.image, full.coords[:, :10], full.mask), 0, 0, 5, 5)


def test_crop_outside_the_image_raises():
    with pytest.raises(ValueError, match="not inside"):
        crop(coordinate_photo(), 50, 0, 20, 10)


def test_random_and_center_crop_have_the_requested_size():
    full = coordinate_photo()
    assert random_crop(full, (32, 32), np.random.default_rng(0)).size == (32, 32)
    assert center_crop(full, (32, 32)).coords.shape == (2, 32, 32)


def test_identity_shift_scale_rotate_changes_nothing():
    full = coordinate_photo()
    out = shift_scale_rotate(full)
    np.testing.assert_allclose(out.coords, full.coords, atol=1e-6)
    assert np.array_equal(np.asarray(out.image), np.asarray(full.image))
    assert np.array_equal(out.mask, full.mask)


@pytest.mark.parametrize(("angle", "scale", "shift"), [(8.0, 1.1, (0.05, -0.04)), (-10.0, 0.9, (0.0, 0.06))])
def test_shift_scale_rotate_moves_image_and_coords_together(angle, scale, shift):
    out = shift_scale_rotate(coordinate_photo(), angle, scale, shift)
    image = np.asarray(out.image).astype(np.float32)
    x, y = out.coords
    inside = (x >= -0.5) & (x <= 0.5 - 1 / W) & (y >= -0.5) & (y <= 0.5 - 1 / H)
    assert inside.mean() > 0.5
    np.testing.assert_allclose(image[..., 0][inside], 255 * (out.coords[0] + 0.5)[inside], atol=2)
    np.testing.assert_allclose(image[..., 1][inside], 255 * (out.coords[1] + 0.5)[inside], atol=2)


def test_pixels_from_outside_the_photo_extend_the_coordinate_ramp():
    out = shift_scale_rotate(coordinate_photo(), 0.0, 1.0, (0.25, 0.0))
    np.testing.assert_allclose(np.diff(out.coords[0], axis=1), 1 / W, rtol=1e-4)
    assert out.coords[0, 0, 0] < -0.5 and not out.mask[:, :15].any()


def test_color_jitter_changes_the_image_only():
    full = coordinate_photo()
    only_jitter = AugmentConfig(hflip=0, affine=0, jitter=1, brightness=0.5)
    out = augment(full, np.random.default_rng(3), only_jitter)
    assert not np.array_equal(np.asarray(out.image), np.asarray(full.image))
    assert np.array_equal(out.coords, full.coords) and np.array_equal(out.mask, full.mask)


def test_color_jitter_returns_an_rgb_image_of_the_same_size():
    out = color_jitter(coordinate_photo().image, np.random.default_rng(0), hue=0.1)
    assert out.mode == "RGB" and out.size == (W, H)


def test_augment_is_reproducible_per_sample():
    first = augment(coordinate_photo(), sample_rng(7, 2, 11))
    again = augment(coordinate_photo(), sample_rng(7, 2, 11))
    assert np.array_equal(np.asarray(first.image), np.asarray(again.image))
    assert np.array_equal(first.coords, again.coords) and np.array_equal(first.mask, again.mask)


def test_sample_rng_differs_between_samples_and_epochs():
    draws = {tuple(sample_rng(0, epoch, index).random(3)) for epoch in range(3) for index in range(3)}
    assert len(draws) == 9


def test_to_tensor_normalises_with_imagenet_statistics():
    mean_colour = np.array(IMAGENET_MEAN, np.float32) * np.ones((4, 5, 3), np.float32)
    tensor = to_tensor(mean_colour)
    assert tensor.shape == (3, 4, 5) and tensor.dtype == torch.float32
    assert torch.allclose(tensor, torch.zeros(3, 4, 5), atol=1e-6)


def test_to_tensor_converts_grey_pil_images_to_three_channels():
    assert to_tensor(Image.new("L", (5, 4), 128)).shape == (3, 4, 5)


def test_denormalize_undoes_to_tensor():
    rgb = np.asarray(coordinate_photo().image)
    assert np.array_equal(denormalize(to_tensor(rgb)), rgb)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 30), st.integers(1, 30), st.data())
def test_any_crop_window_has_the_full_photos_coords(width, height, data):
    left = data.draw(st.integers(0, width - 1))
    top = data.draw(st.integers(0, height - 1))
    w = data.draw(st.integers(1, width - left))
    h = data.draw(st.integers(1, height - top))
    mask = np.zeros((height, width), bool)
    maps = coord_maps(height, width).numpy()
    window = crop(Sample(Image.new("RGB", (width, height)), maps, mask), left, top, w, h)
    assert np.array_equal(window.coords, maps[:, top : top + h, left : left + w])
    assert window.size == (w, h) and window.mask.shape == (h, w)


@settings(max_examples=40, deadline=None)
@given(st.integers(2, 40), st.integers(2, 40), st.integers(1, 40), st.integers(1, 40))
def test_resizing_coords_gives_the_originals_maps_at_any_size(width, height, out_w, out_h):
    """From two pixels up (one pixel holds no slope to extend, so it stays constant)."""
    full = Sample(Image.new("RGB", (width, height)), coord_maps(height, width).numpy(), None)
    out = resize(full, (out_w, out_h))
    expected = resized_coord_maps((out_w, out_h), (width, height))
    np.testing.assert_allclose(out.coords, expected, atol=1e-5)


def test_frame_band_paints_an_edge_strip_that_is_background():
    from maskingnet.data.transforms import frame_band

    image = Image.new("RGB", (60, 40), (200, 200, 200))
    sample = Sample(image, coord_maps(40, 60).numpy(), np.ones((40, 60), dtype=bool))
    banded = frame_band(sample, np.random.default_rng(1), max_fraction=0.2)
    changed = np.any(np.asarray(banded.image) != 200, axis=2)
    assert changed.any() and np.array_equal(banded.mask, ~changed)
    rows, cols = np.nonzero(changed)
    touches = {rows.min() == 0, rows.max() == 39, cols.min() == 0, cols.max() == 59}
    assert True in touches and np.array_equal(banded.coords, sample.coords)
