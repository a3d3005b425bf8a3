"""Pipecat as a real client: its ``OpenAIRealtimeLLMService`` (pipecat-ai from PyPI) pointed at
our server, unchanged, in a pipeline fed with audio frames; the engines are fakes (the session
logic is what is under test here, and the framework is real).

A spoken turn under server turn detection, manual turns (pipecat commits and asks for a reply
when its own VAD says the user stopped), and an interruption while a reply plays. Pipecat treats
every server ``error`` as fatal to its connection, so none may come."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from pipecat.frames.frames import (
    EndFrame,
    ErrorFrame,
    Frame,
    InputAudioRawFrame,
    LLMTextFrame,
    ProposedUserStartedSpeakingFrame,
    TTSAudioRawFrame,
    TTSStoppedFrame,
    UserStartedSpeakingFrame,
    UserStoppedSpeakingFrame,
)
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.runner import PipelineRunner
from pipecat.pipeline.task import PipelineParams, PipelineTask
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.services.openai.realtime import events
from pipecat.services.openai.realtime.llm import OpenAIRealtimeLLMService

from tests.fakes import silence, tone
from tests.test_mic import fake_server

RATE = 24_000
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


class Collect(FrameProcessor):
    """Keeps every frame that passes (downstream after the service, upstream before it)."""

    def __init__(self) -> None:
        super().__init__()
        self.frames: list[Frame] = []

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        self.frames.append(frame)
        await self.push_frame(frame, direction)

    def of(self, kind: type) -> list[Any]:
        return [frame for frame in self.frames if isinstance(frame, kind)]


class Bot:
    def __init__(self, port: int, manual: bool = False) -> None:
        properties = None
        if manual:
            properties = events.SessionProperties(audio=events.AudioConfiguration(
                input=events.AudioInput(turn_detection=False)))
        settings = OpenAIRealtimeLLMService.Settings(session_properties=properties) \
            if properties is not None else None
        self.llm = OpenAIRealtimeLLMService(
            api_key="unused-locally", base_url=f"ws://127.0.0.1:{port}/v1/realtime",
            settings=settings)
        self.up, self.down = Collect(), Collect()
        self.task = PipelineTask(Pipeline([self.up, self.llm, self.down]), params=PipelineParams(
            audio_in_sample_rate=RATE, audio_out_sample_rate=RATE))
        self._run: asyncio.Future[Any] | None = None

    async def __aenter__(self) -> Bot:
        self._run = asyncio.ensure_future(PipelineRunner(handle_sigint=False).run(self.task))
        await asyncio.sleep(0.5)
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.task.queue_frame(EndFrame())
        assert self._run is not None
        await asyncio.wait_for(self._run, 15)

    async def speak(self, audio: np.ndarray) -> None:
        """Audio frames of 20 ms at real-time pace, as a transport would push them."""
        pcm = audio.astype("<i2").tobytes()
        step = RATE // 50 * 2
        for start in range(0, len(pcm), step):
            await self.task.queue_frame(InputAudioRawFrame(
                audio=pcm[start:start + step], sample_rate=RATE, num_channels=1))
            await asyncio.sleep(0.02)

    async def until(self, condition: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            assert not self.up.of(ErrorFrame), self.up.of(ErrorFrame)
            if time.monotonic() > deadline:
                kinds = sorted({type(f).__name__ for f in self.down.frames})
                raise AssertionError(f"timed out waiting for {what}; frames: {kinds}")
            await asyncio.sleep(0.05)

    def said(self) -> str:
        return "".join(frame.text for frame in self.down.of(LLMTextFrame))

    def audio_bytes(self) -> int:
        return sum(len(frame.audio) for frame in self.down.of(TTSAudioRawFrame))


def run(scenario: Callable[[], Any]) -> None:
    asyncio.run(asyncio.wait_for(scenario(), 60))


def test_a_spoken_turn_is_answered_with_text_and_audio() -> None:
    with fake_server([("What time is it?", "en")], ["It is noon."]) as server:
        async def scenario() -> None:
            async with Bot(server.port) as bot:
                await bot.speak(np.concatenate([tone(0.8), silence(1.0)]))
                await bot.until(lambda: bool(bot.down.of(TTSStoppedFrame)), 15, "the reply")
                assert bot.said() == "It is noon."
                assert bot.audio_bytes() > 0
            assert not bot.up.of(ErrorFrame)
        run(scenario)


def test_manual_turns_commit_and_ask_for_a_reply_when_pipecat_says_the_user_stopped() -> None:
    with fake_server([("Tell me a joke", "en")], ["Why not."]) as server:
        async def scenario() -> None:
            async with Bot(server.port, manual=True) as bot:
                await bot.task.queue_frame(UserStartedSpeakingFrame())
                await bot.speak(np.concatenate([tone(0.8), silence(0.3)]))
                await bot.task.queue_frame(UserStoppedSpeakingFrame())
                await bot.until(lambda: bool(bot.down.of(TTSStoppedFrame)), 15, "the reply")
                assert bot.said() == "Why not."
                assert bot.audio_bytes() > 0
            assert not bot.up.of(ErrorFrame)
            session = next(iter(server.sessions.values()), None)
            assert session is None or session.config.turn_detection is None
        run(scenario)


def test_talking_over_a_reply_interrupts_it_and_the_next_turn_is_answered() -> None:
    long_reply = " ".join(["This is a long answer that goes on and on."] * 12)
    with fake_server([("Tell me a story", "en"), ("Stop, what time is it?", "en")],
                     [long_reply, "It is noon."], chat_delay_s=0.05) as server:
        async def scenario() -> None:
            async with Bot(server.port) as bot:
                await bot.speak(np.concatenate([tone(0.8), silence(1.0)]))
                await bot.until(lambda: bool(bot.down.of(TTSAudioRawFrame)), 15,
                                "the first reply's audio")
                await bot.speak(np.concatenate([tone(0.8), silence(1.0)]))  # barge-in
                await bot.until(lambda: "It is noon." in bot.said(), 20, "the second reply")
                # The server's speech_started reached pipecat (which truncates the reply it
                # was playing); the server stopped the first reply where the user spoke.
                assert len(bot.down.of(ProposedUserStartedSpeakingFrame)) == 2
                first = bot.said().split("It is noon.")[0]
                assert 0 < len(first) < len(long_reply) / 2
            assert not bot.up.of(ErrorFrame)
        run(scenario)
