"""Speech over the assistant's reply: judged before it interrupts, and a false interruption
undone.

The part of the session (``voice/session.py``) that carries out the
:class:`~voice.turns.TurnTaker`'s overlap effects. While speech that started over an audible
reply is unconfirmed (``OverlapStarted``), its audio so far is transcribed quickly (a fitted
window, no retry, a few tokens, leaning to the reply's language) once it lasted
``min_speech_ms``, then every :data:`JUDGE_STEP_MS`, one decode at a time, and
:func:`voice.overlap.judge` compares the words with the reply's words playing then. Once it
is the user's words (surely, or twice in a row), the TurnTaker makes it a barge-in.
When it ends unconfirmed (``OverlapEnded``), its whole audio is transcribed as a final
transcript: the user's words become a turn (that transcript is kept for it), a backchannel is
reported (``input_audio_buffer.backchannel``) and kept in the history if the client asked,
echo and noise are dropped. ``ResumeReply`` starts a response that speaks the rest of a reply
cut off by a turn that transcribed to nothing. A mixin of :class:`~voice.session.Session`;
what the reply does meanwhile (ducked or held) is ``voice/yielding.py``, and what is known
of one overlap (how long its voice has lasted) ``voice/speech_over.py``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Callable

import numpy as np

from asr.transcript import TranscribeOptions, Transcript
from voice.conversation import Conversation, Item
from voice.ducking import MicLevels, floor_level
from voice.overlap import (
    Judgement,
    Verdict,
    fold,
    follows_recent,
    is_backchannel,
    judge,
    settled,
)
from voice.ports import Engines, SpeechDetector
from voice.protocol import (
    BackchannelHeard,
    ItemAdded,
    ItemDone,
    ServerEvent,
    SessionConfig,
    new_id,
)
from voice.reply import Reply, Resume
from voice.reply_settings import ReplySettings
from voice.schedulers import Priority
from voice.speech_over import Overlap
from voice.turn_effects import (
    Backchannel,
    Effect,
    OverlapEnded,
    ResumeReply,
    UserTurnEnded,
    UserTurnStarted,
)
from voice.turns import TurnTaker
from voice.user_turn import Speculation

logger = logging.getLogger(__name__)
ASR_RATE = 16_000
JUDGE_STEP_MS = 200  # a new look at the overlap after this much more of it (once judged)
JUDGE_TOKENS = 24  # a few words are enough to tell
# The reply's words that its echo may hold: from a little before the speech began (the
# decode hears the VAD's padding, and the room delays the echo) to a little after now.
ECHO_BEFORE_MS, ECHO_AFTER_MS = 2000, 1500
# The latest stretches of the speech whose loudness is compared with the reply's, if at
# least the shortest came after the reply's first audio (voice.overlap.follows_recent).
ECHO_WINDOWS_S = (0.6, 1.5)
LOOK_S = 3  # a quick look hears at most the latest seconds of the speech


class Interruptions:
    """Speech over a reply: judged, confirmed or dropped; a cut-off reply resumed."""

    id: str
    engines: Engines
    conversation: Conversation
    turns: TurnTaker
    reply: Reply | None
    last_language: str | None
    _replaced: Reply | None
    _detector: SpeechDetector | None
    _detector_origin: int
    _detector_lock: asyncio.Lock
    _turn_audio: np.ndarray
    _pause_audio: np.ndarray
    _speculation: Speculation | None
    _overlap: Overlap | None
    _judging_held: Overlap | None  # ended, held, its words not judged yet
    _release: Callable[[Overlap], None]  # voice.yielding
    _voiced_since_release: Callable[[Overlap, int], bool]
    _mic_levels: MicLevels
    _voice_level: float | None  # the user's voice in their last turn (voice.ducking)
    _spawn: Callable[[Awaitable[object]], asyncio.Future[object]]
    _apply: Callable[[list[Effect]], Awaitable[None]]
    _emit: Callable[[ServerEvent], Awaitable[None]]
    _start_resumed: Callable[[str, Resume, ReplySettings], None]
    _transcribe_options: Callable[[], TranscribeOptions]

    @property
    def config(self) -> SessionConfig:
        raise NotImplementedError

    def _playing_reply(self) -> Reply | None:
        """The reply whose audio the client is playing (or last played)."""
        for reply in (self.reply, self._replaced):
            if reply is not None and reply.audible_at is not None:
                return reply
        return None

    def _languages(self, transcript_language: str | None = None) -> tuple[str, ...]:
        """The languages whose acknowledgements count: the transcript's, the reply's, the
        conversation's and any the session allows (a quick look hears the reply's language
        only)."""
        reply = self._playing_reply()
        found = {transcript_language, reply.language if reply else None, self.last_language,
                 self.config.language, *(self.config.languages or ())}
        return tuple(sorted(language for language in found if language))

    def _quick_options(self) -> TranscribeOptions:
        """A quick look at a few words. Unless the session pins a language, whisper detects
        it, leaning towards the reply's (hysteresis: an echo's words stay the reply's, while a
        user speaking another language is heard in theirs rather than made into the reply's:
        benchmarks/overlap_languages.py)."""
        reply = self._playing_reply()
        # Without the client's prompt: its words must not make the reply's echo sound like
        # the user's.
        options = dataclasses.replace(self._transcribe_options(), prompt=None)
        if options.language is None and reply is not None:
            options = dataclasses.replace(options, previous_language=reply.language)
        return dataclasses.replace(options, max_new_tokens=JUDGE_TOKENS,
                                   retry_full_window=False)

    def _judge(self, transcript: Transcript, audio: np.ndarray, start: int,
               end: int) -> Judgement:
        """What the speech over the reply is: ``audio`` (ending at media time ``end``; the
        speech began at ``start``) and its ``transcript``."""
        reply = self._playing_reply()
        if reply is None or reply.audible_at is None:
            return judge(transcript.text, "", self._languages(transcript.language))
        spoken = reply.spoken_between(start - ECHO_BEFORE_MS * ASR_RATE // 1000,
                                      end + ECHO_AFTER_MS * ASR_RATE // 1000)
        similarity = follows_recent(audio, end, reply.contour(), reply.audible_at, ASR_RATE,
                                    ECHO_WINDOWS_S)
        logger.debug("session %s: loudness follows the reply's at %.2f; the reply said %r "
                     "around it", self.id, similarity, spoken)
        return judge(transcript.text, spoken, self._languages(transcript.language),
                     follows_reply=similarity)

    def _speech_ms(self, overlap: Overlap, upto: int, judgement: Judgement | None = None) -> int:
        """How long the speech over the reply has lasted by media time ``upto``
        (:meth:`Overlap.speech_ms`; the VAD's speech, or its voice's where that is known)."""
        vad_ms = (self.turns.overlap_speech_ms(upto) if self.turns.overlap == overlap.start
                  else (upto - overlap.start) * 1000 // ASR_RATE)
        return overlap.speech_ms(self._mic_levels, upto, vad_ms, judgement)

    # -- while it lasts ---------------------------------------------------------------------

    def _overlap_started(self, at: int) -> None:
        self._overlap = overlap = Overlap(at)
        reply = self._playing_reply()
        if reply is not None and reply.audible_at is not None:
            overlap.floor = floor_level(self._mic_levels, at, reply.contour(), reply.audible_at)
        if overlap.floor is None:
            overlap.voice = self._voice_level
            overlap.cancelled = self.config.interruption.echo_cancelled
        logger.debug("session %s: speech over the reply at %d; judging it (level before "
                     "it %s, the user's voice %s)", self.id, at, overlap.floor, overlap.voice)

    def _poll_overlap(self) -> None:
        """After each audio frame: send the overlap so far to be judged, when due."""
        overlap, detector = self._overlap, self._detector
        if overlap is None or detector is None or self.turns.overlap != overlap.start:
            return
        if overlap.decoding is not None and not overlap.decoding.done():
            return
        now = self.turns.now
        # The first look once the speech is long enough to interrupt, then every step.
        due = (overlap.judged_until + JUDGE_STEP_MS * ASR_RATE // 1000 if overlap.judged_until
               else overlap.start + self.config.interruption.min_speech_ms * ASR_RATE // 1000)
        if now < due:
            return
        overlap.judged_until = now
        # The latest seconds only: a long overlap (echo the whole reply long) may turn into
        # the user's words at any time.
        audio = detector.current_utterance()[-LOOK_S * ASR_RATE:]
        overlap.decoding = self._spawn(self._judge_overlap(overlap, detector, audio, now))

    async def _judge_overlap(self, overlap: Overlap, detector: SpeechDetector,
                             audio: np.ndarray, upto: int) -> None:
        try:
            transcript = await self.engines.asr.run(
                self.id, self.engines.transcriber.transcribe, audio, self._quick_options(),
                priority=Priority.URGENT)
        except Exception:
            logger.exception("session %s: judging speech over the reply failed", self.id)
            return
        judgement = self._judge(transcript, audio, max(overlap.start, upto - audio.size), upto)
        overlap.heard(judgement, upto)
        heard_ms = (upto - overlap.start) * 1000 // ASR_RATE
        # (its loudness is known up to now, past the look's)
        user = overlap.user(judgement, self._speech_ms(overlap, upto, judgement)) \
            and self._voiced_since_release(overlap, upto) \
            and overlap.loud_as_user(self._mic_levels, self.turns.now)
        overlap.judgements.append(judgement)
        logger.info("session %s: over the reply after %d ms: %r (log p %.2f, no speech %.2f) "
                    "-> %s%s", self.id, heard_ms, transcript.text,
                    transcript.avg_log_probability, transcript.no_speech_probability,
                    judgement.verdict.value, "" if judgement.sure else "?")
        async with self._detector_lock:
            if detector is self._detector and self.turns.overlap == overlap.start:
                await self._apply(self.turns.overlap_heard(user, heard_ms))

    # -- once it ended ----------------------------------------------------------------------

    def _overlap_ended(self, ended: OverlapEnded) -> None:
        overlap, self._overlap = self._overlap, None
        if overlap is not None and overlap.start != ended.start:
            overlap = None
        if overlap is not None and overlap.held and self._detector is not None:
            self._judging_held = overlap  # held: until the words say it was no interruption
        elif overlap is not None:
            self._release(overlap)  # ducked: full volume as soon as the speech ends
        if self._detector is not None:
            speech_ms = (self._speech_ms(overlap, ended.at) if overlap is not None
                         else (ended.at - ended.start) * 1000 // ASR_RATE)
            self._spawn(self._judge_ended(ended, self._detector, self._turn_audio,
                                          self.turns.now, speech_ms, overlap))

    async def _judge_ended(self, ended: OverlapEnded, detector: SpeechDetector,
                           audio: np.ndarray, audio_end: int, speech_ms: int,
                           overlap: Overlap | None) -> None:
        """Transcribe all of the overlap (as a final transcript) and act on the verdict: a
        short one with only a word or two of its own does not interrupt (a misheard "mhm" is
        likelier than a one- or two-word command without a stop word); it is reported as a
        backchannel."""
        try:
            transcript = await self.engines.asr.run_batched(
                self.id, self.engines.transcriber.transcribe_batch,
                (audio, self._transcribe_options()), priority=Priority.URGENT)
        except Exception:
            logger.exception("session %s: transcribing speech over the reply failed", self.id)
            transcript = None
        if transcript is None:
            verdict = Verdict.USER
        else:
            verdict = settled(self._judge(transcript, audio, ended.start, audio_end),
                              speech_ms, voiced=overlap is not None and overlap.voiced)
            if (verdict is Verdict.USER and overlap is not None
                    and overlap.pause_verdict is not None
                    and not self._voiced_since_release(overlap, audio_end)):
                verdict = overlap.pause_verdict
            if (verdict is Verdict.USER and overlap is not None
                    and not overlap.loud_as_user(self._mic_levels, audio_end)):
                logger.info("session %s: %r came nowhere near the user's voice: the reply's "
                            "echo", self.id, transcript.text)
                verdict = Verdict.ECHO
        logger.info("session %s: speech over the reply ended: %r -> %s", self.id,
                    transcript.text if transcript else None, verdict.value)
        async with self._detector_lock:
            if detector is not self._detector:
                return  # reconfigured meanwhile (and the hold released)
            effects = self.turns.overlap_judged(ended.start, ended.at, verdict.value)
            if self._judging_held is overlap:
                self._judging_held = None
            if overlap is not None and not any(isinstance(e, UserTurnStarted)
                                               for e in effects):
                self._release(overlap)
            if transcript is not None and any(isinstance(e, UserTurnEnded) for e in effects):
                decoded: asyncio.Future[Transcript] = asyncio.get_running_loop().create_future()
                decoded.set_result(transcript)
                self._turn_audio = audio
                self._speculation = Speculation(ended.at, audio, decoded)  # the turn's transcript
            if effects and isinstance(effects[0], Backchannel) and transcript is not None:
                await self._backchannel(effects[0], transcript)
                effects = effects[1:]
            await self._apply(effects)

    async def _backchannel(self, heard: Backchannel, transcript: Transcript) -> None:
        item_id = None
        if self.config.interruption.backchannels == "keep":
            item = Item(new_id("item"), "user", transcript.text, audio=True,
                        language=transcript.language)
            item_id = item.item_id
            previous = self.conversation.add(item)
            await self._emit(ItemAdded(item.to_json(), previous))
            await self._emit(ItemDone(item.to_json()))
        origin = self._detector_origin
        await self._emit(BackchannelHeard(
            (heard.start - origin) * 1000 // ASR_RATE, (heard.at - origin) * 1000 // ASR_RATE,
            transcript.text, transcript.language, item_id))

    # -- a false interruption ---------------------------------------------------------------

    def _acknowledges(self, turn_id: str, transcript: Transcript) -> bool:
        """Whether the turn ``turn_id`` answers only acknowledged a reply it cut off (without
        the guard, a "mhm" cuts the reply; then the reply resumes instead of an answer)."""
        return self.turns.resumes_if_empty(turn_id) and is_backchannel(
            fold(transcript.text), self._languages(transcript.language))

    def _resume(self, effect: ResumeReply) -> bool:
        """Start the response that speaks the rest of the cut-off reply; False if there is no
        rest to speak (the reply had called tools, or every word was heard)."""
        cut = next((r for r in (self.reply, self._replaced)
                    if r is not None and r.turn_id == effect.resumes), None)
        if cut is None or cut.item.kind != "message" or len(cut.outputs) != 1:
            return False
        if not cut.item.truncated_by_client and cut.item.status != "incomplete":
            cut.keep_heard(effect.at)  # it had been written in full, and played in part
        written = cut.text.split()
        index = len(cut.item.text.split())
        lead = " ".join(written[index:])
        if not lead and cut.written_all:
            return False
        logger.info("session %s: resuming %s from word %d of %d", self.id, cut.response_id,
                    index, len(written))
        self._start_resumed(effect.reply_id, Resume(
            lead, None if cut.written_all else cut.text, cut.messages, cut.response_id,
            cut.item.item_id, index), dataclasses.replace(cut.settings, language=cut.language,
                                                           language_pinned=True))
        return True
