"""One training run from start (or resume) to summary, and :func:`train`, its entry point."""

from __future__ import annotations

import sys
import time
from typing import Any

import torch

from maskingnet.data.cache import SampleCache
from maskingnet.data.carvana import SegmentationDataset
from maskingnet.runtime import DistContext, resolve_device, usable_cores
from maskingnet.train import distributed
from maskingnet.utils.progress import format_duration

from .config import TrainConfig, TrainError
from .loaders import EpochData
from .loop import EpochLoop, EpochResult, resolve_train_precision
from .network import build_model, carried_refiner, load_init_weights, load_vgg, wrap_for_training
from .run_folder import RunFolder, checkpoint_meta, run_record
from .split import Split, check_crop, make_split, recorded_split, scaled_size, scan_records
from .state import Optimization, ResumableState, RunProgress


class Trainer:
    """One training run; rank 0 of a torchrun job writes the run folder, every rank trains.

    :meth:`setup` builds the parts (split, network, optimizer, loaders), fresh or from the state file;
    :meth:`run` drives the :class:`EpochLoop` and, after each epoch, commits it to the :class:`RunFolder`.
    """

    def __init__(self, config: TrainConfig, ctx: DistContext, device: torch.device) -> None:
        self.config, self.ctx, self.device = config, ctx, device
        self.folder = RunFolder(config.out)
        self.state = ResumableState(self.folder.state_file, self.folder.restart_hint())
        self.precision = resolve_train_precision(config.precision, device)
        self.progress = RunProgress()
        self.start_epoch = 1
        self.bad_inputs = 0
        self.init_refiner = None

    def setup(self) -> None:
        state = self._state_to_resume()
        self.split = self._split(resuming=state is not None)
        cache = self._cache()
        self.model = build_model(self.config, self.device)
        self.optimization = Optimization.for_model(self.model, self.config, self.device, self.precision)
        self._first_weights(state)
        check_ranks_agree(self.start_epoch, self.folder, self.device)
        net = wrap_for_training(self.model, self.ctx, self.device, self.config.compile)
        self.loop = EpochLoop(
            self.config,
            self.ctx,
            self.device,
            self.precision,
            self.model,
            net,
            self.optimization,
            EpochData(self.split, self.config, self.ctx, self.device, cache),
            self.progress,
            self.folder,
        )
        if self.ctx.is_main:
            self.folder.write_config(
                run_record(self.config, self.split, self.model, self.device, self.precision, self.ctx)
            )
            if self.progress.history:
                self.folder.write_metrics(self.progress.history)
            print(
                start_line(self.config, self.split, self.model, self.device, self.precision, self.ctx),
                file=sys.stderr,
                flush=True,
            )

    def _split(self, resuming: bool) -> Split:
        """The photos (and, for ``--scale``, the size); a resumed run keeps the split it recorded."""
        c = self.config
        records, self.bad_inputs = scan_records(c.data, show_problems=self.ctx.is_main)
        if c.scale is not None:
            c.size = scaled_size(records, c.scale)
        check_crop(c.crop, c.size)
        if resuming:
            return recorded_split(records, self.folder.read_config()["split"])
        return make_split(records, c)

    def _cache(self) -> SampleCache | None:
        """With ``--cache``: every photo of the split at the training size, decoded once (by the main
        process); photos that cannot be decoded are reported, counted and left out of the split."""
        c = self.config
        if c.cache is None:
            return None
        cache = SampleCache(c.cache, c.size)
        records = self.split.train + self.split.val
        if self.ctx.is_main:
            decode, cores = SegmentationDataset([], size=c.size).decode_pixels, usable_cores()
            problems = cache.build(records, decode, workers=cores, progress=c.progress)
            for problem in problems:
                print(problem, file=sys.stderr)
        distributed.barrier()
        missing = {record.id for record in cache.missing(records)}
        if missing:
            self.bad_inputs += len(missing)
            self.split.train = [r for r in self.split.train if r.id not in missing]
            self.split.val = [r for r in self.split.val if r.id not in missing]
            if not self.split.train or not self.split.val:
                raise TrainError(f"{c.data}: no photos left to train or validate on after decoding")
        return cache

    def _first_weights(self, state: dict[str, Any] | None) -> None:
        """Weights, optimizer and progress from the state file, else from --init-from or --vgg-weights."""
        c = self.config
        if state is not None:
            self.progress = self.state.restore(state, self.model, self.optimization)
            self.start_epoch = int(state["epoch"]) + 1
            self._keep_a_better_best()
        elif c.init_from:
            load_init_weights(self.model, c.init_from)
        elif c.vgg_weights:
            load_vgg(self.model, c.vgg_weights, announce=self.ctx.is_main)
        if c.init_from:
            self.init_refiner = carried_refiner(c.init_from)

    def _state_to_resume(self) -> dict[str, Any] | None:
        """The state file's contents when resuming; None for a fresh start (refused where it would
        overwrite an earlier run's checkpoints)."""
        out = self.folder.out
        if not self.state.exists():
            leftovers = self.folder.check_checkpoints_without_state()
            if self.ctx.is_main and (self.config.resume or leftovers):
                note = " (over the checkpoints of its unfinished first epoch)" if leftovers else ""
                print(f"{out}: nothing to resume yet; starting from epoch 1{note}", file=sys.stderr)
            return None
        if not self.config.resume:
            raise TrainError(
                f"{out}: already holds a run; pass --resume to continue it or pick another --out"
            )
        stored = TrainConfig.from_dict(self.folder.read_config()["settings"])
        changed = self.config.changes_that_block_resume(stored)
        if changed:
            raise TrainError(f"{out}: cannot resume with different settings ({', '.join(changed)})")
        return self.state.load()

    def _keep_a_better_best(self) -> None:
        """A best checkpoint better than the state knows of (the state restored from an older copy) is kept
        until an epoch beats it; the one exception is the epoch about to be redone after a kill."""
        record = self.folder.checkpoint_record(self.folder.best)
        if record is None or record[0] == self.start_epoch or record[1] <= self.progress.best_dice:
            return
        self.progress.best_epoch, self.progress.best_dice = record
        if self.ctx.is_main:
            print(
                f"{self.folder.best}: val Dice {record[1]:.5f} (epoch {record[0]}) is better than the state "
                "file records; it is kept until an epoch beats it",
                file=sys.stderr,
            )

    def run(self) -> dict[str, Any]:
        started = time.perf_counter()
        stopped = "completed"
        for epoch in range(self.start_epoch, self.config.epochs + 1):
            epoch_started, lr = time.perf_counter(), self.optimization.lr
            result = self.loop.run_epoch(epoch)
            self.optimization.scheduler.step()
            improved = self.progress.add(self._metrics_row(epoch, lr, result, epoch_started))
            if self.ctx.is_main:
                self._commit_epoch(epoch, improved)
            distributed.barrier()
            if result.stop_after:
                stopped = "max_steps"
                break
        return self._summary(stopped, time.perf_counter() - started)

    def _metrics_row(self, epoch: int, lr: float, result: EpochResult, started: float) -> dict[str, Any]:
        return {
            "epoch": epoch,
            "lr": lr,
            "train_loss": result.train_loss,
            "val_loss": result.val_loss,
            "val_dice": result.val_dice,
            "images_per_s": result.train_images / max(result.train_seconds, 1e-9),
            "seconds": time.perf_counter() - started,
            "steps": self.progress.steps,
        }

    def _commit_epoch(self, epoch: int, improved: bool) -> None:
        """Weights, then the state file (the commit point), then metrics and curves; then the epoch line."""
        row = self.progress.history[-1]
        meta = checkpoint_meta(self.config, self.split, self.folder.out, epoch, row["val_dice"])
        self.folder.save_weights(self.model, meta, self.init_refiner, best=improved)
        self.state.save(epoch, self.model, self.optimization, self.progress)
        self.folder.write_metrics(self.progress.history)
        print(epoch_line(row, self.config.epochs, self._eta(epoch)), file=sys.stderr, flush=True)

    def _eta(self, epoch: int) -> float:
        """Seconds the remaining epochs should take, at the mean pace of the epochs this process ran."""
        ran = [row for row in self.progress.history if row["epoch"] >= self.start_epoch]
        pace = sum(row["seconds"] for row in ran) / max(len(ran), 1)
        return pace * (self.config.epochs - epoch)

    def _summary(self, stopped: str, seconds: float) -> dict[str, Any]:
        last = self.progress.history[-1] if self.progress.history else {}
        return {
            "run": str(self.folder.out),
            "epochs": last.get("epoch", 0),
            "stopped": stopped,
            "best_dice": self.progress.best_dice if self.progress.history else None,
            "best_epoch": self.progress.best_epoch,
            "last_dice": last.get("val_dice"),
            "best_checkpoint": str(self.folder.best),
            "seconds": seconds,
            "device": str(self.device),
            "precision": self.precision,
            "world_size": self.ctx.world_size,
            "bad_inputs": self.bad_inputs,
        }


