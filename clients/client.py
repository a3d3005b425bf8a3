"""A small asyncio client for the voice service, for apps and for our own clients.

    async with await VoiceClient.connect("ws://127.0.0.1:8765/v1/realtime") as client:
        await client.configure(instructions="Be brief.", languages=["en", "de"])
        await client.send_audio(samples, rate=16000)      # numpy (int16/float) or PCM16 bytes
        async for event in client.events():
            if isinstance(event, ReplyAudio): play(event.samples, event.rate)
            elif isinstance(event, ResponseDone): print(event.latency)

Events are typed (:class:`SpeechStarted`, :class:`TranscriptDelta`, :class:`Transcript`,
:class:`ReplyTextDelta`, :class:`ReplyAudio`, :class:`ResponseDone`, :class:`ServerError`, and
:class:`OtherEvent` for the rest). Audio is resampled to the session's input rate on the way out
and arrives at the session's output rate. On barge-in (``SpeechStarted`` while a reply plays),
call :meth:`VoiceClient.interrupt` with how much of the reply was played: it sends
``conversation.item.truncate`` so the server keeps only what the user heard.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

import numpy as np
import soxr
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

SUPPORTED_RATES = (16_000, 24_000, 48_000)


class VoiceClientError(Exception):
    pass


@dataclasses.dataclass(frozen=True)
class SessionCreated:
    session_id: str
    session: dict[str, Any]


@dataclasses.dataclass(frozen=True)
class SpeechStarted:
    item_id: str
    audio_start_ms: int


@dataclasses.dataclass(frozen=True)
class SpeechStopped:
    item_id: str
    audio_end_ms: int


@dataclasses.dataclass(frozen=True)
class TranscriptDelta:
    """A partial transcript: ``confirmed`` only grows; ``tentative`` may still change."""

    item_id: str
    delta: str
    confirmed: str
    tentative: str


@dataclasses.dataclass(frozen=True)
class Transcript:
    item_id: str
    text: str
    language: str | None


@dataclasses.dataclass(frozen=True)
class ResponseStarted:
    response_id: str
    language: str | None


@dataclasses.dataclass(frozen=True)
class ReplyTextDelta:
    response_id: str
    item_id: str
    delta: str


@dataclasses.dataclass(frozen=True)
class ReplyAudio:
    response_id: str
    item_id: str
    samples: np.ndarray  # int16 mono
    rate: int


@dataclasses.dataclass(frozen=True)
class ResponseDone:
    response_id: str
    status: str  # completed | cancelled | failed
    reason: str | None
    language: str | None
    text: str
    latency: dict[str, float]


@dataclasses.dataclass(frozen=True)
class ServerError:
    code: str
    message: str
    event_id: str | None


@dataclasses.dataclass(frozen=True)
class OtherEvent:
    type: str
    data: dict[str, Any]


Event = (SessionCreated | SpeechStarted | SpeechStopped | TranscriptDelta | Transcript
         | ResponseStarted | ReplyTextDelta | ReplyAudio | ResponseDone | ServerError | OtherEvent)


def to_pcm16(samples: np.ndarray | bytes, rate: int, target_rate: int) -> bytes:
    """Any mono audio (int16, float in [-1, 1], or PCM16 bytes) -> PCM16 LE at ``target_rate``."""
    if isinstance(samples, bytes | bytearray | memoryview):
        samples = np.frombuffer(bytes(samples), "<i2")
    array = np.asarray(samples)
    if array.ndim != 1:
        raise VoiceClientError("audio must be mono (a 1-D array)")
    floats = (array.astype(np.float32) / 32768.0 if array.dtype == np.int16
              else array.astype(np.float32))
    if rate != target_rate:
        floats = soxr.resample(floats, rate, target_rate)
    return (np.clip(floats, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()


def parse_event(data: dict[str, Any]) -> Event:
    """A server event (GA or beta names) as a typed value."""
    kind = data.get("type", "")
    if kind == "session.created":
        return SessionCreated(data["session"].get("id", ""), data["session"])
    if kind == "input_audio_buffer.speech_started":
        return SpeechStarted(data.get("item_id", ""), int(data.get("audio_start_ms", 0)))
    if kind == "input_audio_buffer.speech_stopped":
        return SpeechStopped(data.get("item_id", ""), int(data.get("audio_end_ms", 0)))
    if kind == "conversation.item.input_audio_transcription.delta":
        return TranscriptDelta(data.get("item_id", ""), data.get("delta") or "",
                               data.get("confirmed") or "", data.get("tentative") or "")
    if kind == "conversation.item.input_audio_transcription.completed":
        return Transcript(data.get("item_id", ""), data.get("transcript", ""),
                          data.get("language"))
    if kind == "response.created":
        response = data.get("response", {})
        return ResponseStarted(response.get("id", ""), response.get("language"))
    if kind in ("response.output_audio_transcript.delta", "response.audio_transcript.delta",
                "response.output_text.delta", "response.text.delta"):
        return ReplyTextDelta(data["response_id"], data["item_id"], data["delta"])
    if kind in ("response.output_audio.delta", "response.audio.delta"):
        samples = np.frombuffer(base64.b64decode(data["delta"]), "<i2")
        return ReplyAudio(data["response_id"], data["item_id"], samples, 0)
    if kind == "response.done":
        response = data.get("response", {})
        details = response.get("status_details") or {}
        text = ""
        for item in response.get("output") or []:
            for part in item.get("content") or []:
                text += part.get("transcript") or part.get("text") or ""
        return ResponseDone(response.get("id", ""), response.get("status", ""),
                            details.get("reason"), response.get("language"), text,
                            dict(response.get("latency") or {}))
    if kind == "error":
        error = data.get("error", {})
        return ServerError(error.get("code") or "", error.get("message") or "",
                           error.get("event_id"))
    return OtherEvent(kind, data)


class VoiceClient:
    """One session with the service. Use :meth:`connect`; not thread-safe."""

    def __init__(self, connection: ClientConnection, session: dict[str, Any]) -> None:
        self._ws = connection
        self.session = session
        self.session_id = str(session.get("id", ""))
        self.input_rate = 24_000
        self.output_rate = 24_000
        self._current_reply: tuple[str, str] | None = None  # (response_id, item_id) playing

    @classmethod
    async def connect(cls, url: str, *, api_key: str | None = None,
                      open_timeout: float = 30.0) -> VoiceClient:
        """Open a session. The key is sent as ``Authorization: Bearer``."""
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else None
        try:
            connection = await connect(url, additional_headers=headers, max_size=None,
                                       open_timeout=open_timeout)
        except (OSError, TimeoutError) as error:
            raise VoiceClientError(f"cannot connect to {url}: {error}") from error
        except Exception as error:  # websockets' InvalidStatus, InvalidURI, ...
            raise VoiceClientError(f"the server at {url} refused the connection: "
                                   f"{error}") from error
        first = json.loads(await connection.recv())
        if first.get("type") != "session.created":
            await connection.close()
            raise VoiceClientError(f"expected session.created, got {first.get('type')}")
        return cls(connection, first["session"])

    async def __aenter__(self) -> VoiceClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._ws.close()

    @property
    def closed(self) -> bool:
        return self._ws.close_code is not None

    @property
    def close_code(self) -> int | None:
        """The websocket close code once the connection is closed (1001: server shutting
        down, 1008: a limit, 1009: message too large, 1011: server error)."""
        return self._ws.close_code

    @property
    def close_reason(self) -> str:
        return self._ws.close_reason or ""

    async def send_event(self, event: dict[str, Any]) -> None:
        await self._ws.send(json.dumps(event))

    async def configure(self, *, instructions: str | None = None,
                        input_rate: int | None = None, output_rate: int | None = None,
                        server_vad: bool | None = None, language: str | None = None,
                        languages: Sequence[str] | None = None,
                        vad: dict[str, Any] | None = None,
                        output_modalities: Sequence[str] | None = None) -> None:
        """Send ``session.update`` with the given settings (others stay as they are)."""
        session: dict[str, Any] = {"type": "realtime"}
        audio_in: dict[str, Any] = {}
        audio_out: dict[str, Any] = {}
        for rate in (input_rate, output_rate):
            if rate is not None and rate not in SUPPORTED_RATES:
                raise VoiceClientError(f"rate {rate} is not one of {SUPPORTED_RATES}")
        if instructions is not None:
            session["instructions"] = instructions
        if input_rate is not None:
            audio_in["format"] = {"type": "audio/pcm", "rate": input_rate}
            self.input_rate = input_rate
        if output_rate is not None:
            audio_out["format"] = {"type": "audio/pcm", "rate": output_rate}
            self.output_rate = output_rate
        if server_vad is not None or vad:
            audio_in["turn_detection"] = ({"type": "server_vad", **(vad or {})}
                                          if server_vad is not False else None)
        if language is not None or languages is not None:
            audio_in["transcription"] = {"model": "whisper", "language": language,
                                         "languages": list(languages) if languages else None}
        if output_modalities is not None:
            session["output_modalities"] = list(output_modalities)
        if audio_in or audio_out:
            session["audio"] = {k: v for k, v in (("input", audio_in), ("output", audio_out))
                                if v}
        await self.send_event({"type": "session.update", "session": session})

    async def send_audio(self, samples: np.ndarray | bytes, rate: int | None = None) -> None:
        """Append microphone audio (any rate; resampled to the session's input rate)."""
        pcm = to_pcm16(samples, rate or self.input_rate, self.input_rate)
        if not pcm:
            return  # the server refuses an empty append (a resampler may yield nothing yet)
        await self.send_event({"type": "input_audio_buffer.append",
                               "audio": base64.b64encode(pcm).decode("ascii")})

    async def commit(self) -> None:
        await self.send_event({"type": "input_audio_buffer.commit"})

    async def clear(self) -> None:
        await self.send_event({"type": "input_audio_buffer.clear"})

    async def say(self, text: str) -> None:
        """Add a user text message and ask for a reply."""
        await self.send_event({"type": "conversation.item.create", "item": {
            "type": "message", "role": "user", "content": [{"type": "input_text",
                                                           "text": text}]}})
        await self.send_event({"type": "response.create"})

    async def create_response(self) -> None:
        await self.send_event({"type": "response.create"})

    async def cancel(self) -> None:
        await self.send_event({"type": "response.cancel"})

    async def interrupt(self, played_ms: float) -> None:
        """The user spoke over the reply: tell the server how much of it was heard.

        Under ``server_vad`` the server has already cancelled the reply; this only corrects
        the history to what was actually played.
        """
        if self._current_reply is None:
            return
        _, item_id = self._current_reply
        await self.send_event({"type": "conversation.item.truncate", "item_id": item_id,
                               "content_index": 0, "audio_end_ms": max(0, int(played_ms))})
        self._current_reply = None

    async def events(self) -> AsyncIterator[Event]:
        """Typed server events until the connection closes."""
        try:
            async for message in self._ws:
                event = parse_event(json.loads(message))
                if isinstance(event, ReplyAudio):
                    event = dataclasses.replace(event, rate=self.output_rate)
                    self._current_reply = (event.response_id, event.item_id)
                elif isinstance(event, ResponseDone) and self._current_reply is not None \
                        and self._current_reply[0] == event.response_id \
                        and event.status != "completed":
                    self._current_reply = None
                yield event
        except ConnectionClosed:
            return


async def stream_file_realtime(client: VoiceClient, samples: np.ndarray, rate: int, *,
                               frame_ms: int = 20, trailing_silence_s: float = 1.0) -> float:
    """Send audio at real-time pace in ``frame_ms`` frames, then silence.

    Returns the monotonic time at which the last frame containing sound was sent: the end of
    speech as the client knows it.
    """
    frame = rate * frame_ms // 1000
    audio = np.concatenate([np.asarray(samples), np.zeros(int(trailing_silence_s * rate),
                                                          np.asarray(samples).dtype)])
    loud = np.flatnonzero(np.abs(np.asarray(samples, dtype=np.float32)) >
                          (500 if np.asarray(samples).dtype == np.int16 else 0.015))
    last_loud_frame = int(loud[-1]) // frame if loud.size else 0
    started = time.monotonic()
    speech_end = started
    for index, start in enumerate(range(0, audio.size, frame)):
        await client.send_audio(audio[start:start + frame], rate)
        if index == last_loud_frame:
            speech_end = time.monotonic()
        await asyncio.sleep(max(0.0, started + (index + 1) * frame_ms / 1000 - time.monotonic()))
    return speech_end
