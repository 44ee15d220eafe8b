"""Requests that arrive together answered by one model call (:class:`MicroBatcher`), and the pixel budget
that bounds the memory all photos in flight hold together (:class:`PixelBudget`)."""

import asyncio
import concurrent.futures
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

BUDGET_WAIT_S = 30.0


class Overloaded(Exception):
    """The batching queue is full, or the pixel budget stayed spent for too long."""


class PixelBudget:
    """A weighted semaphore over decoded pixels: a request holds its photo's pixel count from decoding to
    its answer, so the photos in flight (and what is made from them) never exceed ``capacity`` pixels,
    however many requests arrive. Waiting longer than ``wait_s`` raises :class:`Overloaded`."""

    def __init__(self, capacity: int, wait_s: float = BUDGET_WAIT_S) -> None:
        self.capacity = int(capacity)
        self.wait_s = wait_s
        self.used = 0
        self._changed = asyncio.Condition()

    @contextlib.asynccontextmanager
    async def hold(self, pixels: int):
        pixels = min(int(pixels), self.capacity)

        def fits() -> bool:
            return self.used + pixels <= self.capacity

        async with self._changed:
            try:
                await asyncio.wait_for(self._changed.wait_for(fits), self.wait_s)
            except asyncio.TimeoutError:
                raise Overloaded from None
            self.used += pixels
        try:
            yield
        finally:
            async with self._changed:
                self.used -= pixels
                self._changed.notify_all()


@dataclass
class BatchStats:
    """Counters of the micro-batcher (reported by ``/healthz`` and ``/v1/model``)."""

    requests: int = 0
    model_calls: int = 0
    batched_requests: int = 0
    max_batch_seen: int = 0
    rejected_overload: int = 0
    model_seconds: float = 0.0


class MicroBatcher:
    """Collects concurrent requests into one call of ``infer(items) -> results`` (same order).

    ``submit`` waits in a bounded queue; a single consumer task takes the first waiting item, then more
    for up to ``max_wait_s`` (or until ``max_batch``), and runs ``infer`` in a one-thread executor, so
    model calls never overlap and the event loop stays free.
    """

    def __init__(
        self,
        infer: Callable[[list[Any]], list[Any]],
        max_batch: int = 8,
        max_wait_s: float = 0.01,
        queue_size: int = 64,
    ) -> None:
        self.infer = infer
        self.max_batch = max(1, int(max_batch))
        self.max_wait_s = max(0.0, float(max_wait_s))
        self.queue: asyncio.Queue = asyncio.Queue(maxsize=max(1, int(queue_size)))
        self.stats = BatchStats()
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="model")
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self._executor.shutdown(wait=True)

    async def submit(self, item: Any) -> tuple[Any, int]:
        """The result for ``item`` and the size of the model batch it went in."""
        future = asyncio.get_running_loop().create_future()
        try:
            self.queue.put_nowait((item, future))
        except asyncio.QueueFull:
            self.stats.rejected_overload += 1
            raise Overloaded from None
        self.stats.requests += 1
        return await future

    async def _collect(self) -> list[tuple[Any, asyncio.Future]]:
        batch = [await self.queue.get()]
        deadline = asyncio.get_running_loop().time() + self.max_wait_s
        while len(batch) < self.max_batch:
            if not self.queue.empty():
                batch.append(self.queue.get_nowait())
                continue
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(self.queue.get(), remaining))
            except asyncio.TimeoutError:
                break
        return [entry for entry in batch if not entry[1].cancelled()]

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._collect()
            if not batch:
                continue
            items = [item for item, _ in batch]
            started = time.perf_counter()
            try:
                results = await loop.run_in_executor(self._executor, self.infer, items)
            except Exception as error:  # noqa: BLE001 - the waiting requests get the error, the loop goes on
                for _, future in batch:
                    if not future.done():
                        future.set_exception(error)
                continue
            self._count(len(batch), time.perf_counter() - started)
            for (_, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result((result, len(batch)))

    def _count(self, size: int, seconds: float) -> None:
        stats = self.stats
        stats.model_calls += 1
        stats.model_seconds += seconds
        stats.max_batch_seen = max(stats.max_batch_seen, size)
        if size > 1:
            stats.batched_requests += size
