"""The run folder: what a run writes (only rank 0, every file atomically) and the checks that keep a new or
resumed run from overwriting what an earlier one left there."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from maskingnet import __version__
from maskingnet.models import CheckpointError, read_config, save_model
from maskingnet.models.refiner import Refiner
from maskingnet.runtime import DistContext
from maskingnet.train.plots import plot_curves
from maskingnet.utils import atomic_write, write_json

from .config import TrainConfig, TrainError, read_run_config
from .split import Split
from .state import STATE_FILE


class RunFolder:
    """``config.json``, ``metrics.jsonl``, ``curves.png`` and ``checkpoints/`` of the run in ``out``."""

    def __init__(self, out: str | os.PathLike) -> None:
        self.out = Path(out)
        self.checkpoints = self.out / "checkpoints"
        self.best = self.checkpoints / "best.safetensors"
        self.last = self.checkpoints / "last.safetensors"
        self.state_file = self.checkpoints / STATE_FILE

    def restart_hint(self) -> str:
        """What to do with a run that cannot resume: go on from its weights in another folder."""
        return f"to go on from its weights, start a new run with --init-from {self.last} --out NEW_FOLDER"

    def read_config(self) -> dict[str, Any]:
        return read_run_config(self.out)

    def write_config(self, content: dict[str, Any]) -> None:
        write_json(self.out / "config.json", content)

    def write_metrics(self, history: list[dict[str, Any]]) -> None:
        """``metrics.jsonl`` (one row per epoch) and ``curves.png`` from the whole history."""
        with atomic_write(self.out / "metrics.jsonl", "w") as handle:
            for row in history:
                handle.write(json.dumps(row) + "\n")
        plot_curves(history, self.out / "curves.png")

    def save_weights(
        self, model: nn.Module, meta: dict[str, Any], refiner: Refiner | None, best: bool
    ) -> None:
        """``last.safetensors``, and ``best.safetensors`` too when this epoch is the best."""
        if best:
            save_model(model, self.best, meta=meta, refiner=refiner)
        save_model(model, self.last, meta=meta, refiner=refiner)

    def checkpoint_record(self, path: Path) -> tuple[int, float] | None:
        """(epoch, val Dice) from a checkpoint's meta; None when it is missing, unreadable or says neither."""
        try:
            _, meta = read_config(path)
        except (CheckpointError, OSError):
            return None
        epoch, dice = meta.get("epoch"), meta.get("val_dice")
        if not isinstance(epoch, int) or not isinstance(dice, (int, float)):
            return None
        return epoch, float(dice)

    def check_checkpoints_without_state(self) -> bool:
        """Refuse to start over checkpoints of a finished epoch when the state file is gone.

        A kill between the weights and the state file of the very first epoch leaves checkpoints of an
        epoch that never committed; they are redone, and this returns True so the caller can say so.
        """
        found = [path for path in (self.best, self.last) if path.exists()]
        records = [self.checkpoint_record(path) for path in found]
        if all(record is not None and record[0] <= 1 for record in records):
            return bool(found)
        raise TrainError(
            f"{self.out}: has checkpoints but no {self.state_file.name} to resume from, and a new run here "
            f"would overwrite them; {self.restart_hint()}, or move {self.checkpoints} away to start over"
        )


def checkpoint_meta(config: TrainConfig, split: Split, out: Path, epoch: int, val_dice: float) -> dict:
    """What a checkpoint records about the run that wrote it (``model.meta`` when loaded)."""
    described = split.describe()
    return {
        "input_size": list(config.size),
        "train_crop": list(config.crop) if config.crop else None,
        "epoch": epoch,
        "val_dice": val_dice,
        "data": str(config.data),
        "split": {
            "method": described["method"],
            "val_cars": described["val_cars"],
            "train_cars": described["train_cars"],
        },
        "init_from": config.init_from,
        "run": str(out),
        "model": config.model,
        "width": config.width,
    }


def run_record(
    config: TrainConfig,
    split: Split,
    model: nn.Module,
    device: torch.device,
    precision: str,
    ctx: DistContext,
) -> dict[str, Any]:
    """The content of ``config.json``: every setting, the split, where it ran and the versions."""
    return {
        "settings": config.to_dict(),
        "split": split.describe(),
        "images": {"train": len(split.train), "val": len(split.val)},
        "device": str(device),
        "precision": precision,
        "world_size": ctx.world_size,
        "params": sum(p.numel() for p in model.parameters()),
        "versions": versions(),
    }


def versions() -> dict[str, str]:
    return {
        "maskingnet": __version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "cuda": str(torch.version.cuda),
        "platform": platform.platform(),
    }
