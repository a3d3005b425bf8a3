"""Turn accounting (shared by voice-latency and the soak benchmark) from scripted server events:
what the server did with each clip, and which turns were lost (no completed reply)."""

from __future__ import annotations

import base64

import pytest

from clients.latency.accounting import (
    SessionLedger,
    playback_stalls,
    played_until,
    summarize_turns,
)
from tests.server_script import audio, created, done, replay, speech, started, stopped
from voice.protocol import AudioDelta, Error, ProtocolError


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
    assert not turn.lost and summary["cancelled_by_reason"] == {}


def test_a_reply_without_response_done_before_the_timeout_is_a_lost_turn() -> None:
    ledger = SessionLedger(1)
    ledger.begin("de_03.wav", 0.0)
    ledger.speech_sent(5.0)
    replay(ledger, speech(0.1, 5.5, "wie kann") + created(6.0, "r1") + audio(7.0, "r1"))
    assert not ledger.settled()
    turn = ledger.finish(timed_out_s=90)
    assert (turn.outcome, turn.reason) == ("no_reply", "no response.done within 90 s")
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
    assert first.outcome == "no_reply" and first.lost
    assert (second.outcome, second.reason) == ("cancelled", "client_cancelled")
    assert set(second.responses) == {"r2"}


def test_speech_heard_as_nothing_settles_as_a_lost_turn_without_waiting_for_the_timeout() -> None:
    ledger = SessionLedger(0)
    ledger.begin("pl_01.wav", 0.0)
    ledger.speech_sent(5.0)
    replay(ledger, speech(0.1, 5.5, ""))
    assert ledger.settled()
    assert not ledger.settled(now=6.1) and ledger.settled(now=6.4)  # no reply came after it
    turn = ledger.finish()
    assert (turn.outcome, turn.reason) == ("no_reply", "nothing heard (empty transcript)")


def test_speech_not_made_out_waits_a_moment_for_the_reply_that_asks_to_repeat_it() -> None:
    ledger = SessionLedger(0)
    ledger.begin("pt_04.wav", 0.0)
    ledger.speech_sent(3.0)
    replay(ledger, speech(0.1, 3.6, ""))
    assert not ledger.settled(now=4.2)  # the server may still answer it
    replay(ledger, created(4.11, "r1") + audio(4.2, "r1") + done(5.0, "r1", "completed"))
    assert ledger.settled(now=5.0)
    assert ledger.finish().outcome == "completed"
    summary = summarize_turns(ledger.turns)
    assert [row["clip"] for row in summary["asked_to_repeat"]] == ["pt_04.wav"]


def test_a_failed_reply_and_a_refused_connection_are_failed_turns() -> None:
    ledger = SessionLedger(0)
    ledger.begin("a.wav", 0.0)
    ledger.speech_sent(4.0)
    failure = Error.of(ProtocolError("response_failed", "see the log"))
    replay(ledger, speech(0.1, 4.5, "hello") + created(5.0, "r1") + [(5.5, failure)]
           + done(5.6, "r1", "failed"))
    assert ledger.settled()
    assert ledger.finish().reason == "response_failed: see the log"
    ledger.record_failure("-", 10.0, "cannot connect: refused")
    summary = summarize_turns(ledger.turns)
    # A failed turn got no completed reply: it is lost too.
    assert (summary["turns_sent"], summary["failed"], summary["lost"]) == (2, 2, 2)


def test_a_connection_closed_mid_turn_loses_the_turn() -> None:
    ledger = SessionLedger(0)
    ledger.begin("a.wav", 0.0)
    replay(ledger, speech(0.1, 4.5, "hello"))
    turn = ledger.finish(closed="connection closed (1011 )")
    assert (turn.outcome, turn.reason) == ("no_reply", "connection closed (1011 )")


def test_a_clip_whose_only_reply_was_cancelled_is_a_lost_turn_with_the_cancel_reason() -> None:
    ledger = SessionLedger(0)
    ledger.begin("it_04.wav", 0.0)
    # The first half is answered; the second half interrupts that reply and is heard as
    # nothing, so no reply ever completes.
    replay(ledger, speech(0.2, 3.0, "qual è") + created(3.6, "r1") + audio(3.9, "r1")
           + started(4.2) + done(4.3, "r1", "cancelled", "turn_detected") + stopped(6.0, ""))
    ledger.speech_sent(5.8)
    assert ledger.settled()
    turn = ledger.finish()
    assert (turn.outcome, turn.reason, turn.lost) == ("cancelled", "turn_detected", True)
    assert turn.voice_to_voice_ms is None
    summary = summarize_turns(ledger.turns)
    assert (summary["turns_sent"], summary["completed"], summary["cancelled"],
            summary["lost"]) == (1, 0, 1, 1)
    assert summary["cancelled_by_reason"] == {"turn_detected": 1}
    assert summary["not_completed"] == [{"session": 0, "turn": 0, "clip": "it_04.wav",
                                         "outcome": "cancelled", "reason": "turn_detected"}]


