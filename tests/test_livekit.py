"""LiveKit Agents as a real client: its OpenAI ``RealtimeModel`` (livekit-agents and
livekit-plugins-openai from PyPI) pointed at our server, unchanged; the engines are fakes.

A spoken turn under its default turn detection (``semantic_vad``), a manual commit and
``generate_reply()`` (it matches the reply by ``response.metadata``, times out after 10 s
otherwise), and an interruption: ``interrupt()`` during a reply, then ``truncate()`` of what
was played (or ``conversation.item.delete`` when nothing was), and the next reply still works.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import numpy as np
import pytest
from livekit import rtc
from livekit.plugins.openai.realtime import RealtimeModel, RealtimeSession

from tests.fakes import silence, tone
from tests.test_mic import fake_server

RATE = 24_000
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


class Heard:
    def __init__(self) -> None:
        self.text = ""
        self.audio_bytes = 0
        self.message_ids: list[str] = []


async def consume(generation: Any, heard: Heard,
                  stop_after_audio: asyncio.Event | None = None) -> None:
    async for message in generation.message_stream:
        heard.message_ids.append(message.message_id)

        await asyncio.gather(_texts(message, heard), _audio(message, heard, stop_after_audio))


async def _texts(message: Any, heard: Heard) -> None:
    async for text in message.text_stream:
        heard.text += str(text)


async def _audio(message: Any, heard: Heard, stop_after_audio: asyncio.Event | None) -> None:
    async for frame in message.audio_stream:
        heard.audio_bytes += len(frame.data) * 2  # int16 samples
        if stop_after_audio is not None:
            stop_after_audio.set()


@asynccontextmanager
async def livekit(port: int, **options: Any) -> AsyncIterator[tuple[RealtimeSession, list[Any],
                                                                     list[Any]]]:
    async with aiohttp.ClientSession() as http:
        model = RealtimeModel(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused-locally",
                              http_session=http, **options)
        session = model.session()
        generations: list[Any] = []
        errors: list[Any] = []
        session.on("generation_created", generations.append)
        session.on("error", errors.append)
        try:
            yield session, generations, errors
        finally:
            await session.aclose()
            await model.aclose()


async def push(session: RealtimeSession, audio: np.ndarray) -> None:
    pcm = audio.astype("<i2")
    step = RATE // 50
    for start in range(0, pcm.size, step):
        chunk = pcm[start:start + step]
        session.push_audio(rtc.AudioFrame(data=chunk.tobytes(), sample_rate=RATE,
                                          num_channels=1, samples_per_channel=chunk.size))
        await asyncio.sleep(0.02)


async def until(condition: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def run(scenario: Callable[[], Any]) -> None:
    asyncio.run(asyncio.wait_for(scenario(), 60))


def test_a_spoken_turn_under_livekits_default_semantic_vad_is_answered() -> None:
    with fake_server([("What time is it?", "en")], ["It is noon."]) as server:
        async def scenario() -> None:
            async with livekit(server.port) as (session, generations, errors):
                await push(session, np.concatenate([tone(0.8), silence(1.5)]))
                await until(lambda: generations, 15, "the reply")
                heard = Heard()
                await asyncio.wait_for(consume(generations[0], heard), 15)
                assert heard.text == "It is noon." and heard.audio_bytes > 0
                assert errors == []
            config = next(iter(server.sessions.values()), None)
            assert config is None or config.config.turn_detection.type == "semantic_vad"
        run(scenario)


def test_a_manual_commit_and_generate_reply_are_answered() -> None:
    with fake_server([("Tell me a joke", "en")], ["Why not.", "Hello again."]) as server:
        async def scenario() -> None:
            async with livekit(server.port, turn_detection=None) as (session, _, errors):
                await push(session, np.concatenate([tone(0.8), silence(0.2)]))
                session.commit_audio()
                created = await asyncio.wait_for(session.generate_reply(), 12)
                heard = Heard()
                await asyncio.wait_for(consume(created, heard), 15)
                assert heard.text == "Why not." and heard.audio_bytes > 0
                again = await asyncio.wait_for(
                    session.generate_reply(instructions="Greet me."), 12)
                heard = Heard()
                await asyncio.wait_for(consume(again, heard), 15)
                assert heard.text == "Hello again."
                assert errors == []
        run(scenario)


def test_an_interrupted_reply_is_truncated_or_deleted_and_the_next_reply_works() -> None:
    long_reply = " ".join(["This is a long answer that goes on and on."] * 12)
    with fake_server([], [long_reply, "Short one.", long_reply, "Done."],
                     chat_delay_s=0.05) as server:
        async def scenario() -> None:
            async with livekit(server.port, turn_detection=None) as (session, _, errors):
                for played in (0.5, 0.0):  # half of what came was played; then nothing
                    created = await asyncio.wait_for(session.generate_reply(), 12)
                    heard, first_audio = Heard(), asyncio.Event()
                    reading = asyncio.ensure_future(consume(created, heard, first_audio))
                    await asyncio.wait_for(first_audio.wait(), 15)
                    session.interrupt()
                    await asyncio.wait_for(reading, 15)
                    assert heard.text and len(heard.text) < len(long_reply)
                    # What the client played: at most what it received (LiveKit measures its
                    # playout); 0 makes it delete the item instead.
                    received_ms = heard.audio_bytes / 2 * 1000 / RATE
                    session.truncate(message_id=heard.message_ids[0], modalities=["audio"],
                                     audio_end_ms=int(received_ms * played))
                    created = await asyncio.wait_for(session.generate_reply(), 12)
                    after = Heard()
                    await asyncio.wait_for(consume(created, after), 15)
                    assert after.text in ("Short one.", "Done.")
                assert errors == []
        run(scenario)
