"""Dynamic batching: requests wait briefly in a bounded queue and run together in one thread.

A :class:`Batcher` lives on the server's event loop. :meth:`Batcher.submit` enqueues a job
(``size`` images, a ``key`` that jobs of one batch must share) or raises
:class:`QueueFullError` when the queue holds ``max_queue`` images already. A single worker
thread runs one batch at a time: it takes the oldest job and every later job with the same
key, up to ``max_batch`` images (a job larger than that runs alone), after waiting at most
``batch_wait_ms`` for such jobs to arrive. :meth:`Batcher.cancel` removes a waiting job
(freeing its place) or discards the result of a running one.

Failures stay with the job that caused them. ``run_batch`` may return an exception in place
of a job's result (a job it could not prepare, or whose output it could not render): that job
alone fails with it. When ``run_batch`` raises for a batch of several jobs, the worker runs
those jobs again one at a time, so each gets its own result or its own error (a fault tied
to one job's input, or one that only a whole batch triggers, such as running out of memory,
then fails no other job). A batch that succeeds costs no more than before.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import math
import time
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)


class QueueFullError(Exception):
    """The queue cannot take the job now; retry after ``retry_after`` seconds."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"the queue is full; retry in {retry_after} s")
        self.retry_after = retry_after


class BatcherStoppedError(Exception):
    """The batcher was stopped before the job ran."""


@dataclass(eq=False)
class Job:
    """One request's work: ``size`` images, run in a batch with jobs of the same ``key``."""

    key: Hashable
    size: int
    payload: Any
    future: asyncio.Future[Any]
    enqueued_at: float = field(default_factory=time.perf_counter)
    started_at: float | None = None
    finished_at: float | None = None
    cancelled: bool = False

    @property
    def queue_seconds(self) -> float:
        return (self.started_at or time.perf_counter()) - self.enqueued_at

    @property
    def run_seconds(self) -> float:
        if self.started_at is None or self.finished_at is None:
            return 0.0
        return self.finished_at - self.started_at


RunBatch = Callable[[list[Job]], list[Any]]


