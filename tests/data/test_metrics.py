import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from maskingnet.data.metrics import batch_dice, compare_masks, dice, one_minus_dice_pixels, soft_dice_loss


def test_dice_is_one_when_both_masks_are_empty():
    empty = np.zeros((4, 5), dtype=bool)
    assert dice(empty, empty) == 1.0


def test_dice_is_zero_when_prediction_is_empty_and_truth_is_not():
    truth = np.zeros((4, 5), dtype=bool)
    truth[1, 1] = True
    assert dice(np.zeros_like(truth), truth) == 0.0


def test_dice_counts_overlap_twice_over_both_sizes():
    pred = np.array([[1, 1, 0, 0]], dtype=bool)
    truth = np.array([[0, 1, 1, 1]], dtype=bool)
    assert dice(pred, truth) == pytest.approx(2 * 1 / (2 + 3))


def test_dice_refuses_masks_of_different_shapes():
    with pytest.raises(ValueError, match="shapes differ"):
        dice(np.zeros((2, 2), bool), np.zeros((2, 3), bool))


masks = arrays(bool, (6, 7))


@settings(max_examples=50, deadline=None)
@given(masks, masks)
def test_compare_masks_agrees_with_dice_and_counts_errors(pred, truth):
    comparison = compare_masks(pred, truth)
    assert comparison.dice == pytest.approx(dice(pred, truth))
    assert comparison.error_pixels == int(np.count_nonzero(pred != truth))


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(masks, masks), min_size=1, max_size=4))
def test_batch_dice_matches_per_image_dice(pairs):
    pred = torch.from_numpy(np.stack([p for p, _ in pairs]))
    truth = torch.from_numpy(np.stack([t for _, t in pairs]))
    expected = [dice(p, t) for p, t in pairs]
    assert batch_dice(pred, truth).tolist() == pytest.approx(expected)


def test_soft_dice_loss_is_near_zero_for_confident_correct_logits():
    target = torch.zeros(1, 4, 4, dtype=torch.long)
    target[:, 1:3, 1:3] = 1
    logits = torch.stack([(target == 0).float(), (target == 1).float()], dim=1) * 50
    assert soft_dice_loss(logits, target).item() < 1e-3


def test_one_minus_dice_pixels_follows_the_thesis_reading():
    # 0.01% Dice on a 600,000-pixel car is 60 pixels.
    assert one_minus_dice_pixels(0.9999, 600_000) == pytest.approx(60)
