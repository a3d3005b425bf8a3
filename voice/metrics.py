"""Prometheus metrics of the service (served as text at ``/metrics``)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from voice.session import LATENCY_STAGES

_LATENCY_BUCKETS_MS = (50, 100, 200, 300, 500, 750, 1000, 1500, 2000, 3000, 5000, 8000,
                       13000, 20000)


class Metrics:
    """One registry per server, so tests can run several servers in one process."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
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
        self.errors = Counter("voice_errors", "Error events sent to clients, by code", ["code"],
                              registry=self.registry)

    def observe_turn(self, latency: dict[str, float], status: str) -> None:
        self.turns.labels(status=status).inc()
        if status == "completed":
            for stage in LATENCY_STAGES:
                if stage in latency:
                    self.latency.labels(stage=stage.removesuffix("_ms")).observe(latency[stage])

    def count_error(self, code: str) -> None:
        self.errors.labels(code=code).inc()

    def render(self) -> bytes:
        return bytes(generate_latest(self.registry))
