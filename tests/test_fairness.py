"""One client cannot starve the others: input held to real time, a leaver's work dropped."""

from __future__ import annotations

import asyncio
import dataclasses
import re
import threading
import time

import numpy as np
import pytest

from tests.fakes import FakeChat, FakeTranscriber, tone
from tests.test_session import Harness, run
from voice.audio import InputPacer
from voice.ports import Activity
from voice.protocol import (
    AudioAppend,
    AudioCommit,
    ItemCreate,
    ResponseCancel,
    ResponseCreate,
    SessionUpdate,
)
from voice.schedulers import Scheduler
from voice.session import SessionDefaults


@pytest.mark.parametrize(("arrivals", "expected_waits"), [
    # (time received, seconds of audio) -> seconds the session waits before taking it, or
    # None: refused (more than 1 s ahead of the burst allowance)
    ([(0.0, 1.0), (0.0, 1.0), (0.0, 1.0)], [0.0, 0.0, 1.0]),  # 2 s burst, then real time
    ([(0.0, 2.0), (1.0, 0.5), (1.5, 0.5), (2.0, 0.5)], [0.0, 0.0, 0.0, 0.0]),  # real time
    ([(0.0, 3.0), (1.0, 0.02)], [1.0, 0.02]),  # a wait that was served counts as refill
    ([(0.0, 2.0), (10.0, 4.0)], [0.0, None]),  # a long pause refills the burst, no more
    ([(0.0, 2.0), (0.0, 5.0), (0.0, 0.5)], [0.0, None, 0.5]),  # refused audio costs nothing
])
def test_the_input_pacer_allows_a_burst_then_holds_audio_to_real_time(
    arrivals: list[tuple[float, float]], expected_waits: list[float | None]
) -> None:
    pacer = InputPacer(burst_s=2.0, max_wait_s=1.0)
    waits = [pacer.admit(duration, now) for now, duration in arrivals]
    assert [w is None for w in waits] == [e is None for e in expected_waits]
    assert [w for w in waits if w is not None] == pytest.approx(
        [e for e in expected_waits if e is not None])


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


def test_audio_far_ahead_of_real_time_is_refused_with_one_error_and_the_session_goes_on(
) -> None:
    async def scenario() -> None:
        h = Harness(FakeTranscriber([("Hello there", "en")]), FakeChat(["Hi!"]),
                    input_burst_s=0.5)
        await h.session.handle(SessionUpdate("e1", {"type": "realtime", "audio": {"input": {
            "turn_detection": None}}}))
        for _ in range(3):  # three 2 s messages at once: each is more than 1 s ahead
            await h.session.handle(AudioAppend("a", tone(2.0)))
        errors = [e.fields["error"] for e in h.of("error")]
        assert [e["code"] for e in errors] == ["input_audio_too_fast"], errors
        dropped = re.search(r"(\d+) ms of it was dropped", errors[0]["message"])
        assert dropped is not None and int(dropped.group(1)) >= 1900, errors  # the first 2 s
        await h.send_audio(tone(0.3))  # within the allowance again: taken
        await h.session.handle(AudioCommit("c1"))
        await h.wait_for(lambda: bool(
            h.of("conversation.item.input_audio_transcription.completed")))

    run(scenario)


def test_work_queued_by_a_session_that_leaves_is_never_run() -> None:
    transcriber = FakeTranscriber([("words", "en")] * 8, delay_s=0.3)

    async def scenario() -> None:
        h = Harness(transcriber, FakeChat([]))
        # One utterance per call (as on a CPU), so that the queue holds the other seven.
        h.session.engines = dataclasses.replace(h.session.engines,
                                                asr=Scheduler("fake-asr", 4, max_batch=1))
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


def test_frames_shorter_than_a_vad_window_are_buffered_without_a_thread_hop() -> None:
    threads: list[tuple[int, bool]] = []

    async def scenario() -> None:
        h = Harness(FakeTranscriber([]), FakeChat([]))
        detector = h.session._detector
        assert detector is not None
        feed = detector.feed

        def recording_feed(samples: np.ndarray) -> list[object]:
            threads.append((samples.size, threading.current_thread() is main))
            return feed(samples)  # type: ignore[return-value]

        detector.feed = recording_feed  # type: ignore[method-assign]
        await h.send_audio(tone(0.1), frame_s=0.02)  # 20 ms frames: 320 samples at 16 kHz
        await h.session._pump.settle()  # fed in the background: wait until all of it is

    main = threading.current_thread()
    run(scenario)
    # A frame that completes a 512-sample window runs the model in a worker; the others only
    # buffer, on the event loop.
    pending, expected = 0, []
    for size, _ in threads:
        expected.append(pending + size < 512)
        pending = (pending + size) % 512
    assert [on_loop for _, on_loop in threads] == expected
    assert True in expected and False in expected, threads


@pytest.mark.parametrize("give_way_ms", [0.0, 2500.0])
def test_partials_are_dropped_while_another_sessions_reply_is_being_written(
        give_way_ms: float) -> None:
    chat = FakeChat(["word " * 400, "Okay."], delay_s=0.02)  # a long reply, still writing
    transcriber = FakeTranscriber([("one two three four five six", "en")] * 2)

    async def scenario() -> tuple[int, int]:
        busy = Harness(transcriber, chat)
        await busy.session.handle(ItemCreate("i1", None, "user", "Talk a lot."))
        await busy.session.handle(ResponseCreate("r1", None, None))
        await busy.wait_for(lambda: len(busy.of("response.output_audio.delta")) > 0)
        # A second session on the same engines speaks while the first reply is written.
        other = Harness(transcriber, chat)
        other.session.engines = busy.session.engines
        other.session.defaults = SessionDefaults(partial_interval_s=0.3,
                                                 give_way_ms=give_way_ms)
        await other.send_audio(tone(2.0), pace_s=0.01)
        under_load = len(other.of("conversation.item.input_audio_transcription.delta"))
        await busy.session.handle(ResponseCancel("c1", None))
        await busy.wait_done()
        await other.send_audio(tone(2.0), pace_s=0.01)  # the same speech, engines now free
        free = len(other.of("conversation.item.input_audio_transcription.delta"))
        return under_load, free - under_load

    under_load, when_free = asyncio.run(asyncio.wait_for(scenario(), 60))
    assert under_load == 0
    assert when_free > 0


def test_first_words_awaited_are_counted_per_session_once_each() -> None:
    activity = Activity()
    mine = activity.await_first_words("s1")
    theirs = activity.await_first_words("s2")
    assert activity.awaited == 2
    assert activity.others_awaited("s1") and activity.others_awaited("s3")
    theirs()
    theirs()  # said twice: counted once
    assert activity.awaited == 1
    assert not activity.others_awaited("s1") and activity.others_awaited("s2")
    mine()
    assert activity.awaited == 0 and not activity.others_awaited("s2")