class Batcher:
    """Gathers jobs into batches for ``run_batch`` (called in one worker thread).

    ``run_batch(jobs)`` returns one result per job, in order; an ``Exception`` instance in
    place of a result fails that job alone. If ``run_batch`` raises, a batch of one job fails
    with that exception and a larger batch is run again one job at a time.
    """

    def __init__(self, run_batch: RunBatch, max_batch: int = 8, max_queue: int = 64,
                 batch_wait_ms: float = 10.0) -> None:
        if max_batch < 1 or max_queue < 1 or batch_wait_ms < 0:
            raise ValueError("max_batch and max_queue must be >= 1 and batch_wait_ms >= 0")
        self.run_batch = run_batch
        self.max_batch = max_batch
        self.max_queue = max_queue
        self.batch_wait = batch_wait_ms / 1000.0
        self._pending: collections.deque[Job] = collections.deque()
        self._waiting_images = 0
        self._changed: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._batch_seconds = 0.0  # moving average, for Retry-After
        self.batches_run = 0
        self.batches_split = 0  # batches that failed as a whole and were run one job at a time
        self.last_batch_jobs = 0  # jobs in the latest batch (before any split)
        self.running = False

    # ------------------------------------------------------------------ state
    @property
    def waiting_images(self) -> int:
        """Images in jobs that wait for a batch (a running batch is not counted)."""
        return self._waiting_images

    @property
    def is_full(self) -> bool:
        return self._waiting_images >= self.max_queue

    def retry_after(self, extra_images: int = 0) -> int:
        """Seconds until the queue has probably drained enough for ``extra_images`` more."""
        batches = math.ceil((self._waiting_images + extra_images) / self.max_batch)
        return max(1, math.ceil(batches * self._batch_seconds))

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        """Start the worker on the running event loop (idempotent)."""
        if self._task is not None and not self._task.done():
            return
        self._changed = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="attngan-batch")
        self._task = asyncio.get_running_loop().create_task(self._worker(), name="attngan-batcher")
        self.running = True

    async def stop(self) -> None:
        """Stop the worker; waiting jobs fail with :class:`BatcherStoppedError`."""
        self.running = False
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        while self._pending:
            job = self._pending.popleft()
            if not job.future.done():
                job.future.set_exception(BatcherStoppedError("the server is shutting down"))
                job.future.exception()  # nobody may be left to read it: do not log it as lost
        self._waiting_images = 0
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    # ------------------------------------------------------------------ jobs
    async def submit(self, key: Hashable, size: int, payload: Any) -> Job:
        """Enqueue a job; await ``job.future`` for its result.

        Raises:
            QueueFullError: ``max_queue`` images are waiting already (a job is always
                accepted into an empty queue, whatever its size).
        """
        if self._task is None or self._task.done():
            await self.start()
        if self._waiting_images > 0 and self._waiting_images + size > self.max_queue:
            raise QueueFullError(self.retry_after(size))
        job = Job(key, size, payload, asyncio.get_running_loop().create_future())
        self._pending.append(job)
        self._waiting_images += size
        assert self._changed is not None
        self._changed.set()
        return job

    def cancel(self, job: Job) -> None:
        """Give up on a job: free its place if it still waits, else discard its result."""
        job.cancelled = True
        try:
            self._pending.remove(job)
        except ValueError:
            pass
        else:
            self._waiting_images -= job.size
        if not job.future.done():
            job.future.cancel()

    # ------------------------------------------------------------------ worker
    def _batchable_images(self) -> int:
        key = self._pending[0].key
        return sum(j.size for j in self._pending if j.key == key)

    def _take_batch(self) -> list[Job]:
        first = self._pending[0]
        batch: list[Job] = []
        total = 0
        for job in list(self._pending):
            if job.key != first.key:
                continue
            if batch and total + job.size > self.max_batch:
                break
            batch.append(job)
            total += job.size
        for job in batch:
            self._pending.remove(job)
        self._waiting_images -= total
        return batch

    async def _worker(self) -> None:
        assert self._changed is not None
        loop = asyncio.get_running_loop()
        while True:
            if not self._pending:
                self._changed.clear()
                await self._changed.wait()
                continue
            deadline = loop.time() + self.batch_wait
            while self._pending and self._batchable_images() < self.max_batch:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                self._changed.clear()
                try:
                    await asyncio.wait_for(self._changed.wait(), remaining)
                except asyncio.TimeoutError:
                    break
            if not self._pending:
                continue
            batch = self._take_batch()
            self.last_batch_jobs = len(batch)
            started = time.perf_counter()
            for job in batch:
                job.started_at = started
            try:
                outcomes = await loop.run_in_executor(self._executor, self._run_isolated, batch)
            except asyncio.CancelledError:
                for job in batch:
                    if not job.future.done():
                        job.future.set_exception(BatcherStoppedError("the server is shutting down"))
                        job.future.exception()
                raise
            finally:
                finished = time.perf_counter()
                for job in batch:
                    job.finished_at = finished
                seconds = finished - started
                self._batch_seconds = seconds if not self.batches_run else 0.8 * self._batch_seconds + 0.2 * seconds
                self.batches_run += 1
            for job, outcome in zip(batch, outcomes):
                if job.future.done():  # cancelled: nobody waits for it any more
                    if isinstance(outcome, Exception):
                        log.debug("discarded the failure of a cancelled job: %s", outcome)
                elif isinstance(outcome, Exception):
                    job.future.set_exception(outcome)
                else:
                    job.future.set_result(outcome)

    def _call(self, jobs: list[Job]) -> list[Any]:
        """``run_batch(jobs)``, checked to give one outcome per job."""
        results = self.run_batch(jobs)
        if len(results) != len(jobs):
            raise RuntimeError(f"run_batch returned {len(results)} results for {len(jobs)} jobs")
        return list(results)

    def _run_isolated(self, batch: list[Job]) -> list[Any]:
        """One outcome (a result or an exception) per job; runs in the worker thread.

        The batch runs once; only if that raises does each job still waited for run alone.
        """
        try:
            return self._call(batch)
        except Exception as exc:  # one failed batch must not stop the worker
            if len(batch) == 1:
                return [exc]
            failure = exc
        self.batches_split += 1
        log.warning("a batch of %d jobs failed (%s: %s); running its jobs one at a time",
                    len(batch), type(failure).__name__, failure)
        outcomes: list[Any] = []
        for job in batch:
            if job.cancelled:
                outcomes.append(BatcherStoppedError("cancelled"))
                continue
            try:
                outcomes.extend(self._call([job]))
            except Exception as exc:
                outcomes.append(exc)
        return outcomes