def test_a_reply_cancelled_before_it_began_still_belongs_to_its_turn() -> None:
    ledger = SessionLedger(0)
    ledger.begin("fr_02.wav", 0.0)
    # The second half starts before the first half's reply was created: the server sends
    # only its response.done.
    replay(ledger, speech(0.2, 2.0, "je voudrais") + started(2.6)
           + done(2.7, "r1", "cancelled", "turn_detected") + stopped(5.0, "un café"))
    ledger.speech_sent(4.8)
    assert not ledger.settled()  # the second half's reply is still to come
    replay(ledger, created(5.8, "r2") + audio(6.3, "r2") + done(7.0, "r2", "completed"))
    assert ledger.settled()
    turn = ledger.finish()
    assert (turn.outcome, turn.transcript) == ("completed", "je voudrais un café")
    assert turn.voice_to_voice_ms == pytest.approx(1500.0)
    assert summarize_turns(ledger.turns)["responses_cancelled"] == {"turn_detected": 1}


def test_lost_counts_every_turn_without_a_completed_reply() -> None:
    ledger = SessionLedger(2)
    for clip, script in (
        ("completed.wav", speech(0.1, 1.0, "a") + created(1.6, "r1") + audio(1.8, "r1")
         + done(2.0, "r1", "completed")),
        ("cancelled.wav", speech(10.1, 11.0, "b") + created(11.6, "r2")
         + done(12.0, "r2", "cancelled", "client_cancelled")),
        ("failed.wav", speech(20.1, 21.0, "c") + created(21.6, "r3")
         + done(22.0, "r3", "failed")),
        ("silent.wav", speech(30.1, 31.0, "")),
    ):
        ledger.begin(clip, script[0][0])
        ledger.speech_sent(script[0][0] + 0.8)
        replay(ledger, script)
        assert ledger.settled()
        ledger.finish()
    summary = summarize_turns(ledger.turns)
    assert {k: summary[k] for k in ("turns_sent", "completed", "cancelled", "failed",
                                    "no_reply", "lost")} == {
        "turns_sent": 4, "completed": 1, "cancelled": 1, "failed": 1, "no_reply": 1, "lost": 3}
    assert [row["clip"] for row in summary["not_completed"]] == [
        "cancelled.wav", "failed.wav", "silent.wav"]


def test_a_reply_whose_next_audio_comes_after_the_last_has_played_counts_a_stall() -> None:
    # 24 kHz PCM16: 0.5 s of audio is 24_000 bytes. The first 0.5 s arrives at 8.0 and plays
    # until 8.5; the next arrives at 8.6 (100 ms of silence heard), then the third at 8.7,
    # while the second is still playing (no stall).
    half_second = AudioDelta("r1", "a", 0, 0, base64.b64encode(bytes(24_000)).decode())
    ledger = SessionLedger(0)
    ledger.begin("fr_01.wav", 0.0)
    replay(ledger, speech(0.3, 6.5, "bonjour") + created(7.2, "r1")
           + [(8.0, half_second), (8.6, half_second), (8.7, half_second)]
           + done(9.5, "r1", "completed"))
    ledger.speech_sent(6.0)
    turn = ledger.finish()
    assert (turn.stalls, turn.stall_ms) == (1, pytest.approx(100.0))
    summary = summarize_turns(ledger.turns)
    assert (summary["replies_stalled"], summary["replies_checked_for_stalls"]) == (1, 1)


def test_playback_stalls_ignore_gaps_shorter_than_a_frame_and_count_each_longer_one() -> None:
    assert playback_stalls([(0.0, 0.2), (0.21, 0.2)]) == (0, 0.0)  # 10 ms: not a stall
    # Gaps of 50 ms and 550 ms.
    assert playback_stalls([(0.0, 0.2), (0.25, 0.2), (1.0, 0.1)]) == (2, pytest.approx(600.0))
    assert playback_stalls([(0.0, 1.0), (0.1, 0.1), (0.2, 0.1)]) == (0, 0.0)


def test_a_reply_has_played_when_its_last_delta_has_after_any_wait_for_a_late_one() -> None:
    assert played_until([(1.0, 0.5)]) == pytest.approx(1.5)
    assert played_until([(1.0, 0.5), (1.2, 0.5)]) == pytest.approx(2.0)  # queued behind
    assert played_until([(1.0, 0.5), (3.0, 0.5)]) == pytest.approx(3.5)  # after a stall