def check_ranks_agree(start_epoch: int, folder: RunFolder, device: torch.device) -> None:
    """Every rank reads the state file to resume; a node that cannot see --out would start afresh."""
    ranks, total, squares = distributed.all_reduce_sum([1, start_epoch, start_epoch**2], device)
    if ranks * squares != total * total:
        raise TrainError(
            f"{folder.out}: not every process sees the same run state; put --out on storage "
            "that every node shares"
        )


def start_line(
    config: TrainConfig,
    split: Split,
    model: torch.nn.Module,
    device: torch.device,
    precision: str,
    ctx: DistContext,
) -> str:
    """The line printed before the first step: what trains on what, where, in which precision."""
    params = sum(p.numel() for p in model.parameters())
    where = str(device)
    if device.type == "cuda":
        where += f" ({torch.cuda.get_device_name(device)})"
    size = "{}x{}".format(*config.size) + (" (crops {}x{})".format(*config.crop) if config.crop else "")
    switches = (("channels-last", config.channels_last), ("compile", config.compile))
    extras = [flag for flag, on in switches if on]
    processes = f" x {ctx.world_size} processes" if ctx.enabled else ""
    return (
        f"training {config.model} ({params:,} parameters) on {where}, {precision}"
        + "".join(f", {flag}" for flag in extras)
        + f": {len(split.train):,} train / {len(split.val):,} val images at {size}, "
        f"batch {config.batch_size}{processes}"
    )


