"""The Wyoming server (Home Assistant's protocol) on the real default models, driven by the
``wyoming`` package's own async client over TCP on port 0.

Spoken audio in -> its transcript; text in -> audio that Whisper hears back (whole and
streamed sentence by sentence); a transcript handed to the assistant -> its answer; and bad
events or a client that leaves mid-stream cost nothing but an ``error`` event."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import numpy as np
import pytest
from wyoming.asr import Transcribe, Transcript, TranscriptChunk
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.client import AsyncTcpClient
from wyoming.error import Error
from wyoming.event import Event
from wyoming.handle import Handled, HandledChunk
from wyoming.info import Describe, Info
from wyoming.tts import (
    Synthesize,
    SynthesizeChunk,
    SynthesizeStart,
    SynthesizeStop,
    SynthesizeStopped,
    SynthesizeVoice,
)

from tests.mcp_server import HomeServer, home_server
from tests.speech import to_16k, with_silence, word_error_rate
from tts.segmenter import Segmenter, SegmenterConfig
from voice.wyoming import WyomingService

pytestmark = pytest.mark.real_models
SENTENCE = "Please remind me to buy bread and milk tomorrow morning."


class Running:
    def __init__(self, engines: Any, port: int, home: HomeServer) -> None:
        self.engines = engines
        self.port = port
        self.home = home


@pytest.fixture(scope="module")
def wyoming(prepared_model) -> Iterator[Running]:  # type: ignore[no-untyped-def]
    """The Wyoming server on the real models, its assistant given a real MCP server's
    tools (as ``--wyoming-mcp home=URL`` does)."""
    from voice.__main__ import build_engines
    from voice.config import ServiceConfig
    from voice.models import DEFAULT_TOOLS_LLM, ModelStore
    from voice.session_settings import session_defaults

    for name in ("whisper-base", "qwen2.5-coder-0.5b-instruct", DEFAULT_TOOLS_LLM,
                 "en_US-joe-medium"):
        prepared_model(name)
    with home_server() as home:
        config = ServiceConfig(port=0, device="cpu", max_output_tokens=60,
                               wyoming_mcp=(f"home={home.url}",),
                               tools_llm_model=DEFAULT_TOOLS_LLM)
        engines, names = build_engines(config, ModelStore(progress=False))
        service = WyomingService.for_config(config, engines, session_defaults(config, names),
                                            names)
        loop = asyncio.new_event_loop()
        port = loop.run_until_complete(service.start("127.0.0.1", 0))
        thread = threading.Thread(target=loop.run_forever, daemon=True)
        thread.start()
        try:
            yield Running(engines, port, home)
        finally:
            asyncio.run_coroutine_threadsafe(service.stop(), loop).result(10)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(10)


@asynccontextmanager
async def client(port: int) -> AsyncIterator[AsyncTcpClient]:
    async with AsyncTcpClient("127.0.0.1", port) as connection:
        yield connection


async def read_until(connection: AsyncTcpClient, kind: str, timeout: float = 120) -> list[Event]:
    events: list[Event] = []
    while True:
        event = await asyncio.wait_for(connection.read_event(), timeout)
        assert event is not None, f"connection closed; got {[e.type for e in events]}"
        events.append(event)
        if event.type == kind:
            return events


def spoken(prepared_model: Any, text: str) -> tuple[np.ndarray, int]:
    """Piper's English voice without random variation: int16 at its own rate."""
    from tts.piper import PiperSynthesizer

    voice = PiperSynthesizer(prepared_model("en_US-joe-medium") / "en_US-joe-medium.onnx",
                             deterministic=True)
    chunks = list(voice.synthesize(text))
    return np.concatenate([c.samples for c in chunks]), chunks[0].sample_rate


def heard(running: Running, events: list[Event]) -> str:
    """What Whisper hears in the audio of ``events``."""
    chunks = [AudioChunk.from_event(e) for e in events if AudioChunk.is_type(e.type)]
    assert chunks, [e.type for e in events]
    pcm = np.frombuffer(b"".join(c.audio for c in chunks), "<i2")
    audio = with_silence(to_16k(pcm, chunks[0].rate))
    return str(running.engines.transcriber.transcribe(audio).text)


