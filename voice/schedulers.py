"""Engine schedulers: one per engine, shared by every session of the process.

A :class:`Scheduler` owns an engine's worker threads and one priority queue. Sessions submit
blocking calls with :meth:`Scheduler.run` (awaited on the event loop; the call itself runs in a
worker thread) and say who they are (``owner``) and how urgent the call is
(:class:`Priority`). The queue is ordered by priority first, then fairly between owners: each
owner's calls get increasing virtual start tags (start-time fair queuing with unit cost), so a
session that floods the queue waits behind its own backlog while the others' calls go first.

Calls submitted with :meth:`Scheduler.run_batched` name a *batch function* (items in, one
result per item out, e.g. ``Transcriber.transcribe_batch``) and one item. A worker that picks
such a call takes along the next queued calls of the same batch function and priority, in queue
order, up to ``max_batch``, and runs them as one call of the batch function; each caller gets
its own result. While the queue holds nothing else, a worker waits up to ``batch_window_s``
(counted from the first call's submission) for more calls to fill the batch.

When a session leaves, :meth:`Scheduler.drop` removes its queued calls; an awaited call that is
cancelled before it starts never runs. Calls given a ``max_wait_s`` that waited longer are
dropped with :class:`StaleJobError` instead of running late (partial transcripts under load).

Queue depth, wait time, run time and batch sizes are reported through a
:class:`SchedulerObserver` (``voice/metrics.py`` implements it for ``/metrics``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
import heapq
import itertools
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar

logger = logging.getLogger(__name__)
T = TypeVar("T")
Item = TypeVar("Item")
BatchFunction = Callable[[list[Any]], Sequence[Any]]


class Priority(enum.IntEnum):
    """Lower runs first."""

    URGENT = 0  # the user is waiting on it now: final transcripts, the first piece of a reply
    NORMAL = 1
    BACKGROUND = 2  # nice to have: partial transcripts


class StaleJobError(Exception):
    """The call waited longer than its ``max_wait_s`` and was dropped unrun."""


class SchedulerObserver(Protocol):
    def observe_wait(self, engine: str, seconds: float) -> None: ...

    def observe_run(self, engine: str, seconds: float) -> None: ...

    def observe_batch(self, engine: str, size: int) -> None: ...


@dataclasses.dataclass(eq=False)
class _Job:
    priority: int
    tag: int
    seq: int
    owner: str
    function: Callable[..., Any]
    args: tuple[Any, ...]
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]
    submitted: float
    max_wait_s: float | None
    batch: BatchFunction | None = None  # run_batched: the batch function; args is (item,)
    cancelled: bool = False

    def key(self) -> tuple[int, int, int]:
        return (self.priority, self.tag, self.seq)

    def __lt__(self, other: _Job) -> bool:
        return self.key() < other.key()


class Scheduler:
    """Worker threads for one engine behind a fair priority queue. Thread-safe."""

    def __init__(self, name: str, workers: int = 1, *, max_batch: int = 8,
                 batch_window_s: float = 0.0) -> None:
        """``max_batch`` and ``batch_window_s`` apply to :meth:`run_batched` calls only."""
        if workers < 1:
            raise ValueError("a scheduler needs at least one worker")
        if max_batch < 1 or batch_window_s < 0:
            raise ValueError("max_batch must be at least 1 and batch_window_s not negative")
        self.name = name
        self.workers = workers
        self.max_batch = max_batch
        self.batch_window_s = batch_window_s
        self.observer: SchedulerObserver | None = None
        self._heap: list[_Job] = []
        self._condition = threading.Condition()
        self._next_tag: dict[str, int] = {}  # owner -> its next virtual start tag
        self._virtual = 0  # tag of the last call started
        self._seq = itertools.count()
        self._running = 0
        self._running_urgent = 0
        self._closed = False
        self._threads = [threading.Thread(target=self._work, name=f"{name}-{i}", daemon=True)
                         for i in range(workers)]
        for thread in self._threads:
            thread.start()

    @property
    def depth(self) -> int:
        """Calls waiting in the queue (not counting the ones running)."""
        return len(self._heap)

    @property
    def running(self) -> int:
        return self._running

    @property
    def urgent(self) -> int:
        """Urgent calls queued or running (someone waits for them now). Any thread."""
        with self._condition:
            return self._running_urgent + sum(
                1 for job in self._heap if job.priority == Priority.URGENT and not job.cancelled)

    async def run(self, owner: str, function: Callable[..., T], *args: Any,
                  priority: Priority = Priority.NORMAL, max_wait_s: float | None = None) -> T:
        """Run ``function(*args)`` in a worker thread when its turn comes; return its result.

        Cancelling the awaiting task before the call starts removes it from the queue; once
        started, the call runs to its end and its result is discarded.
        """
        result: T = await self._submit(owner, function, args, None, priority, max_wait_s)
        return result

    async def run_batched(self, owner: str, batch_function: Callable[[list[Item]], Sequence[T]],
                          item: Item, *, priority: Priority = Priority.NORMAL,
                          max_wait_s: float | None = None) -> T:
        """Run ``batch_function`` on ``item``, together with other queued items; return the
        result for this item.

        ``batch_function(items)`` runs in a worker thread and must return one result per item,
        in order. Calls batch together when they pass an equal ``batch_function`` (a bound
        method of the same engine object is equal) and have the same ``priority``; the batch
        takes them in queue order (fair between owners), at most ``max_batch``. If the batch
        call raises, each of its items is run again alone, so a caller gets its own item's
        exception and one bad item cannot fail the others. Cancellation, :meth:`drop` and
        ``max_wait_s`` work as for :meth:`run`.
        """
        result: T = await self._submit(owner, batch_function, (item,), batch_function,
                                       priority, max_wait_s)
        return result

    async def _submit(self, owner: str, function: Callable[..., Any], args: tuple[Any, ...],
                      batch: BatchFunction | None, priority: Priority,
                      max_wait_s: float | None) -> Any:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        with self._condition:
            if self._closed:
                raise RuntimeError(f"the {self.name} scheduler is shut down")
            tag = max(self._next_tag.get(owner, 0), self._virtual)
            self._next_tag[owner] = tag + 1
            job = _Job(int(priority), tag, next(self._seq), owner, function, args, loop,
                       future, time.monotonic(), max_wait_s, batch)
            heapq.heappush(self._heap, job)
            # all: a worker waiting for its batch window to fill must hear of this call too
            self._condition.notify_all()
        try:
            return await future
        except asyncio.CancelledError:
            job.cancelled = True
            raise

    def drop(self, owner: str) -> int:
        """Remove every queued call of ``owner`` (a session that left); returns how many."""
        with self._condition:
            mine = [job for job in self._heap if job.owner == owner]
            if mine:
                self._heap = [job for job in self._heap if job.owner != owner]
                heapq.heapify(self._heap)
            self._next_tag.pop(owner, None)
        for job in mine:
            job.cancelled = True
            _deliver(job, cancel=True)
        if mine:
            logger.info("%s: dropped %d queued call(s) of %s", self.name, len(mine), owner)
        return len(mine)

    def shutdown(self) -> None:
        """Stop the workers after the calls already queued."""
        with self._condition:
            self._closed = True
            self._condition.notify_all()

    def _work(self) -> None:
        while True:
            with self._condition:
                jobs = self._next_jobs()
                if jobs is None:
                    return
                urgent = int(jobs[0].priority == Priority.URGENT)
                self._running += 1
                self._running_urgent += urgent
            try:
                self._execute(jobs)
            finally:
                with self._condition:
                    self._running -= 1
                    self._running_urgent -= urgent

    def _next_jobs(self) -> list[_Job] | None:
        """The next call, or the next batch; None once shut down and empty. Holds the lock."""
        while True:
            while not self._heap and not self._closed:
                self._condition.wait()
            if not self._heap:
                return None
            head = self._heap[0]
            if head.cancelled:
                heapq.heappop(self._heap)
                continue
            window_left = self._batch_window_left(head)
            if window_left > 0:
                self._condition.wait(window_left)
                continue
            heapq.heappop(self._heap)
            self._virtual = max(self._virtual, head.tag)
            return [head] if head.batch is None else [head, *self._take_batch_mates(head)]

    def _batch_window_left(self, head: _Job) -> float:
        """Seconds to wait for more calls to join ``head``'s batch: only while the queue holds
        nothing but fewer than ``max_batch`` of them, and within the window."""
        if head.batch is None or self._closed or self.batch_window_s <= 0:
            return 0.0
        left = head.submitted + self.batch_window_s - time.monotonic()
        if left <= 0:
            return 0.0
        waiting = [job for job in self._heap if not job.cancelled]
        if len(waiting) >= self.max_batch or not all(_mates(head, job) for job in waiting):
            return 0.0
        return left

    def _take_batch_mates(self, head: _Job) -> list[_Job]:
        """Remove from the queue and return the calls that join ``head`` (already popped)."""
        mates = sorted(job for job in self._heap if _mates(head, job))
        taken = [job for job in mates if not job.cancelled][: self.max_batch - 1]
        if mates:
            removed = {id(job) for job in mates if job.cancelled} | {id(job) for job in taken}
            self._heap = [job for job in self._heap if id(job) not in removed]
            heapq.heapify(self._heap)
        for job in taken:
            self._virtual = max(self._virtual, job.tag)
        return taken

    def _execute(self, jobs: list[_Job]) -> None:
        observer = self.observer
        now = time.monotonic()
        live = []
        for job in jobs:
            if job.cancelled:
                continue
            waited = now - job.submitted
            if observer is not None:
                observer.observe_wait(self.name, waited)
            if job.max_wait_s is not None and waited > job.max_wait_s:
                _deliver(job, error=StaleJobError(
                    f"{self.name}: dropped after waiting {waited:.2f} s "
                    f"(limit {job.max_wait_s} s)"))
            else:
                live.append(job)
        if not live:
            return
        started = time.monotonic()
        outcomes = [_call(live[0])] if live[0].batch is None else self._run_batch(live)
        if observer is not None:  # before the callers can see the results
            observer.observe_run(self.name, time.monotonic() - started)
        for job, result, error in outcomes:
            _deliver(job, result=result, error=error)

    def _run_batch(self, jobs: list[_Job]) -> list[_Outcome]:
        """One call of the batch function for ``jobs``; if it fails, each job alone."""
        batch = jobs[0].batch
        assert batch is not None
        if self.observer is not None:
            self.observer.observe_batch(self.name, len(jobs))
        try:
            results = batch([job.args[0] for job in jobs])
            if len(results) != len(jobs):
                raise RuntimeError(f"{self.name}: the batch function returned {len(results)} "
                                   f"results for {len(jobs)} items")
        except BaseException as error:  # handed to the awaiting coroutines, which decide
            if len(jobs) == 1:
                return [(jobs[0], None, error)]
            logger.warning("%s: a batch of %d calls failed (%s: %s); running each alone",
                           self.name, len(jobs), type(error).__name__, error)
            return [outcome for job in jobs if not job.cancelled
                    for outcome in self._run_batch([job])]
        return [(job, result, None) for job, result in zip(jobs, results, strict=True)]


_Outcome = tuple[_Job, Any, BaseException | None]  # a call, its result, the error it raised


def _call(job: _Job) -> _Outcome:
    try:
        return job, job.function(*job.args), None
    except BaseException as error:  # handed to the awaiting coroutine, which decides
        return job, None, error


def _mates(head: _Job, job: _Job) -> bool:
    """Whether ``job`` may run in the same batch call as ``head``."""
    return job.batch is not None and job.batch == head.batch and job.priority == head.priority


def _deliver(job: _Job, *, result: Any = None, error: BaseException | None = None,
             cancel: bool = False) -> None:
    """Complete the job's future on its own event loop (a closed loop is ignored)."""

    def complete() -> None:
        if job.future.done():
            return
        if cancel:
            job.future.cancel()
        elif error is not None:
            job.future.set_exception(error)
        else:
            job.future.set_result(result)

    with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting
        job.loop.call_soon_threadsafe(complete)


def cpu_workers(cores_each: int) -> int:
    """Workers for a single-threaded CPU engine (Piper, Silero, Smart Turn): at least two, and
    one per ``cores_each`` cores beyond that, so a 16-core GPU host synthesizes 8 pieces at once
    while the 2-core machine keeps its two."""
    return max(2, (os.cpu_count() or 1) // cores_each)


def asr_scheduler(device: str) -> Scheduler:
    """On a CPU, batching finals does not pay (docs/benchmarks.md, "ASR batching"): two
    workers, one utterance per call. On a GPU, one worker batches up to 32 within 10 ms."""
    if device == "cpu":
        return Scheduler("asr", 2, max_batch=1)
    return Scheduler("asr", 1, max_batch=32, batch_window_s=0.01)
