"""Training the edge refiner of a trained segmentation network, on the same training cars.

The refiner (:mod:`maskingnet.models.refiner`) learns to correct the network's up-sampled probability from
the photo at its working scale. It is trained on patches along the outline, cut from the training cars of
the network's own run (its val cars are never seen). Its coarse input is the network's own answer on the
photo (what it meets at inference; the network trained on these photos, but the bundled model's run ended
with its training loss about its val loss, so the errors it learns to repair are like those on unseen
cars), or, for a share ``1 - real_fraction`` of the patches, the true mask shrunk to the network's input
size and damaged (outline shifted and rounded, thin parts opened or closed, blobs added or cut out).
Real answers only is the default; damaged truth alone made masks worse (docs/quality.md).

The result is written as a copy of the network's model file with the refiner inside it.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from maskingnet.data.carvana import load_mask, scan
from maskingnet.data.io import read_image
from maskingnet.errors import MaskingnetError
from maskingnet.inference import logits_to_probs, prepare
from maskingnet.inference.edges import normalise, outline_band, working_size
from maskingnet.models import load_model, model_spec
from maskingnet.models.checkpoint import attach_refiner
from maskingnet.models.refiner import Refiner, RefinerConfig


class RefinerTrainError(MaskingnetError, ValueError):
    """Training the refiner cannot start; the message is one line for the user."""


@dataclass
class RefinerTrainConfig:
    """Settings of one refiner training."""

    data: str
    model: str
    out: str
    steps: int = 12000
    batch_size: int = 16
    lr: float = 2e-3
    real_fraction: float = 1.0
    channels: int = 8
    scale: float = 1.0
    tile: int = 64
    margin: int = 16
    band: int = 12
    seed: int = 0
    cache: str | None = None
    progress: bool = True
    photos: int | None = None


@dataclass
class Photo:
    """One training photo at the refiner's working scale, with its truth and the network's answer."""

    rgb: np.ndarray  # (h, w, 3) uint8 at working scale
    coverage: np.ndarray  # (h, w) float32: share of each working pixel that is car
    truth_small: np.ndarray  # (h', w') float32 coverage at the network's input size
    net_small: np.ndarray  # (h', w') float32 network probability at its input size


def training_records(data: str, meta: dict[str, Any]) -> list:
    """The photos of ``data`` whose car is not among the network's val cars."""
    val_cars = set((meta.get("split") or {}).get("val_cars") or [])
    if not val_cars:
        raise RefinerTrainError("the model file records no val cars; train the refiner on a run's checkpoint")
    records = [record for record in scan(data).records if record.car_id not in val_cars]
    if not records:
        raise RefinerTrainError(f"{data}: no photos outside the model's val cars")
    return records


def sample_across_cars(records: list, count: int | None, seed: int) -> list:
    """At most ``count`` of ``records``, as many cars as possible: one random photo of each car in a random
    order, then a second of each, and so on. The photos are held in memory at the refiner's working scale
    (about 30 MB each at full scale, with the network's answer): a whole set of 1918x1280 photos does not
    fit."""
    if count is None or count >= len(records):
        return records
    rng = np.random.default_rng(seed)
    by_car: dict[str, list] = {}
    for record in records:
        by_car.setdefault(record.car_id, []).append(record)
    queues = [[group[i] for i in rng.permutation(len(group))] for group in by_car.values()]
    queues = [queues[i] for i in rng.permutation(len(queues))]
    chosen = []
    for depth in range(max(len(queue) for queue in queues)):
        chosen.extend(queue[depth] for queue in queues if depth < len(queue))
    return sorted(chosen[:count], key=lambda record: record.id)


@torch.inference_mode()
def network_probs(model: torch.nn.Module, record, size: tuple[int, int]) -> np.ndarray:
    """The network's car probability for one photo at its input ``size`` = (w, h), the photo prepared as
    every verb prepares it (:func:`maskingnet.inference.prepare`)."""
    item = prepare(record.image_path, size, need_photo=False, spec=model_spec(model))
    return logits_to_probs(model(item.tensor[None], item.coords[None]))[0].numpy()


def load_photo(record, input_size: tuple[int, int], scale: float) -> Photo:
    """One photo and its truth at the sizes the refiner trains with (the network's answer still empty)."""
    mask = load_mask(record).astype(np.float32)
    full = (mask.shape[1], mask.shape[0])
    work = working_size(full, scale)
    rgb = np.asarray(read_image(record.image_path, target_size=work).convert("RGB").resize(work))
    return Photo(
        rgb=rgb,
        coverage=cv2.resize(mask, work, interpolation=cv2.INTER_AREA),
        truth_small=cv2.resize(mask, input_size, interpolation=cv2.INTER_AREA),
        net_small=np.zeros(0, np.float32),
    )


