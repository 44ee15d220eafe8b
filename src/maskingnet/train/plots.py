"""Pictures of a run: the training curves and the worst-cases gallery of an evaluation."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from PIL import Image, ImageDraw, ImageFont

from maskingnet.utils import atomic_save

FALSE_POSITIVE = (255, 40, 40)
FALSE_NEGATIVE = (40, 120, 255)
PANEL_TITLES = ("image", "truth", "prediction", "error (red: extra, blue: missed)")


def plot_curves(history: Sequence[dict], path: str | os.PathLike) -> None:
    """Loss (train and val) and val Dice per epoch, side by side, written atomically as PNG."""
    epochs = [row["epoch"] for row in history]
    figure = Figure(figsize=(10, 4), dpi=100)
    loss_axes, dice_axes = figure.subplots(1, 2)
    loss_axes.plot(epochs, [row["train_loss"] for row in history], "o-", label="train")
    loss_axes.plot(epochs, [row["val_loss"] for row in history], "o-", label="val")
    loss_axes.set(xlabel="epoch", ylabel="loss", title="Loss", yscale="log")
    loss_axes.legend()
    dice_axes.plot(epochs, [row["val_dice"] for row in history], "o-", color="tab:green")
    dice_axes.set(xlabel="epoch", ylabel="mean Dice", title="Validation Dice")
    for axes in (loss_axes, dice_axes):
        axes.grid(True, alpha=0.3)
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    figure.tight_layout()
    atomic_save(path, lambda tmp: figure.savefig(tmp, format="png"))


@dataclass
class GalleryRow:
    """One row of the worst-cases picture, already at panel size: photo, masks and error maps."""

    image: Image.Image
    truth: np.ndarray
    pred: np.ndarray
    false_pos: np.ndarray
    false_neg: np.ndarray
    label: str


def panel_size(width: int, height: int, panel_width: int) -> tuple[int, int]:
    scale = panel_width / width
    return max(1, round(width * scale)), max(1, round(height * scale))


def _resize_mask(mask: np.ndarray, size: tuple[int, int], resample: int) -> np.ndarray:
    return np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).resize(size, resample)) > 0


def shrink_masks(truth: np.ndarray, pred: np.ndarray, panel_width: int) -> dict[str, np.ndarray]:
    """Full-resolution masks brought to panel size (shrunk or, for tiny images, enlarged).

    Masks by nearest neighbour (they stay binary); error maps so that a shrunk pixel is marked when any pixel
    it covers is wrong, else thin boundary errors would vanish.
    """
    height, width = truth.shape
    size = panel_size(width, height, panel_width)
    nearest = Image.Resampling.NEAREST
    return {
        "truth": _resize_mask(truth, size, nearest),
        "pred": _resize_mask(pred, size, nearest),
        "false_pos": _resize_mask(pred & ~truth, size, Image.Resampling.BOX),
        "false_neg": _resize_mask(~pred & truth, size, Image.Resampling.BOX),
    }


def error_overlay(image: Image.Image, false_pos: np.ndarray, false_neg: np.ndarray) -> Image.Image:
    """The photo dimmed, extra car pixels in red, missed car pixels in blue."""
    pixels = (np.asarray(image.convert("RGB"), dtype=np.float32) * 0.45).astype(np.uint8)
    pixels[false_pos] = FALSE_POSITIVE
    pixels[false_neg] = FALSE_NEGATIVE
    return Image.fromarray(pixels)


def _mask_image(mask: np.ndarray) -> Image.Image:
    return Image.fromarray(np.where(mask, 255, 0).astype(np.uint8)).convert("RGB")


def worst_cases_picture(rows: Sequence[GalleryRow], path: str | os.PathLike) -> None:
    """A grid, one row per image: image | truth | prediction | error overlay, with a label line above each."""
    if not rows:
        raise ValueError("worst_cases_picture: no rows to draw")
    font = ImageFont.load_default(size=14)
    label_height, gap = 20, 4
    cell_width = max(row.image.size[0] for row in rows)
    heights = [row.image.size[1] + label_height for row in rows]
    canvas = Image.new(
        "RGB", (4 * cell_width + 3 * gap, label_height + sum(heights) + gap * len(rows)), "white"
    )
    draw = ImageDraw.Draw(canvas)
    for column, title in enumerate(PANEL_TITLES):
        draw.text((column * (cell_width + gap) + 4, 2), title, fill="black", font=font)
    top = label_height
    for row, height in zip(rows, heights, strict=True):
        draw.text((4, top + 2), row.label, fill="black", font=font)
        image = row.image.convert("RGB")
        panels = (
            image,
            _mask_image(row.truth),
            _mask_image(row.pred),
            error_overlay(image, row.false_pos, row.false_neg),
        )
        for column, panel in enumerate(panels):
            canvas.paste(panel, (column * (cell_width + gap), top + label_height))
        top += height + gap
    atomic_save(path, lambda tmp: canvas.save(tmp, format="PNG"))
