"""Training: the thesis recipe by default, resumable to the epoch, on one CPU, one GPU or many (torchrun).

A run folder holds::

    config.json                     every setting, the split (car and image ids), versions
    metrics.jsonl                   one row per epoch: epoch, lr, train_loss, val_loss, val_dice,
                                    images_per_s, seconds
    curves.png                      loss and val Dice per epoch, redrawn every epoch
    checkpoints/last.safetensors    weights after the latest epoch (``maskingnet.load_model`` reads it)
    checkpoints/best.safetensors    weights of the epoch with the best val Dice
    checkpoints/last.state.pt       weights, optimizer, scheduler, scaler, epoch, RNG and metrics history;
                                    ``torch.load(weights_only=True)`` reads it

Exact resume: the state file is the single commit point of an epoch (it carries the weights too, so a kill
between two writes cannot pair weights of one epoch with an optimizer of another), and every random choice of
an epoch (data order, augmentation, DataLoader worker seeds) is a function of ``(seed, epoch, rank)`` alone,
not of the global RNG's history. So on CPU a killed and resumed run reproduces an uninterrupted one exactly.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
import random
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, Subset

from maskingnet import distributed
from maskingnet.metrics import batch_dice, soft_dice_loss
from maskingnet.utils import atomic_write, write_json

LOSSES = ("ce", "ce+dice")
SPLITS = ("car", "thesis")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
STATE_FILE = "last.state.pt"
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
)


class TrainError(RuntimeError):
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
    model_options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.size = tuple(int(v) for v in self.size)  # type: ignore[assignment]
        if self.crop is not None:
            self.crop = tuple(int(v) for v in self.crop)  # type: ignore[assignment]
        self.betas = tuple(float(v) for v in self.betas)  # type: ignore[assignment]
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
            (self.workers is None or self.workers >= 0, "workers must be >= 0"),
            (self.threads is None or self.threads >= 1, "threads must be >= 1"),
        ]
        return [message for ok, message in checks if not ok]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

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
    path = Path(out) / "config.json"
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise TrainError(f"{path}: not found (is {out} a training run folder?)") from None
    except json.JSONDecodeError as err:
        raise TrainError(f"{path}: not valid JSON ({err})") from None


# --------------------------------------------------------------------------------------------- devices


def resolve_train_precision(precision: str, device: torch.device) -> str:
    """``auto``: AMP on CUDA (bf16 where supported, else fp16 with a GradScaler); bf16 autocast on CPUs with
    native bf16 (AVX512-BF16 or AMX); fp32 elsewhere.

    On the AVX512-BF16 CPU this was measured on, a bf16-autocast training step of MaskingNet took 0.6x the
    fp32 time and a 6-epoch run reached the same val Dice (0.9675 vs 0.9650); see the README.
    """
    from maskingnet.inference import cpu_bf16_supported

    if precision != "auto":
        if precision == "fp16" and device.type == "cpu":
            raise TrainError("precision fp16: not supported for training on CPU; use bf16 or fp32")
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if device.type == "cpu" and cpu_bf16_supported():
        return "bf16"
    return "fp32"


def training_device(requested: str, ctx: distributed.DistContext) -> torch.device:
    from maskingnet.inference import resolve_device

    device = resolve_device(requested)
    if device.type == "cuda" and ctx.enabled:
        return torch.device("cuda", ctx.local_rank)
    return device


def autocast_dtype(precision: str) -> torch.dtype | None:
    return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)


def default_workers(world_size: int) -> int:
    """Leave one core per process to the training loop itself; at most 4 loaders per process."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(0, min(4, cores // world_size - 1))


# --------------------------------------------------------------------------------------------- data


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


def carried_refiner(init_from: str):
    """The edge refiner of the ``--init-from`` model (None if it has none): fine-tuned files carry it on."""
    from maskingnet.models.bundled import resolve_model
    from maskingnet.models.checkpoint import CheckpointError, load_refiner

    try:
        return load_refiner(resolve_model(init_from))
    except CheckpointError as error:
        raise TrainError(f"--init-from: {error}") from None


def describe_config(config: Any) -> str:
    """``maskingnet width 0.25``: what a model file holds, in words."""
    return f"{config.name} width {config.width:g}"


def init_from_defaults(init_from: str) -> dict[str, Any]:
    """Model, width and input size of the ``--init-from`` model: a fine-tuning run's defaults."""
    from maskingnet.models.bundled import resolve_model
    from maskingnet.models.checkpoint import CheckpointError, read_config

    try:
        config, meta = read_config(resolve_model(init_from))
    except CheckpointError as error:
        raise TrainError(f"--init-from: {error}") from None
    defaults: dict[str, Any] = {"model": config.name, "width": config.width}
    if meta.get("input_size"):
        defaults["size"] = tuple(int(v) for v in meta["input_size"])
    return defaults


