"""Batched engine calls: queued items of several sessions run as one call, each caller gets
its own answer, and dropping, cancelling and staleness still work item by item."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from tests.test_schedulers import _hold_worker
from voice.schedulers import Priority, Scheduler, StaleJobError


class Recorder:
    """A batch function that upper-cases its items and records every call's items."""

    def __init__(self, poison: str | None = None) -> None:
        self.batches: list[list[str]] = []
        self.poison = poison

    def __call__(self, items: list[str]) -> list[str]:
        self.batches.append(list(items))
        if self.poison in items:
            raise ValueError(f"cannot handle {self.poison}")
        return [item.upper() for item in items]


@pytest.fixture
def scheduler() -> Iterator[Scheduler]:
    scheduler = Scheduler("test", workers=1, max_batch=8)
    yield scheduler
    scheduler.shutdown()


async def _until_queued(scheduler: Scheduler, depth: int) -> None:
    while scheduler.depth < depth:
        await asyncio.sleep(0.001)


def test_calls_queued_behind_a_busy_worker_run_as_one_batch_in_fair_order(
    scheduler: Scheduler,
) -> None:
    batch = Recorder()

    async def main() -> list[str]:
        gate, holder = await _hold_worker(scheduler)
        calls = [scheduler.run_batched("a", batch, f"a{i}") for i in range(4)]
        calls += [scheduler.run_batched("b", batch, "b0"), scheduler.run_batched("c", batch, "c0")]
        tasks = [asyncio.ensure_future(call) for call in calls]
        await _until_queued(scheduler, 6)
        gate.set()
        await holder
        return await asyncio.gather(*tasks)

    assert asyncio.run(main()) == ["A0", "A1", "A2", "A3", "B0", "C0"]
    # Session a queued first and most, yet b and c are not behind its whole backlog.
    assert batch.batches == [["a0", "b0", "c0", "a1", "a2", "a3"]]


def test_a_batch_holds_at_most_max_batch_calls_and_the_rest_run_next() -> None:
    scheduler = Scheduler("test", max_batch=3)
    batch = Recorder()

    async def main() -> list[str]:
        gate, holder = await _hold_worker(scheduler)
        tasks = [asyncio.ensure_future(scheduler.run_batched(f"s{i}", batch, f"x{i}"))
                 for i in range(5)]
        await _until_queued(scheduler, 5)
        gate.set()
        await holder
        return await asyncio.gather(*tasks)

    try:
        assert asyncio.run(main()) == ["X0", "X1", "X2", "X3", "X4"]
    finally:
        scheduler.shutdown()
    assert batch.batches == [["x0", "x1", "x2"], ["x3", "x4"]]


def test_urgent_calls_are_batched_first_and_apart_from_background_ones(
    scheduler: Scheduler,
) -> None:
    batch = Recorder()

    async def main() -> None:
        gate, holder = await _hold_worker(scheduler)
        tasks = [asyncio.ensure_future(scheduler.run_batched(
            "a", batch, "partial-a", priority=Priority.BACKGROUND))]
        tasks += [asyncio.ensure_future(scheduler.run_batched(
            owner, batch, f"final-{owner}", priority=Priority.URGENT)) for owner in "cd"]
        tasks.append(asyncio.ensure_future(scheduler.run_batched(
            "b", batch, "partial-b", priority=Priority.BACKGROUND)))
        await _until_queued(scheduler, 4)
        gate.set()
        await holder
        await asyncio.gather(*tasks)

    asyncio.run(main())
    assert batch.batches == [["final-c", "final-d"], ["partial-a", "partial-b"]]


def test_calls_of_different_batch_functions_never_share_a_batch(scheduler: Scheduler) -> None:
    first, second = Recorder(), Recorder()

    async def main() -> list[str]:
        gate, holder = await _hold_worker(scheduler)
        tasks = [asyncio.ensure_future(scheduler.run_batched(f"s{i}", function, f"x{i}"))
                 for i, function in enumerate([first, second, first, second])]
        await _until_queued(scheduler, 4)
        gate.set()
        await holder
        return await asyncio.gather(*tasks)

    assert asyncio.run(main()) == ["X0", "X1", "X2", "X3"]
    assert first.batches == [["x0", "x2"]] and second.batches == [["x1", "x3"]]


