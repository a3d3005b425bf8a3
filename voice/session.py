"""One conversation: turn-taking, streaming replies and barge-in, as an explicit state machine.

States: ``IDLE -> LISTENING -> THINKING -> SPEAKING -> IDLE``; the user speaking while the
assistant is thinking or speaking (barge-in) goes back to ``LISTENING`` and cancels the reply.
Any other transition raises :class:`IllegalTransitionError`.

The session is transport-free: the server hands it parsed client events (:meth:`Session.handle`)
and it emits server events through the ``send`` coroutine it was given. Every engine call runs
on the engines' worker pools; the event loop only moves data.

A reply streams all the way: LLM deltas go to the segmenter, finished pieces to a TTS task that
runs alongside generation (piece N is spoken while piece N+1 is written), and audio goes out as
soon as each chunk exists. Once a response is cancelled nothing more of it is sent, except its
``response.done`` with status ``cancelled``.
"""

from __future__ import annotations

import asyncio
import bisect
import dataclasses
import enum
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import numpy as np

from asr.streaming import PartialTranscriber
from asr.vad import VadConfig, VadEventType
from asr.whisper import TranscribeOptions, Transcript, whisper_languages
from llm.chat import Message, SamplingOptions
from llm.prompts import system_prompt
from tts.segmenter import Segmenter, SegmenterConfig, speakable
from voice.audio import ASR_RATE, InputAudio, InputPacer, encode_base64_pcm16, to_output
from voice.faults import engine_failure
from voice.ports import Engines, SpeechDetector
from voice.protocol import (
    AudioAppend,
    AudioClear,
    AudioCommit,
    ClientEvent,
    ItemCreate,
    ItemTruncate,
    JsonObject,
    ProtocolError,
    ResponseCancel,
    ResponseCreate,
    ServerEvent,
    SessionConfig,
    SessionUpdate,
    TokenLimit,
    apply_session_update,
    error_event,
    message_item,
    new_id,
    response_object,
)
from voice.schedulers import Priority, Scheduler, StaleJobError

logger = logging.getLogger(__name__)
T = TypeVar("T")

AUDIO_DELTA_MS = 200  # audio is sent in deltas of at most this length
LATENCY_STAGES = ("vad_ms", "transcript_ms", "llm_first_token_ms", "first_audio_ready_ms",
                  "first_audio_sent_ms")


class SessionState(enum.Enum):
    IDLE = "idle"
    LISTENING = "listening"
    THINKING = "thinking"
    SPEAKING = "speaking"


_TRANSITIONS = {
    SessionState.IDLE: {SessionState.LISTENING, SessionState.THINKING},
    SessionState.LISTENING: {SessionState.IDLE, SessionState.THINKING},
    SessionState.THINKING: {SessionState.SPEAKING, SessionState.IDLE, SessionState.LISTENING},
    SessionState.SPEAKING: {SessionState.IDLE, SessionState.LISTENING},
}


class IllegalTransitionError(RuntimeError):
    pass


