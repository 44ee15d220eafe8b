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
from typing import Any

import torch

from maskingnet.runtime import decode_workers, writer_threads

from .pipeline import Failed, Sink, crop_to_region
from .predictor import Predictor
from .preprocess import Prepared, Source, batched_good, iterate_prepared


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
