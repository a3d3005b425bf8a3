"""One client's conversation: the thin async driver that wires the parts to one connection.

Data flow (replies are started and accounted for in :mod:`voice.replying`): client audio ->
:class:`~voice.listening.UserAudio` (rate, pacing) -> VAD (through the vad scheduler) ->
:class:`~voice.turns.TurnTaker` (media time) -> effects: a user turn ends -> ASR scheduler ->
transcript; a reply starts ->
:class:`~voice.reply.Reply` (LLM -> segmenter -> TTS -> audio deltas) -> ``send`` (the
connection's outbox). Barge-in is the TurnTaker's CancelReply effect. Conversation items live
in :class:`~voice.conversation.Conversation`.

The session is transport-free: the server hands it parsed client events (:meth:`handle`, one at
a time), it emits typed server events through ``send``, and the writer tells it when an event
reached the socket (:meth:`event_sent`). Engine calls run on the engines' schedulers; the
event loop only moves data.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence

import numpy as np

from voice.audio_pump import AudioPump
from voice.conversation import Conversation, Item
from voice.draft import Draft
from voice.ducking import MicLevels
from voice.endpointing import Endpointing
from voice.interruptions import Interruptions
from voice.listening import BufferTooLongError, UserAudio
from voice.mcp_client import McpConnector
from voice.mcp_listing import SessionMcp
from voice.partials import Partials
from voice.ports import Engines, SpeechDetector
from voice.protocol import (
    LATENCY_STAGES,
    AudioAppend,
    AudioClear,
    AudioCleared,
    AudioCommit,
    AudioDelta,
    ClientEvent,
    Error,
    ItemAdded,
    ItemCreate,
    ItemDelete,
    ItemDeleted,
    ItemDone,
    ItemRetrieve,
    ItemRetrieved,
    ItemTruncate,
    ItemTruncated,
    ProtocolError,
    ResponseCancel,
    ResponseCreate,
    ServerEvent,
    SessionConfig,
    SessionCreated,
    SessionUpdate,
    SessionUpdated,
    mcp_servers_of,
    new_id,
)
from voice.reply import Reply
from voice.reply_audio import Gap
from voice.reply_settings import ReplySettings
from voice.replying import Replying
from voice.session_settings import SessionDefaults, SessionLimitError, Settings
from voice.speech_over import Overlap
from voice.turn_effects import (
    CancelReply,
    Effect,
    EndAfterSilence,
    OverlapEnded,
    OverlapPaused,
    OverlapStarted,
    ResumeReply,
    StartReply,
    UserPaused,
    UserResumed,
    UserTurnEnded,
    UserTurnStarted,
)
from voice.turns import TurnError, TurnTaker
from voice.user_turn import Speculation, UserTurn
from voice.yielding import Yielding

logger = logging.getLogger(__name__)

__all__ = ["LATENCY_STAGES", "Session", "SessionDefaults", "SessionLimitError"]


class Session(Endpointing, Interruptions, Yielding, Replying):
    """One client's conversation. Call :meth:`handle` for each client event, one at a time."""

    def __init__(self, engines: Engines, defaults: SessionDefaults,
                 send: Callable[[ServerEvent], Awaitable[None]], *,
                 on_turn: Callable[[dict[str, float], str, Sequence[Gap]], None] | None = None,
                 on_error: Callable[[str], None] | None = None) -> None:
        self.id = new_id("sess")
        self.engines = engines
        self.defaults = defaults
        self.settings = Settings(defaults)
        self._send = send
        self._on_turn = on_turn
        self._on_error = on_error
        self.conversation = Conversation(max_items=defaults.max_history_items,
                                         max_chars=defaults.max_history_chars)
        self.mcp = SessionMcp(self.id, McpConnector(defaults.mcp_timeout_s), self.conversation,
                              self._emit, self.error)
        self.turns = TurnTaker(self._policy())
        self.audio = UserAudio(self.config.input_rate, burst_s=defaults.input_burst_s,
                               max_buffer_s=defaults.max_buffer_s)
        self.last_language: str | None = None
        self.reply: Reply | None = None  # the newest reply; a cancelled one may wind down
        self._replaced: Reply | None = None  # the reply before it (it may still be playing)
        self._overlap: Overlap | None = None  # speech over the reply, being judged
        self._judging_held: Overlap | None = None  # ended over a held reply, being judged
        self._mic_levels = MicLevels()  # the microphone's loudness, for ducking the reply
        self._voice_level: float | None = None  # the user's voice in their last turn
        self._last_turn: UserTurn | None = None  # committed, not yet answered
        self._turn_audio = np.zeros(0, np.float32)  # audio of the user turn ending now
        self._detector: SpeechDetector | None = None
        self._detector_origin = 0  # media time at which the detector started counting
        self._detector_lock = asyncio.Lock()  # feeding it and ending a turn never overlap
        self._pause_audio = np.zeros(0, np.float32)  # audio of the pause being reported
        self._score_audio = self._pause_audio  # what the turn model judges at this pause
        self._speculation: Speculation | None = None
        self._draft: Draft | None = None  # a reply to the speculation, written ahead
        self._speech_item: Item | None = None
        self._speech_start: int | None = None
        self._kept_language: str | None = None
        self._partials: Partials | None = None
        self._replies_counted = 0  # this session's replies in engines.activity.replies
        self._tasks: set[asyncio.Future[object]] = set()
        self._pump = AudioPump(self._feed_detector, self._spawn)
        self._closed = False
        self._reset_detector()

    @property
    def config(self) -> SessionConfig:
        return self.settings.config

    @property
    def history(self) -> list[Item]:
        return self.conversation.items

    @property
    def response(self) -> Reply | None:
        """The reply in progress, if any (not one that was cancelled and is winding down)."""
        reply = self.reply
        return reply if reply is not None and not reply.finished and not reply.cancelled \
            else None

    # -- plumbing -------------------------------------------------------------------------

    async def _emit(self, event: ServerEvent) -> None:
        if not self._closed:
            await self._send(event)

    def event_sent(self, event: ServerEvent) -> None:
        """The writer put ``event`` on the socket (stamps when reply audio really left)."""
        if isinstance(event, AudioDelta) and self.reply is not None \
                and self.reply.response_id == event.response_id:
            delta = event.delta
            size = len(delta) * 3 // 4 - (len(delta) - len(delta.rstrip("=")))
            until = self.reply.audio_written(size * 500 / self.reply.settings.output_rate)
            self.turns.reply_audible(self.reply.turn_id)
            self.turns.playing(self.reply.turn_id, until)

    async def error(self, error: ProtocolError) -> None:
        """Send an ``error`` event: the one path every error takes (it is counted)."""
        if self._on_error is not None:
            self._on_error(error.code)
        await self._emit(Error.of(error))

    def _spawn(self, awaitable: Awaitable[object]) -> asyncio.Future[object]:
        task = asyncio.ensure_future(awaitable)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def start(self) -> None:
        await self._emit(SessionCreated(self.settings.to_json(self.id)))

    async def close(self) -> None:
        """The client is gone: stop generation and synthesis, and send nothing more."""
        if self.reply is not None and not self.reply.finished:
            self.reply.cancel("client_disconnected")
        if self._partials is not None:
            self._partials.cancel()
        self._drop_speculation()
        self._pump.discard()
        self._closed = True
        await self.mcp.close()
        for scheduler in self.engines.schedulers:  # queued work of a leaver is never run
            scheduler.drop(self.id)
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def _stop_partials(self) -> None:
        if self._partials is not None:
            self._partials.stop()
            self._partials = None

    # -- client events --------------------------------------------------------------------

    async def handle(self, event: ClientEvent) -> None:
        """Process one client event. Expected problems are sent as ``error`` events;
        :class:`SessionLimitError` means the session must be closed."""
        try:
            await self._dispatch(event)
        except ProtocolError as error:
            await self.error(error)
        except TurnError as error:
            await self.error(ProtocolError(error.code, str(error),
                                           event_id=getattr(event, "event_id", None)))

    async def _dispatch(self, event: ClientEvent) -> None:
        if isinstance(event, AudioAppend):
            self._pump.check()
            await self._on_audio(event)
            return
        await self._pump.settle()  # every earlier audio message is fed before this event
        if isinstance(event, SessionUpdate):
            before = self.config
            self.settings.update(event)
            self.audio.set_rate(self.config.input_rate)
            if self.config.turn_detection != before.turn_detection:
                self._reset_detector()
                self.turns.configure(self._policy())
            elif self.config.interruption != before.interruption:
                self.turns.policy = self._policy()  # the turn in progress goes on
            await self._emit(SessionUpdated(self.settings.to_json(self.id)))
            self.mcp.update(mcp_servers_of(self.config.tools))  # their tools are listed now
            self._read_pinned_tools_turn()
        elif isinstance(event, AudioCommit):
            await self._on_commit(event)
        elif isinstance(event, AudioClear):
            self._reset_detector()
            self.turns.clear()
            await self._emit(AudioCleared())
        elif isinstance(event, ItemCreate):
            await self._on_item_create(event)
        elif isinstance(event, ResponseCreate):
            settings = self.settings.for_response(event, self.last_language)
            self.mcp.update(settings.mcp_servers)
            await self._apply(self.turns.reply_requested(), settings)
        elif isinstance(event, ResponseCancel):
            reply = self.response
            if reply is not None and event.response_id not in (None, reply.response_id):
                raise ProtocolError("response_cancel_not_active",
                                    f"there is no active response with id {event.response_id}",
                                    event_id=event.event_id, param="response_id")
            await self._apply(self.turns.cancel_requested())
        elif isinstance(event, ItemDelete):
            self.conversation.delete(event.item_id, event.event_id)
            await self._emit(ItemDeleted(event.item_id))
        elif isinstance(event, ItemRetrieve):
            item = self.conversation.get(event.item_id, event.event_id)
            await self._emit(ItemRetrieved(item.to_json()))
        elif isinstance(event, ItemTruncate):
            if event.content_index != 0:
                raise ProtocolError("invalid_value", "content_index must be 0",
                                    event_id=event.event_id, param="content_index")
            self.conversation.truncate(event.item_id, event.audio_end_ms, event.event_id)
            await self._emit(ItemTruncated(event.item_id, 0, event.audio_end_ms))

    async def _on_audio(self, event: AudioAppend) -> None:
        samples, wait = self.audio.accept(event.samples, time.monotonic())
        if samples is None:
            refused_ms = self.audio.refusal_report(time.monotonic())
            if refused_ms is not None:
                await self.error(ProtocolError(
                    "input_audio_too_fast",
                    f"audio is arriving faster than real time; {refused_ms} ms of it was "
                    f"dropped (at most {self.defaults.input_burst_s:g} s may run ahead)"))
            return
        if wait > 0:
            await asyncio.sleep(wait)  # a little ahead of real time: the client waits
        self.audio.taken(samples.size, time.monotonic())
        if self._detector is not None:
            self._pump.put(samples)  # fed in the background: reading goes on meanwhile
            return
        effects = self.turns.audio(samples.size)  # an overlap nobody could judge in time
        if effects:
            async with self._detector_lock:
                await self._apply(effects)
        try:
            self.audio.buffer(samples)
        except BufferTooLongError as error:
            raise SessionLimitError("input_audio_buffer_too_long", str(error)) from error

    async def _feed_detector(self, samples: np.ndarray) -> None:
        """The audio pump's feed: media time, the VAD, then what depends on what it heard."""
        effects = self.turns.audio(samples.size)  # an overlap nobody could judge in time
        self._mic_levels.add(samples, self.turns.now)
        detector = self._detector
        if effects:
            async with self._detector_lock:
                await self._apply(effects)
        if detector is None:  # turned off meanwhile (by the turn-taker's effects)
            return
        async with self._detector_lock:
            await self._detect(detector, samples)
        await self._duck_if_heard()
        self._keep_held()
        self._poll_overlap()
        turn = self.config.turn_detection
        if self._partials is not None and turn is not None:
            self._partials.poll(detector, turn.threshold, busy=self._engines_busy())

    async def _on_item_create(self, event: ItemCreate) -> None:
        self.settings.check_size(event.text + (event.arguments or ""), "item_too_large",
                                 "the item's text", "item.content", event.event_id)
        item = self.conversation.item_from(event, new_id("item"))
        previous = self.conversation.add(item)
        await self._emit(ItemAdded(item.to_json(), previous))
        await self._emit(ItemDone(item.to_json(), previous))

    # -- effects of the turn-taker --------------------------------------------------------

    async def _apply(self, effects: list[Effect], settings: ReplySettings | None = None) -> None:
        for effect in effects:
            if isinstance(effect, CancelReply):
                reply = self.reply
                if reply is not None and reply.turn_id == effect.reply_id:
                    reply.keep_heard(effect.at)
                    reply.cancel(effect.reason)
            elif isinstance(effect, UserTurnStarted):
                await self._user_started(effect.at)
            elif isinstance(effect, UserPaused):
                self._user_paused(effect)
            elif isinstance(effect, UserResumed):
                self._drop_speculation()
            elif isinstance(effect, EndAfterSilence):
                if self._detector is not None:
                    self._detector.end_after(effect.silence_ms)
            elif isinstance(effect, UserTurnEnded):
                await self._user_ended(effect.at)
            elif isinstance(effect, StartReply):
                self._start_reply(effect.reply_id, settings
                                  or self.settings.for_response(None, self.last_language))
            elif isinstance(effect, OverlapStarted):
                self._overlap_started(effect.at)
            elif isinstance(effect, OverlapPaused):
                self._overlap_paused(effect)
            elif isinstance(effect, OverlapEnded):
                self._overlap_ended(effect)
            elif isinstance(effect, ResumeReply) and not self._resume(effect):
                self.turns.reply_ended(effect.reply_id)  # nothing left to say
