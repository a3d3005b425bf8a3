"""The soak benchmark's pure parts: turn accounting from scripted server events, RSS drift."""

from __future__ import annotations

from typing import Any

import pytest

from benchmarks.soak_accounting import (
    ResourceSample,
    SessionLedger,
    format_report,
    goal_met,
    rss_drift_percent,
    summarize_resources,
    summarize_turns,
)
from clients.client import parse_event

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


def test_a_plain_turn_is_completed_with_its_voice_to_voice_latency() -> None:
    ledger = SessionLedger(0)
    ledger.begin("en_01.wav", 0.0)
    replay(ledger, speech(0.3, 6.5, "hello there"))
    assert not ledger.settled()  # the clip is not fully sent yet
    ledger.speech_sent(6.0)
    replay(ledger, created(7.2, "r1") + audio(8.0, "r1"))
    assert not ledger.settled()  # the reply is still being written
    replay(ledger, done(9.0, "r1", "completed"))
    assert ledger.settled()
    turn = ledger.finish()
    assert turn.outcome == "completed"
    assert turn.voice_to_voice_ms == pytest.approx(2000.0)
    assert turn.server_latency == {"first_audio_sent_ms": 900.0}


def test_a_clip_heard_as_two_turns_counts_once_with_the_cancelled_reply_and_its_reason() -> None:
    ledger = SessionLedger(0)
    ledger.begin("es_02.wav", 0.0)
    # A long pause inside the clip: the server replies to the first half, the second half
    # interrupts that reply, and the reply to the whole question completes. The cancelled
    # reply's response.done may come late, after the second half's transcript.
    replay(ledger, speech(0.2, 4.0, "hoy hace") + created(4.6, "r1") + audio(4.9, "r1")
           + started(5.0) + stopped(9.0, "muy buen tiempo")
           + done(9.6, "r1", "cancelled", "turn_detected"))
    ledger.speech_sent(8.5)
    assert not ledger.settled()  # the second half's reply has not even begun
    replay(ledger, created(9.8, "r2") + audio(10.5, "r2") + done(11.0, "r2", "completed"))
    assert ledger.settled()
    turn = ledger.finish()
    assert turn.outcome == "completed"
    assert turn.voice_to_voice_ms == pytest.approx(2000.0)  # from r2, not the cancelled r1
    summary = summarize_turns(ledger.turns)
    assert summary["responses_cancelled"] == {"turn_detected": 1}
    assert (summary["completed"], summary["cancelled"], summary["lost"]) == (1, 0, 0)


def test_a_reply_without_response_done_before_the_timeout_is_a_lost_turn() -> None:
    ledger = SessionLedger(1)
    ledger.begin("de_03.wav", 0.0)
    ledger.speech_sent(5.0)
    replay(ledger, speech(0.1, 5.5, "wie kann") + created(6.0, "r1") + audio(7.0, "r1"))
    assert not ledger.settled()
    turn = ledger.finish(timed_out_s=90)
    assert (turn.outcome, turn.reason) == ("lost", "no response.done within 90 s")
    assert turn.voice_to_voice_ms is None


def test_a_late_response_done_belongs_to_its_own_turn_not_the_next_one() -> None:
    ledger = SessionLedger(0)
    ledger.begin("a.wav", 0.0)
    ledger.speech_sent(5.0)
    replay(ledger, speech(0.1, 5.5, "first") + created(6.0, "r1"))
    ledger.finish(timed_out_s=60)
    ledger.begin("b.wav", 70.0)
    replay(ledger, done(71.0, "r1", "completed"))  # the first turn's reply, far too late
    ledger.speech_sent(75.0)
    assert not ledger.settled()
    replay(ledger, speech(70.5, 75.5, "second") + created(76.0, "r2")
           + done(77.0, "r2", "cancelled", "client_cancelled"))
    assert ledger.settled()
    first, second = ledger.turns[0], ledger.finish()
    assert first.outcome == "lost"
    assert (second.outcome, second.reason) == ("cancelled", "client_cancelled")
    assert set(second.responses) == {"r2"}