class SessionLimitError(Exception):
    """The client broke a limit; the server sends the error and closes the session."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclasses.dataclass(frozen=True)
class SessionDefaults:
    """Service-wide settings every session starts from (see ``voice/config.py``)."""

    config: SessionConfig = dataclasses.field(default_factory=SessionConfig)
    model_name: str = "local"
    max_vad_utterance_s: float = 30.0
    max_buffer_s: float = 120.0  # manual-commit input buffer
    partial_interval_s: float = 1.0  # 0 disables partial transcripts
    beam_size: int = 1
    max_output_tokens: int = 200  # a reply's length unless the client sets one
    max_output_tokens_limit: int = 1024  # the most a client may ask for ("inf" means this)
    sampling: SamplingOptions = dataclasses.field(default_factory=SamplingOptions)
    max_history_items: int = 200
    input_burst_s: float = 4.0  # audio may run this far ahead of real time, then is paced
    max_item_chars: int = 16_000  # text of one conversation item, and of instructions
    max_history_chars: int = 64_000  # the oldest items are forgotten beyond this
    known_languages: frozenset[str] = dataclasses.field(default_factory=whisper_languages)


@dataclasses.dataclass
class HistoryItem:
    item_id: str
    role: str
    text: str
    language: str | None = None
    audio: bool = False
    # For assistant audio: (text, milliseconds of audio) of each piece sent, in order.
    pieces: list[tuple[str, float]] = dataclasses.field(default_factory=list)
    status: str = "completed"
    truncated_by_client: bool = False  # the client said how much it played: trust that


@dataclasses.dataclass
class TurnTimes:
    """Monotonic seconds of the stages of one turn; ``speech_end`` is the reference."""

    speech_end: float
    vad: float | None = None
    transcript: float | None = None
    llm_first_token: float | None = None
    first_audio_ready: float | None = None
    first_audio_sent: float | None = None

    def report(self) -> dict[str, float]:
        stages = (self.vad, self.transcript, self.llm_first_token, self.first_audio_ready,
                  self.first_audio_sent)
        return {name: (value - self.speech_end) * 1000
                for name, value in zip(LATENCY_STAGES, stages, strict=True) if value is not None}


@dataclasses.dataclass
class Response:
    response_id: str
    item: HistoryItem
    modalities: tuple[str, ...]
    language: str
    times: TurnTimes
    max_output_tokens: int
    cancel: threading.Event = dataclasses.field(default_factory=threading.Event)
    cancel_reason: str | None = None
    failure: ProtocolError | None = None
    audio_sent_ms: float = 0.0
    text: str = ""
    tokens: int = 0
    task: asyncio.Task[None] | None = None

    @property
    def cancelled(self) -> bool:
        return self.cancel.is_set()


@dataclasses.dataclass
class PendingTurn:
    """A committed user audio item waiting to be transcribed and answered."""

    item: HistoryItem
    audio: np.ndarray
    times: TurnTimes
    transcript: asyncio.Task[Transcript] | None = None


def heard_text(pieces: list[tuple[str, float]], heard_ms: float) -> str:
    """The part of a spoken reply that was heard in the first ``heard_ms`` of its audio."""
    heard: list[str] = []
    elapsed = 0.0
    for text, duration in pieces:
        if elapsed + duration <= heard_ms:
            heard.append(text)
        elif heard_ms > elapsed and duration > 0:
            words = text.split()
            keep = int(len(words) * (heard_ms - elapsed) / duration)
            if keep:
                heard.append(" ".join(words[:keep]))
            break
        else:
            break
        elapsed += duration
    return " ".join(heard)


class Session:
    """One client's conversation. Call :meth:`handle` for each client event, one at a time."""

    def __init__(self, engines: Engines, defaults: SessionDefaults,
                 send: Callable[[ServerEvent], Awaitable[None]], *,
                 on_turn: Callable[[dict[str, float], str], None] | None = None,
                 on_error: Callable[[str], None] | None = None) -> None:
        self.id = new_id("sess")
        self.engines = engines
        self.defaults = defaults
        self.config = defaults.config
        self._send = send
        self._on_turn = on_turn
        self._on_error = on_error
        self.state = SessionState.IDLE
        self.history: list[HistoryItem] = []
        self.last_language: str | None = None
        self.response: Response | None = None
        self._pending: PendingTurn | None = None
        self._buffer: list[np.ndarray] = []  # manual-commit audio (16 kHz float32)
        self._buffer_samples = 0
        self._received_samples = 0  # 16 kHz samples received since the last reset
        self._arrivals: deque[tuple[int, float]] = deque(maxlen=2000)
        self._input = InputAudio(self.config.input_rate)
        self._pacer = InputPacer(defaults.input_burst_s)
        self._refused_samples = 0  # fast audio dropped since the last report
        self._refused_reported = -math.inf
        self._detector: SpeechDetector | None = None
        self._speech_item: HistoryItem | None = None
        self._partials: PartialTranscriber | None = None
        self._partial_task: asyncio.Task[None] | None = None
        self._unheard_items: deque[str] = deque(maxlen=16)  # replies cut off before a word
        self._closed = False
        self._reset_detector()

    # -- plumbing -------------------------------------------------------------------------

    def transition(self, state: SessionState) -> None:
        if state is self.state:
            return
        if state not in _TRANSITIONS[self.state]:
            raise IllegalTransitionError(f"{self.state.value} -> {state.value}")
        logger.debug("session %s: %s -> %s", self.id, self.state.value, state.value)
        self.state = state

    async def _emit(self, kind: str, fields: JsonObject | None = None,
                    response: Response | None = None) -> None:
        """Send an event; events of a cancelled response are dropped here, in one place."""
        if self._closed or (response is not None and response.cancelled):
            return
        await self._send(ServerEvent(kind, fields or {}))

    async def _run(self, scheduler: Scheduler, function: Callable[..., T], *args: Any,
                   priority: Priority = Priority.NORMAL, max_wait_s: float | None = None) -> T:
        return await scheduler.run(self.id, function, *args, priority=priority,
                                   max_wait_s=max_wait_s)

    async def error(self, error: ProtocolError) -> None:
        """Send an ``error`` event: the one path every error takes (it is counted)."""
        if self._on_error is not None:
            self._on_error(error.code)
        await self._emit("error", error_event(error).fields)

    async def start(self) -> None:
        await self._emit("session.created", {"session": self._session_json()})

    async def close(self) -> None:
        """The client is gone: stop generation and synthesis, and send nothing more."""
        if self.response is not None:
            self._cancel_response("client_disconnected")
        for task in (self._partial_task,):
            if task is not None:
                task.cancel()
        self._closed = True
        for scheduler in self.engines.schedulers:  # queued work of a leaver is never run
            scheduler.drop(self.id)
        response = self.response
        if response is not None and response.task is not None:
            await asyncio.gather(response.task, return_exceptions=True)

    def _session_json(self) -> JsonObject:
        session = self.config.to_json(self.id, self.defaults.model_name)
        session["max_output_tokens"] = self._token_limit(self.config.max_output_tokens)
        return session

    def _token_limit(self, requested: TokenLimit | None) -> int:
        """The reply length in force: the client's number or "inf", capped by the server."""
        cap = self.defaults.max_output_tokens_limit
        if requested is None:
            return min(self.defaults.max_output_tokens, cap)
        return cap if requested == "inf" else min(requested, cap)

    def _check_size(self, text: str, code: str, what: str, param: str,
                    event_id: str | None) -> None:
        limit = self.defaults.max_item_chars
        if len(text) > limit:
            raise ProtocolError(code, f"{what} has {len(text)} characters; the limit is "
                                f"{limit}", event_id=event_id, param=param)

    def _reset_detector(self) -> None:
        turn = self.config.turn_detection
        self._detector = None
        if turn is not None:
            self._detector = self.engines.new_detector(VadConfig(
                threshold=turn.threshold, prefix_padding_ms=turn.prefix_padding_ms,
                silence_duration_ms=turn.silence_duration_ms,
                max_utterance_s=self.defaults.max_vad_utterance_s))
        self._received_samples = 0
        self._arrivals.clear()
        self._buffer.clear()
        self._buffer_samples = 0
        self._speech_item = None

    def _transcribe_options(self, beam_size: int | None = None) -> TranscribeOptions:
        return TranscribeOptions(language=self.config.language,
                                 allowed_languages=self.config.languages,
                                 beam_size=beam_size or self.defaults.beam_size)

    def _arrival_time(self, sample: int) -> float:
        """When the 16 kHz sample with this index reached the server."""
        index = bisect.bisect_left(self._arrivals, (sample, 0.0))
        if index >= len(self._arrivals):
            return time.monotonic()
        return self._arrivals[index][1]

    # -- client events --------------------------------------------------------------------

    async def handle(self, event: ClientEvent) -> None:
        """Process one client event. Expected problems are sent as ``error`` events;
        :class:`SessionLimitError` means the session must be closed."""
        try:
            await self._dispatch(event)
        except ProtocolError as error:
            await self.error(error)

    async def _dispatch(self, event: ClientEvent) -> None:
        if isinstance(event, AudioAppend):
            await self._on_audio(event)
        elif isinstance(event, SessionUpdate):
            await self._on_session_update(event)
        elif isinstance(event, AudioCommit):
            await self._on_commit(event)
        elif isinstance(event, AudioClear):
            self._reset_detector()
            if self.state is SessionState.LISTENING:
                self.transition(SessionState.IDLE)
            await self._emit("input_audio_buffer.cleared")
        elif isinstance(event, ItemCreate):
            await self._on_item_create(event)
        elif isinstance(event, ResponseCreate):
            await self._on_response_create(event)
        elif isinstance(event, ResponseCancel):
            await self._on_response_cancel(event)
        elif isinstance(event, ItemTruncate):
            await self._on_truncate(event)

    async def _on_session_update(self, event: SessionUpdate) -> None:
        before = self.config
        config = apply_session_update(self.config, event.session, event.event_id,
                                      known_languages=self.defaults.known_languages)
        if config.instructions != before.instructions:
            self._check_size(config.instructions, "instructions_too_large", "the instructions",
                             "session.instructions", event.event_id)
        if config.max_output_tokens is not None:
            config = dataclasses.replace(
                config, max_output_tokens=self._token_limit(config.max_output_tokens))
        self.config = config
        if self.config.input_rate != before.input_rate:
            self._input = InputAudio(self.config.input_rate)
        if self.config.turn_detection != before.turn_detection:
            self._reset_detector()
            if self.state is SessionState.LISTENING:
                self.transition(SessionState.IDLE)
        await self._emit("session.updated", {"session": self._session_json()})

    async def _on_audio(self, event: AudioAppend) -> None:
        samples = self._input.convert(event.samples)
        wait = self._pacer.admit(samples.size / ASR_RATE, time.monotonic())
        if wait is None:
            await self._refuse_fast_audio(samples.size)
            return
        if wait > 0:
            await asyncio.sleep(wait)  # a little ahead of real time: the client waits
        self._received_samples += samples.size
        self._arrivals.append((self._received_samples, time.monotonic()))
        if self._detector is None:
            limit = int(self.defaults.max_buffer_s * ASR_RATE)
            if self._buffer_samples + samples.size > limit:
                raise SessionLimitError(
                    "input_audio_buffer_too_long",
                    f"the input audio buffer exceeds {self.defaults.max_buffer_s:.0f} s; "
                    "commit or clear it")
            self._buffer.append(samples)
            self._buffer_samples += samples.size
            return
        detector = self._detector
        for vad_event in await self._run(self.engines.vad, detector.feed, samples):
            if detector is not self._detector:
                return  # the session was reconfigured meanwhile
            if vad_event.type is VadEventType.SPEECH_STARTED:
                await self._on_speech_started(vad_event.start_sample)
            else:
                assert vad_event.audio is not None and vad_event.end_sample is not None
                await self._on_speech_stopped(vad_event.end_sample, vad_event.audio)
        if self.state is SessionState.LISTENING:
            self._maybe_start_partial()

    async def _refuse_fast_audio(self, samples: int) -> None:
        """Audio far ahead of real time is dropped; the client hears of it once a second."""
        self._refused_samples += samples
        now = time.monotonic()
        if now - self._refused_reported < 1.0:
            return
        self._refused_reported = now
        refused_ms, self._refused_samples = self._refused_samples * 1000 // ASR_RATE, 0
        await self.error(ProtocolError(
            "input_audio_too_fast",
            f"audio is arriving faster than real time; {refused_ms} ms of it was dropped "
            f"(at most {self.defaults.input_burst_s:g} s may run ahead)"))

    async def _on_speech_started(self, start_sample: int) -> None:
        turn = self.config.turn_detection
        if self.response is not None and turn is not None and turn.interrupt_response:
            await self._barge_in()
        item = HistoryItem(new_id("item"), "user", "", audio=True)
        self._speech_item = item
        if self.state in (SessionState.IDLE, SessionState.THINKING, SessionState.SPEAKING):
            self.transition(SessionState.LISTENING)
        if self.config.transcription and self.defaults.partial_interval_s > 0:
            self._partials = PartialTranscriber(
                self.engines.transcriber, self._transcribe_options(),
                interval_s=self.defaults.partial_interval_s)
        await self._emit("input_audio_buffer.speech_started",
                         {"audio_start_ms": start_sample * 1000 // ASR_RATE,
                          "item_id": item.item_id})

    async def _on_speech_stopped(self, end_sample: int, audio: np.ndarray) -> None:
        item = self._speech_item or HistoryItem(new_id("item"), "user", "", audio=True)
        self._speech_item = None
        self._partials = None  # a partial still running is abandoned, never awaited
        times = TurnTimes(speech_end=self._arrival_time(end_sample), vad=time.monotonic())
        await self._emit("input_audio_buffer.speech_stopped",
                         {"audio_end_ms": end_sample * 1000 // ASR_RATE,
                          "item_id": item.item_id})
        await self._commit_user_audio(item, audio, times)
        turn = self.config.turn_detection
        busy = self.response is not None and not self.response.cancelled
        if turn is not None and turn.create_response and not busy:
            # A cancelled reply may still be winding down; the new one does not wait for it.
            self._start_response(None, None)
        else:
            # No automatic reply (disabled, or a reply the user did not interrupt is still
            # running): the turn waits for response.create.
            if self.state is SessionState.LISTENING:
                self.transition(SessionState.THINKING if busy else SessionState.IDLE)

    async def _on_commit(self, event: AudioCommit) -> None:
        if self._detector is not None and not self._buffer:
            # server_vad commits by itself; an explicit commit ends the current utterance.
            audio = self._detector.current_utterance()
            if audio.size == 0:
                raise ProtocolError("input_audio_buffer_commit_empty",
                                    "the input audio buffer is empty",
                                    event_id=event.event_id)
            self._detector.reset()
            await self._on_speech_stopped(self._received_samples, audio)
            return
        if self._buffer_samples < ASR_RATE // 10:
            raise ProtocolError("input_audio_buffer_commit_empty",
                                "the input audio buffer holds less than 100 ms of audio",
                                event_id=event.event_id)
        audio = np.concatenate(self._buffer)
        self._buffer.clear()
        self._buffer_samples = 0
        item = HistoryItem(new_id("item"), "user", "", audio=True)
        await self._commit_user_audio(item, audio, TurnTimes(speech_end=time.monotonic(),
                                                            vad=time.monotonic()))

    async def _commit_user_audio(self, item: HistoryItem, audio: np.ndarray,
                                 times: TurnTimes) -> None:
        previous = self.history[-1].item_id if self.history else None
        await self._emit("input_audio_buffer.committed",
                         {"item_id": item.item_id, "previous_item_id": previous})
        self._append_history(item)
        await self._emit("conversation.item.added", {
            "previous_item_id": previous,
            "item": message_item(item.item_id, "user", audio=True, transcript=None)})
        pending = PendingTurn(item, audio, times)
        pending.transcript = asyncio.ensure_future(self._transcribe(pending))
        self._pending = pending

    async def _transcribe(self, pending: PendingTurn) -> Transcript:
        """The final transcript; a failed decode is an error for the client and no reply."""
        try:
            transcript = await self._run(self.engines.asr,
                                         self.engines.transcriber.transcribe,
                                         pending.audio, self._transcribe_options(),
                                         priority=Priority.URGENT)
        except Exception as error:
            logger.exception("session %s: transcription of %s failed", self.id,
                             pending.item.item_id)
            failure = engine_failure("transcription_failed", "transcription", error)
            if self.config.transcription:
                await self._emit("conversation.item.input_audio_transcription.failed", {
                    "item_id": pending.item.item_id, "content_index": 0,
                    "error": error_event(failure).fields["error"]})
            await self.error(failure)
            return Transcript("", self.config.language or "en", 0.0, 1.0, 0.0, 0.0,
                              pending.audio.size / ASR_RATE, 0.0, "transcription_failed")
        pending.times.transcript = time.monotonic()
        pending.item.text = transcript.text
        pending.item.language = transcript.language if transcript.text else None
        if self.config.transcription:
            await self._emit("conversation.item.input_audio_transcription.completed", {
                "item_id": pending.item.item_id, "content_index": 0,
                "transcript": transcript.text, "language": transcript.language,
                "language_probability": round(transcript.language_probability, 3),
                "usage": {"type": "duration", "seconds": round(transcript.duration_s, 3)}})
        await self._emit("conversation.item.done", {"item": message_item(
            pending.item.item_id, "user", audio=True, transcript=transcript.text)})
        return transcript

    def _maybe_start_partial(self) -> None:
        partials, detector = self._partials, self._detector
        if partials is None or detector is None or not detector.in_speech:
            return
        if self._partial_task is not None and not self._partial_task.done():
            return  # at most one partial decode in flight
        turn = self.config.turn_detection
        if turn is not None and detector.last_probability < turn.threshold:
            # The user has paused, maybe finished: a decode started now would compete with
            # the final one for the CPU (docs/benchmarks.md), so wait for more speech.
            return
        if not partials.due(detector.utterance_samples):
            return  # checked on every frame: no copy of the utterance until a decode is due
        audio = detector.current_utterance()
        item = self._speech_item
        self._partial_task = asyncio.ensure_future(self._partial(partials, audio, item))

    async def _partial(self, partials: PartialTranscriber, audio: np.ndarray,
                       item: HistoryItem | None) -> None:
        try:
            # Behind every final transcript; dropped rather than run late under load.
            result = await self._run(self.engines.asr, partials.update, audio,
                                     priority=Priority.BACKGROUND,
                                     max_wait_s=self.defaults.partial_interval_s)
        except StaleJobError:
            return
        except Exception:
            logger.exception("partial transcription failed (ignored)")
            return
        if result is None or partials is not self._partials or item is None:
            return  # the utterance ended meanwhile: the final transcript is what counts
        if result.delta or result.tentative:
            await self._emit("conversation.item.input_audio_transcription.delta", {
                "item_id": item.item_id, "content_index": 0, "delta": result.delta,
                "confirmed": result.confirmed, "tentative": result.tentative,
                "language": result.language})

    async def _on_item_create(self, event: ItemCreate) -> None:
        self._check_size(event.text, "item_too_large", "the item's text", "item.content",
                         event.event_id)
        previous = self.history[-1].item_id if self.history else None
        item = HistoryItem(event.item_id or new_id("item"), event.role, event.text)
        if any(existing.item_id == item.item_id for existing in self.history):
            raise ProtocolError("item_id_in_use", f"item {item.item_id} already exists",
                                event_id=event.event_id, param="item.id")
        self._append_history(item)
        fields = {"previous_item_id": previous,
                  "item": message_item(item.item_id, item.role, text=item.text)}
        await self._emit("conversation.item.added", fields)
        await self._emit("conversation.item.done", fields)

    async def _on_response_create(self, event: ResponseCreate) -> None:
        if self.response is not None and not self.response.cancelled:
            raise ProtocolError("conversation_already_has_active_response",
                                f"response {self.response.response_id} is still in progress",
                                event_id=event.event_id)
        if event.instructions is not None:
            self._check_size(event.instructions, "instructions_too_large", "the instructions",
                             "response.instructions", event.event_id)
        self._start_response(event.instructions, event.output_modalities,
                             event.max_output_tokens)

    async def _on_response_cancel(self, event: ResponseCancel) -> None:
        response = self.response
        if response is None or (event.response_id and event.response_id != response.response_id):
            raise ProtocolError("response_cancel_not_active", "there is no active response"
                                + (f" with id {event.response_id}" if event.response_id else ""),
                                event_id=event.event_id, param="response_id")
        self._truncate_to_heard(response)
        self._cancel_response("client_cancelled")

    async def _on_truncate(self, event: ItemTruncate) -> None:
        item = next((i for i in self.history if i.item_id == event.item_id), None)
        if item is None and event.item_id in self._unheard_items:
            # Cut off before a word was heard, so it never entered the history: nothing to cut.
            await self._emit("conversation.item.truncated", {
                "item_id": event.item_id, "content_index": 0,
                "audio_end_ms": event.audio_end_ms})
            return
        if item is None:
            raise ProtocolError("item_not_found", f"no item with id {event.item_id}",
                                event_id=event.event_id, param="item_id")
        if item.role != "assistant" or not item.audio:
            raise ProtocolError("invalid_item", "only assistant audio items can be truncated",
                                event_id=event.event_id, param="item_id")
        if event.content_index != 0:
            raise ProtocolError("invalid_value", "content_index must be 0",
                                event_id=event.event_id, param="content_index")
        spoken_ms = sum(duration for _, duration in item.pieces)
        if event.audio_end_ms > spoken_ms + 1:
            raise ProtocolError("invalid_value",
                                f"audio_end_ms {event.audio_end_ms} is beyond the "
                                f"{spoken_ms:.0f} ms of audio sent", event_id=event.event_id,
                                param="audio_end_ms")
        item.text = heard_text(item.pieces, event.audio_end_ms)
        item.status = "incomplete"
        item.truncated_by_client = True
        await self._emit("conversation.item.truncated", {
            "item_id": item.item_id, "content_index": 0, "audio_end_ms": event.audio_end_ms})

    def _append_history(self, item: HistoryItem) -> None:
        """Add an item; forget the oldest beyond the item count or the character budget
        (the newest item always stays: one item is at most ``max_item_chars``)."""
        self.history.append(item)
        excess = len(self.history) - self.defaults.max_history_items
        if excess > 0:
            del self.history[:excess]
        chars = sum(len(h.text) for h in self.history)
        drop = 0
        while chars > self.defaults.max_history_chars and drop < len(self.history) - 1:
            chars -= len(self.history[drop].text)
            drop += 1
        del self.history[:drop]

    # -- responses -------------------------------------------------------------------------

    def _start_response(self, instructions: str | None, modalities: tuple[str, ...] | None,
                        max_output_tokens: TokenLimit | None = None) -> None:
        pending, self._pending = self._pending, None
        times = pending.times if pending else TurnTimes(speech_end=time.monotonic())
        item = HistoryItem(new_id("item"), "assistant", "",
                           audio="audio" in (modalities or self.config.output_modalities))
        response = Response(new_id("resp"), item, modalities or self.config.output_modalities,
                            self.config.language or self.last_language or "en", times,
                            self._token_limit(max_output_tokens or self.config.max_output_tokens))
        self.response = response
        if self.state is not SessionState.THINKING:
            self.transition(SessionState.THINKING)
        response.task = asyncio.ensure_future(self._respond(response, pending, instructions))

    def _cancel_response(self, reason: str) -> None:
        response = self.response
        if response is None or response.cancelled:
            return
        response.cancel_reason = reason
        response.cancel.set()
        logger.info("session %s: response %s cancelled (%s)", self.id, response.response_id,
                    reason)

    async def _barge_in(self) -> None:
        """The user speaks over the reply: stop it, keep only what was heard."""
        response = self.response
        if response is not None:
            self._truncate_to_heard(response)
            self._cancel_response("turn_detected")

    def _truncate_to_heard(self, response: Response) -> None:
        item = response.item
        times = response.times
        if not item.audio or item.truncated_by_client:
            return
        heard_ms = 0.0
        if times.first_audio_sent is not None:
            heard_ms = min(response.audio_sent_ms,
                           (time.monotonic() - times.first_audio_sent) * 1000)
        item.text = heard_text(item.pieces, heard_ms)
        item.status = "incomplete"

    async def _respond(self, response: Response, pending: PendingTurn | None,
                       instructions: str | None) -> None:
        status = "completed"
        try:
            if pending is not None:
                assert pending.transcript is not None
                transcript = await pending.transcript
                if not transcript.text:
                    logger.info("session %s: nothing intelligible heard (%s); no reply",
                                self.id, transcript.rejected)
                    response.cancel.set()
                    response.cancel_reason = "no_speech"
                    return
                if self.config.language is None:
                    response.language = transcript.language
            if response.cancelled:
                return
            self.last_language = response.language
            await self._generate(response, instructions)
        except asyncio.CancelledError:
            response.cancel.set()
            raise
        except Exception as error:
            logger.exception("session %s: response %s failed", self.id, response.response_id)
            status = "failed"
            response.failure = engine_failure("response_failed", "the reply", error)
            await self.error(response.failure)
        finally:
            await self._finish(response, status)

    async def _generate(self, response: Response, instructions: str | None) -> None:
        item = response.item
        audio_out = "audio" in response.modalities
        await self._emit("response.created", {"response": response_object(
            response.response_id, "in_progress", modalities=response.modalities,
            language=response.language, max_output_tokens=response.max_output_tokens)},
            response)
        self._append_history(item)
        added = message_item(item.item_id, "assistant", status="in_progress", audio=audio_out)
        common = {"response_id": response.response_id, "item_id": item.item_id,
                  "output_index": 0, "content_index": 0}
        await self._emit("response.output_item.added", {
            "response_id": response.response_id, "output_index": 0, "item": added}, response)
        await self._emit("conversation.item.added", {"item": added}, response)
        await self._emit("response.content_part.added", {
            **common, "part": {"type": "audio" if audio_out else "text",
                               "transcript" if audio_out else "text": ""}}, response)

        language = response.language
        system = system_prompt(language, instructions or self.config.instructions or None)
        messages = [Message("system", system), *(
            Message(h.role, h.text) for h in self.history  # type: ignore[arg-type]
            if h.text and h.item_id != item.item_id)]
        sampling = dataclasses.replace(self.defaults.sampling,
                                       max_new_tokens=response.max_output_tokens)
        if self.config.temperature is not None and self.config.temperature > 0:
            sampling = dataclasses.replace(sampling, temperature=self.config.temperature,
                                           top_k=50, top_p=0.95)
        pieces: asyncio.Queue[str | None] = asyncio.Queue()
        speaker = (asyncio.ensure_future(self._speak(response, pieces)) if audio_out else None)
        speech_error: BaseException | None = None
        try:
            await self._write(response, messages, sampling, pieces, audio_out)
        except BaseException:
            response.cancel.set()  # failed or cancelled: stop speaking at once
            raise
        finally:
            await pieces.put(None)
            if speaker is not None:
                if response.cancelled:
                    speaker.cancel()
                [outcome] = await asyncio.gather(speaker, return_exceptions=True)
                if isinstance(outcome, Exception):
                    speech_error = outcome
        if speech_error is not None:
            raise speech_error

    async def _write(self, response: Response, messages: list[Message],
                     sampling: SamplingOptions, pieces: asyncio.Queue[str | None],
                     audio_out: bool) -> None:
        """Pull LLM deltas in a worker thread; stream them as text and as speakable pieces."""
        stream: Iterator[str] = await self._run(
            self.engines.llm, self.engines.chat.stream, messages, sampling, response.cancel)
        segmenter = Segmenter(SegmenterConfig(language=response.language))
        delta_type = ("response.output_audio_transcript.delta" if audio_out
                      else "response.output_text.delta")
        common = {"response_id": response.response_id, "item_id": response.item.item_id,
                  "output_index": 0, "content_index": 0}
        try:
            while True:
                delta = await self._run(self.engines.llm, next, stream, None)
                if delta is None or response.cancelled:
                    break
                if response.times.llm_first_token is None:
                    response.times.llm_first_token = time.monotonic()
                response.text += delta
                response.tokens += 1
                if not audio_out:
                    response.item.text = response.text
                await self._emit(delta_type, {**common, "delta": delta}, response)
                for piece in segmenter.feed(delta):
                    await pieces.put(piece)
            if not response.cancelled:
                for piece in segmenter.flush():
                    await pieces.put(piece)
        finally:
            close = getattr(stream, "close", None)
            if close is not None:
                # Stops generation in the engine; after a cancel, next() has returned already.
                await self._run(self.engines.llm, close)

    async def _speak(self, response: Response, pieces: asyncio.Queue[str | None]) -> None:
        """Synthesize pieces as they come and send their audio at once, in small deltas.
        If synthesis fails, generation is stopped too and the error is raised."""
        try:
            await self._speak_pieces(response, pieces)
        except Exception:
            response.cancel.set()
            raise

    async def _speak_pieces(self, response: Response,
                            pieces: asyncio.Queue[str | None]) -> None:
        voice = await self._run(self.engines.tts, self.engines.voices.for_language,
                                response.language)
        common = {"response_id": response.response_id, "item_id": response.item.item_id,
                  "output_index": 0, "content_index": 0}
        out_rate = self.config.output_rate
        step = out_rate * AUDIO_DELTA_MS // 1000
        while (piece := await pieces.get()) is not None:
            if response.cancelled:
                return
            text = speakable(piece)
            if not text:
                continue
            audio = await self._run(self.engines.tts, _synthesize, voice, text, out_rate)
            if response.cancelled:
                return
            if response.times.first_audio_ready is None:
                response.times.first_audio_ready = time.monotonic()
            if self.state is SessionState.THINKING:
                self.transition(SessionState.SPEAKING)
            for start in range(0, audio.size, step):
                await self._emit("response.output_audio.delta", {
                    **common, "delta": encode_base64_pcm16(audio[start:start + step])}, response)
                if response.times.first_audio_sent is None and not response.cancelled:
                    response.times.first_audio_sent = time.monotonic()
            duration_ms = audio.size * 1000 / out_rate
            if not response.cancelled:
                response.audio_sent_ms += duration_ms
                response.item.pieces.append((piece, duration_ms))
                if not response.item.truncated_by_client:
                    response.item.text = " ".join(text for text, _ in response.item.pieces)

    async def _finish(self, response: Response, status: str) -> None:
        if response.cancelled and status != "failed":
            status = "cancelled"
        audio_out = "audio" in response.modalities
        item = response.item
        if status == "failed":
            item.status = "incomplete"  # it keeps what was written or spoken before the fault
        elif not response.cancelled and not item.truncated_by_client:
            item.text = response.text.strip()
            item.status = "completed"
            common = {"response_id": response.response_id, "item_id": item.item_id,
                      "output_index": 0, "content_index": 0}
            if audio_out:
                await self._emit("response.output_audio.done", common, response)
                await self._emit("response.output_audio_transcript.done",
                                 {**common, "transcript": item.text}, response)
            else:
                await self._emit("response.output_text.done", {**common, "text": item.text},
                                 response)
            await self._emit("response.content_part.done", {
                **common, "part": {"type": "audio" if audio_out else "text",
                                   "transcript" if audio_out else "text": item.text}}, response)
            done_item = message_item(item.item_id, "assistant", audio=audio_out,
                                     transcript=item.text, text=item.text)
            await self._emit("response.output_item.done", {
                "response_id": response.response_id, "output_index": 0, "item": done_item},
                response)
            await self._emit("conversation.item.done", {"item": done_item}, response)
        if not item.text:
            self.history = [h for h in self.history if h is not item]
            self._unheard_items.append(item.item_id)
        latency = response.times.report()
        if response.cancel_reason != "no_speech":
            output = [message_item(item.item_id, "assistant", audio=audio_out,
                                   status=item.status, transcript=item.text, text=item.text)]
            failure = response.failure
            await self._emit("response.done", {"response": response_object(
                response.response_id, status, output=output, modalities=response.modalities,
                reason=response.cancel_reason, language=response.language, latency=latency,
                usage={"output_tokens": response.tokens, "input_tokens": 0,
                       "total_tokens": response.tokens},
                max_output_tokens=response.max_output_tokens,
                error=None if failure is None else {"type": failure.error_type,
                                                    "code": failure.code})})
            logger.info("session %s: turn %s %s in %s, latency %s", self.id,
                        response.response_id, status, response.language,
                        ", ".join(f"{k}={v:.0f}" for k, v in latency.items()))
            if self._on_turn is not None:
                self._on_turn(latency, status)
        if self.response is response:
            self.response = None
            if self.state in (SessionState.THINKING, SessionState.SPEAKING):
                self.transition(SessionState.IDLE)


def _synthesize(voice: Any, text: str, out_rate: int) -> np.ndarray:
    """One piece as int16 at the client's rate (runs in a TTS worker thread)."""
    chunks = [to_output(c.samples, c.sample_rate, out_rate) for c in voice.synthesize(text)]
    return np.concatenate(chunks) if chunks else np.zeros(0, np.int16)
