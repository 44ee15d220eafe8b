"""Which photos a run trains and validates on, and at which size."""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from maskingnet.data import carvana
from maskingnet.data.io import BadInputError, image_size

from .config import TrainConfig, TrainError


@dataclass
class Split:
    """Which records train and which validate, with enough recorded to rebuild it without the code."""

    method: str
    train: list
    val: list

    def describe(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "train_cars": sorted({r.car_id for r in self.train}),
            "val_cars": sorted({r.car_id for r in self.val}),
            "train_ids": sorted(r.id for r in self.train),
            "val_ids": sorted(r.id for r in self.val),
        }


def scan_records(data: str | os.PathLike, show_problems: bool = True) -> tuple[list, int]:
    """The labelled records under ``data`` and how many files were skipped (each reported on stderr)."""
    try:
        result = carvana.scan(data)
    except BadInputError as err:
        raise TrainError(str(err)) from None
    if show_problems:
        for problem in result.problems:
            print(problem, file=sys.stderr)
    labelled = [r for r in result.records if r.mask_path is not None or r.rle is not None]
    if not labelled:
        raise TrainError(f"{data}: no images with masks found (Carvana or images/ + masks/ layout)")
    return labelled, len(result.problems)


def make_split(records: list, config: TrainConfig) -> Split:
    """A new run's split: the cars listed in ``val_cars``, k-fold by car, the thesis's, or a share of the
    cars held out."""
    if config.val_cars is not None:
        train, val = listed_val_cars(records, config.val_cars, config.data)
        method = f"car list ({len(config.val_cars)} cars)"
    elif config.fold is not None:
        train, val = carvana.kfold_by_car(records, config.folds, config.fold, seed=config.seed)
        method = f"car-fold {config.fold}/{config.folds}"
    elif config.split == "thesis":
        train, val = carvana.thesis_split(records, seed=config.seed)
        method = "thesis"
    else:
        train, val = carvana.split_by_car(records, val_fraction=config.val_fraction, seed=config.seed)
        method = f"car {config.val_fraction:g}"
    if not train or not val:
        raise TrainError(f"{config.data}: split left {len(train)} train / {len(val)} val images; need both")
    return Split(method, list(train), list(val))


def listed_val_cars(records: list, val_cars: tuple[str, ...], data: str) -> tuple[list, list]:
    """(train, val) with exactly the cars ``val_cars`` in val; a listed car missing from the data is an
    error, since a val set quietly smaller than asked for is not comparable between runs."""
    found = {record.car_id for record in records}
    missing = [car for car in val_cars if car not in found]
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise TrainError(f"{data}: val cars not in the data: {shown}")
    wanted = set(val_cars)
    return [r for r in records if r.car_id not in wanted], [r for r in records if r.car_id in wanted]


def read_car_list(value: str) -> tuple[str, ...]:
    """Car ids from ``--val-cars``: comma-separated, or ``@FILE`` with ids separated by white space or
    commas (``#`` starts a comment)."""
    if value.startswith("@"):
        path = Path(value[1:])
        try:
            text = path.read_text()
        except OSError as err:
            raise TrainError(f"{path}: cannot read the car list ({err.strerror or err})") from None
        text = "\n".join(line.split("#", 1)[0] for line in text.splitlines())
    else:
        text = value
    cars = tuple(car for car in re.split(r"[\s,]+", text) if car)
    if not cars:
        raise TrainError(f"--val-cars {value}: no car ids")
    return cars


def recorded_split(records: list, stored: dict[str, Any]) -> Split:
    """The split a run recorded, applied to the records found now (for resume)."""
    train_ids, val_ids = set(stored["train_ids"]), set(stored["val_ids"])
    return Split(
        stored["method"], [r for r in records if r.id in train_ids], [r for r in records if r.id in val_ids]
    )


def scaled_size(records: list, scale: float) -> tuple[int, int]:
    """The training size for ``--scale``: the most common photo size of ``records`` times ``scale``."""
    if not records:
        raise TrainError("--scale needs photos, and the data folder has none")
    sizes = [record.size or image_size(record.image_path) for record in records[:64]]
    width, height = max(set(sizes), key=sizes.count)
    return max(1, round(width * scale)), max(1, round(height * scale))


def check_crop(crop: tuple[int, int] | None, size: tuple[int, int]) -> None:
    """``--crop`` must fit inside the photos at the training size."""
    if crop is not None and (crop[0] > size[0] or crop[1] > size[1]):
        raise TrainError(f"crop {crop[0]}x{crop[1]} is larger than the photos at {size[0]}x{size[1]}")
