"""Requests that arrive together share a forward: a queue that groups them up to a budget of audio or a few
milliseconds, and the limit on how many requests are admitted at once.

The first request of a batch waits at most ``max_wait`` seconds (from its arrival) for others to join; the batch
closes earlier when the next request would take it over ``max_samples`` (16 kHz samples over all its requests; a
request larger than the budget runs alone). Requests that queued while the model was busy leave at once, as one
batch. The model runs in a single worker thread, so the event loop keeps receiving uploads meanwhile; the extraction
engine inside sorts the batch by length and pads it, which leaves every result equal to the request computed alone
(padding never reaches a valid frame).

A request whose client went away before its batch started is dropped unseen. ``close()`` finishes every request
already queued, then stops the worker thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from .errors import RequestError

__all__ = ["Batcher", "BatchStats", "Admission"]


@dataclass
class _Item:
    job: Any
    samples: int
    future: asyncio.Future
    arrived: float


@dataclass
class BatchStats:
    """What the queue has done: ``batches`` run, ``requests`` answered, the ``largest`` batch (in requests),
    ``batched_requests`` (answered in a batch of two or more), model ``seconds`` and ``samples`` of audio."""

    batches: int = 0
    requests: int = 0
    largest: int = 0
    batched_requests: int = 0
    seconds: float = 0.0
    samples: int = 0

    def as_dict(self) -> dict:
        return {"batches": self.batches, "requests": self.requests, "largest": self.largest,
                "batched_requests": self.batched_requests, "model_seconds": round(self.seconds, 3),
                "audio_seconds": round(self.samples / 16000, 3)}


class Batcher:
    """``await submit(job, samples)`` -> what ``run_batch`` returned for that job.

    ``run_batch(jobs) -> results`` runs in the worker thread, one result per job (an exception instance is raised
    to that job's caller alone). ``batching=False`` runs every request alone (same results, for comparison).
    """

    def __init__(self, run_batch: Callable[[list[Any]], Sequence[Any]], max_samples: int, max_wait: float = 0.005,
                 batching: bool = True):
        self.run_batch, self.max_samples, self.max_wait, self.batching = run_batch, max_samples, max_wait, batching
        self.stats = BatchStats()
        self._pending: deque[_Item] = deque()
        self._wake = asyncio.Event()
        self._closing = False
        self._task: asyncio.Task | None = None
        self._executor: ThreadPoolExecutor | None = None

    @property
    def queued(self) -> int:
        return len(self._pending)

    async def start(self) -> None:
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="emotion2vec-model")
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def close(self) -> None:
        """Finish what is queued, then stop."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await self._task
        if self._executor is not None:
            self._executor.shutdown(wait=True)

    async def submit(self, job: Any, samples: int) -> Any:
        if self._closing or self._task is None:
            raise RequestError(503, "busy", "the service is shutting down", {"Retry-After": "5"})
        loop = asyncio.get_running_loop()
        item = _Item(job, int(samples), loop.create_future(), loop.time())
        self._pending.append(item)
        self._wake.set()
        return await item.future  # cancelled with the request: the item is skipped if still queued

    def retry_after(self) -> int:
        """Seconds until the queue is likely to have room: queued audio over the measured audio rate (1 to 60)."""
        rate = self.stats.samples / self.stats.seconds if self.stats.seconds > 0 else 0.0
        queued = sum(it.samples for it in self._pending)
        return max(1, min(60, math.ceil(queued / rate))) if rate > 0 else 1

    async def _wait(self, timeout: float | None) -> bool:
        self._wake.clear()
        try:
            await asyncio.wait_for(self._wake.wait(), timeout)
            return True
        except asyncio.TimeoutError:
            return False

    async def _gather(self) -> list[_Item]:
        loop = asyncio.get_running_loop()
        first = self._pending.popleft()
        batch, total = [first], first.samples
        if not self.batching:
            return batch
        deadline = first.arrived + self.max_wait
        while total < self.max_samples:
            if self._pending:
                if total + self._pending[0].samples > self.max_samples:
                    break
                item = self._pending.popleft()
                batch.append(item)
                total += item.samples
                continue
            remaining = deadline - loop.time()
            if remaining <= 0 or self._closing or not await self._wait(remaining):
                break
        return batch

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._pending:
                if self._closing:
                    return
                await self._wait(None)
                continue
            batch = [it for it in await self._gather() if not it.future.done()]  # done = cancelled: client gone
            if not batch:
                continue
            t0 = time.perf_counter()
            try:
                results = await loop.run_in_executor(self._executor, self.run_batch, [it.job for it in batch])
            except Exception as e:  # noqa: BLE001 - run_batch reports per job; this is a bug: fail the batch alone
                results = [e] * len(batch)
            self._record(batch, time.perf_counter() - t0)
            for it, result in zip(batch, results):
                if it.future.done():
                    continue
                if isinstance(result, BaseException):
                    it.future.set_exception(result)
                else:
                    it.future.set_result(result)

    def _record(self, batch: list[_Item], seconds: float) -> None:
        s, n = self.stats, len(batch)
        s.batches += 1
        s.requests += n
        s.largest = max(s.largest, n)
        s.batched_requests += n if n > 1 else 0
        s.seconds += seconds
        s.samples += sum(it.samples for it in batch)


class Admission:
    """At most ``limit`` requests admitted at once (being received, queued or computed): bounds the memory held by
    uploads and the wait of those admitted. The next one is refused with 503 and a Retry-After."""

    def __init__(self, limit: int, retry_after: Callable[[], int] = lambda: 1):
        self.limit, self.retry_after, self.count = limit, retry_after, 0

    @contextlib.contextmanager
    def slot(self):
        if self.count >= self.limit:
            seconds = self.retry_after()
            raise RequestError(503, "busy", f"{self.count} requests are already in progress (--max-queue "
                               f"{self.limit}); retry in {seconds} s", {"Retry-After": str(seconds)},
                               limit=self.limit)
        self.count += 1
        try:
            yield
        finally:
            self.count -= 1
