"""Scripted server events with arrival times, for the turn accounting tests.

Events are built with the service's own classes (``voice.protocol``) and replayed through their
JSON, as a client receives them."""

from __future__ import annotations

from clients.latency.accounting import SessionLedger
from voice.protocol import (
    AudioDelta,
    ResponseCreated,
    ResponseDone,
    ServerEvent,
    SpeechStarted,
    SpeechStopped,
    TranscriptCompleted,
    parse_server_event,
    response_object,
)

Script = list[tuple[float, ServerEvent]]


def started(at: float) -> Script:
    return [(at, SpeechStarted(int(at * 1000), "u"))]


def stopped(at: float, transcript: str) -> Script:
    return [(at, SpeechStopped(int(at * 1000), "u")),
            (at + 0.5, TranscriptCompleted("u", 0, transcript, language="en"))]


def speech(start: float, stop: float, transcript: str) -> Script:
    return started(start) + stopped(stop, transcript)


def created(at: float, response_id: str) -> Script:
    return [(at, ResponseCreated(response_object(response_id, "in_progress")))]


def audio(at: float, response_id: str) -> Script:
    return [(at, AudioDelta(response_id, "a", 0, 0, "AAAAAA=="))]


def done(at: float, response_id: str, status: str, reason: str | None = None) -> Script:
    return [(at, ResponseDone(response_object(response_id, status, reason=reason,
                                              latency={"first_audio_sent_ms": 900.0})))]


def replay(ledger: SessionLedger, script: Script) -> None:
    for at, event in script:
        ledger.observe(parse_server_event(event.to_json()), at)