def scaled_size(records: list, scale: float) -> tuple[int, int]:
    """The training size for ``--scale``: the most common photo size of ``records`` times ``scale``."""
    from maskingnet.data.io import image_size

    if not records:
        raise TrainError("--scale needs photos, and the data folder has none")
    sizes = [record.size or image_size(record.image_path) for record in records[:64]]
    width, height = max(set(sizes), key=sizes.count)
    return max(1, round(width * scale)), max(1, round(height * scale))


def scan_records(data: str | os.PathLike, show_problems: bool = True) -> tuple[list, int]:
    """The labelled records under ``data`` and how many files were skipped (each reported on stderr)."""
    from maskingnet.data.carvana import scan
    from maskingnet.data.io import BadInputError

    try:
        result = scan(data)
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
    from maskingnet.data import carvana

    if config.fold is not None:
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


def recorded_split(records: list, stored: dict[str, Any]) -> Split:
    """The split a run recorded, applied to the records found now (for resume)."""
    train_ids, val_ids = set(stored["train_ids"]), set(stored["val_ids"])
    return Split(
        stored["method"], [r for r in records if r.id in train_ids], [r for r in records if r.id in val_ids]
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


# --------------------------------------------------------------------------------------------- losses


def make_loss(name: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """Pixel-wise softmax cross-entropy (the thesis), optionally plus soft Dice of the car class."""
    if name == "ce":
        return lambda logits, target: F.cross_entropy(logits.float(), target)
    if name == "ce+dice":
        return lambda logits, target: F.cross_entropy(logits.float(), target) + soft_dice_loss(logits, target)
    raise ValueError(f"unknown loss {name!r}; choose one of {', '.join(LOSSES)}")


# --------------------------------------------------------------------------------------------- state


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


def versions() -> dict[str, str]:
    from maskingnet import __version__

    return {
        "maskingnet": __version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "cuda": str(torch.version.cuda),
        "platform": platform.platform(),
    }


# --------------------------------------------------------------------------------------------- the run


@dataclass
class EpochResult:
    train_loss: float
    val_loss: float
    val_dice: float
    train_images: int
    train_seconds: float
    stop_after: bool


class Trainer:
    """One training run; rank 0 of a torchrun job writes the run folder, every rank trains."""

    def __init__(self, config: TrainConfig, ctx: distributed.DistContext, device: torch.device) -> None:
        self.config = config
        self.ctx = ctx
        self.device = device
        self.out = Path(config.out)
        self.checkpoints = self.out / "checkpoints"
        self.precision = resolve_train_precision(config.precision, device)
        self.amp_dtype = autocast_dtype(self.precision)
        self.loss_fn = make_loss(config.loss)
        self.history: list[dict[str, Any]] = []
        self.best_dice = -math.inf
        self.best_epoch = 0
        self.steps = 0
        self.start_epoch = 1
        self.bad_inputs = 0
        self.init_refiner = None

    # ----- set-up

    def setup(self) -> None:
        state = self._existing_state()
        records, self.bad_inputs = scan_records(self.config.data, show_problems=self.ctx.is_main)
        if self.config.scale is not None:
            self.config.size = scaled_size(records, self.config.scale)
        self._check_crop()
        if state is not None:
            self.split = recorded_split(records, read_run_config(self.out)["split"])
        else:
            self.split = make_split(records, self.config)
        self.model = self._build_model()
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=self.config.lr, betas=self.config.betas)
        self.scheduler = torch.optim.lr_scheduler.StepLR(
            self.optimizer, step_size=self.config.lr_step, gamma=self.config.lr_gamma
        )
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.precision == "fp16")
        if state is not None:
            self._restore(state)
        elif self.config.init_from:
            self._load_init()
        if self.config.init_from:
            self.init_refiner = carried_refiner(self.config.init_from)
        elif self.config.vgg_weights:
            self._load_vgg()
        self._check_ranks_agree_on_the_start_epoch()
        self.net = self._wrap(self.model)
        self._make_loaders()
        if self.ctx.is_main:
            self._write_config()
            if self.history:
                self._write_metrics()

    def _check_crop(self) -> None:
        crop, size = self.config.crop, self.config.size
        if crop is not None and (crop[0] > size[0] or crop[1] > size[1]):
            raise TrainError(f"crop {crop[0]}x{crop[1]} is larger than the photos at {size[0]}x{size[1]}")

    def _check_ranks_agree_on_the_start_epoch(self) -> None:
        """Every rank reads the state file to resume; a node that cannot see --out would start afresh."""
        total, squares = distributed.all_reduce_sum([self.start_epoch, self.start_epoch**2], self.device)
        if self.ctx.world_size * squares != total * total:
            raise TrainError(
                f"{self.out}: not every process sees the same run state; put --out on storage "
                "that every node shares"
            )

    def _existing_state(self) -> dict[str, Any] | None:
        path = self.checkpoints / STATE_FILE
        if not path.exists():
            if self.config.resume and self.ctx.is_main:
                print(f"{self.out}: nothing to resume yet; starting from epoch 1", file=sys.stderr)
            return None
        if not self.config.resume:
            raise TrainError(
                f"{self.out}: already holds a run; pass --resume to continue it or pick another --out"
            )
        self._check_resumable()
        return torch.load(path, map_location="cpu", weights_only=True)

    def _check_resumable(self) -> None:
        stored = TrainConfig.from_dict(read_run_config(self.out)["settings"]).to_dict()
        current = self.config.to_dict()
        changed = [k for k in current if k not in RESUMABLE_OVERRIDES and current[k] != stored[k]]
        if changed:
            details = ", ".join(f"{k}: {stored[k]!r} -> {current[k]!r}" for k in changed)
            raise TrainError(f"{self.out}: cannot resume with different settings ({details})")

    def _build_model(self) -> nn.Module:
        from maskingnet.models import create_model

        torch.manual_seed(self.config.seed)
        model = create_model(self.config.model, width=self.config.width, **self.config.model_options)
        model = model.to(self.device)
        if self.config.channels_last:
            model = model.to(memory_format=torch.channels_last)
        return model

    def _load_init(self) -> None:
        """Start from the weights of ``--init-from`` (fine-tuning)."""
        from maskingnet.models import load_model
        from maskingnet.models.bundled import resolve_model
        from maskingnet.models.checkpoint import CheckpointError

        try:
            source = load_model(resolve_model(self.config.init_from))
        except CheckpointError as error:
            raise TrainError(f"--init-from: {error}") from None
        built = self.model.config
        if source.config != built:
            raise TrainError(
                f"--init-from {self.config.init_from}: it is {describe_config(source.config)}, this run "
                f"builds {describe_config(built)}; give the same --model and --width (or leave them out)"
            )
        self.model.load_state_dict(source.state_dict())

    def _load_vgg(self) -> None:
        from maskingnet.models.vgg import load_vgg_weights

        loaded = load_vgg_weights(self.model, self.config.vgg_weights)
        if self.ctx.is_main:
            print(
                f"VGG weights from {self.config.vgg_weights}: {len(loaded)} layers ({', '.join(loaded)})",
                file=sys.stderr,
            )

    def _wrap(self, model: nn.Module) -> nn.Module:
        net = model
        if self.ctx.enabled:
            device_ids = [self.device.index] if self.device.type == "cuda" else None
            net = nn.parallel.DistributedDataParallel(net, device_ids=device_ids)
        if self.config.compile:
            net = torch.compile(net)
        return net

    def _restore(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        set_rng_state(state["rng"])
        self.history = list(state["history"])
        self.best_dice = float(state["best_dice"])
        self.best_epoch = int(state["best_epoch"])
        self.steps = int(state["steps"])
        self.start_epoch = int(state["epoch"]) + 1

    def _make_loaders(self) -> None:
        from maskingnet.data.carvana import SegmentationDataset

        c = self.config
        workers = default_workers(self.ctx.world_size) if c.workers is None else c.workers
        self.train_set = SegmentationDataset(
            self.split.train, size=c.size, augment=c.augment, seed=c.seed, crop=c.crop, random_crop=True
        )
        val_set = SegmentationDataset(self.split.val, size=c.size, augment=False, seed=c.seed)
        self.sampler = DistributedSampler(
            self.train_set, num_replicas=self.ctx.world_size, rank=self.ctx.rank, shuffle=True, seed=c.seed
        )
        self.generator = torch.Generator()
        common = {"num_workers": workers, "pin_memory": self.device.type == "cuda"}
        self.train_loader = DataLoader(
            self.train_set, batch_size=c.batch_size, sampler=self.sampler, generator=self.generator, **common
        )
        # Validation is sharded without padding so every image counts exactly once after the all-reduce.
        shard = Subset(val_set, list(range(self.ctx.rank, len(val_set), self.ctx.world_size)))
        self.val_loader = DataLoader(shard, batch_size=c.batch_size, shuffle=False, **common)

    # ----- the loop

    def run(self) -> dict[str, Any]:
        started = time.perf_counter()
        stopped = "completed"
        for epoch in range(self.start_epoch, self.config.epochs + 1):
            epoch_started = time.perf_counter()
            lr = self.optimizer.param_groups[0]["lr"]
            result = self.run_epoch(epoch)
            self.scheduler.step()
            row = {
                "epoch": epoch,
                "lr": lr,
                "train_loss": result.train_loss,
                "val_loss": result.val_loss,
                "val_dice": result.val_dice,
                "images_per_s": result.train_images / max(result.train_seconds, 1e-9),
                "seconds": time.perf_counter() - epoch_started,
                "steps": self.steps,
            }
            self.history.append(row)
            improved = result.val_dice > self.best_dice
            if improved:
                self.best_dice, self.best_epoch = result.val_dice, epoch
            if self.ctx.is_main:
                self._save_epoch(epoch, improved)
                self._report(row)
            distributed.barrier()
            if result.stop_after:
                stopped = "max_steps"
                break
        return self._summary(stopped, time.perf_counter() - started)

    def _seed_epoch(self, epoch: int) -> None:
        seed = epoch_seed(self.config.seed, epoch, self.ctx.rank)
        seed_everything(seed)
        self.generator.manual_seed(seed)
        self.sampler.set_epoch(epoch)
        if hasattr(self.train_set, "set_epoch"):
            self.train_set.set_epoch(epoch)

    def run_epoch(self, epoch: int) -> EpochResult:
        self._seed_epoch(epoch)
        train_loss, images, seconds, stop_after = self._train_one_epoch(epoch)
        val_loss, val_dice = self._validate()
        return EpochResult(train_loss, val_loss, val_dice, images, seconds, stop_after)

    def _progress(self, epoch: int) -> Iterable:
        from tqdm import tqdm

        return tqdm(
            self.train_loader,
            desc=f"epoch {epoch}/{self.config.epochs}",
            unit="batch",
            disable=not (self.config.progress and self.ctx.is_main),
            leave=True,
            dynamic_ncols=True,
            file=sys.stderr,
        )

    def _train_one_epoch(self, epoch: int) -> tuple[float, int, float, bool]:
        c = self.config
        self.net.train()
        self.optimizer.zero_grad(set_to_none=True)
        loss_sum, seen, started = 0.0, 0, time.perf_counter()
        bar = self._progress(epoch)
        batches = len(self.train_loader)
        stop_after = False
        for index, batch in enumerate(bar):
            images, coords, target = self._to_device(batch)
            closes_step = (index + 1) % c.accumulate == 0 or index + 1 == batches
            with self._maybe_no_sync(not closes_step), self._autocast():
                loss = self.loss_fn(self.net(images, coords), target)
            self._stop_if_not_finite(loss, epoch, index)
            self.scaler.scale(loss / c.accumulate).backward()
            if closes_step:
                self.scaler.step(self.optimizer)
                self.scaler.update()
                self.optimizer.zero_grad(set_to_none=True)
                self.steps += 1
            loss_sum += loss.item() * images.shape[0]
            seen += images.shape[0]
            elapsed = time.perf_counter() - started
            if hasattr(bar, "set_postfix"):
                bar.set_postfix(
                    loss=f"{loss_sum / seen:.4f}",
                    val_dice=f"{self.history[-1]['val_dice']:.4f}" if self.history else "-",
                    img_s=f"{seen * self.ctx.world_size / max(elapsed, 1e-9):.1f}",
                )
            if closes_step and c.max_steps is not None and self.steps >= c.max_steps:
                stop_after = True
                break
        if hasattr(bar, "close"):
            bar.close()
        seconds = time.perf_counter() - started
        total_loss, total_seen = distributed.all_reduce_sum([loss_sum, seen], self.device)
        return total_loss / max(total_seen, 1), int(total_seen), seconds, stop_after

    def _to_device(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        memory_format = torch.channels_last if self.config.channels_last else torch.contiguous_format
        images = batch["image"].to(self.device, non_blocking=True).contiguous(memory_format=memory_format)
        coords = batch["coords"].to(self.device, non_blocking=True).contiguous(memory_format=memory_format)
        target = batch["mask"].to(self.device, non_blocking=True).long()
        return images, coords, target

    def _autocast(self):
        return torch.autocast(
            self.device.type, dtype=self.amp_dtype or torch.float32, enabled=self.amp_dtype is not None
        )

    def _maybe_no_sync(self, skip_sync: bool):
        import contextlib

        if skip_sync and isinstance(self.net, nn.parallel.DistributedDataParallel):
            return self.net.no_sync()
        return contextlib.nullcontext()

    def _stop_if_not_finite(self, loss: torch.Tensor, epoch: int, index: int) -> None:
        bad = not bool(torch.isfinite(loss.detach()).item())
        if distributed.broadcast_flag(bad, self.device):
            last = self.start_epoch - 1 if not self.history else self.history[-1]["epoch"]
            kept = (
                f"the last good checkpoint (epoch {last}) is kept in {self.checkpoints}"
                if last
                else "no checkpoint was written yet"
            )
            raise NonFiniteLossError(
                f"{self.out}: loss became {loss.item()} at epoch {epoch}, batch {index + 1}; stopped "
                f"({kept}). Try a lower --lr or --precision fp32."
            )

    @torch.no_grad()
    def _validate(self) -> tuple[float, float]:
        model = self.model
        model.eval()
        loss_sum = dice_sum = count = 0.0
        for batch in self.val_loader:
            images, coords, target = self._to_device(batch)
            with self._autocast():
                logits = model(images, coords)
            loss_sum += self.loss_fn(logits, target).item() * images.shape[0]
            pred = logits.argmax(1) == 1
            dice_sum += batch_dice(pred, target == 1).sum().item()
            count += images.shape[0]
        loss_sum, dice_sum, count = distributed.all_reduce_sum([loss_sum, dice_sum, count], self.device)
        return loss_sum / max(count, 1), dice_sum / max(count, 1)

    # ----- writing the run folder (rank 0 only)

    def _meta(self, epoch: int, val_dice: float) -> dict[str, Any]:
        split = self.split.describe()
        return {
            "input_size": list(self.config.size),
            "train_crop": list(self.config.crop) if self.config.crop else None,
            "epoch": epoch,
            "val_dice": val_dice,
            "data": str(self.config.data),
            "split": {"method": split["method"], "val_cars": split["val_cars"]},
            "run": str(self.out),
            "model": self.config.model,
            "width": self.config.width,
        }

    def _save_epoch(self, epoch: int, improved: bool) -> None:
        from maskingnet.models import save_model

        val_dice = self.history[-1]["val_dice"]
        meta, refiner = self._meta(epoch, val_dice), self.init_refiner
        if improved:
            save_model(self.model, self.checkpoints / "best.safetensors", meta=meta, refiner=refiner)
        save_model(self.model, self.checkpoints / "last.safetensors", meta=meta, refiner=refiner)
        state = {
            "epoch": epoch,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else {},
            "rng": rng_state(),
            "history": self.history,
            "best_dice": self.best_dice,
            "best_epoch": self.best_epoch,
            "steps": self.steps,
        }
        with atomic_write(self.checkpoints / STATE_FILE) as handle:
            torch.save(state, handle)
        self._write_metrics()

    def _report(self, row: dict[str, Any]) -> None:
        print(
            f"epoch {row['epoch']}/{self.config.epochs}: train_loss {row['train_loss']:.4f} "
            f"val_loss {row['val_loss']:.4f} val_dice {row['val_dice']:.5f} "
            f"({row['images_per_s']:.1f} img/s, {row['seconds']:.0f} s)",
            file=sys.stderr,
            flush=True,
        )

    def _write_metrics(self) -> None:
        from maskingnet.plots import plot_curves

        with atomic_write(self.out / "metrics.jsonl", "w") as handle:
            for row in self.history:
                handle.write(json.dumps(row) + "\n")
        plot_curves(self.history, self.out / "curves.png")

    def _write_config(self) -> None:
        content = {
            "settings": self.config.to_dict(),
            "split": self.split.describe(),
            "images": {"train": len(self.split.train), "val": len(self.split.val)},
            "device": str(self.device),
            "precision": self.precision,
            "world_size": self.ctx.world_size,
            "params": sum(p.numel() for p in self.model.parameters()),
            "versions": versions(),
        }
        write_json(self.out / "config.json", content)

    def _summary(self, stopped: str, seconds: float) -> dict[str, Any]:
        last = self.history[-1] if self.history else {}
        return {
            "run": str(self.out),
            "epochs": last.get("epoch", 0),
            "stopped": stopped,
            "best_dice": self.best_dice if self.history else None,
            "best_epoch": self.best_epoch,
            "last_dice": last.get("val_dice"),
            "best_checkpoint": str(self.checkpoints / "best.safetensors"),
            "seconds": seconds,
            "device": str(self.device),
            "precision": self.precision,
            "world_size": self.ctx.world_size,
            "bad_inputs": self.bad_inputs,
        }


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
