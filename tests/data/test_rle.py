"""RLE as Kaggle scored Carvana: properties, validation, and an exact round trip on every real mask."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image

import maskingnet
from maskingnet.data.rle import rle_decode, rle_encode

shapes = st.tuples(st.integers(1, 40), st.integers(1, 40))


@settings(max_examples=200, deadline=None)
@given(shapes.flatmap(lambda shape: arrays(bool, shape)))
def test_random_masks_round_trip(mask):
    assert np.array_equal(rle_decode(rle_encode(mask), mask.shape), mask)


@settings(max_examples=50, deadline=None)
@given(shapes.flatmap(lambda shape: arrays(bool, shape)))
def test_encoding_is_sorted_one_indexed_pairs_of_positive_lengths(mask):
    numbers = [int(token) for token in rle_encode(mask).split()]
    starts, lengths = numbers[0::2], numbers[1::2]
    assert all(length > 0 for length in lengths)
    assert all(start >= 1 for start in starts)
    assert all(s + n < t for s, n, t in zip(starts, lengths, starts[1:], strict=False))
    assert sum(lengths) == int(mask.sum())


@given(shapes)
def test_empty_mask_is_empty_string(shape):
    assert rle_encode(np.zeros(shape, bool)) == ""
    assert not rle_decode("", shape).any()


@given(shapes)
def test_full_mask_is_one_run(shape):
    assert rle_encode(np.ones(shape, bool)) == f"1 {shape[0] * shape[1]}"
    assert rle_decode(f"1 {shape[0] * shape[1]}", shape).all()


@pytest.mark.parametrize("corner", [(0, 0), (0, -1), (-1, 0), (-1, -1)])
def test_one_pixel_in_each_corner(corner):
    mask = np.zeros((5, 7), bool)
    mask[corner] = True
    index = np.ravel_multi_index((corner[0] % 5, corner[1] % 7), mask.shape)
    assert rle_encode(mask) == f"{index + 1} 1"
    assert np.array_equal(rle_decode(rle_encode(mask), mask.shape), mask)


def test_row_major_order_without_transpose():
    mask = np.zeros((3, 4), bool)
    mask[0, 1:3] = True
    mask[1, 3] = True
    mask[2, 0] = True
    assert rle_encode(mask) == "2 2 8 2"


def test_non_zero_values_are_car():
    assert rle_encode(np.array([[0, 255, 1, 0]], np.uint8)) == "2 2"


def test_top_level_names_are_the_data_module():
    assert maskingnet.rle_encode is rle_encode and maskingnet.rle_decode is rle_decode


@pytest.mark.parametrize(
    ("rle", "message"),
    [
        ("1 2 3", "odd number"),
        ("1 x", "'x' is not"),
        ("1.5 2", "'1.5' is not"),
        ("-1 2", "'-1' is not"),
        ("0 2", "1-indexed"),
        ("3 0", "length 0"),
        ("99 5", "past the last pixel"),
        ("5 3 6 1", "overlaps"),
        ("5 3 1 1", "comes before"),
        ("1 123456789012345678901234567890", "too large"),
        ("1\u00a02", "is not"),
    ],
)
def test_bad_rle_raises_a_clear_value_error(rle, message):
    with pytest.raises(ValueError, match=message):
        rle_decode(rle, (10, 10))


def test_adjacent_runs_decode():
    assert rle_decode("1 2 3 2", (1, 5)).tolist() == [[True, True, True, True, False]]


@pytest.mark.parametrize("shape", [(0, 3), (2,), (2, 2.5)])
def test_bad_shape_raises(shape):
    with pytest.raises(ValueError, match="shape"):
        rle_decode("", shape)


def test_every_real_mask_round_trips_exactly(real_sample):
    paths = sorted((real_sample / "train_masks").glob("*.gif"))
    assert len(paths) == 400
    for path in paths:
        with Image.open(path) as gif:
            mask = np.asarray(gif) != 0
        assert np.array_equal(rle_decode(rle_encode(mask), mask.shape), mask), path.name
