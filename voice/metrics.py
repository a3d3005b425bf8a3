"""Prometheus metrics of the service (served as text at ``/metrics``)."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)

from voice.protocol import LATENCY_STAGES
from voice.schedulers import Scheduler

if TYPE_CHECKING:
    from voice.reply_audio import Gap

_ENGINE_BUCKETS_S = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30)
_BATCH_SIZE_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64)
_LOOP_LAG_BUCKETS_S = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)
LOOP_LAG_INTERVAL_S = 0.25
_LATENCY_BUCKETS_MS = (50, 100, 200, 300, 500, 750, 1000, 1500, 2000, 3000, 5000, 8000,
                       13000, 20000)


class Metrics:
    """One registry per server, so tests can run several servers in one process."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        # process_cpu_seconds_total, resident memory, open files (Linux): how busy the
        # server's cores are under load (voice-latency --load reports it per level).
        ProcessCollector(registry=self.registry)
        self.sessions_active = Gauge("voice_sessions_active", "Sessions connected now",
                                     registry=self.registry)
        self.sessions_total = Counter("voice_sessions", "Sessions opened",
                                      registry=self.registry)
        self.sessions_refused = Counter("voice_sessions_refused",
                                        "Connections refused, by reason", ["reason"],
                                        registry=self.registry)
        self.sessions_closed = Counter(
            "voice_sessions_closed", "Sessions the server decided to close, by reason (counted "
            "when decided; clients that leave are not counted)", ["reason"],
            registry=self.registry)
        self.turns = Counter("voice_turns", "Responses finished, by status", ["status"],
                             registry=self.registry)
        self.latency = Histogram("voice_turn_stage_latency_ms",
                                 "Milliseconds from the end of user speech to each stage",
                                 ["stage"], buckets=_LATENCY_BUCKETS_MS, registry=self.registry)
        self.audio_gaps = Histogram(
            "voice_reply_audio_gap_seconds", "Silences mid-reply: the client had played all of "
            "a reply's audio before its next piece was sent, by what the piece waited for "
            "(text: the language model's words; speech: their synthesis)", ["waiting_for"],
            buckets=_ENGINE_BUCKETS_S, registry=self.registry)
        self.errors = Counter("voice_errors", "Error events sent to clients, by code", ["code"],
                              registry=self.registry)

        self.engine_queue_depth = Gauge("voice_engine_queue_depth",
                                        "Calls waiting in each engine's queue", ["engine"],
                                        registry=self.registry)
        self.engine_running = Gauge("voice_engine_running", "Calls running in each engine",
                                    ["engine"], registry=self.registry)
        self.engine_wait = Histogram("voice_engine_wait_seconds",
                                     "Seconds a call waited in its engine's queue", ["engine"],
                                     buckets=_ENGINE_BUCKETS_S, registry=self.registry)
        self.engine_run = Histogram("voice_engine_run_seconds", "Seconds an engine call ran",
                                    ["engine"], buckets=_ENGINE_BUCKETS_S,
                                    registry=self.registry)
        self.memory_trimmed = Counter(
            "voice_memory_trimmed_bytes", "Resident bytes of freed native memory given back to "
            "the system while the engines were idle (voice/memory.py)", registry=self.registry)
        self.engine_batch_size = Histogram("voice_engine_batch_size",
                                           "Calls served by each batched engine call",
                                           ["engine"], buckets=_BATCH_SIZE_BUCKETS,
                                           registry=self.registry)

        self.loop_lag = Histogram(
            "voice_event_loop_lag_seconds", "How late the event loop ran a timer: every "
            "session's audio, events and replies wait this long for the loop's one thread",
            buckets=_LOOP_LAG_BUCKETS_S, registry=self.registry)

    async def watch_loop_lag(self, interval_s: float = LOOP_LAG_INTERVAL_S) -> None:
        """Observe the event loop's lag every ``interval_s`` until cancelled."""
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + interval_s
            await asyncio.sleep(interval_s)
            self.loop_lag.observe(max(0.0, loop.time() - due))

    def watch(self, schedulers: Iterable[Scheduler]) -> None:
        """Report these engine schedulers' queues (this object becomes their observer)."""
        for scheduler in schedulers:
            scheduler.observer = self
            self.engine_queue_depth.labels(engine=scheduler.name).set_function(
                functools.partial(_depth, scheduler))
            self.engine_running.labels(engine=scheduler.name).set_function(
                functools.partial(_running, scheduler))

    def observe_wait(self, engine: str, seconds: float) -> None:
        self.engine_wait.labels(engine=engine).observe(seconds)

    def observe_run(self, engine: str, seconds: float) -> None:
        self.engine_run.labels(engine=engine).observe(seconds)

    def observe_batch(self, engine: str, size: int) -> None:
        self.engine_batch_size.labels(engine=engine).observe(size)

    def observe_turn(self, latency: dict[str, float], status: str,
                     gaps: Sequence[Gap] = ()) -> None:
        self.turns.labels(status=status).inc()
        for gap in gaps:
            self.audio_gaps.labels(waiting_for=gap.waiting_for).observe(gap.ms / 1000)
        if status == "completed":
            for stage in LATENCY_STAGES:
                if stage in latency:
                    self.latency.labels(stage=stage.removesuffix("_ms")).observe(latency[stage])

    def count_error(self, code: str) -> None:
        self.errors.labels(code=code).inc()

    def render(self) -> bytes:
        return bytes(generate_latest(self.registry))


def _depth(scheduler: Scheduler) -> float:
    return scheduler.depth


def _running(scheduler: Scheduler) -> float:
    return scheduler.running
