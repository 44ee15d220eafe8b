"""Evaluation: mean Dice at the original resolution, per-image numbers and the worst cases as a picture.

The photos go through the one inference pipeline (:func:`maskingnet.inference.run`), exactly as ``predict``
runs them: the model sees each photo at its input size, its car probabilities are taken to the photo's
original size (bilinear, then the edge stage when there is one), thresholded there, and compared with the
original mask by a :class:`~maskingnet.inference.DiceSink` - the way Kaggle scored Carvana. The checkpoint
may be a ``.safetensors`` file or an exported ``.onnx`` model.
``split="val"`` evaluates exactly the images a training run held out (recorded in its ``config.json``, or the
val cars in the checkpoint's meta), so evaluation never touches training cars.
"""

from __future__ import annotations

import csv
import heapq
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from maskingnet.data.carvana import load_mask
from maskingnet.data.io import read_image
from maskingnet.data.metrics import MaskComparison, one_minus_dice_pixels
from maskingnet.errors import MaskingnetError
from maskingnet.inference import DiceSink, ModelSettings, PostProcess, Predictor, Scored, run
from maskingnet.models import count_params
from maskingnet.train import scan_records
from maskingnet.train.plots import GalleryRow, shrink_masks, worst_cases_picture
from maskingnet.utils import atomic_write, write_json
from maskingnet.utils.progress import progress_bar

SPLITS = ("val", "all")
PER_IMAGE_FIELDS = (
    "id",
    "car_id",
    "dice",
    "truth_pixels",
    "pred_pixels",
    "false_positives",
    "false_negatives",
    "error_pixels",
    "height",
    "width",
)


class EvaluateError(MaskingnetError, RuntimeError):
    """An evaluation that cannot run; the message is one line for the user."""


@dataclass
class ImageResult:
    record: Any
    comparison: MaskComparison
    height: int
    width: int

    def row(self) -> dict[str, Any]:
        c = self.comparison
        return {
            "id": self.record.id,
            "car_id": self.record.car_id,
            "dice": f"{c.dice:.6f}",
            "truth_pixels": c.truth_pixels,
            "pred_pixels": c.pred_pixels,
            "false_positives": c.false_positives,
            "false_negatives": c.false_negatives,
            "error_pixels": c.error_pixels,
            "height": self.height,
            "width": self.width,
        }


def run_folder_of(checkpoint: Path) -> Path | None:
    """``RUN`` for ``RUN/checkpoints/x.safetensors`` when ``RUN/config.json`` exists."""
    for folder in (checkpoint.parent.parent, checkpoint.parent):
        if (folder / "config.json").is_file():
            return folder
    return None


def select_records(records: list, split: str, checkpoint: Path, meta: dict[str, Any]) -> list:
    """All records, or the val images of the run that wrote ``checkpoint``."""
    if split == "all":
        return records
    run = run_folder_of(checkpoint)
    if run is not None:
        stored = json.loads((run / "config.json").read_text()).get("split", {})
        if stored.get("val_ids"):
            val_ids = set(stored["val_ids"])
            chosen = [r for r in records if r.id in val_ids]
            if chosen:
                return chosen
    val_cars = set((meta.get("split") or {}).get("val_cars") or [])
    if not val_cars and run is None:
        raise EvaluateError(
            f"{checkpoint}: no recorded val split (no run config.json, no val cars in its meta); "
            "use --split all"
        )
    chosen = [r for r in records if r.car_id in val_cars]
    if not chosen:
        raise EvaluateError(f"{checkpoint}: none of its run's val images are in this data; use --split all")
    return chosen


def default_out(checkpoint: Path, split: str, tta: bool) -> Path:
    name = f"eval-{checkpoint.stem}-{split}{'-tta' if tta else ''}"
    run = run_folder_of(checkpoint)
    return (run if run is not None else checkpoint.parent) / name


class WorstCases:
    """The k lowest-Dice images so far, their masks already shrunk to panel size."""

    def __init__(self, k: int, panel_width: int) -> None:
        self.k = k
        self.panel_width = panel_width
        self._heap: list[tuple[float, int, dict[str, np.ndarray], ImageResult]] = []

    def offer(self, result: ImageResult, truth: np.ndarray, pred: np.ndarray, order: int) -> None:
        key = -result.comparison.dice
        if len(self._heap) < self.k:
            heapq.heappush(self._heap, (key, order, shrink_masks(truth, pred, self.panel_width), result))
        elif key > self._heap[0][0]:
            heapq.heapreplace(self._heap, (key, order, shrink_masks(truth, pred, self.panel_width), result))

    def rows(self) -> list:
        rows = []
        for _, _, masks, result in sorted(self._heap, key=lambda entry: (-entry[0], entry[1])):
            height, width = masks["truth"].shape
            image = read_image(result.record.image_path, target_size=(width, height)).resize((width, height))
            comparison = result.comparison
            label = f"{result.record.id}  Dice {comparison.dice:.5f}  errors {comparison.error_pixels} px"
            rows.append(
                GalleryRow(
                    image, masks["truth"], masks["pred"], masks["false_pos"], masks["false_neg"], label
                )
            )
        return rows


