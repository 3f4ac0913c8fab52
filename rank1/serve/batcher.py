"""An asyncio micro-batching queue in front of one worker thread.

Requests (jobs) from any number of concurrent clients are queued; a collector task takes the first one,
waits up to ``max_wait`` seconds for more until the batch holds ``max_batch`` items (pairs), and hands the
batch to ``run_batch`` on a single worker thread. While the worker is busy, new jobs queue up and form the
next batch, so under load batches fill without waiting. A job larger than ``max_batch`` is run alone and
never split. ``run_batch`` returns one result per job, in order.

Example:
    >>> batcher = MicroBatcher(run_batch, size=len, max_batch=64, max_wait=0.005, executor=pool)  # doctest: +SKIP
    >>> batcher.start(); result = await batcher.submit(job); await batcher.close()               # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import collections
from concurrent.futures import Executor
from typing import Callable, Generic, Sequence, TypeVar

J = TypeVar("J")
R = TypeVar("R")


class QueueFull(RuntimeError):
    """More items wait than the batcher takes; the caller should retry later."""


class BatcherClosed(RuntimeError):
    """The batcher is shutting down and takes no new jobs."""


class MicroBatcher(Generic[J, R]):
    """Merges concurrent jobs into batches run one at a time on ``executor``.

    Args:
        run_batch: Runs a batch of jobs (on the executor's thread); returns one result per job.
        size: A job's weight (its pairs).
        max_batch: Most weight per batch (a heavier job forms a batch of its own).
        max_wait: Seconds the first job of a batch waits for company.
        executor: Where ``run_batch`` runs: one thread, since the model is not thread-safe.
        max_queued: Most weight waiting; :meth:`submit` raises :class:`QueueFull` beyond it.
    """

    def __init__(self, run_batch: Callable[[Sequence[J]], Sequence[R]], *, size: Callable[[J], int],
                 max_batch: int, max_wait: float, executor: Executor, max_queued: int = 1 << 30) -> None:
        self._run_batch, self._size, self._executor = run_batch, size, executor
        self.max_batch, self.max_wait, self.max_queued = max_batch, max_wait, max_queued
        self._pending: collections.deque[tuple[J, asyncio.Future[R]]] = collections.deque()
        self._queued = 0
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.batches = 0
        """Batches run so far."""

    @property
    def queued(self) -> int:
        """Weight of the jobs waiting for a batch."""
        return self._queued

    def start(self) -> None:
        """Start the collector task on the running event loop."""
        self._wake = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._collect(), name="rank1-batcher")

    async def submit(self, job: J) -> R:
        """Queue ``job`` and wait for its result.

        Raises:
            BatcherClosed: The batcher is shutting down.
            QueueFull: Too much work is waiting.
            Exception: Whatever ``run_batch`` raised for the job's batch.
        """
        if self._closing or self._task is None or self._wake is None:
            raise BatcherClosed("the server is shutting down")
        weight = self._size(job)
        if self._queued and self._queued + weight > self.max_queued:
            raise QueueFull(f"{self._queued} pairs are waiting already")
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._pending.append((job, future))
        self._queued += weight
        self._wake.set()
        return await future

    async def close(self) -> None:
        """Take no new jobs, finish every queued one, then stop the collector."""
        self._closing = True
        if self._task is not None and self._wake is not None:
            self._wake.set()
            await self._task

    async def _collect(self) -> None:
        """Form and run batches until closed and drained."""
        assert self._wake is not None
        loop = asyncio.get_running_loop()
        while True:
            if not self._pending:
                if self._closing:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            deadline = loop.time() + self.max_wait
            while self._queued < self.max_batch and not self._closing:
                left = deadline - loop.time()
                if left <= 0:
                    break
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), left)
                except asyncio.TimeoutError:
                    break
            batch = self._take()
            if batch:
                await self._run(loop, batch)

    def _take(self) -> list[tuple[J, asyncio.Future[R]]]:
        """Pop the jobs of the next batch (at least one; cancelled jobs are dropped)."""
        batch: list[tuple[J, asyncio.Future[R]]] = []
        weight = 0
        while self._pending:
            job, future = self._pending[0]
            size = self._size(job)
            if batch and weight + size > self.max_batch:
                break
            self._pending.popleft()
            self._queued -= size
            if not future.cancelled():  # the client went away
                batch.append((job, future))
                weight += size
        return batch

    async def _run(self, loop: asyncio.AbstractEventLoop, batch: list[tuple[J, asyncio.Future[R]]]) -> None:
        """Run one batch on the worker thread and hand each job its result (or the batch's error)."""
        self.batches += 1
        try:
            results = await loop.run_in_executor(self._executor, self._run_batch, [job for job, _ in batch])
        except Exception as err:  # noqa: BLE001 (every waiting request gets the error)
            for _, future in batch:
                if not future.done():
                    future.set_exception(err)
            return
        for (_, future), result in zip(batch, results):
            if not future.done():
                future.set_result(result)
