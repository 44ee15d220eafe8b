"""One epoch on every rank: training steps (mixed precision, gradient accumulation, DDP), then validation.

The loop changes the weights, the optimizer and ``progress.steps`` and returns the epoch's numbers; what
becomes of them (metrics, checkpoints) is the trainer's business.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from maskingnet.data.metrics import batch_dice, soft_dice_loss
from maskingnet.runtime import DistContext, cpu_bf16_supported
from maskingnet.train import distributed
from maskingnet.utils.progress import LineProgress, progress_bar

from .config import LOSSES, NonFiniteLossError, TrainConfig, TrainError
from .loaders import EpochData
from .run_folder import RunFolder
from .state import Optimization, RunProgress


def make_loss(name: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """Pixel-wise softmax cross-entropy (the thesis), optionally plus soft Dice of the car class."""
    if name == "ce":
        return lambda logits, target: F.cross_entropy(logits.float(), target)
    if name == "ce+dice":
        return lambda logits, target: F.cross_entropy(logits.float(), target) + soft_dice_loss(logits, target)
    raise ValueError(f"unknown loss {name!r}; choose one of {', '.join(LOSSES)}")


def resolve_train_precision(precision: str, device: torch.device) -> str:
    """``auto``: AMP on CUDA (bf16 where supported, else fp16 with a GradScaler); bf16 autocast on CPUs with
    native bf16 (AVX512-BF16 or AMX); fp32 elsewhere.

    On the AVX512-BF16 CPU this was measured on, a bf16-autocast training step of MaskingNet took 0.6x the
    fp32 time and a 6-epoch run reached the same val Dice (0.9675 vs 0.9650); see docs/training.md.
    """
    if precision != "auto":
        if precision == "fp16" and device.type == "cpu":
            raise TrainError("precision fp16: not supported for training on CPU; use bf16 or fp32")
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if device.type == "cpu" and cpu_bf16_supported():
        return "bf16"
    return "fp32"


def autocast_dtype(precision: str) -> torch.dtype | None:
    return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)


@dataclass
class EpochResult:
    train_loss: float
    val_loss: float
    val_dice: float
    train_images: int
    train_seconds: float
    stop_after: bool


@dataclass
class EpochLoop:
    """Trains ``net`` (``model``, perhaps wrapped in DDP or ``torch.compile``) one epoch at a time."""

    config: TrainConfig
    ctx: DistContext
    device: torch.device
    precision: str
    model: nn.Module
    net: nn.Module
    optimization: Optimization
    data: EpochData
    progress: RunProgress
    folder: RunFolder

    def __post_init__(self) -> None:
        self.amp_dtype = autocast_dtype(self.precision)
        self.loss_fn = make_loss(self.config.loss)

    def run_epoch(self, epoch: int) -> EpochResult:
        self.data.start_epoch(epoch)
        train_loss, images, seconds, stop_after = self._train(epoch)
        val_loss, val_dice = self._validate()
        return EpochResult(train_loss, val_loss, val_dice, images, seconds, stop_after)

    def _train(self, epoch: int) -> tuple[float, int, float, bool]:
        c, optimization = self.config, self.optimization
        self.net.train()
        optimization.optimizer.zero_grad(set_to_none=True)
        loss_sum, seen, started = 0.0, 0, time.perf_counter()
        bar = self._progress_bar(epoch)
        batches = len(self.data.train)
        stop_after = False
        for index, batch in enumerate(self.data.train):
            images, coords, target = self._to_device(batch)
            closes_step = (index + 1) % c.accumulate == 0 or index + 1 == batches
            with self._maybe_no_sync(not closes_step), self._autocast():
                loss = self.loss_fn(self.net(images, coords), target)
            self._stop_if_not_finite(loss, epoch, index)
            optimization.scaler.scale(loss / c.accumulate).backward()
            if closes_step:
                optimization.scaler.step(optimization.optimizer)
                optimization.scaler.update()
                optimization.optimizer.zero_grad(set_to_none=True)
                self.progress.steps += 1
            loss_sum += loss.item() * images.shape[0]
            seen += images.shape[0]
            self._show(bar, loss_sum / seen, seen / max(time.perf_counter() - started, 1e-9))
            bar.update(1)
            if closes_step and c.max_steps is not None and self.progress.steps >= c.max_steps:
                stop_after = True
                break
        bar.close()
        seconds = time.perf_counter() - started
        total_loss, total_seen = distributed.all_reduce_sum([loss_sum, seen], self.device)
        return total_loss / max(total_seen, 1), int(total_seen), seconds, stop_after

    @torch.no_grad()
    def _validate(self) -> tuple[float, float]:
        model = self.model
        model.eval()
        loss_sum = dice_sum = count = 0.0
        for batch in self.data.val:
            images, coords, target = self._to_device(batch)
            with self._autocast():
                logits = model(images, coords)
            loss_sum += self.loss_fn(logits, target).item() * images.shape[0]
            pred = logits.argmax(1) == 1
            dice_sum += batch_dice(pred, target == 1).sum().item()
            count += images.shape[0]
        loss_sum, dice_sum, count = distributed.all_reduce_sum([loss_sum, dice_sum, count], self.device)
        return loss_sum / max(count, 1), dice_sum / max(count, 1)

    def _progress_bar(self, epoch: int) -> tqdm | LineProgress:
        return progress_bar(
            len(self.data.train),
            desc=f"epoch {epoch}/{self.config.epochs}",
            unit="batch",
            enabled=self.config.progress and self.ctx.is_main,
        )

    def _show(self, bar: tqdm | LineProgress, loss: float, images_per_s: float) -> None:
        history = self.progress.history
        bar.set_postfix(
            loss=f"{loss:.4f}",
            val_dice=f"{history[-1]['val_dice']:.4f}" if history else "-",
            img_s=f"{images_per_s * self.ctx.world_size:.1f}",
        )

    def _to_device(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        memory_format = torch.channels_last if self.config.channels_last else torch.contiguous_format
        images = batch["image"].to(self.device, non_blocking=True).contiguous(memory_format=memory_format)
        coords = batch["coords"].to(self.device, non_blocking=True).contiguous(memory_format=memory_format)
        target = batch["mask"].to(self.device, non_blocking=True).long()
        return images, coords, target

    def _autocast(self) -> torch.autocast:
        return torch.autocast(
            self.device.type, dtype=self.amp_dtype or torch.float32, enabled=self.amp_dtype is not None
        )

    def _maybe_no_sync(self, skip_sync: bool) -> contextlib.AbstractContextManager:
        """Under DDP, gradients of a batch that closes no optimizer step need no all-reduce yet."""
        if skip_sync and isinstance(self.net, nn.parallel.DistributedDataParallel):
            return self.net.no_sync()
        return contextlib.nullcontext()

    def _stop_if_not_finite(self, loss: torch.Tensor, epoch: int, index: int) -> None:
        bad = not bool(torch.isfinite(loss.detach()).item())
        if distributed.broadcast_flag(bad, self.device):
            last = self.progress.last_epoch
            kept = (
                f"the last good checkpoint (epoch {last}) is kept in {self.folder.checkpoints}"
                if last
                else "no checkpoint was written yet"
            )
            raise NonFiniteLossError(
                f"{self.folder.out}: loss became {loss.item()} at epoch {epoch}, batch {index + 1}; stopped "
                f"({kept}). Try a lower --lr or --precision fp32."
            )
