"""Scripted server events with arrival times, for the turn accounting tests."""

from __future__ import annotations

from typing import Any

from clients.client import parse_event
from clients.latency.accounting import SessionLedger

Script = list[tuple[float, dict[str, Any]]]


def started(at: float) -> Script:
    return [(at, {"type": "input_audio_buffer.speech_started", "item_id": "u"})]


def stopped(at: float, transcript: str) -> Script:
    return [(at, {"type": "input_audio_buffer.speech_stopped", "item_id": "u"}),
            (at + 0.5, {"type": "conversation.item.input_audio_transcription.completed",
                        "item_id": "u", "transcript": transcript, "language": "en"})]


def speech(start: float, stop: float, transcript: str) -> Script:
    return started(start) + stopped(stop, transcript)


def created(at: float, response_id: str) -> Script:
    return [(at, {"type": "response.created", "response": {"id": response_id}})]


def audio(at: float, response_id: str) -> Script:
    return [(at, {"type": "response.output_audio.delta", "response_id": response_id,
                  "item_id": "a", "delta": "AAAAAA=="})]


def done(at: float, response_id: str, status: str, reason: str | None = None) -> Script:
    details = {"type": status, "reason": reason} if status != "completed" else None
    return [(at, {"type": "response.done", "response": {
        "id": response_id, "status": status, "status_details": details,
        "latency": {"first_audio_sent_ms": 900.0}}})]


def replay(ledger: SessionLedger, script: Script) -> None:
    for at, event in script:
        ledger.observe(parse_event(event), at)