def test_describe_lists_speech_recognition_voices_and_the_assistant(wyoming: Running) -> None:
    async def scenario() -> Info:
        async with client(wyoming.port) as connection:
            await connection.write_event(Describe().event())
            events = await read_until(connection, "info")
        return Info.from_event(events[-1])

    info = asyncio.run(scenario())
    assert {"en", "de", "fr"} <= set(info.asr[0].models[0].languages)
    voices = {voice.name: voice.languages for voice in info.tts[0].voices}
    assert voices["piper-en"] == ["en"]
    assert info.tts[0].supports_synthesize_streaming
    assert info.asr[0].supports_transcript_streaming
    assert info.handle[0].supports_handled_streaming
    assert info.handle[0].models[0].name == "qwen2.5-coder-0.5b-instruct"
    assert info.handle[0].supports_home_control  # it has the operator's MCP tools


def test_spoken_audio_in_gives_its_transcript(wyoming: Running, prepared_model: Any) -> None:
    pcm, rate = spoken(prepared_model, SENTENCE)
    pcm = np.concatenate([np.zeros(rate // 3, np.int16), pcm, np.zeros(rate // 3, np.int16)])

    async def scenario() -> Transcript:
        async with client(wyoming.port) as connection:
            await connection.write_event(Transcribe(language=None).event())
            await connection.write_event(AudioStart(rate=rate, width=2, channels=1).event())
            for start in range(0, pcm.size, 1024):
                await connection.write_event(AudioChunk(
                    rate=rate, width=2, channels=1,
                    audio=pcm[start:start + 1024].tobytes()).event())
            await connection.write_event(AudioStop().event())
            events = await read_until(connection, "transcript-stop")
        # Wyoming 1.7's stream around the transcript older clients read.
        kinds = [e.type for e in events]
        assert kinds == ["transcript-start", "transcript-chunk", "transcript", "transcript-stop"]
        assert TranscriptChunk.from_event(events[1]).text == \
            Transcript.from_event(events[2]).text
        return Transcript.from_event(events[2])

    transcript = asyncio.run(scenario())
    assert transcript.language == "en"
    assert word_error_rate(SENTENCE, transcript.text) <= 0.2, transcript.text


def test_each_request_is_a_first_turn_whose_close_language_call_is_decoded_twice(
        wyoming: Running, prepared_model: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # Home Assistant sends each request alone, often a few words: no conversation language
    # to lean on, so a close call gets the second decode (asr.transcript.runner_up).
    transcriber = wyoming.engines.transcriber
    transcribe, seen = transcriber.transcribe, []

    def spied(audio: Any, options: Any = None) -> Any:
        seen.append(options)
        return transcribe(audio, options)
    monkeypatch.setattr(transcriber, "transcribe", spied)
    pcm, rate = spoken(prepared_model, SENTENCE)

    async def scenario() -> Transcript:
        async with client(wyoming.port) as connection:
            await connection.write_event(Transcribe(language=None).event())
            await connection.write_event(AudioStart(rate=rate, width=2, channels=1).event())
            await connection.write_event(AudioChunk(rate=rate, width=2, channels=1,
                                                    audio=pcm.tobytes()).event())
            await connection.write_event(AudioStop().event())
            events = await read_until(connection, "transcript-stop")
        return Transcript.from_event(next(e for e in events if e.type == "transcript"))

    assert asyncio.run(scenario()).language == "en"
    (options,) = seen
    assert options.previous_language is None and options.language is None
    assert options.second_language_below == 0.6  # the service's default


def test_synthesized_text_is_heard_back_by_whisper(wyoming: Running) -> None:
    async def scenario() -> list[Event]:
        async with client(wyoming.port) as connection:
            await connection.write_event(Synthesize(
                text=SENTENCE, voice=SynthesizeVoice(language="en")).event())
            return await read_until(connection, "audio-stop")

    events = asyncio.run(scenario())
    assert events[0].type == "audio-start"
    assert word_error_rate(SENTENCE, heard(wyoming, events)) <= 0.2


def test_streamed_text_is_spoken_piece_by_piece_and_the_copy_is_ignored(
        wyoming: Running) -> None:
    parts = ["The weather is fine ", "today. Remember to buy ", "bread and milk."]
    segmenter = Segmenter(SegmenterConfig(language="en"))
    pieces = [piece for part in parts for piece in segmenter.feed(part)] + segmenter.flush()
    assert len(pieces) >= 2  # a first piece of a few words, then sentences

    async def scenario() -> list[Event]:
        async with client(wyoming.port) as connection:
            await connection.write_event(SynthesizeStart(
                voice=SynthesizeVoice(language="en")).event())
            await connection.write_event(SynthesizeChunk(text=parts[0]).event())
            await connection.write_event(SynthesizeChunk(text=parts[1]).event())
            # The first piece is complete: its audio comes before the text ends.
            first = await read_until(connection, "audio-stop")
            await connection.write_event(SynthesizeChunk(text=parts[2]).event())
            await connection.write_event(Synthesize(text="".join(parts)).event())  # the copy
            await connection.write_event(SynthesizeStop().event())
            return first + await read_until(connection, "synthesize-stopped")

    events = asyncio.run(scenario())
    kinds = [e.type for e in events]
    # One audio stream per piece, as the service cuts them (the copy made none), then
    # synthesize-stopped.
    assert kinds.count("audio-start") == kinds.count("audio-stop") == len(pieces)
    assert kinds[0] == "audio-start" and kinds[-2:] == ["audio-stop", "synthesize-stopped"]
    assert SynthesizeStopped.is_type(events[-1].type)
    assert word_error_rate("".join(parts), heard(wyoming, events)) <= 0.25


def test_a_transcript_is_handled_by_the_assistant_streamed_as_it_is_written(
        wyoming: Running) -> None:
    async def scenario() -> list[Event]:
        async with client(wyoming.port) as connection:
            await connection.write_event(Transcript(
                text="Wie heißt die Hauptstadt von Frankreich?", language="de").event())
            return await read_until(connection, "handled-stop")

    events = asyncio.run(scenario())
    kinds = [e.type for e in events]
    assert kinds[0] == "handled-start" and kinds[-2:] == ["handled", "handled-stop"]
    chunks = [HandledChunk.from_event(e).text for e in events if e.type == "handled-chunk"]
    handled = Handled.from_event(events[-2])
    assert len(chunks) > 1 and handled.text == "".join(chunks).strip()
    assert handled.text and "<" not in handled.text


def test_a_request_is_carried_out_through_the_operators_mcp_server(wyoming: Running) -> None:
    async def scenario() -> list[Event]:
        async with client(wyoming.port) as connection:
            await connection.write_event(Transcript(
                text="Turn on the light in the kitchen.", language="en").event())
            return await read_until(connection, "handled-stop")

    before = len(wyoming.home.calls)
    events = asyncio.run(scenario())
    calls = wyoming.home.calls[before:]
    assert [name for name, _ in calls] == ["set_light"], calls
    assert calls[0][1]["on"] is True and "kitchen" in calls[0][1]["room"].lower()
    handled = Handled.from_event(next(e for e in events if e.type == "handled"))
    assert handled.text and "{" not in handled.text and "<" not in handled.text


def test_bad_events_get_an_error_and_the_connection_goes_on(wyoming: Running) -> None:
    async def scenario() -> list[Error]:
        errors = []
        async with client(wyoming.port) as connection:
            for bad in (Event(type="launch-rocket"), SynthesizeChunk(text="hi").event(),
                        AudioChunk(rate=16000, width=1, channels=1, audio=b"\0" * 10).event()):
                await connection.write_event(bad)
                errors.append(Error.from_event((await read_until(connection, "error"))[-1]))
            await connection.write_event(Describe().event())
            await read_until(connection, "info")
        return errors

    errors = asyncio.run(scenario())
    assert [e.code for e in errors] == ["unsupported", "bad_order", "bad_audio"]


def test_a_client_that_leaves_mid_stream_does_not_disturb_the_next(wyoming: Running) -> None:
    async def scenario() -> Info:
        async with client(wyoming.port) as connection:
            await connection.write_event(Transcribe().event())
            await connection.write_event(AudioStart(rate=16000, width=2, channels=1).event())
            await connection.write_event(AudioChunk(rate=16000, width=2, channels=1,
                                                    audio=b"\0\0" * 1600).event())
        async with client(wyoming.port) as connection:
            await connection.write_event(SynthesizeStart().event())
            await connection.write_event(SynthesizeChunk(text="Half a sentence and").event())
        async with client(wyoming.port) as connection:
            await connection.write_event(Describe().event())
            return Info.from_event((await read_until(connection, "info"))[-1])

    assert asyncio.run(scenario()).asr