def _cached(path: Path | None, make) -> dict[str, np.ndarray]:
    if path is not None and path.is_file():
        with np.load(path) as stored:
            return {name: stored[name] for name in stored.files}
    arrays = make()
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path.with_suffix(".part.npz"), **arrays)
        path.with_suffix(".part.npz").replace(path)
    return arrays


def cached_photo(
    record, model: torch.nn.Module, input_size: tuple[int, int], config: RefinerTrainConfig
) -> Photo:
    """:func:`load_photo` plus the network's answer, kept in ``config.cache`` when it is set (the photo
    under its sizes, the answer under the model file's size and time as well)."""
    cache = Path(config.cache) if config.cache else None
    sizes = f"{record.id}-{input_size[0]}x{input_size[1]}-{config.scale:g}"
    stat = Path(config.model).stat()
    photo_path = cache / f"{sizes}.npz" if cache else None
    net_path = cache / f"{sizes}-net-{stat.st_size}-{stat.st_mtime_ns}.npz" if cache else None
    arrays = _cached(photo_path, lambda: vars(load_photo(record, input_size, config.scale)))
    if config.real_fraction <= 0:
        return Photo(**arrays)
    net = _cached(net_path, lambda: {"net_small": network_probs(model, record, input_size)})
    return Photo(**{**arrays, **net})


def _ellipse(shape: tuple[int, int], rng: np.random.Generator, centre: tuple[int, int]) -> np.ndarray:
    h, w = shape
    axes = (int(rng.uniform(0.01, 0.06) * w) + 1, int(rng.uniform(0.01, 0.04) * h) + 1)
    canvas = np.zeros(shape, np.uint8)
    cv2.ellipse(canvas, centre, axes, float(rng.uniform(0, 180)), 0, 360, 1, -1)
    return canvas.astype(bool)


