"""A small asyncio client for the voice service, for apps and for our own clients.

    async with await VoiceClient.connect("ws://127.0.0.1:8765/v1/realtime") as client:
        await client.configure(instructions="Be brief.", languages=["en", "de"])
        await client.send_audio(samples, rate=16000)      # numpy (int16/float) or PCM16 bytes
        async for event in client.events():
            if isinstance(event, AudioDelta): play(event.samples(), client.output_rate)
            elif isinstance(event, ResponseDone): print(event.latency)

Events are the service's own server events (:mod:`voice.protocol`: ``SpeechStarted``,
``TranscriptDelta``, ``TranscriptCompleted``, ``ResponseCreated``, ``AudioTranscriptDelta``,
``TextDelta``, ``AudioDelta``, ``ResponseDone``, ``Error``, ..., and ``UnknownServerEvent`` for
names this version does not know), parsed with :func:`voice.protocol.parse_server_event` (GA and
beta names). Audio is resampled to the session's input rate on the way out and arrives as
PCM16 at the session's output rate (:attr:`VoiceClient.output_rate`). On barge-in
(``SpeechStarted`` while a reply plays), call :meth:`VoiceClient.interrupt` with how much of the
reply was played: it sends ``conversation.item.truncate`` so the server keeps only what the user
heard.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

import numpy as np
import soxr
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from voice.protocol import (
    AUDIO_RATES,
    DEFAULT_AUDIO_RATE,
    AudioDelta,
    ResponseCreated,
    ResponseDone,
    ServerEvent,
    SessionCreated,
    parse_server_event,
)


class VoiceClientError(Exception):
    pass


def response_id_of(event: ServerEvent) -> str | None:
    """The id of the response an event belongs to (``response.created``/``done`` carry it in
    their response object, the reply's content events in ``response_id``); None for others."""
    if isinstance(event, ResponseCreated | ResponseDone):
        return event.id or None
    value = getattr(event, "response_id", None)
    return value if isinstance(value, str) else None


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


class VoiceClient:
    """One session with the service. Use :meth:`connect`; not thread-safe."""

    def __init__(self, connection: ClientConnection, session: dict[str, Any]) -> None:
        self._ws = connection
        self.session = session
        self.session_id = str(session.get("id", ""))
        self.input_rate = DEFAULT_AUDIO_RATE
        self.output_rate = DEFAULT_AUDIO_RATE
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
        try:
            first = parse_server_event(await connection.recv())
        except ValueError as error:  # not JSON, or a session.created without its session
            await connection.close()
            raise VoiceClientError(f"expected session.created: {error}") from error
        if not isinstance(first, SessionCreated):
            await connection.close()
            raise VoiceClientError(f"expected session.created, got {first.type or 'nothing'}")
        return cls(connection, first.session)

    @classmethod
    async def connect_retrying(cls, url: str, *, api_key: str | None = None,
                               delays_s: Sequence[float] = (0.2, 0.5, 1.0, 2.0, 4.0),
                               open_timeout: float = 30.0) -> VoiceClient:
        """:meth:`connect`, retried after each of ``delays_s`` when the server refuses or is
        unreachable (a replica that is draining answers 503; behind a load balancer the
        next attempt reaches another one). The last failure is raised."""
        for delay in (*delays_s, None):
            try:
                return await cls.connect(url, api_key=api_key, open_timeout=open_timeout)
            except VoiceClientError:
                if delay is None:
                    raise
                await asyncio.sleep(delay)
        raise AssertionError("unreachable")

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
                        output_modalities: Sequence[str] | None = None,
                        tools: Sequence[dict[str, Any]] | None = None,
                        tool_choice: str | dict[str, Any] | None = None,
                        transcription_prompt: str | None = None,
                        interruption: dict[str, Any] | None = None) -> None:
        """Send ``session.update`` with the given settings (others stay as they are).
        ``tools`` are Realtime function definitions (``{"type": "function", "name", ...}``);
        ``transcription_prompt`` the words to expect in the user's speech ("" clears it);
        ``interruption`` the service's ``session.interruption`` extension (docs/protocol.md)."""
        session: dict[str, Any] = {"type": "realtime"}
        if interruption is not None:
            session["interruption"] = dict(interruption)
        if tools is not None:
            session["tools"] = list(tools)
        if tool_choice is not None:
            session["tool_choice"] = tool_choice
        audio_in: dict[str, Any] = {}
        audio_out: dict[str, Any] = {}
        for rate in (input_rate, output_rate):
            if rate is not None and rate not in AUDIO_RATES:
                raise VoiceClientError(f"rate {rate} is not one of {AUDIO_RATES}")
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
        if transcription_prompt is not None:
            audio_in.setdefault("transcription", {"model": "whisper"})
            audio_in["transcription"]["prompt"] = transcription_prompt
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

    async def events(self) -> AsyncIterator[ServerEvent]:
        """Server events (:mod:`voice.protocol`) until the connection closes.

        Raises :class:`VoiceClientError` for a message that is not a server event (not JSON,
        or a known event without one of its fields)."""
        try:
            async for message in self._ws:
                try:
                    event = parse_server_event(message)
                except ValueError as error:
                    raise VoiceClientError(f"the server sent a malformed event: "
                                           f"{error}") from error
                if isinstance(event, AudioDelta):
                    self._current_reply = (event.response_id, event.item_id)
                elif isinstance(event, ResponseDone) and self._current_reply is not None \
                        and self._current_reply[0] == response_id_of(event) \
                        and event.status != "completed":
                    self._current_reply = None
                yield event
        except ConnectionClosed:
            return


async def stream_file_realtime(client: VoiceClient, samples: np.ndarray, rate: int, *,
                               frame_ms: int = 20, trailing_silence_s: float = 1.0,
                               speech_end_sample: int | None = None) -> float:
    """Send audio at real-time pace in ``frame_ms`` frames, then silence.

    Returns the monotonic time at which the last frame containing sound (or the frame holding
    ``speech_end_sample``, when the caller knows where the speech ends) was sent: the end of
    speech as the client knows it.
    """
    frame = rate * frame_ms // 1000
    audio = np.concatenate([np.asarray(samples), np.zeros(int(trailing_silence_s * rate),
                                                          np.asarray(samples).dtype)])
    if speech_end_sample is not None:
        last_loud_frame = max(0, speech_end_sample - 1) // frame
    else:
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
