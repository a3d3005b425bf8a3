"""The soak benchmark's pure parts: RSS drift, the goal and the printed report."""

from __future__ import annotations

import pytest

from benchmarks.soak_accounting import (
    ResourceSample,
    format_report,
    goal_met,
    rss_drift_percent,
    summarize_resources,
)
from clients.latency.accounting import SessionLedger, summarize_turns
from tests.server_script import audio, created, done, replay, speech, started, stopped


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


def test_a_soak_whose_replies_were_all_cancelled_does_not_meet_the_goal() -> None:
    ledger = SessionLedger(0)
    ledger.begin("a.wav", 0.0)
    ledger.speech_sent(2.0)
    replay(ledger, speech(0.1, 2.5, "hello") + created(3.0, "r1")
           + done(3.5, "r1", "cancelled", "turn_detected"))
    ledger.finish()
    flat = summarize_resources([ResourceSample(i * 5.0, 500 * 2**20, 40, 30) for i in range(8)])
    assert not goal_met(summarize_turns(ledger.turns), flat)


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
    assert ("turns sent 2: completed 1, cancelled 0, failed 0, no reply 1; "
            "lost 1 (no completed reply)") in text
    assert "cancelled replies by reason: turn_detected 1" in text
    assert "no reply: session 0 turn 1 (b.wav): no response.done within 90 s" in text
    assert "drift +0.0 %" in text
    assert "voice_to_voice_ms" in text and "1500" in text
    assert text.rstrip().endswith("NOT met")