def test_speech_heard_as_nothing_settles_as_a_lost_turn_without_waiting_for_the_timeout() -> None:
    ledger = SessionLedger(0)
    ledger.begin("pl_01.wav", 0.0)
    ledger.speech_sent(5.0)
    replay(ledger, speech(0.1, 5.5, ""))
    assert ledger.settled()
    turn = ledger.finish()
    assert (turn.outcome, turn.reason) == ("lost", "nothing heard (empty transcript)")


def test_a_failed_reply_and_a_refused_connection_are_failed_turns() -> None:
    ledger = SessionLedger(0)
    ledger.begin("a.wav", 0.0)
    ledger.speech_sent(4.0)
    replay(ledger, speech(0.1, 4.5, "hello") + created(5.0, "r1") + [(5.5, {
        "type": "error", "error": {"code": "response_failed", "message": "see the log"}}),
        ] + done(5.6, "r1", "failed"))
    assert ledger.settled()
    assert ledger.finish().reason == "response_failed: see the log"
    ledger.record_failure("-", 10.0, "cannot connect: refused")
    summary = summarize_turns(ledger.turns)
    assert (summary["turns_sent"], summary["failed"], summary["lost"]) == (2, 2, 0)


def test_a_connection_closed_mid_turn_loses_the_turn() -> None:
    ledger = SessionLedger(0)
    ledger.begin("a.wav", 0.0)
    replay(ledger, speech(0.1, 4.5, "hello"))
    turn = ledger.finish(closed="connection closed (1011 )")
    assert (turn.outcome, turn.reason) == ("lost", "connection closed (1011 )")


def test_rss_drift_compares_the_last_quarter_with_the_second_quarter() -> None:
    warm_up = [100.0, 300.0]  # model loading and first allocations: ignored
    assert rss_drift_percent([*warm_up, 400.0, 400.0, 402.0, 398.0, 420.0, 420.0]) \
        == pytest.approx(5.0)
    assert rss_drift_percent([400.0, 400.0, 400.0, 380.0]) == pytest.approx(-5.0)
    assert rss_drift_percent([1.0, 2.0, 3.0]) is None


def test_goal_needs_no_lost_turn_and_a_measured_drift_within_the_limit() -> None:
    samples = [ResourceSample(i * 5.0, (500 + (i >= 6) * 30) * 2**20, 40, 30)
               for i in range(8)]  # +6 % in the last quarter
    resources = summarize_resources(samples)
    assert resources["rss_drift_percent"] == pytest.approx(6.0)
    assert resources["rss_mib_warm_median"] == pytest.approx(500.0)
    no_loss = {"lost": 0}
    assert not goal_met(no_loss, resources)
    assert goal_met(no_loss, resources, max_drift_percent=7.0)
    assert not goal_met({"lost": 1}, resources, max_drift_percent=7.0)
    assert not goal_met(no_loss, summarize_resources(samples[:3]))  # drift not measurable


def test_the_report_names_every_outcome_the_cancel_reasons_and_the_drift() -> None:
    ledger = SessionLedger(0)
    ledger.begin("a.wav", 0.0)
    replay(ledger, speech(0.1, 2.0, "ok") + created(2.6, "r0") + started(2.8)
           + done(2.9, "r0", "cancelled", "turn_detected") + stopped(4.0, "and more"))
    ledger.speech_sent(3.5)
    replay(ledger, created(4.6, "r1") + audio(5.0, "r1") + done(6.0, "r1", "completed"))
    ledger.finish()
    ledger.begin("b.wav", 10.0)
    ledger.finish(timed_out_s=90)
    samples = [ResourceSample(i * 5.0, 500 * 2**20, 40, 30) for i in range(8)]
    report = {"sessions": 1, "minutes": 0.5, "elapsed_s": 40.0, "clips": 2, "reconnects": 0,
              "turns": summarize_turns(ledger.turns),
              "resources": summarize_resources(samples),
              "after_sessions_closed": vars(samples[-1]), "max_drift_percent": 5.0,
              "goal_met": False}
    text = format_report(report)
    assert "turns sent 2: completed 1, cancelled 0, failed 0, lost 1" in text
    assert "responses cancelled: turn_detected 1" in text
    assert "lost: session 0 turn 1 (b.wav): no response.done within 90 s" in text
    assert "drift +0.0 %" in text
    assert "voice_to_voice_ms" in text and "1500" in text
    assert text.rstrip().endswith("NOT met")
