"""Where a user turn ends, and what is started before it is known to be over.

The part of the session (``voice/session.py``) that feeds the VAD and acts on the
:class:`~voice.turns.TurnTaker`'s pause effects: the detector set up for the session's turn
detection, a final decode started at the first pause (:class:`~voice.user_turn.Speculation`,
kept if nothing follows), the turn model asked whether a paused turn is complete, and a reply
written ahead (:class:`~voice.draft.Draft`) while the turn waits for its confirming silence;
then the turn's start and end as events and items, and its final transcript. A mixin of
:class:`~voice.session.Session`, whose fields it names below; what is started ahead of the
turn's end is in ``voice/ahead.py``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable

import numpy as np

from asr.transcript import TranscribeOptions, Transcript
from asr.vad import VadConfig, VadEventType
from voice.ahead import WritingAhead
from voice.audio import ASR_RATE
from voice.conversation import Conversation, Item
from voice.draft import Draft
from voice.ducking import voice_level
from voice.faults import engine_failure
from voice.listening import UserAudio
from voice.mcp_listing import SessionMcp
from voice.partials import Partials
from voice.ports import Engines, SpeechDetector
from voice.protocol import (
    AudioCommit,
    AudioCommitted,
    Error,
    ItemAdded,
    ItemDone,
    ProtocolError,
    ServerEvent,
    SpeechStarted,
    SpeechStopped,
    TranscriptCompleted,
    TranscriptFailed,
    new_id,
)
from voice.reply_settings import TurnTimes
from voice.schedulers import Priority
from voice.session_settings import SessionDefaults, Settings
from voice.turn_effects import Effect, UserPaused
from voice.turns import EAGERNESS, PAUSE_MS, TurnPolicy, TurnTaker
from voice.user_turn import Speculation, UserTurn, ends_sentence, retrieve

logger = logging.getLogger(__name__)

# The final decode starts at this much silence, before the pause is judged: the decode, not
# the confirming silence, is the long pole after the end of speech on a CPU (docs/benchmarks.md,
# "The decode starts at 100 ms of silence", and "... at 64 ms": two of the VAD's 32 ms windows).
EARLY_PAUSE_MS = 64


class Endpointing(WritingAhead):
    """The session's turn-end detection and early work (a mixin of Session)."""

    id: str
    engines: Engines
    defaults: SessionDefaults
    settings: Settings
    conversation: Conversation
    mcp: SessionMcp
    turns: TurnTaker
    audio: UserAudio
    last_language: str | None
    _closed: bool
    _detector: SpeechDetector | None
    _detector_origin: int
    _detector_lock: asyncio.Lock
    _pause_audio: np.ndarray
    _score_audio: np.ndarray
    _turn_audio: np.ndarray
    _voice_level: float | None
    _last_turn: UserTurn | None
    _emit: Callable[[ServerEvent], Awaitable[None]]
    error: Callable[[ProtocolError], Awaitable[None]]
    _speculation: Speculation | None
    _overlap: object | None
    _forget_overlap: Callable[[], None]
    _draft: Draft | None
    _speech_item: Item | None
    _speech_start: int | None  # media time the VAD heard the current turn's speech begin
    _kept_language: str | None  # the language the current turn's conversation was read in
    _partials: Partials | None
    _spawn: Callable[[Awaitable[object]], asyncio.Future[object]]
    _apply: Callable[[list[Effect]], Awaitable[None]]
    _stop_partials: Callable[[], None]
    # config and response: WritingAhead's stubs, the session's properties.

    def _semantic(self) -> bool:
        turn = self.config.turn_detection
        return (turn is not None and turn.type == "semantic_vad"
                and self.engines.turn_model is not None)

    def _policy(self) -> TurnPolicy:
        turn = self.config.turn_detection
        if turn is None:
            return TurnPolicy(automatic=False, create_response=False, interrupt_response=False)
        interruption = self.config.interruption
        policy = TurnPolicy(True, turn.create_response, turn.interrupt_response,
                            guard=interruption.guard, min_overlap_ms=interruption.min_speech_ms,
                            max_overlap_ms=interruption.max_wait_ms, resume=interruption.resume)
        if not self._semantic():
            return policy
        eagerness = EAGERNESS[turn.eagerness]
        return dataclasses.replace(policy, complete_at=eagerness.complete_at,
                                   confirm_ms=eagerness.confirm_ms,
                                   sentence_ms=eagerness.sentence_ms)

    def _reset_detector(self) -> None:
        turn = self.config.turn_detection
        if turn is None:
            self._detector = None
        else:
            # semantic_vad: the silence limit is the longest wait for a turn judged unfinished.
            silence_ms = (EAGERNESS[turn.eagerness].max_wait_ms if self._semantic()
                          else turn.silence_duration_ms)
            self._detector = self.engines.new_detector(VadConfig(
                threshold=turn.threshold, prefix_padding_ms=turn.prefix_padding_ms,
                silence_duration_ms=silence_ms, max_utterance_s=self.defaults.max_vad_utterance_s,
                tail_ms=min(PAUSE_MS, silence_ms),
                pause_ms=PAUSE_MS if silence_ms > PAUSE_MS + 100 else None,
                early_pause_ms=EARLY_PAUSE_MS if silence_ms > PAUSE_MS + 100 else None,
                recheck_ms=EAGERNESS[turn.eagerness].confirm_ms if self._semantic() else None))
        self._detector_origin = self.audio.received
        self.audio.clear()
        self._speech_item = None
        self._speech_start = None
        self._forget_overlap()
        self._drop_speculation()
        self._stop_partials()

    def _drop_speculation(self) -> None:
        if self._speculation is not None:
            self._speculation.decoding.cancel()
            self._speculation = None
        self._drop_draft()

    async def _detect(self, detector: SpeechDetector, samples: np.ndarray) -> None:
        """Feed the VAD and carry out what it heard (holding the detector lock)."""
        origin = self._detector_origin
        if detector.will_score(samples.size):
            vad_events = await self.engines.vad.run(self.id, detector.feed, samples)
        else:
            vad_events = detector.feed(samples)  # only buffers: no thread hop for it
        for vad_event in vad_events:
            if detector is not self._detector:
                return  # the session was reconfigured meanwhile
            kind = vad_event.type
            if kind is VadEventType.SPEECH_STARTED:
                await self._apply(self.turns.speech_started(origin + vad_event.start_sample))
                continue
            assert vad_event.end_sample is not None
            at = origin + vad_event.end_sample
            if kind is VadEventType.SPEECH_RESUMED:
                await self._apply(self.turns.speech_resumed(at))
                continue
            assert vad_event.audio is not None
            if kind is VadEventType.SPEECH_PAUSED:
                if vad_event.reason == "early":  # decode now, judge at the full pause
                    self._pause_audio = vad_event.audio
                    await self._apply(self.turns.speech_paused(at, judge=False))
                    continue
                if vad_event.reason == "pause" and self.turns.paused_at != at:
                    self._pause_audio = vad_event.audio  # no early report of this pause
                # A recheck lets the turn model hear the longer silence too.
                self._score_audio = (detector.current_utterance()
                                     if vad_event.reason == "recheck" else vad_event.audio)
                await self._apply(self.turns.speech_paused(at))
            else:
                self._turn_audio = vad_event.audio
                await self._apply(self.turns.speech_stopped(at))

    async def _score_turn(self, detector: SpeechDetector, at: int, audio: np.ndarray) -> None:
        """Ask the turn model whether the turn that paused at ``at`` is complete; if so, end
        it after a short silence. On failure the VAD's silence limit still ends the turn."""
        model = self.engines.turn_model
        assert model is not None
        try:
            probability = await self.engines.vad.run(self.id, model.probability, audio,
                                                     priority=Priority.URGENT)
        except Exception:
            logger.exception("session %s: the turn model failed; waiting for silence", self.id)
            return
        async with self._detector_lock:
            if detector is self._detector:
                logger.debug("session %s: turn complete p=%.2f at %d", self.id, probability, at)
                await self._apply(self.turns.turn_end_scored(at, probability))

    def _user_paused(self, pause: UserPaused) -> None:
        """Start the final decode now (unless others wait for the engines: a decode the
        user's next words void would take their processor), and ask the turn model."""
        if pause.again:
            if self._detector is not None:
                self._spawn(self._score_turn(self._detector, pause.at, self._score_audio))
            return
        self._drop_speculation()
        audio = self._pause_audio
        if not self._others_waiting():
            started = time.monotonic()
            decoding = self._spawn(self._decode(audio))
            decoding.add_done_callback(lambda done: logger.debug(
                "session %s: decode at the pause %s %.0f ms", self.id,
                "dropped after" if done.cancelled() else "took",
                (time.monotonic() - started) * 1000))
            decoding.add_done_callback(retrieve)
            speculation = Speculation(pause.at, audio, decoding)  # type: ignore[arg-type]
            self._speculation = speculation
            decoding.add_done_callback(lambda _: self._write_ahead(speculation))
            if self._detector is not None and self.turns.policy.sentence_ms is not None:
                detector = self._detector
                decoding.add_done_callback(
                    lambda _: self._spawn(self._sentence_check(detector, speculation)))
        if pause.score and self._detector is not None:
            self._spawn(self._score_turn(self._detector, pause.at, self._score_audio))

    async def _sentence_check(self, detector: SpeechDetector,
                              speculation: Speculation) -> None:
        """The transcript at the pause ends a sentence: say so to the turn-taker."""
        decoding = speculation.decoding
        if (decoding.cancelled() or decoding.exception() is not None
                or not ends_sentence(decoding.result().text)):
            return
        async with self._detector_lock:
            if detector is self._detector:
                await self._apply(self.turns.sentence_heard(speculation.at))

    async def _decode(self, audio: np.ndarray) -> Transcript:
        # Batched with other sessions' finals where the engine is set up to (GPU).
        return await self.engines.asr.run_batched(
            self.id, self.engines.transcriber.transcribe_batch,
            (audio, self._final_options()), priority=Priority.URGENT)

    def _transcribe_options(self, beam_size: int = 1) -> TranscribeOptions:
        """How this session's speech is transcribed; greedy unless told (partials and the
        guard's looks are drafts, decoded as fast as they can be)."""
        return TranscribeOptions(language=self.config.language,
                                 allowed_languages=self.config.languages,
                                 previous_language=self.last_language,
                                 beam_size=beam_size,
                                 prompt=self.config.transcription_prompt)

    def _final_options(self) -> TranscribeOptions:
        """A final transcript's options: the configured beam (``[asr] beam_size``) while the
        engines work for no one else, greedy while they do. The final decode runs during the
        turn's confirming silence, which a wider beam fits when the decode has the cores to
        itself (docs/benchmarks.md, "A wider beam for the final transcript"); under load its
        extra work would delay every session. A first turn whose language is a close call is
        decoded twice (``[asr] second_language_below``), loaded or not: a decode in the wrong
        language is no transcript at all."""
        options = self._transcribe_options(
            1 if self._engines_busy() else self.defaults.beam_size)
        return dataclasses.replace(options,
                                   second_language_below=self.defaults.second_language_below)

    async def _on_commit(self, event: AudioCommit) -> None:
        if self._detector is not None:
            audio = self._detector.current_utterance()
            if audio.size == 0:
                raise ProtocolError("input_audio_buffer_commit_empty",
                                    "the input audio buffer is empty", event_id=event.event_id)
            self._detector.reset()
        else:
            if self.audio.buffered < ASR_RATE // 10:
                raise ProtocolError("input_audio_buffer_commit_empty",
                                    "the input audio buffer holds less than 100 ms of audio",
                                    event_id=event.event_id)
            audio = self.audio.take_buffer()
        self._turn_audio = audio
        await self._apply(self.turns.commit())

    # -- the user's turn -------------------------------------------------------------------

    async def _user_started(self, at: int) -> None:
        item = Item(new_id("item"), "user", audio=True)
        self._speech_item = item
        self._speech_start = at
        self._kept_language = None
        self._stop_partials()
        if self.config.transcription and self.defaults.partial_interval_s > 0:
            self._partials = Partials(item.item_id, self.id, self.engines.transcriber,
                                      self._transcribe_options(), self.engines.asr,
                                      self.defaults.partial_interval_s, self._emit,
                                      on_language=self._language_heard)
        await self._emit(SpeechStarted((at - self._detector_origin) * 1000 // ASR_RATE,
                                       item.item_id))

    async def _user_ended(self, at: int) -> None:
        now = time.monotonic()
        item = self._speech_item or Item(new_id("item"), "user", audio=True)
        self._speech_item = None
        self._stop_partials()  # a partial still running is abandoned, never awaited
        if self._detector is not None:
            times = TurnTimes(speech_end=self.audio.arrival_time(at, now), vad=now)
            await self._emit(SpeechStopped((at - self._detector_origin) * 1000 // ASR_RATE,
                                           item.item_id))
        else:
            times = TurnTimes(speech_end=now, vad=now)
        previous = self.conversation.add(item)
        await self._emit(AudioCommitted(item.item_id, previous))
        await self._emit(ItemAdded(item.to_json(transcribed=False), previous))
        start, self._speech_start = self._speech_start, None
        # The user's voice, for judging speech over the reply where the microphone's level
        # during it is not known (voice.interruptions).
        level = voice_level(self._turn_audio)
        self._voice_level = self._voice_level if level is None else level
        turn = UserTurn(item, self._turn_audio, times,
                        speech_s=None if start is None else (at - start) / ASR_RATE)
        speculation, self._speculation = self._speculation, None
        decoding: asyncio.Future[Transcript] | None = None
        if speculation is not None:
            if speculation.at == at:
                # Nothing was said since the pause: keep it (its audio may end in a shorter
                # tail of silence, EARLY_PAUSE_MS, than the turn's).
                decoding = speculation.decoding
            else:
                speculation.decoding.cancel()
        turn.transcript = self._spawn(  # type: ignore[assignment]
            self._transcribe(turn, decoding))
        self._last_turn = turn

    async def _transcribe(self, turn: UserTurn,
                          decoding: Awaitable[Transcript] | None = None) -> Transcript:
        """The final transcript (of the decode started at the pause, if it is still right);
        a failed decode is an error for the client and no reply."""
        try:
            transcript = await (decoding if decoding is not None else self._decode(turn.audio))
        except Exception as error:
            logger.exception("session %s: transcription of %s failed", self.id,
                             turn.item.item_id)
            failure = engine_failure("transcription_failed", "transcription", error)
            if self.config.transcription:
                await self._emit(TranscriptFailed(turn.item.item_id, 0,
                                                  Error.of(failure).error))
            await self.error(failure)
            return Transcript("", self.config.language or "en", 0.0, 1.0, 0.0, 0.0,
                              turn.audio.size / ASR_RATE, 0.0, "transcription_failed")
        turn.times.transcript = time.monotonic()
        turn.item.text = transcript.text
        turn.item.language = transcript.language if transcript.text else None
        if self.config.transcription:
            await self._emit(TranscriptCompleted(
                turn.item.item_id, 0, transcript.text,
                {"type": "duration", "seconds": round(transcript.duration_s, 3)},
                transcript.language, round(transcript.language_probability, 3)))
        await self._emit(ItemDone(turn.item.to_json()))
        return transcript
