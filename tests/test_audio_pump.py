"""A session reads its client's audio while the voice detector works (voice/audio_pump.py)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import numpy as np
import pytest

from tests.fakes import EnergyModel, FakeChat, FakeTranscriber, silence, tone
from tests.test_session import Harness, run
from voice.audio_pump import AudioPump


class _HeldFeed:
    """A feed that records what it is given and holds its first call until ``release``."""

    def __init__(self) -> None:
        self.fed: list[list[int]] = []
        self.release = asyncio.Event()

    async def __call__(self, samples: np.ndarray) -> None:
        self.fed.append(samples.tolist())
        if len(self.fed) == 1:
            await self.release.wait()


def test_audio_that_arrives_during_a_slow_feed_is_fed_next_all_at_once() -> None:
    feed = _HeldFeed()

    async def scenario() -> None:
        tasks: list[asyncio.Future[object]] = []

        def spawn(work: Any) -> asyncio.Future[object]:
            tasks.append(asyncio.ensure_future(work))
            return tasks[-1]
        pump = AudioPump(feed, spawn)
        pump.put(np.array([1]))
        await asyncio.sleep(0)
        for value in (2, 3, 4):
            pump.put(np.array([value]))
        feed.release.set()
        await pump.settle()
        assert feed.fed == [[1], [2, 3, 4]]
        assert len(tasks) == 1  # one background feeder at a time
    run(scenario)


def test_a_feed_takes_whole_messages_up_to_its_limit() -> None:
    feed = _HeldFeed()

    async def scenario() -> None:
        pump = AudioPump(feed, asyncio.ensure_future, max_feed=4)
        pump.put(np.array([0]))
        await asyncio.sleep(0)
        for message in ([1, 1], [2, 2], [3, 3, 3, 3, 3], [4]):
            pump.put(np.array(message))
        feed.release.set()
        await pump.settle()
        # Each step stays within 4 samples, except a message that alone is longer.
        assert feed.fed == [[0], [1, 1, 2, 2], [3, 3, 3, 3, 3], [4]]
    run(scenario)


def test_a_failed_feed_is_raised_with_the_next_event_and_its_audio_dropped() -> None:
    fed: list[int] = []

    async def feed(samples: np.ndarray) -> None:
        fed.append(int(samples[0]))
        if samples[0] == 1:
            raise RuntimeError("the detector broke")

    async def scenario() -> None:
        pump = AudioPump(feed, asyncio.ensure_future)
        pump.put(np.array([1]))
        pump.put(np.array([2]))  # queued behind the feed that fails: dropped with it
        with pytest.raises(RuntimeError, match="the detector broke"):
            await pump.settle()
        pump.check()  # reported once
        pump.put(np.array([3]))
        await pump.settle()
        assert fed == [1, 3]
    run(scenario)


def test_a_slow_voice_detector_does_not_hold_up_reading_the_sessions_audio(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # As on a loaded server: every trip to the VAD's thread and back takes 60 ms, while the
    # client sends a 20 ms frame every 20 ms. Awaiting a trip per frame, the session fell
    # behind its client by seconds; now it reads on and the next feed takes more audio.
    windows: list[int] = []
    score = EnergyModel.score

    def slow_score(self: EnergyModel, batch: np.ndarray, state: Any) -> Any:
        time.sleep(0.06)
        windows.append(len(batch))
        return score(self, batch, state)
    monkeypatch.setattr(EnergyModel, "score", slow_score)

    async def scenario() -> None:
        h = Harness(FakeTranscriber([("Hello there", "en")]), FakeChat(["Hi!"]))
        started = time.monotonic()
        await h.send_audio(np.concatenate([silence(0.3), tone(1.0), silence(0.9)]),
                           pace_s=0.02)
        reading_s = time.monotonic() - started
        await h.wait_for(lambda: bool(h.of("input_audio_buffer.speech_stopped")))
        # 110 frames at real-time pace: read in about their 2.2 s, not 110 trips of 60 ms.
        assert reading_s < 3.5
        assert len(windows) < 110 / 2  # several frames per trip
        started_ms = h.of("input_audio_buffer.speech_started")[0].fields["audio_start_ms"]
        stopped_ms = h.of("input_audio_buffer.speech_stopped")[0].fields["audio_end_ms"]
        assert 0 <= started_ms <= 300 and 1250 <= stopped_ms <= 1400  # media time intact
        await h.wait_done()
    run(scenario)


def test_audio_not_fed_yet_is_dropped_when_the_client_leaves() -> None:
    feed = _HeldFeed()

    async def scenario() -> None:
        pump = AudioPump(feed, asyncio.ensure_future)
        pump.put(np.array([1]))
        await asyncio.sleep(0)
        pump.put(np.array([2]))
        pump.discard()
        feed.release.set()
        await pump.settle()
        assert feed.fed == [[1]]
    run(scenario)
