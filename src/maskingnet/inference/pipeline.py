"""The one prediction pipeline: sources -> decode -> batch -> model -> full resolution -> a sink.

Every verb that turns photos into masks runs here (``predict`` writes files, ``submit`` RLE rows,
``evaluate`` Dice scores; ``serve`` and :class:`~maskingnet.inference.Predictor` use the same steps one
request at a time), so a fix to decoding, TTA, up-sampling or the edge stage lands once:

1. :func:`~maskingnet.inference.preprocess.iterate_prepared` decodes the sources, ahead in worker processes
   where the cores allow (:func:`~maskingnet.runtime.decode_workers`; in this thread on a 2-core CPU);
2. the predictor runs the model on batches of them (TTA included) in this thread;
3. a small thread pool takes each photo to its full resolution (:func:`full_resolution`) and hands the
   probabilities to the sink (:meth:`Sink.consume`), which renders, encodes or scores them;
4. results come back to the sink in input order (:meth:`Sink.finish`, :meth:`Sink.fail`), with a bounded
   number in flight, so memory stays flat however many photos there are.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F

from maskingnet.data.coords import Region
from maskingnet.runtime import decode_workers, writer_threads

from .preprocess import Prepared, Source, batched_good, iterate_prepared

if TYPE_CHECKING:
    from .predictor import Predictor


class PostProcess(Protocol):
    """The step from the network's map to the photo's (the edge stage,
    :class:`~maskingnet.inference.edges.EdgeStage`): ``probs_small`` (h, w) float32 is the network's own
    output, ``photo`` the (H, W, 3) uint8 RGB photo when it was decoded, ``size`` = (W, H) the photo's size.
    Returns (H, W) float32 probabilities."""

    def __call__(
        self, probs_small: torch.Tensor | np.ndarray, photo: np.ndarray | None, size: tuple[int, int]
    ) -> np.ndarray: ...


def upsample_probs(probs, size: tuple[int, int]):
    """Bilinear resize of probabilities ``(B, h, w)`` to ``size = (H, W)``; thresholding comes after.

    Accepts a tensor (returns a float32 tensor) or a numpy array (returns a float32 array).
    """
    as_numpy = isinstance(probs, np.ndarray)
    tensor = torch.from_numpy(np.ascontiguousarray(probs)) if as_numpy else probs
    tensor = tensor.float()
    height, width = int(size[0]), int(size[1])
    if tuple(tensor.shape[-2:]) != (height, width):
        tensor = F.interpolate(
            tensor.unsqueeze(1), size=(height, width), mode="bilinear", align_corners=False
        )
        tensor = tensor.squeeze(1).clamp_(0.0, 1.0)
    return tensor.numpy() if as_numpy else tensor


def full_resolution(
    probs_small: torch.Tensor,
    photo: np.ndarray | None,
    size: tuple[int, int],
    post: PostProcess | None,
    region: Region | None = None,
) -> np.ndarray:
    """The network's (h, w) car probabilities at the photo's own ``size`` = (W, H), as (H, W) float32.

    ``region``: where a letterboxed photo lies in the network's input; its probabilities are cropped to
    it first, so the padding never reaches the photo. Then ``post`` (the edge stage) when there is one,
    else bilinear up-sampling. Every verb goes through here.
    """
    if region is not None:
        probs_small = crop_to_region(probs_small, region).contiguous()
    if post is not None:
        return post(probs_small, photo, size)
    width, height = size
    probs = upsample_probs(probs_small[None].float(), (height, width))[0].numpy()
    return probs.astype(np.float32, copy=False)


@dataclass
class Failed:
    """What :meth:`Sink.consume` returns for a photo it could not finish (one line for the user)."""

    message: str


class Sink:
    """Where a run's full-resolution probabilities go. Subclasses implement :meth:`consume` (in a writer
    thread) and may extend :meth:`finish`, :meth:`fail` and :meth:`close` (in the calling thread)."""

    need_photo = False
    wants_network_map = False
    """Whether :meth:`consume` reads ``item.network_map`` (the network's own map, cropped to the photo)."""

    def __init__(self, report: Callable[[str], None] | None = None) -> None:
        self.report = report or (lambda line: None)
        self.done = 0
        self.failed = 0
        self.problems: list[str] = []

    def consume(self, item: Prepared, probs: np.ndarray) -> Any:
        """Render, encode or score one photo's (H, W) probabilities; return a result or :class:`Failed`."""
        raise NotImplementedError

    def finish(self, item: Prepared, result: Any) -> None:
        """One photo done (called in input order)."""
        self.done += 1

    def fail(self, item: Prepared, message: str) -> None:
        """One photo unusable or unfinished (called in input order)."""
        self.failed += 1
        self.problems.append(message)
        self.report(message)

    def close(self) -> None:
        """After the last photo of a run that was not interrupted."""


class InOrder:
    """Hands finished work to the sink in input order, whatever order it finishes in."""

    def __init__(self, sink: Sink, tick: Callable[[], None] | None) -> None:
        self.sink, self.tick = sink, tick
        self.waiting: dict[int, tuple[Prepared, Future | str]] = {}
        self.next_index = 0

    def add(self, item: Prepared, work: Future | str) -> None:
        self.waiting[item.index] = (item, work)

    def settle(self, limit: int) -> None:
        """Deliver what is ready at the head; wait for the head while more than ``limit`` are waiting."""
        while self.next_index in self.waiting:
            item, work = self.waiting[self.next_index]
            if isinstance(work, Future) and not work.done() and len(self.waiting) <= limit:
                return
            del self.waiting[self.next_index]
            self.next_index += 1
            self._deliver(item, work)

    def _deliver(self, item: Prepared, work: Future | str) -> None:
        result = work.result() if isinstance(work, Future) else Failed(work)
        if isinstance(result, Failed):
            self.sink.fail(item, result.message)
        else:
            self.sink.finish(item, result)
        if self.tick is not None:
            self.tick()


def _finish(predictor: Predictor, sink: Sink, item: Prepared, probs_small: torch.Tensor) -> Any:
    started = time.perf_counter()
    if sink.wants_network_map:
        item.network_map = crop_to_region(probs_small, item.region).float().numpy()
    result = sink.consume(item, predictor.full_resolution(probs_small, item))
    item.seconds += time.perf_counter() - started
    return result


def crop_to_region(probs_small: torch.Tensor, region: Region | None) -> torch.Tensor:
    """The part of the network's (h, w) map where the photo lies (all of it when it fills the input)."""
    if region is None:
        return probs_small
    left, top, width, height = region
    return probs_small[top : top + height, left : left + width]


def run(
    sources: Sequence[Source],
    predictor: Predictor,
    sink: Sink,
    *,
    batch_size: int | None = None,
    workers: int | None = None,
    tick: Callable[[], None] | None = None,
) -> Sink:
    """Predict every source into ``sink`` (see the module docstring); ``tick`` is called once per source.

    Unusable sources reach :meth:`Sink.fail` with their one-line reason; the run goes on.
    """
    need_photo = sink.need_photo or predictor.post_needs_photo
    workers = decode_workers(predictor.device) if workers is None else workers
    items = iterate_prepared(
        sources, predictor.size, need_photo, workers, predictor.spec, predictor.backend.spec.size
    )
    batch_size = max(1, batch_size or predictor.batch_size)
    writers = writer_threads()
    ordered = InOrder(sink, tick)
    with ThreadPoolExecutor(max_workers=writers, thread_name_prefix="maskingnet-write") as pool:
        for batch in batched_good(items, batch_size, lambda item: ordered.add(item, item.error or "")):
            started = time.perf_counter()
            probs = predictor.infer_prepared(batch)
            share = (time.perf_counter() - started) / len(batch)
            for i, item in enumerate(batch):
                item.seconds += share
                item.tensor = item.coords = None
                ordered.add(item, pool.submit(_finish, predictor, sink, item, probs[i].clone()))
            ordered.settle(2 * writers + batch_size)
        ordered.settle(0)
    sink.close()
    return sink