def evaluate(
    model: ModelSettings | str | os.PathLike,
    data: str | os.PathLike,
    split: str = "val",
    out: str | os.PathLike | None = None,
    *,
    batch_size: int = 4,
    workers: int | None = None,
    threshold: float = 0.5,
    worst: int = 8,
    panel_width: int = 480,
    progress: bool = True,
    post: PostProcess | None = None,
) -> dict[str, Any]:
    """Evaluate a model (its :class:`ModelSettings`, or just a ``.safetensors`` or ``.onnx`` file) on
    ``data``; writes ``summary.json``, ``per_image.csv`` and ``worst.png`` to ``out`` (default:
    ``RUN/eval-<checkpoint>-<split>`` beside the run) and returns the summary.

    Images that cannot be read are reported on stderr one line each and counted in ``bad_inputs``.
    """
    settings = model if isinstance(model, ModelSettings) else ModelSettings(model)
    if split not in SPLITS:
        raise EvaluateError(f"split must be one of {', '.join(SPLITS)} (got {split!r})")
    checkpoint = Path(settings.checkpoint)
    started = time.perf_counter()
    predictor = Predictor.from_settings(settings, batch_size, post)
    if settings.size is None and predictor.backend.spec.size is None:
        raise EvaluateError(f"{checkpoint}: no input_size in its meta; pass --size")
    records, bad_inputs = scan_records(data)
    records = select_records(records, split, checkpoint, predictor.backend.meta)
    out = Path(out) if out is not None else default_out(checkpoint, split, settings.tta)
    worst_cases = WorstCases(worst, panel_width)
    results, failed = score_records(records, predictor, threshold, worst_cases, workers, progress)
    bad_inputs += failed
    if not results:
        raise EvaluateError(f"{data}: no image could be evaluated ({bad_inputs} unreadable)")
    seconds = time.perf_counter() - started
    summary = summarise(
        results,
        predictor.backend,
        count_params(predictor.backend.config),
        checkpoint,
        data,
        split,
        settings.tta,
        predictor.size,
        seconds,
        bad_inputs,
        threshold,
        out,
    )
    write_outputs(out, summary, results, worst_cases.rows())
    return summary


def score_records(
    records: list,
    predictor: Predictor,
    threshold: float,
    worst_cases: WorstCases,
    workers: int | None,
    progress: bool,
) -> tuple[list[ImageResult], int]:
    """Every record's Dice against its mask, the worst offered to ``worst_cases``; and how many photos
    could not be read."""
    results: list[ImageResult] = []

    def keep(scored: Scored) -> None:
        results.append(ImageResult(records[scored.index], scored.comparison, *scored.truth.shape))
        worst_cases.offer(results[-1], scored.truth, scored.pred, len(results))

    paths = [record.image_path for record in records]
    sink = DiceSink(lambda index: load_mask(records[index]), keep, threshold, paths, report=_say)
    with progress_bar(len(records), desc="evaluate", enabled=progress) as bar:
        run(paths, predictor, sink, batch_size=predictor.batch_size, workers=workers, tick=bar.update)
    return results, sink.failed


def _say(line: str) -> None:
    print(line, file=sys.stderr)


def summarise(
    results: list[ImageResult],
    backend,
    params: int | None,
    checkpoint: Path,
    data,
    split: str,
    tta: bool,
    input_size: tuple[int, int],
    seconds: float,
    bad_inputs: int,
    threshold: float,
    out: Path,
) -> dict[str, Any]:
    dices = np.array([r.comparison.dice for r in results], dtype=np.float64)
    mean_dice = float(dices.mean())
    car_pixels = float(np.mean([r.comparison.truth_pixels for r in results]))
    config = backend.config
    return {
        "mean_dice": mean_dice,
        "one_minus_dice_pixels_per_image": one_minus_dice_pixels(mean_dice, car_pixels),
        "error_pixels_per_image": float(np.mean([r.comparison.error_pixels for r in results])),
        "car_pixels_per_image": car_pixels,
        "min_dice": float(dices.min()),
        "images": len(results),
        "bad_inputs": bad_inputs,
        "model": getattr(config, "name", None),
        "width": getattr(config, "width", None),
        "params": params,
        "size": list(input_size),
        "original_sizes": sorted({f"{r.width}x{r.height}" for r in results}),
        "split": split,
        "tta": tta,
        "threshold": threshold,
        "epoch": backend.meta.get("epoch"),
        "checkpoint": str(checkpoint),
        "data": str(data),
        "device": str(backend.device),
        "precision": backend.precision,
        "seconds": seconds,
        "images_per_s": len(results) / max(seconds, 1e-9),
        "out": str(out),
    }


def write_outputs(out: Path, summary: dict[str, Any], results: list[ImageResult], worst_rows: list) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with atomic_write(out / "per_image.csv", "w") as handle:
        writer = csv.DictWriter(handle, fieldnames=PER_IMAGE_FIELDS)
        writer.writeheader()
        for result in results:
            writer.writerow(result.row())
    worst_cases_picture(worst_rows, out / "worst.png")
    write_json(out / "summary.json", summary)
