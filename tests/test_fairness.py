"""One client cannot starve the others: input held to real time, a leaver's work dropped."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.fakes import FakeChat, FakeTranscriber, tone
from tests.test_session import Harness, run
from voice.audio import InputPacer
from voice.protocol import AudioCommit, SessionUpdate


@pytest.mark.parametrize(("arrivals", "expected_waits"), [
    # (time received, seconds of audio) -> seconds the session waits before taking it
    ([(0.0, 1.0), (0.0, 1.0), (0.0, 1.0)], [0.0, 0.0, 1.0]),  # 2 s burst, then real time
    ([(0.0, 2.0), (1.0, 0.5), (1.5, 0.5), (2.0, 0.5)], [0.0, 0.0, 0.0, 0.0]),  # real time
    ([(0.0, 2.0), (10.0, 4.0)], [0.0, 2.0]),  # a long pause refills the burst, no more
    ([(0.0, 3.0), (1.0, 0.02)], [1.0, 0.02]),  # a wait that was served counts as refill
])
def test_the_input_pacer_allows_a_burst_then_holds_audio_to_real_time(
    arrivals: list[tuple[float, float]], expected_waits: list[float]
) -> None:
    pacer = InputPacer(burst_s=2.0)
    waits = [pacer.delay(duration, now) for now, duration in arrivals]
    assert waits == pytest.approx(expected_waits)


def test_a_client_sending_faster_than_real_time_is_slowed_to_real_time() -> None:
    async def scenario() -> float:
        h = Harness(FakeTranscriber([]), FakeChat([]), input_burst_s=0.2)
        await h.session.handle(SessionUpdate("e1", {"type": "realtime", "audio": {"input": {
            "turn_detection": None}}}))
        started = time.monotonic()
        await h.send_audio(tone(1.0), pace_s=0)  # as fast as the client can
        return time.monotonic() - started

    elapsed = asyncio.run(asyncio.wait_for(scenario(), 30))
    # 1 s of audio with a 0.2 s burst: at least 0.8 s of waiting (a lower bound only).
    assert elapsed >= 0.75, elapsed


def test_work_queued_by_a_session_that_leaves_is_never_run() -> None:
    transcriber = FakeTranscriber([("words", "en")] * 8, delay_s=0.3)

    async def scenario() -> None:
        h = Harness(transcriber, FakeChat([]))
        await h.session.handle(SessionUpdate("e1", {"type": "realtime", "audio": {"input": {
            "turn_detection": None}}}))
        for index in range(8):
            await h.send_audio(tone(0.2))
            await h.session.handle(AudioCommit(f"c{index}"))
        await asyncio.sleep(0.05)  # the first decodes are running, the rest queued
        await h.session.close()
        asr = h.session.engines.asr
        assert asr.depth == 0
        await h.wait_for(lambda: asr.running == 0)

    run(scenario)
    # The fake ASR scheduler has 4 workers: at most the 4 decodes already running happened.
    assert len(transcriber.calls) <= 4, len(transcriber.calls)
