"""The settings of a training run (:class:`TrainConfig`, the thesis's recipe by default) and its errors.

Plain Python with no torch, so that the command line can show these defaults in its help at once.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from maskingnet.errors import MaskingnetError

LOSSES = ("ce", "ce+dice")
SPLITS = ("car", "thesis")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
# Settings that may change when a run is resumed; everything else must match the stored run.
RESUMABLE_OVERRIDES = (
    "epochs",
    "workers",
    "threads",
    "device",
    "precision",
    "progress",
    "max_steps",
    "resume",
    "compile",
    "data",
    "out",
    "cache",
)


class TrainError(MaskingnetError, RuntimeError):
    """A run that cannot start or go on; the message is one line for the user."""


class NonFiniteLossError(TrainError):
    """The loss became NaN or inf; the run stopped and its last good checkpoint is kept."""


@dataclass
class TrainConfig:
    """Every setting of a training run. The defaults are the thesis's recipe."""

    data: str = ""
    out: str = "runs/train"
    model: str = "maskingnet"
    width: float = 1.0
    epochs: int = 250
    batch_size: int = 4
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.999)
    lr_step: int = 40
    lr_gamma: float = 0.5
    size: tuple[int, int] = (512, 512)
    scale: float | None = None
    crop: tuple[int, int] | None = None
    loss: str = "ce"
    augment: bool = False
    vgg_weights: str | None = None
    init_from: str | None = None
    split: str = "car"
    val_fraction: float = 0.2
    val_cars: tuple[str, ...] | None = None
    fold: int | None = None
    folds: int = 5
    seed: int = 0
    workers: int | None = None
    threads: int | None = None
    device: str = "auto"
    precision: str = "auto"
    channels_last: bool = False
    compile: bool = False
    accumulate: int = 1
    max_steps: int | None = None
    resume: bool = False
    progress: bool = True
    cache: str | None = None
    model_options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.size = tuple(int(v) for v in self.size)  # type: ignore[assignment]
        if self.crop is not None:
            self.crop = tuple(int(v) for v in self.crop)  # type: ignore[assignment]
        self.betas = tuple(float(v) for v in self.betas)  # type: ignore[assignment]
        if self.val_cars is not None:
            self.val_cars = tuple(sorted(set(self.val_cars)))  # type: ignore[assignment]
        problems = self.problems()
        if problems:
            raise ValueError("; ".join(problems))

    def problems(self) -> list[str]:
        checks = [
            (self.epochs >= 1, f"epochs must be >= 1 (got {self.epochs})"),
            (self.batch_size >= 1, f"batch size must be >= 1 (got {self.batch_size})"),
            (self.lr > 0, f"lr must be > 0 (got {self.lr})"),
            (self.lr_step >= 1, f"lr step must be >= 1 (got {self.lr_step})"),
            (len(self.size) == 2 and min(self.size) >= 1, f"size must be (W, H) >= 1 (got {self.size})"),
            (self.scale is None or 0 < self.scale <= 1, f"scale must be in (0, 1] (got {self.scale})"),
            (
                self.crop is None or (len(self.crop) == 2 and min(self.crop) >= 1),
                f"crop must be (W, H) >= 1 (got {self.crop})",
            ),
            (self.width > 0, f"width must be > 0 (got {self.width})"),
            (self.loss in LOSSES, f"loss must be one of {', '.join(LOSSES)} (got {self.loss!r})"),
            (self.split in SPLITS, f"split must be one of {', '.join(SPLITS)} (got {self.split!r})"),
            (0 < self.val_fraction < 1, f"val fraction must be in (0, 1) (got {self.val_fraction})"),
            (self.fold is None or 0 <= self.fold < self.folds, f"fold must be in 0..{self.folds - 1}"),
            (self.precision in PRECISIONS, f"precision must be one of {', '.join(PRECISIONS)}"),
            (self.accumulate >= 1, f"accumulate must be >= 1 (got {self.accumulate})"),
            (self.max_steps is None or self.max_steps >= 1, "max steps must be >= 1"),
            (not (self.init_from and self.vgg_weights), "--init-from and --vgg-weights exclude each other"),
            (self.val_cars is None or len(self.val_cars) >= 1, "val cars: the list is empty"),
            (self.val_cars is None or self.fold is None, "--val-cars and --fold exclude each other"),
            (self.workers is None or self.workers >= 0, "workers must be >= 0"),
            (self.threads is None or self.threads >= 1, "threads must be >= 1"),
        ]
        return [message for ok, message in checks if not ok]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def changes_that_block_resume(self, stored: TrainConfig) -> list[str]:
        """``"name: old -> new"`` for each setting that differs from ``stored`` and may not change on
        resume."""
        old, new = stored.to_dict(), self.to_dict()
        return [
            f"{key}: {old[key]!r} -> {new[key]!r}"
            for key in new
            if key not in RESUMABLE_OVERRIDES and new[key] != old[key]
        ]

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})

    @classmethod
    def from_run(cls, run: str | os.PathLike, **overrides: Any) -> TrainConfig:
        """The settings stored in ``run/config.json`` with ``overrides`` applied (for ``--resume``)."""
        stored = read_run_config(run)["settings"]
        return cls.from_dict({**stored, "out": str(run), **overrides})


def read_run_config(out: str | os.PathLike) -> dict[str, Any]:
    """The ``config.json`` of the run folder ``out`` (settings, split, versions...)."""
    path = Path(out) / "config.json"
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise TrainError(f"{path}: not found (is {out} a training run folder?)") from None
    except json.JSONDecodeError as err:
        raise TrainError(f"{path}: not valid JSON ({err})") from None