def epoch_line(row: dict[str, Any], epochs: int, eta: float | None = None) -> str:
    """The line printed after each epoch, with the time the remaining epochs should take when known."""
    left = f", {format_duration(eta)} to go" if eta and row["epoch"] < epochs else ""
    return (
        f"epoch {row['epoch']}/{epochs}: train_loss {row['train_loss']:.4f} "
        f"val_loss {row['val_loss']:.4f} val_dice {row['val_dice']:.5f} "
        f"({row['images_per_s']:.1f} img/s, {format_duration(row['seconds'])}{left})"
    )


def training_device(requested: str, ctx: DistContext) -> torch.device:
    """The device this rank trains on: under torchrun on GPUs, its own ``cuda:LOCAL_RANK``."""
    device = resolve_device(requested)
    if device.type == "cuda" and ctx.enabled:
        return torch.device("cuda", ctx.local_rank)
    return device


def train(config: TrainConfig) -> dict[str, Any]:
    """Train as ``config`` says (joining torchrun's process group when launched by it); returns a summary."""
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    ctx = distributed.context_from_env()
    device = training_device(config.device, ctx)
    joined_here = ctx.enabled and not torch.distributed.is_initialized()
    distributed.init(ctx, device)
    try:
        trainer = Trainer(config, ctx, device)
        trainer.setup()
        return trainer.run()
    finally:
        if joined_here:
            distributed.shutdown()
