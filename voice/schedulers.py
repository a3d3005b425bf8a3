"""Engine schedulers: one per engine, shared by every session of the process.

A :class:`Scheduler` owns an engine's worker threads and one priority queue. Sessions submit
blocking calls with :meth:`Scheduler.run` (awaited on the event loop; the call itself runs in a
worker thread) and say who they are (``owner``) and how urgent the call is
(:class:`Priority`). The queue is ordered by priority first, then fairly between owners: each
owner's calls get increasing virtual start tags (start-time fair queuing with unit cost), so a
session that floods the queue waits behind its own backlog while the others' calls go first.

When a session leaves, :meth:`Scheduler.drop` removes its queued calls; an awaited call that is
cancelled before it starts never runs. Calls given a ``max_wait_s`` that waited longer are
dropped with :class:`StaleJobError` instead of running late (partial transcripts under load).

Queue depth, wait time and the number of calls run are reported through a
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
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

logger = logging.getLogger(__name__)
T = TypeVar("T")


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
    cancelled: bool = False

    def key(self) -> tuple[int, int, int]:
        return (self.priority, self.tag, self.seq)

    def __lt__(self, other: _Job) -> bool:
        return self.key() < other.key()


class Scheduler:
    """Worker threads for one engine behind a fair priority queue. Thread-safe."""

    def __init__(self, name: str, workers: int = 1) -> None:
        if workers < 1:
            raise ValueError("a scheduler needs at least one worker")
        self.name = name
        self.workers = workers
        self.observer: SchedulerObserver | None = None
        self._heap: list[_Job] = []
        self._condition = threading.Condition()
        self._next_tag: dict[str, int] = {}  # owner -> its next virtual start tag
        self._virtual = 0  # tag of the last call started
        self._seq = itertools.count()
        self._running = 0
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

    async def run(self, owner: str, function: Callable[..., T], *args: Any,
                  priority: Priority = Priority.NORMAL, max_wait_s: float | None = None) -> T:
        """Run ``function(*args)`` in a worker thread when its turn comes; return its result.

        Cancelling the awaiting task before the call starts removes it from the queue; once
        started, the call runs to its end and its result is discarded.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        with self._condition:
            if self._closed:
                raise RuntimeError(f"the {self.name} scheduler is shut down")
            tag = max(self._next_tag.get(owner, 0), self._virtual)
            self._next_tag[owner] = tag + 1
            job = _Job(int(priority), tag, next(self._seq), owner, function, args, loop,
                       future, time.monotonic(), max_wait_s)
            heapq.heappush(self._heap, job)
            self._condition.notify()
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
                while not self._heap and not self._closed:
                    self._condition.wait()
                if not self._heap:
                    return
                job = heapq.heappop(self._heap)
                self._virtual = max(self._virtual, job.tag)
                if job.cancelled:
                    continue
                self._running += 1
            try:
                self._execute(job)
            finally:
                with self._condition:
                    self._running -= 1

    def _execute(self, job: _Job) -> None:
        waited = time.monotonic() - job.submitted
        observer = self.observer
        if observer is not None:
            observer.observe_wait(self.name, waited)
        if job.max_wait_s is not None and waited > job.max_wait_s:
            _deliver(job, error=StaleJobError(
                f"{self.name}: dropped after waiting {waited:.2f} s (limit {job.max_wait_s} s)"))
            return
        started = time.monotonic()
        error: BaseException | None = None
        result: Any = None
        try:
            result = job.function(*job.args)
        except BaseException as raised:  # handed to the awaiting coroutine, which decides
            error = raised
        if observer is not None:  # before the caller can see the result
            observer.observe_run(self.name, time.monotonic() - started)
        _deliver(job, result=result, error=error)


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