def damaged_truth(truth: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A plausible network error made from the true mask at the network's input size (float32 0..1)."""
    sigma = float(rng.uniform(0.4, 2.0))
    level = float(rng.uniform(0.3, 0.7))
    hard = cv2.GaussianBlur(truth, (0, 0), sigma) > level
    if rng.random() < 0.4:
        radius = int(rng.integers(1, 3))
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
        op = cv2.MORPH_OPEN if rng.random() < 0.5 else cv2.MORPH_CLOSE
        hard = cv2.morphologyEx(hard.astype(np.uint8), op, kernel).astype(bool)
    edge = np.argwhere(outline_band(hard, 1))
    if len(edge) and rng.random() < 0.3:
        y, x = edge[rng.integers(len(edge))]
        hard &= ~_ellipse(hard.shape, rng, (int(x), int(y)))
    if len(edge) and rng.random() < 0.3:
        y, x = edge[rng.integers(len(edge))]
        hard |= _ellipse(hard.shape, rng, (int(x), int(y) + int(rng.integers(0, 12))))
    soft = cv2.GaussianBlur(hard.astype(np.float32), (0, 0), float(rng.uniform(0.5, 1.0)))
    return np.clip(soft, 0.0, 1.0)


class PatchSampler:
    """Batches of (photo, coarse probability, truth, loss weight) patches along the outline."""

    def __init__(self, photos: list[Photo], config: RefinerTrainConfig) -> None:
        self.photos = photos
        self.config = config
        self.side = config.tile + 2 * config.margin
        self.truth_edges = [np.argwhere(outline_band(photo.coverage > 0.5, 1)) for photo in photos]
        self.network_answers: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def upsampled(self, photo: Photo, small: np.ndarray) -> np.ndarray:
        h, w = photo.coverage.shape
        return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)

    def network_answer(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """The network's answer at working scale and the points of its outline, made once per photo."""
        if index not in self.network_answers:
            coarse = self.upsampled(self.photos[index], self.photos[index].net_small)
            self.network_answers[index] = (coarse, np.argwhere(outline_band(coarse > 0.5, 1)))
        return self.network_answers[index]

    def coarse(self, index: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray | None]:
        """A coarse input for photo ``index`` and its outline points (None: not computed yet)."""
        if rng.random() < self.config.real_fraction:
            return self.network_answer(index)
        return self.upsampled(self.photos[index], damaged_truth(self.photos[index].truth_small, rng)), None

    def centre(
        self, index: int, coarse: np.ndarray, edges: np.ndarray | None, rng: np.random.Generator
    ) -> tuple[int, int]:
        """A point near the true outline or near the coarse one (where the coarse input's errors are)."""
        points = self.truth_edges[index]
        if rng.random() < 0.5 or len(points) == 0:
            points = edges if edges is not None else np.argwhere(outline_band(coarse > 0.5, 1))
        if len(points) == 0:
            return coarse.shape[0] // 2, coarse.shape[1] // 2
        reach = self.config.tile // 2
        y, x = points[rng.integers(len(points))] + rng.integers(-reach, reach + 1, 2)
        return int(y), int(x)

    def patch(self, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
        index = int(rng.integers(len(self.photos)))
        photo = self.photos[index]
        coarse, edges = self.coarse(index, rng)
        cy, cx = self.centre(index, coarse, edges, rng)
        h, w = coarse.shape
        top = int(np.clip(cy - self.side // 2, 0, max(h - self.side, 0)))
        left = int(np.clip(cx - self.side // 2, 0, max(w - self.side, 0)))
        window = (slice(top, top + self.side), slice(left, left + self.side))
        coarse = coarse[window]
        band = outline_band(coarse > 0.5, self.config.band)
        rgb = photo.rgb[window].astype(np.float32)
        rgb = np.clip(rgb * rng.uniform(0.8, 1.2) + rng.uniform(-20, 20), 0, 255).astype(np.uint8)
        parts = [normalise(rgb), coarse[None], photo.coverage[window][None], band[None]]
        if rng.random() < 0.5:
            parts = [np.ascontiguousarray(part[:, :, ::-1]) for part in parts]
        return tuple(parts)

    def batch(self, rng: np.random.Generator) -> tuple[torch.Tensor, ...]:
        patches = [self.patch(rng) for _ in range(self.config.batch_size)]
        return tuple(
            torch.from_numpy(np.stack(group).astype(np.float32)).contiguous(memory_format=torch.channels_last)
            for group in zip(*patches, strict=True)
        )


def refiner_loss(logits: torch.Tensor, truth: torch.Tensor, band: torch.Tensor, margin: int) -> torch.Tensor:
    """Soft-target BCE over the band pixels of each patch's central tile (the pixels inference keeps)."""
    inner = (slice(None), slice(None), slice(margin, -margin or None), slice(margin, -margin or None))
    weight = band[inner]
    loss = F.binary_cross_entropy_with_logits(logits[inner], truth[inner], weight=weight, reduction="sum")
    return loss / weight.sum().clamp_min(1.0)


def train_refiner(config: RefinerTrainConfig, say=print) -> dict[str, Any]:
    """Train a refiner for ``config.model`` and write the model file with it to ``config.out``."""
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    model = load_model(config.model)
    meta = dict(model.meta)
    input_size = tuple(int(v) for v in meta.get("input_size") or ())
    if len(input_size) != 2:
        raise RefinerTrainError(f"{config.model}: the model file records no input size")
    records = sample_across_cars(training_records(config.data, meta), config.photos, config.seed)
    started = time.perf_counter()
    photos = [cached_photo(record, model, input_size, config) for record in records]
    say(f"{len(photos)} training photos cached in {time.perf_counter() - started:.0f} s")
    refiner_config = RefinerConfig(config.channels, config.scale, config.tile, config.margin, config.band)
    refiner = Refiner(refiner_config).to(memory_format=torch.channels_last).train()
    optimizer = torch.optim.Adam(refiner.parameters(), lr=config.lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * min(step / config.steps, 1.0)))
    )
    sampler = PatchSampler(photos, config)
    running = None
    for step in range(1, config.steps + 1):
        images, coarse, truth, band = sampler.batch(rng)
        loss = refiner_loss(refiner(images, coarse), truth, band, config.margin)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        running = loss.item() if running is None else 0.98 * running + 0.02 * loss.item()
        if config.progress and (step % 100 == 0 or step == config.steps):
            say(f"step {step}/{config.steps}: loss {running:.4f} ({time.perf_counter() - started:.0f} s)")
    out = attach_refiner(config.model, refiner.eval(), config.out)
    return {"out": str(out), "steps": config.steps, "loss": running, "seconds": time.perf_counter() - started}
