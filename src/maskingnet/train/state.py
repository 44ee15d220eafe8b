"""What a run needs to go on exactly where it stopped: its progress, its optimizer and RNG states, and the
file that holds them all (``checkpoints/last.state.pt``).

Exact resume rests on two rules. The state file is the single commit point of an epoch: it carries the
weights too, so a kill between two writes cannot pair weights of one epoch with an optimizer of another.
And every random choice of an epoch (data order, augmentation, DataLoader worker seeds) is a function of
``(seed, epoch, rank)`` alone (:func:`epoch_seed`), not of the global RNG's history. So on CPU a killed and
resumed run reproduces an uninterrupted one exactly.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from maskingnet.utils import atomic_write

from .config import TrainConfig, TrainError

STATE_FILE = "last.state.pt"
STATE_KEYS = (
    "epoch",
    "model",
    "optimizer",
    "scheduler",
    "scaler",
    "rng",
    "history",
    "best_dice",
    "best_epoch",
    "steps",
)


def epoch_seed(seed: int, epoch: int, rank: int = 0) -> int:
    """One 63-bit seed per (seed, epoch, rank): everything random in an epoch derives from it."""
    return int(
        np.random.SeedSequence([seed, epoch, rank])
        .generate_state(2, dtype=np.uint32)
        .astype(np.uint64)
        .dot(np.array([1 << 31, 1], dtype=np.uint64))
    )


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (1 << 32))
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    """Global RNG states in types that ``torch.load(weights_only=True)`` accepts."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, python_state, gauss = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached": float(cached),
        },
        "python": {"version": version, "state": list(python_state), "gauss": gauss},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(
        (n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"])
    )
    p = state["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


@dataclass
class RunProgress:
    """How far a run has come: one metrics row per finished epoch, the best epoch, the optimizer steps."""

    history: list[dict[str, Any]] = field(default_factory=list)
    best_dice: float = -math.inf
    best_epoch: int = 0
    steps: int = 0

    @property
    def last_epoch(self) -> int:
        """The last finished epoch (0 before the first)."""
        return self.history[-1]["epoch"] if self.history else 0

    def add(self, row: dict[str, Any]) -> bool:
        """Record one epoch's metrics row; True when its val Dice beats every earlier epoch's."""
        self.history.append(row)
        improved = row["val_dice"] > self.best_dice
        if improved:
            self.best_dice, self.best_epoch = row["val_dice"], row["epoch"]
        return improved


@dataclass
class Optimization:
    """What steps the weights: Adam, its StepLR schedule and the gradient scaler (on for fp16 only)."""

    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.StepLR
    scaler: torch.amp.GradScaler

    @classmethod
    def for_model(
        cls, model: nn.Module, config: TrainConfig, device: torch.device, precision: str
    ) -> Optimization:
        optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, betas=config.betas)
        scheduler = torch.optim.lr_scheduler.StepLR(
            optimizer, step_size=config.lr_step, gamma=config.lr_gamma
        )
        return cls(optimizer, scheduler, torch.amp.GradScaler(device.type, enabled=precision == "fp16"))

    @property
    def lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    def state_dicts(self) -> dict[str, Any]:
        return {
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else {},
        }

    def load_state_dicts(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])


class ResumableState:
    """The state file: written after every epoch, read back by ``--resume``.

    ``torch.load(weights_only=True)`` reads it (tensors, numbers, strings, lists and dicts only). A file
    that cannot be read or does not fit the run stops the resume with one line that says what to do
    (``restart_hint``), never a traceback.
    """

    def __init__(self, path: Path, restart_hint: str) -> None:
        self.path = path
        self.restart_hint = restart_hint

    def exists(self) -> bool:
        return self.path.exists()

    def save(self, epoch: int, model: nn.Module, optimization: Optimization, progress: RunProgress) -> None:
        state = {
            "epoch": epoch,
            "model": model.state_dict(),
            **optimization.state_dicts(),
            "rng": rng_state(),
            "history": progress.history,
            "best_dice": progress.best_dice,
            "best_epoch": progress.best_epoch,
            "steps": progress.steps,
        }
        with atomic_write(self.path) as handle:
            torch.save(state, handle)

    def load(self) -> dict[str, Any]:
        try:
            state = torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception as error:  # noqa: BLE001 - whatever the damage, the user gets one line
            raise self._unusable(f"cannot be read ({_first_line(error)})") from None
        missing = [key for key in STATE_KEYS if key not in state] if isinstance(state, dict) else STATE_KEYS
        if missing:
            raise self._unusable(f"is not a complete training state (no {', '.join(missing)})")
        return state

    def restore(self, state: dict[str, Any], model: nn.Module, optimization: Optimization) -> RunProgress:
        """Put ``model``, ``optimization`` and the global RNGs back to ``state``; the progress it records."""
        try:
            model.load_state_dict(state["model"])
            optimization.load_state_dicts(state)
            set_rng_state(state["rng"])
            return RunProgress(
                history=list(state["history"]),
                best_dice=float(state["best_dice"]),
                best_epoch=int(state["best_epoch"]),
                steps=int(state["steps"]),
            )
        except (RuntimeError, KeyError, TypeError, ValueError, IndexError, AttributeError) as error:
            raise self._unusable(f"does not fit this run ({_first_line(error)})") from None

    def _unusable(self, problem: str) -> TrainError:
        return TrainError(f"{self.path}: {problem}, so the run cannot resume; {self.restart_hint}")


def _first_line(error: BaseException) -> str:
    """The first sentence of ``error``'s message (torch's can run to a paragraph), at most 160 characters."""
    lines = str(error).strip().splitlines()
    line = lines[0].split(". ")[0].rstrip(".") if lines else type(error).__name__
    return line if len(line) <= 160 else line[:157] + "..."
