"""The engine schedulers: fair between sessions, priorities first, nothing run for a leaver."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest

from voice.schedulers import Priority, Scheduler, StaleJobError


@pytest.fixture
def scheduler() -> Iterator[Scheduler]:
    scheduler = Scheduler("test", workers=1)
    yield scheduler
    scheduler.shutdown()


async def _hold_worker(scheduler: Scheduler) -> tuple[threading.Event, asyncio.Task[None]]:
    """Occupy the single worker until the returned event is set."""
    gate, started = threading.Event(), threading.Event()

    def block() -> None:
        started.set()
        gate.wait(10)

    task = asyncio.ensure_future(scheduler.run("holder", block))
    while not started.is_set():
        await asyncio.sleep(0.001)
    return gate, task


def test_a_session_that_floods_the_queue_does_not_delay_another_sessions_call(
    scheduler: Scheduler,
) -> None:
    ran: list[str] = []

    async def main() -> None:
        gate, holder = await _hold_worker(scheduler)
        flood = [asyncio.ensure_future(scheduler.run("flooder", ran.append, f"flood{i}"))
                 for i in range(10)]
        await asyncio.sleep(0)
        polite = asyncio.ensure_future(scheduler.run("polite", ran.append, "polite"))
        await asyncio.sleep(0.01)
        assert scheduler.depth == 11
        gate.set()
        await asyncio.gather(holder, polite, *flood)

    asyncio.run(main())
    assert ran.index("polite") <= 1, ran
    assert [r for r in ran if r != "polite"] == [f"flood{i}" for i in range(10)]


def test_urgent_calls_run_before_background_ones(scheduler: Scheduler) -> None:
    ran: list[str] = []

    async def main() -> None:
        gate, holder = await _hold_worker(scheduler)
        jobs = [asyncio.ensure_future(scheduler.run("a", ran.append, "partial",
                                                    priority=Priority.BACKGROUND)),
                asyncio.ensure_future(scheduler.run("b", ran.append, "reply")),
                asyncio.ensure_future(scheduler.run("c", ran.append, "final",
                                                    priority=Priority.URGENT))]
        await asyncio.sleep(0.01)
        gate.set()
        await asyncio.gather(holder, *jobs)

    asyncio.run(main())
    assert ran == ["final", "reply", "partial"]


def test_dropping_a_session_cancels_its_queued_calls_and_never_runs_them(
    scheduler: Scheduler,
) -> None:
    ran: list[str] = []

    async def main() -> None:
        gate, holder = await _hold_worker(scheduler)
        gone = [asyncio.ensure_future(scheduler.run("gone", ran.append, f"gone{i}"))
                for i in range(5)]
        stays = asyncio.ensure_future(scheduler.run("stays", ran.append, "stays"))
        await asyncio.sleep(0.01)
        assert scheduler.drop("gone") == 5
        gate.set()
        await asyncio.gather(holder, stays)
        results = await asyncio.gather(*gone, return_exceptions=True)
        assert all(isinstance(r, asyncio.CancelledError) for r in results), results

    asyncio.run(main())
    assert ran == ["stays"]


def test_a_call_cancelled_while_queued_never_runs(scheduler: Scheduler) -> None:
    ran: list[str] = []

    async def main() -> None:
        gate, holder = await _hold_worker(scheduler)
        doomed = asyncio.ensure_future(scheduler.run("a", ran.append, "doomed"))
        await asyncio.sleep(0.01)
        doomed.cancel()
        await asyncio.sleep(0.01)
        after = asyncio.ensure_future(scheduler.run("a", ran.append, "after"))
        gate.set()
        await asyncio.gather(holder, after)

    asyncio.run(main())
    assert ran == ["after"]


def test_a_call_that_waited_past_its_limit_is_dropped_as_stale(scheduler: Scheduler) -> None:
    ran: list[str] = []

    async def main() -> None:
        gate, holder = await _hold_worker(scheduler)
        partial = asyncio.ensure_future(scheduler.run("a", ran.append, "partial",
                                                      max_wait_s=0.0))
        await asyncio.sleep(0.01)
        gate.set()
        await holder
        with pytest.raises(StaleJobError, match="dropped after waiting"):
            await partial

    asyncio.run(main())
    assert ran == []


def test_an_engine_error_reaches_the_caller_and_the_worker_goes_on(
    scheduler: Scheduler,
) -> None:
    def fail() -> None:
        raise RuntimeError("CUDA failed with error out of memory")

    async def main() -> int:
        with pytest.raises(RuntimeError, match="out of memory"):
            await scheduler.run("a", fail)
        return await scheduler.run("a", int, "7")

    assert asyncio.run(main()) == 7


def test_the_observer_sees_each_wait_and_run(scheduler: Scheduler) -> None:
    seen: list[tuple[str, str]] = []

    class Observer:
        def observe_wait(self, engine: str, seconds: float) -> None:
            assert seconds >= 0
            seen.append(("wait", engine))

        def observe_run(self, engine: str, seconds: float) -> None:
            seen.append(("run", engine))

    scheduler.observer = Observer()

    async def main() -> None:
        await asyncio.gather(*(scheduler.run("a", abs, -i) for i in range(3)))

    asyncio.run(main())
    assert seen.count(("wait", "test")) == 3 and seen.count(("run", "test")) == 3


def test_urgent_counts_the_urgent_calls_queued_and_running_and_nothing_else(
    scheduler: Scheduler,
) -> None:
    async def main() -> None:
        gate, started = threading.Event(), threading.Event()

        def final() -> None:
            started.set()
            gate.wait(10)

        running = asyncio.ensure_future(scheduler.run("a", final, priority=Priority.URGENT))
        while not started.is_set():
            await asyncio.sleep(0.001)
        assert scheduler.urgent == 1  # running
        queued = [asyncio.ensure_future(scheduler.run("b", lambda: None,
                                                      priority=Priority.URGENT)),
                  asyncio.ensure_future(scheduler.run("c", lambda: None,
                                                      priority=Priority.BACKGROUND)),
                  asyncio.ensure_future(scheduler.run("d", lambda: None))]
        cancelled = asyncio.ensure_future(scheduler.run("e", lambda: None,
                                                        priority=Priority.URGENT))
        await asyncio.sleep(0.01)
        cancelled.cancel()
        await asyncio.sleep(0)
        assert scheduler.urgent == 2  # one running, one queued: not the partial, the
        # normal call or the cancelled one
        gate.set()
        await asyncio.gather(running, *queued)
        assert scheduler.urgent == 0

    asyncio.run(main())
