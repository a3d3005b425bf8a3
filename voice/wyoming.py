"""Home Assistant's way in: a Wyoming server on the service's loaded engines.

``voice serve --wyoming-port PORT`` starts it beside the websocket, sharing the models and the
engines' schedulers (a Wyoming request waits its turn like any session's). Built on the
``wyoming`` package's server. One connection is one :class:`WyomingHandler`:

- ``describe`` -> ``info``: ASR (Whisper, its languages), TTS (each configured Piper voice and
  the espeak-ng fallbacks, by language, streaming supported) and a conversation handler (the
  language model, in the configured languages).
- ASR: ``transcribe`` then ``audio-start``/``audio-chunk``*/``audio-stop`` -> ``transcript``
  (with its language), inside Wyoming 1.7's stream: ``transcript-start`` at ``audio-start``,
  then ``transcript-chunk`` (the whole text: it is decoded once the audio ends),
  ``transcript``, ``transcript-stop``. Audio of any rate or channels is converted to 16 kHz
  mono.
- TTS: ``synthesize`` -> ``audio-start``, ``audio-chunk``*, ``audio-stop``; and streaming:
  ``synthesize-start``, ``synthesize-chunk``*, ``synthesize-stop`` -> one such audio stream per
  sentence as the text arrives, then ``synthesize-stopped`` (the ``synthesize`` a streaming
  client also sends, for older servers, is then ignored).
- handle: a ``transcript`` -> ``handled-start``, ``handled-chunk``* as the model writes,
  ``handled`` (the whole reply, for older clients), ``handled-stop``; in the transcript's
  language, with the tools of the MCP servers the operator named (voice/wyoming_agent.py).

A bad or unexpected event gets an ``error`` event and the connection goes on; an engine failure
costs that request only.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import numpy as np
import soxr
from wyoming.asr import Transcribe, Transcript, TranscriptChunk, TranscriptStart, TranscriptStop
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.error import Error
from wyoming.event import Event
from wyoming.handle import Handled, HandledChunk, HandledStart, HandledStop
from wyoming.info import (
    AsrModel,
    AsrProgram,
    Attribution,
    Describe,
    HandleModel,
    HandleProgram,
    Info,
    TtsProgram,
    TtsVoice,
)
from wyoming.server import AsyncEventHandler, AsyncTcpServer
from wyoming.tts import (
    Synthesize,
    SynthesizeChunk,
    SynthesizeStart,
    SynthesizeStop,
    SynthesizeStopped,
)

from asr.transcript import TranscribeOptions
from tts.segmenter import Segmenter, SegmenterConfig, speakable
from voice.config import ServiceConfig
from voice.ports import Engines
from voice.protocol import McpTool
from voice.schedulers import Priority
from voice.session_settings import SessionDefaults
from voice.wyoming_agent import WyomingAgent

logger = logging.getLogger(__name__)

ASR_RATE = 16_000
MAX_AUDIO_S = 60  # one transcribe request; more is refused
CHUNK_SAMPLES = 2048  # per audio-chunk sent
PROJECT = Attribution(name="voice", url="https://github.com/")


class WyomingService:
    """What the Wyoming side offers, over the shared engines."""

    def __init__(self, engines: Engines, defaults: SessionDefaults, names: dict[str, str],
                 voices: dict[str, str], mcp_servers: tuple[McpTool, ...] = ()) -> None:
        self.engines = engines
        self.defaults = defaults
        self.names = names
        self.voices = voices  # language -> "piper" | "espeak"
        self.agent = WyomingAgent(engines, defaults, mcp_servers)
        self._server: AsyncTcpServer | None = None

    def info(self) -> Info:
        languages = sorted(self.defaults.config.languages or self.defaults.known_languages)
        return Info(
            asr=[AsrProgram(
                name="voice-whisper", attribution=PROJECT, installed=True, version=None,
                description="faster-whisper speech recognition",
                supports_transcript_streaming=True,
                models=[AsrModel(name=self.names.get("asr", "whisper"), attribution=PROJECT,
                                 installed=True, description="Whisper", version=None,
                                 languages=languages)])],
            tts=[TtsProgram(
                name="voice-tts", attribution=PROJECT, installed=True, version=None,
                description="Piper voices, espeak-ng where none is installed",
                supports_synthesize_streaming=True,
                voices=[TtsVoice(name=f"{kind}-{language}", attribution=PROJECT,
                                 installed=True, version=None, languages=[language],
                                 description=f"{kind} voice for {language}")
                        for language, kind in sorted(self.voices.items())])],
            handle=[HandleProgram(
                name="voice-assistant", attribution=PROJECT, installed=True, version=None,
                supports_handled_streaming=True,
                supports_home_control=bool(self.agent.servers),
                description=f"{self.defaults.assistant.name}, the local language model",
                models=[HandleModel(name=self.names.get("llm", "llm"), attribution=PROJECT,
                                    installed=True, version=None, languages=languages,
                                    description="chat model")])])

    @classmethod
    def for_config(cls, config: ServiceConfig, engines: Engines, defaults: SessionDefaults,
                   names: dict[str, str]) -> WyomingService:
        """The service as ``voice serve`` configures it: every installed voice, and the MCP
        servers of ``wyoming_mcp`` (bearer token: $VOICE_WYOMING_MCP_TOKEN; no approval, the
        operator chose them)."""
        token = os.environ.get("VOICE_WYOMING_MCP_TOKEN")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        servers = tuple(McpTool(label, url, headers=headers, require_approval="never")
                        for label, _, url in (e.partition("=") for e in config.wyoming_mcp))
        languages = getattr(engines.voices, "languages", dict)
        return cls(engines, defaults, names, languages(), servers)

    async def start(self, host: str, port: int) -> int:
        """Serve in the background; returns the bound port (``port`` 0 picks one)."""
        self._server = AsyncTcpServer(host, port)
        await self._server.start(lambda reader, writer: WyomingHandler(self, reader, writer))
        # The wyoming package keeps its asyncio server private; it is the only way to learn
        # which port 0 picked.
        server: Any = self._server._server
        sockets = server.sockets if server is not None else ()
        bound = int(sockets[0].getsockname()[1]) if sockets else port
        logger.info("Wyoming server on tcp://%s:%d", host, bound)
        return bound

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop()


class WyomingHandler(AsyncEventHandler):
    """One Wyoming connection."""

    def __init__(self, service: WyomingService, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.service = service
        self.engines = service.engines
        self.owner = f"wyoming-{id(self):x}"
        self._language: str | None = None  # asked for by transcribe
        self._audio: list[np.ndarray] = []
        self._format: tuple[int, int, int] | None = None  # rate, width, channels
        self._audio_s = 0.0
        self._stream: Segmenter | None = None  # an open synthesize stream
        self._stream_voice: str | None = None

    async def handle_event(self, event: Event) -> bool:
        try:
            await self._dispatch(event)
        except WyomingError as error:
            await self.write_event(Error(text=str(error), code=error.code).event())
        except Exception as error:  # an engine failure costs this request only
            logger.exception("Wyoming %s: %s failed", self.owner, event.type)
            await self.write_event(Error(text=f"{event.type} failed: {error}",
                                         code="server_error").event())
        return True

    async def _dispatch(self, event: Event) -> None:
        if Describe.is_type(event.type):
            await self.write_event(self.service.info().event())
        elif Transcribe.is_type(event.type):
            self._language = Transcribe.from_event(event).language
        elif AudioStart.is_type(event.type):
            start = AudioStart.from_event(event)
            self._format, self._audio, self._audio_s = (start.rate, start.width,
                                                        start.channels), [], 0.0
            await self.write_event(TranscriptStart(language=self._language).event())
        elif AudioChunk.is_type(event.type):
            self._add_audio(AudioChunk.from_event(event))
        elif AudioStop.is_type(event.type):
            await self._transcribe()
        elif Synthesize.is_type(event.type):
            if self._stream is None:  # a streaming client's copy for older servers is skipped
                request = Synthesize.from_event(event)
                await self._speak(request.text, _language_of(request.voice))
        elif SynthesizeStart.is_type(event.type):
            start_event = SynthesizeStart.from_event(event)
            self._stream_voice = _language_of(start_event.voice)
            self._stream = Segmenter(SegmenterConfig(language=self._stream_voice or "en"))
        elif SynthesizeChunk.is_type(event.type):
            if self._stream is None:
                raise WyomingError("synthesize-chunk without synthesize-start", "bad_order")
            for piece in self._stream.feed(SynthesizeChunk.from_event(event).text):
                await self._speak(piece, self._stream_voice)
        elif SynthesizeStop.is_type(event.type):
            await self._end_stream()
        elif Transcript.is_type(event.type):
            await self._handle(Transcript.from_event(event))
        else:
            raise WyomingError(f"event {event.type!r} is not handled here", "unsupported")

    # -- ASR ------------------------------------------------------------------------------

    def _add_audio(self, chunk: AudioChunk) -> None:
        if self._format is None:
            self._format = (chunk.rate, chunk.width, chunk.channels)
        if chunk.width != 2:
            raise WyomingError(f"audio width {chunk.width} is not supported (16-bit only)",
                               "bad_audio")
        samples = np.frombuffer(chunk.audio, "<i2").astype(np.float32) / 32768
        if chunk.channels > 1:
            samples = samples[: samples.size // chunk.channels * chunk.channels]
            samples = samples.reshape(-1, chunk.channels).mean(axis=1)
        self._audio_s += samples.size / chunk.rate
        if self._audio_s > MAX_AUDIO_S:
            raise WyomingError(f"more than {MAX_AUDIO_S} s of audio in one request",
                               "audio_too_long")
        if chunk.rate != ASR_RATE:
            samples = soxr.resample(samples, chunk.rate, ASR_RATE).astype(np.float32)
        self._audio.append(samples)

    async def _transcribe(self) -> None:
        audio = np.concatenate(self._audio) if self._audio else np.zeros(0, np.float32)
        self._audio, self._format = [], None
        options = TranscribeOptions(language=self._language,
                                    beam_size=self.service.defaults.beam_size,
                                    second_language_below=(
                                        self.service.defaults.second_language_below),
                                    allowed_languages=self.service.defaults.config.languages)
        result = await self.engines.asr.run(self.owner, self.engines.transcriber.transcribe,
                                            audio, options, priority=Priority.URGENT)
        logger.info("Wyoming %s: transcript (%s) %r", self.owner, result.language, result.text)
        if result.text:
            await self.write_event(TranscriptChunk(text=result.text).event())
        await self.write_event(Transcript(text=result.text, language=result.language).event())
        await self.write_event(TranscriptStop().event())

    # -- TTS ------------------------------------------------------------------------------

    async def _speak(self, text: str, language: str | None) -> None:
        """Synthesize ``text`` as one audio stream: audio-start, audio-chunk*, audio-stop (a
        streamed request sends one such stream per sentence, as the protocol asks)."""
        voice = await self.engines.tts.run(self.owner, self.engines.voices.for_language,
                                           language or self._default_language(),
                                           priority=Priority.URGENT)
        chunks = await self.engines.tts.run(self.owner, _synthesize, voice, speakable(text),
                                            priority=Priority.URGENT)
        rate = chunks[0].sample_rate if chunks else 22_050
        await self.write_event(AudioStart(rate=rate, width=2, channels=1).event())
        for chunk in chunks:
            pcm = np.asarray(chunk.samples, dtype="<i2")  # Speaks gives PCM16
            for start in range(0, pcm.size, CHUNK_SAMPLES):
                await self.write_event(AudioChunk(
                    rate=chunk.sample_rate, width=2, channels=1,
                    audio=pcm[start:start + CHUNK_SAMPLES].tobytes()).event())
        await self.write_event(AudioStop().event())

    async def _end_stream(self) -> None:
        if self._stream is None:
            raise WyomingError("synthesize-stop without synthesize-start", "bad_order")
        for piece in self._stream.flush():
            await self._speak(piece, self._stream_voice)
        self._stream = None
        await self.write_event(SynthesizeStopped().event())

    def _default_language(self) -> str:
        return self.service.defaults.config.language or "en"

    # -- handle ---------------------------------------------------------------------------

    async def _handle(self, transcript: Transcript) -> None:
        """The assistant's answer (with the operator's MCP tools, if any), streamed as it is
        written: handled-start, handled-chunk*, handled (the whole text, for older clients),
        handled-stop."""
        language = transcript.language or self._default_language()
        await self.write_event(HandledStart().event())

        async def emit(piece: str) -> None:
            await self.write_event(HandledChunk(text=piece).event())

        text = await self.service.agent.answer(self.owner, transcript.text, language, emit)
        logger.info("Wyoming %s: handled (%s) %r", self.owner, language, text)
        await self.write_event(Handled(text=text.strip()).event())
        await self.write_event(HandledStop().event())


class WyomingError(Exception):
    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code


def _language_of(voice: Any) -> str | None:
    """The language a ``synthesize`` voice asks for: its language, or ours in its name."""
    if voice is None:
        return None
    if voice.language:
        return str(voice.language)
    name = voice.name or ""
    return name.rsplit("-", 1)[-1] or None if "-" in name else None


def _synthesize(voice: Any, text: str) -> list[Any]:
    """All of one piece's audio chunks (runs in a TTS worker thread)."""
    return list(voice.synthesize(text)) if text else []