def test_a_failing_item_gets_its_own_exception_and_the_others_their_results(
    scheduler: Scheduler,
) -> None:
    batch = Recorder(poison="bad")

    async def main() -> list[object]:
        gate, holder = await _hold_worker(scheduler)
        tasks = [asyncio.ensure_future(scheduler.run_batched(owner, batch, item))
                 for owner, item in [("a", "good"), ("b", "bad"), ("c", "fine")]]
        await _until_queued(scheduler, 3)
        gate.set()
        await holder
        return await asyncio.gather(*tasks, return_exceptions=True)

    good, bad, fine = asyncio.run(main())
    assert (good, fine) == ("GOOD", "FINE")
    assert isinstance(bad, ValueError) and "cannot handle bad" in str(bad)
    # The failed batch was run again item by item.
    assert batch.batches == [["good", "bad", "fine"], ["good"], ["bad"], ["fine"]]


def test_a_batch_function_that_returns_too_few_results_fails_its_callers(
    scheduler: Scheduler,
) -> None:
    async def main() -> None:
        with pytest.raises(RuntimeError, match="returned 0 results for 1 items"):
            await scheduler.run_batched("a", lambda items: [], "x")
        assert await scheduler.run_batched("a", Recorder(), "y") == "Y"

    asyncio.run(main())


def test_dropping_a_session_removes_its_queued_items_from_the_batch(
    scheduler: Scheduler,
) -> None:
    batch = Recorder()

    async def main() -> None:
        gate, holder = await _hold_worker(scheduler)
        gone = [asyncio.ensure_future(scheduler.run_batched("gone", batch, f"gone{i}"))
                for i in range(3)]
        stays = asyncio.ensure_future(scheduler.run_batched("stays", batch, "stays"))
        await _until_queued(scheduler, 4)
        assert scheduler.drop("gone") == 3
        gate.set()
        await holder
        assert await stays == "STAYS"
        results = await asyncio.gather(*gone, return_exceptions=True)
        assert all(isinstance(r, asyncio.CancelledError) for r in results), results

    asyncio.run(main())
    assert batch.batches == [["stays"]]


def test_an_item_cancelled_while_queued_is_left_out_of_the_batch(scheduler: Scheduler) -> None:
    batch = Recorder()

    async def main() -> None:
        gate, holder = await _hold_worker(scheduler)
        doomed = asyncio.ensure_future(scheduler.run_batched("a", batch, "doomed"))
        kept = asyncio.ensure_future(scheduler.run_batched("b", batch, "kept"))
        await _until_queued(scheduler, 2)
        doomed.cancel()
        await asyncio.sleep(0)
        gate.set()
        await holder
        assert await kept == "KEPT"

    asyncio.run(main())
    assert batch.batches == [["kept"]]


def test_an_item_that_waited_past_its_limit_is_dropped_as_stale_and_the_rest_run(
    scheduler: Scheduler,
) -> None:
    batch = Recorder()

    async def main() -> None:
        gate, holder = await _hold_worker(scheduler)
        partial = asyncio.ensure_future(scheduler.run_batched("a", batch, "partial",
                                                              max_wait_s=0.0))
        final = asyncio.ensure_future(scheduler.run_batched("b", batch, "final"))
        await _until_queued(scheduler, 2)
        gate.set()
        await holder
        assert await final == "FINAL"
        with pytest.raises(StaleJobError, match="dropped after waiting"):
            await partial

    asyncio.run(main())
    assert batch.batches == [["final"]]


def test_an_idle_worker_waits_within_the_window_for_a_batch_to_fill() -> None:
    # The window is far longer than the test: the second call arrives while the worker waits
    # for it, and the full batch starts without waiting for the rest of the window.
    scheduler = Scheduler("test", max_batch=2, batch_window_s=600)
    batch = Recorder()

    async def main() -> list[str]:
        first = asyncio.ensure_future(scheduler.run_batched("a", batch, "a"))
        await _until_queued(scheduler, 1)
        second = asyncio.ensure_future(scheduler.run_batched("b", batch, "b"))
        return await asyncio.wait_for(asyncio.gather(first, second), 60)  # hang guard only

    try:
        assert asyncio.run(main()) == ["A", "B"]
    finally:
        scheduler.shutdown()
    assert batch.batches == [["a", "b"]]


