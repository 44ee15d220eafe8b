"""Dice, the Carvana score, and the pieces of it that training and evaluation accumulate.

Dice of one image is ``2|X∩Y| / (|X| + |Y|)`` with X the predicted car pixels and Y the true ones, defined as
1 when both are empty (thesis, Kaggle Carvana). The score of a set is the mean over images, not a pooled Dice.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


def dice(pred: np.ndarray, truth: np.ndarray) -> float:
    """Dice of two boolean masks of the same shape; 1.0 when both are empty."""
    pred = np.asarray(pred, dtype=bool)
    truth = np.asarray(truth, dtype=bool)
    if pred.shape != truth.shape:
        raise ValueError(f"dice: shapes differ, prediction {pred.shape} vs truth {truth.shape}")
    total = int(np.count_nonzero(pred)) + int(np.count_nonzero(truth))
    if total == 0:
        return 1.0
    return 2.0 * int(np.count_nonzero(pred & truth)) / total


@dataclass(frozen=True)
class MaskComparison:
    """Pixel counts of one predicted mask against its truth."""

    truth_pixels: int
    pred_pixels: int
    false_positives: int
    false_negatives: int

    @property
    def intersection(self) -> int:
        return self.pred_pixels - self.false_positives

    @property
    def error_pixels(self) -> int:
        return self.false_positives + self.false_negatives

    @property
    def dice(self) -> float:
        total = self.truth_pixels + self.pred_pixels
        return 1.0 if total == 0 else 2.0 * self.intersection / total


def compare_masks(pred: np.ndarray, truth: np.ndarray) -> MaskComparison:
    """Counts behind the Dice of one image (and the error overlay of the worst-cases picture)."""
    pred = np.asarray(pred, dtype=bool)
    truth = np.asarray(truth, dtype=bool)
    if pred.shape != truth.shape:
        raise ValueError(f"compare_masks: shapes differ, prediction {pred.shape} vs truth {truth.shape}")
    return MaskComparison(
        truth_pixels=int(np.count_nonzero(truth)),
        pred_pixels=int(np.count_nonzero(pred)),
        false_positives=int(np.count_nonzero(pred & ~truth)),
        false_negatives=int(np.count_nonzero(~pred & truth)),
    )


def batch_dice(pred: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """Per-image Dice of boolean masks ``(B, H, W)`` as a float64 tensor ``(B,)``; 1 where both are empty."""
    pred = pred.bool().flatten(1)
    truth = truth.bool().flatten(1)
    intersection = (pred & truth).sum(1, dtype=torch.float64)
    total = pred.sum(1, dtype=torch.float64) + truth.sum(1, dtype=torch.float64)
    both_empty = total == 0
    return torch.where(both_empty, torch.ones_like(total), 2.0 * intersection / total.clamp_min(1.0))


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """``1 - soft Dice`` of the car class (class 1) per image, averaged over the batch.

    ``logits`` is ``(B, C, H, W)``, ``target`` the class index map ``(B, H, W)``. ``eps`` smooths images where
    the car is absent so their gradient stays finite.
    """
    prob = torch.softmax(logits.float(), dim=1)[:, 1].flatten(1)
    car = (target == 1).float().flatten(1)
    intersection = (prob * car).sum(1)
    total = prob.sum(1) + car.sum(1)
    return (1.0 - (2.0 * intersection + eps) / (total + eps)).mean()


def one_minus_dice_pixels(mean_dice: float, mean_car_pixels: float) -> float:
    """The thesis's reading of 1-Dice as pixels per image: ``(1 - Dice) x car pixels``.

    The thesis: "0.01% DSC difference/image ≈ 60 pixels difference/image (the car approximately occupied
    600,000 pixels in each image)".
    """
    return (1.0 - mean_dice) * mean_car_pixels