def test_a_worker_does_not_wait_for_a_batch_to_fill_while_other_work_is_queued() -> None:
    scheduler = Scheduler("test", max_batch=8, batch_window_s=600)
    batch = Recorder()
    ran: list[str] = []

    async def main() -> None:
        batched = asyncio.ensure_future(scheduler.run_batched("a", batch, "a"))
        await _until_queued(scheduler, 1)
        plain = asyncio.ensure_future(scheduler.run("b", ran.append, "plain"))
        await asyncio.wait_for(asyncio.gather(batched, plain), 60)  # hang guard only

    try:
        asyncio.run(main())
    finally:
        scheduler.shutdown()
    assert batch.batches == [["a"]] and ran == ["plain"]


def test_the_observer_sees_each_batch_size_wait_and_run(scheduler: Scheduler) -> None:
    seen: list[tuple[str, object]] = []

    class Observer:
        def observe_wait(self, engine: str, seconds: float) -> None:
            seen.append(("wait", engine))

        def observe_run(self, engine: str, seconds: float) -> None:
            seen.append(("run", engine))

        def observe_batch(self, engine: str, size: int) -> None:
            seen.append(("batch", size))

    batch = Recorder()

    async def main() -> None:
        gate, holder = await _hold_worker(scheduler)
        scheduler.observer = Observer()
        tasks = [asyncio.ensure_future(scheduler.run_batched(f"s{i}", batch, "x"))
                 for i in range(3)]
        await _until_queued(scheduler, 3)
        gate.set()
        await holder
        await asyncio.gather(*tasks)

    asyncio.run(main())
    # (The holder's call started before the observer was set, so it is not seen.)
    assert sorted(seen) == [("batch", 3), ("run", "test"),
                            ("wait", "test"), ("wait", "test"), ("wait", "test")]


def test_metrics_show_each_engines_batch_sizes(scheduler: Scheduler) -> None:
    from voice.metrics import Metrics

    metrics = Metrics()
    batch = Recorder()

    async def main() -> None:
        gate, holder = await _hold_worker(scheduler)
        metrics.watch([scheduler])
        tasks = [asyncio.ensure_future(scheduler.run_batched(f"s{i}", batch, "x"))
                 for i in range(3)]
        await _until_queued(scheduler, 3)
        gate.set()
        await holder
        await asyncio.gather(*tasks)

    asyncio.run(main())
    text = metrics.render().decode()
    assert 'voice_engine_batch_size_count{engine="test"} 1.0' in text
    assert 'voice_engine_batch_size_sum{engine="test"} 3.0' in text
    assert 'voice_engine_wait_seconds_count{engine="test"} 3.0' in text


def test_finals_of_several_sessions_are_transcribed_in_one_batch_and_a_failure_stays_with_its_own(
    scheduler: Scheduler,
) -> None:
    import numpy as np

    from asr.transcript import TranscribeOptions
    from tests.fakes import FakeTranscriber

    transcriber = FakeTranscriber([("hallo", "de"), ("hello", "en"), ("salut", "fr")],
                                  delay_s=0)
    transcriber.failures.append(RuntimeError("decoder failed"))
    audio = np.zeros(16_000, np.float32)

    async def main() -> list[object]:
        gate, holder = await _hold_worker(scheduler)
        tasks = [asyncio.ensure_future(scheduler.run_batched(
            session, transcriber.transcribe_batch, (audio, TranscribeOptions()),
            priority=Priority.URGENT)) for session in ("s1", "s2", "s3")]
        await _until_queued(scheduler, 3)
        gate.set()
        await holder
        return await asyncio.gather(*tasks, return_exceptions=True)

    failed, second, third = asyncio.run(main())
    assert isinstance(failed, RuntimeError) and str(failed) == "decoder failed"
    assert [getattr(t, "text", None) for t in (second, third)] == ["hallo", "hello"]
    assert transcriber.batch_sizes == [3, 1, 1, 1]  # the batch, then each final alone
