"""The audio side of a reply: synthesis of its pieces, and what the client played and heard.

A mixin of :class:`~voice.reply.Reply`: pieces are synthesized (in the TTS scheduler's
threads) as the text is written and their audio is sent at once, in small deltas; the media
clock (the user's audio received) says how much of it the client has played, which is what a
barge-in keeps, what the TTS priority follows and what an echo of the reply may say.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np

from tts.segmenter import speakable
from voice.audio import ASR_RATE, encode_base64_pcm16
from voice.conversation import Item, heard_text
from voice.draft import Draft, SpeechAhead, synthesize
from voice.overlap import LOUDNESS_HZ, SILENT, loudness
from voice.pacing import DEFAULT_MS_PER_CHAR, WritingPace, writing_hold_s
from voice.ports import Engines
from voice.protocol import AudioDelta, ServerEvent
from voice.reply_settings import ReplySettings, TurnTimes
from voice.schedulers import Priority

logger = logging.getLogger(__name__)

AUDIO_DELTA_MS = 200  # audio is sent in deltas of at most this length
URGENT_BELOW_MS = 1000  # a piece is urgent while the client has less than this left to play
# While the client holds the reply, its next audio waits at most this long to be sent: a
# hold ends when the speech over the reply is judged, within seconds; this bounds a bug.
HELD_SEND_LIMIT_S = 15.0
# The client running out of the reply's audio for less than this is not counted as a gap (the
# media clock moves in the client's audio frames, 20-100 ms).
GAP_MIN_MS = 150
# While the client has less than this of the reply left to play, nothing else is on its way,
# and no piece came for EARLY_AFTER_S, a sentence still being written is spoken in part
# (tts.segmenter.Segmenter.cut_early) if it has at least EARLY_PIECE_MIN_WORDS words: soak
# run 21 heard 2-6 s silences mid-reply waiting for the model's words on a busy CPU, which
# the speaker would otherwise spend waiting for the end of a long sentence. (On an idle
# machine the next piece comes well before: pieces stay whole sentences.)
RUNNING_DRY_MS = 400
EARLY_AFTER_S = 0.5
EARLY_PIECE_MIN_WORDS = 3
# Words written but not yet synthesized that a look at the reply's echo counts as the reply's
# own: Whisper runs an echo of a phrase on into its next words ("a city" -> "a city and").
UPCOMING_WORDS = 6


@dataclasses.dataclass(frozen=True)
class Gap:
    """The client ran out of the reply's audio before its next piece came: a silence the user
    hears mid-reply. ``waiting_for``: ``"text"`` when the piece's words were not written yet
    as the audio ran out (the language model is behind), ``"speech"`` when they were and the
    synthesis was (the voice's queue or its run)."""

    ms: float
    waiting_for: str


@dataclasses.dataclass
class Hold:
    """Media times (samples at 16 kHz) between which the client played none of the reply: it
    paused it (``session.interruption.hold``), or it had played all it had (a :class:`Gap`)."""

    start: int
    end: int | None = None  # still paused


class ReplyAudio:
    """Synthesis and playback accounting of one reply (a mixin of Reply)."""

    item: Item
    text: str  # written so far
    settings: ReplySettings
    times: TurnTimes
    cancel_event: threading.Event
    audio_sent_ms: float
    audio_written_ms: float
    audible_at: int | None
    holds: list[Hold]  # where the client paused playback
    gaps: list[Gap]  # where the client ran out of audio mid-reply
    _piece_written_at: float  # monotonic time the piece being sent was written
    _last_queued_at: float  # monotonic time the last piece went to the speaker
    _unheld: asyncio.Event  # clear while held: the next audio waits (set when cancelled)
    contours: list[np.ndarray]  # loudness of each piece sent, in order
    language: str
    _owner: str
    _draft: Draft | None  # the adopted draft, if any
    _pace: WritingPace | None  # the writing's, while it may be held
    first_words_came: Callable[[], None]
    _queued_chars: int  # of the pieces written and not yet synthesized
    _engines: Engines
    _media_now: Callable[[], int]
    _send: Callable[[ServerEvent], Awaitable[None]]
    _run_engine: Callable[..., Awaitable[Any]]
    _ids: Callable[[], dict[str, Any]]

    def _start_audio(self) -> None:
        """Nothing synthesized, sent or played yet (called once, by the reply's __init__)."""
        self.audio_sent_ms = 0.0
        self.audio_written_ms = 0.0  # of it, written to the socket
        self.contours = []
        self.audible_at = None  # media time of the first audio written
        self.holds = []
        self.gaps = []
        self._piece_written_at = 0.0
        self._last_queued_at = 0.0
        self._unheld = asyncio.Event()
        self._unheld.set()
        self._pace = None  # holds the writing far ahead of playback
        self._queued_chars = 0
        self.first_words_came = lambda: None  # told when the first audio is sent (a session
        # sets it: Activity.await_first_words)

    @property
    def audio_out(self) -> bool:
        return "audio" in self.settings.modalities

    @property
    def cancelled(self) -> bool:
        return self.cancel_event.is_set()

    @property
    def _paced(self) -> bool:
        """Whether the writing may wait: while far ahead of playback (``write_ahead_ms``), or
        for others' turns (``give_way_ms``). Spoken replies only."""
        return self.audio_out and (self.settings.write_ahead_ms > 0
                                   or self.settings.give_way_ms > 0)

    def _new_pace(self) -> WritingPace:
        pace = WritingPace()
        self._give_way(pace)
        return pace

    def _give_way(self, pace: WritingPace) -> None:
        if self.settings.give_way_ms > 0:
            pace.give_way(self._engines.first_words_awaited, self.settings.give_way_ms)

    def _follow(self, pace: WritingPace) -> None:
        """Pace the writing of an adopted draft (it held after its first tokens) as ours."""
        pace.lift_token_limit()
        if self._paced and not self.cancelled:
            self._pace = pace
            self._give_way(pace)
            self._pace_writing()
        else:
            pace.release()

    def _pace_writing(self) -> None:
        """Tell the writing how long to wait (voice.pacing) and how far ahead of the listener
        it is: after each delta written, each piece synthesized, and when playback starts."""
        pace = self._pace
        if pace is None:
            return
        now = time.monotonic()
        started = self.times.first_audio_sent
        held_ms = (self._held_before(self._media_now()) * 1000 / ASR_RATE
                   if self.holds else 0.0)
        played = (0.0 if started is None
                  else min(self.audio_sent_ms, max(0.0, (now - started) * 1000 - held_ms)))
        spoken = [(len(text), ms) for text, ms in self.item.pieces]
        chars = sum(n for n, _ in spoken)
        ms_per_char = sum(ms for _, ms in spoken) / chars if chars >= 20 else DEFAULT_MS_PER_CHAR
        pace.hold_until(now + writing_hold_s(
            buffered_ms=self.audio_sent_ms - played, queued_ms=self._queued_chars * ms_per_char,
            write_ahead_ms=self.settings.write_ahead_ms, playing=started is not None))
        if started is not None and not self.held:
            pace.playing_ahead(self.audio_sent_ms - played)

    # -- holds: the client paused playback while speech over it was judged ----------------

    def hold(self, at: int) -> None:
        """The client pauses playback from media time ``at`` (``output_audio_buffer.duck``
        with ``hold``) until :meth:`release`."""
        if self.audible_at is not None and not self.held:
            self._ran_dry(at)
            self.holds.append(Hold(max(at, self.audible_at)))
            self._unheld.clear()

    def release(self, at: int) -> None:
        """Playback goes on from media time ``at`` (``output_audio_buffer.unduck``)."""
        if self.held:
            self.holds[-1].end = max(at, self.holds[-1].start)
        self._unheld.set()

    @property
    def held(self) -> bool:
        return bool(self.holds) and self.holds[-1].end is None

    def _held_before(self, at: int) -> int:
        """Media time (samples) spent paused before ``at``."""
        return sum(max(0, min(at, at if h.end is None else h.end) - h.start)
                   for h in self.holds)

    def _played_at(self, at: int) -> float:
        """Milliseconds of the reply's audio played by media time ``at`` (not capped)."""
        assert self.audible_at is not None
        return max(0, at - self.audible_at - self._held_before(at)) * 1000 / ASR_RATE

    def playing_until(self, now: int) -> int:
        """The media time until which the client will be playing the audio written so far
        (a hold still open counts up to ``now``)."""
        assert self.audible_at is not None
        return (self.audible_at + int(self.audio_written_ms * ASR_RATE / 1000)
                + self._held_before(now))

    def heard_ms(self, at: int) -> float:
        """How much of the reply's audio the user heard by media time ``at``."""
        if self.audible_at is None:
            return 0.0
        return min(self.audio_sent_ms, self._played_at(at))

    def keep_heard(self, at: int) -> None:
        """The reply stops at media time ``at``: its item keeps only what was heard (unless
        the client already said how much it played)."""
        if self.item.audio and not self.item.truncated_by_client:
            self.item.text = heard_text(self.item.pieces, self.heard_ms(at))
            self.item.status = "incomplete"

    def audio_written(self, duration_ms: float) -> int:
        """The transport wrote one of this reply's audio deltas (``duration_ms`` long) to
        the socket. Returns the media time until which the client will be playing."""
        now = self._media_now()
        if self.times.first_audio_sent is None:
            self.times.first_audio_sent = time.monotonic()
            self.audible_at = now
            self.first_words_came()
            self._pace_writing()  # playback starts: what is ahead now plays down
        elif not self.held and (gap := self._ran_dry(now)) is not None:
            self.gaps.append(gap)
            logger.info("session %s: the client ran out of the reply's audio for %.0f ms after "
                        "%.1f s of it; the next piece waited for its %s", self._owner, gap.ms,
                        self.audio_written_ms / 1000,
                        "words" if gap.waiting_for == "text" else "synthesis")
        self.audio_written_ms += duration_ms
        return self.playing_until(now)

    def _ran_dry(self, now: int) -> Gap | None:
        """If the client has played all of the reply it had by media time ``now`` (at least
        :data:`GAP_MIN_MS` ago), it played nothing since: that stretch counts as a pause in
        playback from now on, and is returned as a :class:`Gap`."""
        assert self.audible_at is not None
        end = self.playing_until(now)
        dry_ms = (now - end) * 1000 / ASR_RATE
        if dry_ms < GAP_MIN_MS:
            return None
        self.holds.append(Hold(end, now))
        ran_out_at = time.monotonic() - dry_ms / 1000
        return Gap(dry_ms, "text" if self._piece_written_at > ran_out_at else "speech")

    def contour(self) -> np.ndarray:
        """The loudness contour (voice.overlap.loudness) of what the client played, from
        ``audible_at`` on by media time: the audio sent, with silence where it was held."""
        if len(self.contours) > 1:
            self.contours[:] = [np.concatenate(self.contours)]
        sent = self.contours[0] if self.contours else np.zeros(0)
        if not self.holds or self.audible_at is None:
            return sent
        pieces, taken, held = [], 0, 0  # frames of ``sent`` placed, and of silence
        for hold in self.holds:
            end = self._media_now() if hold.end is None else hold.end
            frames = (end - hold.start) * LOUDNESS_HZ // ASR_RATE
            cut = min(sent.size, max(taken, (hold.start - self.audible_at) * LOUDNESS_HZ
                                     // ASR_RATE - held))
            pieces += [sent[taken:cut], np.full(frames, SILENT)]
            taken, held = cut, held + frames
        pieces.append(sent[taken:])
        return np.concatenate(pieces)

    def spoken_between(self, start: int, end: int) -> str:
        """The reply's pieces playing at any time between media times ``start`` and ``end``
        (what its echo over that stretch may say), and when that reaches past the audio made
        so far (the next piece is late), the next words written."""
        if self.audible_at is None:
            return ""
        first, last = self._played_at(start), self._played_at(end)
        words, elapsed, spoken_words = [], 0.0, 0
        for text, duration in self.item.pieces:
            if elapsed + duration >= first and elapsed <= last:
                words.append(text)
            elapsed += duration
            spoken_words += len(text.split())
        if elapsed <= last:
            words.extend(self.text.split()[spoken_words:spoken_words + UPCOMING_WORDS])
        return " ".join(words)

    async def _write_and_speak(
            self, write: Callable[[asyncio.Queue[str | None]], Awaitable[None]]) -> None:
        """Run ``write`` (text into the queue of pieces) while the pieces are spoken."""
        pieces: asyncio.Queue[str | None] = asyncio.Queue()
        speaker = asyncio.ensure_future(self._speak(pieces)) if self.audio_out else None
        speech_error: BaseException | None = None
        try:
            await write(pieces)
        except BaseException:
            self.cancel_event.set()  # failed or cancelled: stop speaking at once
            raise
        finally:
            await pieces.put(None)
            if speaker is not None:
                if self.cancelled:
                    speaker.cancel()
                [outcome] = await asyncio.gather(speaker, return_exceptions=True)
                if isinstance(outcome, Exception):
                    speech_error = outcome
        if speech_error is not None:
            raise speech_error

    async def _speak(self, pieces: asyncio.Queue[str | None]) -> None:
        """Synthesize pieces as they come and send their audio at once, in small deltas.
        If synthesis fails, generation is stopped too and the error is raised."""
        try:
            await self._speak_pieces(pieces)
        except Exception:
            self.cancel_event.set()
            raise

    def _tts_priority(self) -> Priority:
        """The piece whose audio is needed soonest goes first: urgent while the client has
        little of this reply left to play."""
        left_ms = self.audio_sent_ms - self.heard_ms(self._media_now())
        return Priority.URGENT if left_ms < URGENT_BELOW_MS else Priority.NORMAL

    async def _speak_pieces(self, pieces: asyncio.Queue[str | None]) -> None:
        tts = self._engines.tts
        voice = await self._run_engine(tts, self._engines.voices.for_language, self.language,
                                       priority=Priority.URGENT)
        out_rate = self.settings.output_rate
        step = out_rate * AUDIO_DELTA_MS // 1000
        while (piece := await pieces.get()) is not None:
            written_at = time.monotonic()
            if self.cancelled:
                return
            text = speakable(piece)
            audio = await self._spoken_ahead(piece) if text else np.zeros(0, np.int16)
            if audio is None:
                audio = await self._run_engine(tts, synthesize, voice, text, out_rate,
                                               priority=self._tts_priority())
            self._queued_chars -= len(piece)
            if self.cancelled:
                return
            if not text:
                continue
            if self.times.first_audio_ready is None:
                self.times.first_audio_ready = time.monotonic()
                logger.debug("session %s: first piece %r written %.0f ms after the first "
                             "token, its audio ready %.0f ms later", self._owner, piece,
                             (written_at - (self.times.llm_first_token or written_at)) * 1000,
                             (self.times.first_audio_ready - written_at) * 1000)
            await self._unless_held()
            if self.cancelled:
                return
            self._piece_written_at = written_at
            for start in range(0, audio.size, step):
                await self._send(AudioDelta(**self._ids(),
                                            delta=encode_base64_pcm16(audio[start:start + step])))
            duration_ms = audio.size * 1000 / out_rate
            if not self.cancelled:
                self.audio_sent_ms += duration_ms
                self.item.pieces.append((piece, duration_ms))
                self.contours.append(loudness(audio, out_rate))
                if not self.item.truncated_by_client:
                    self.item.text = " ".join(text for text, _ in self.item.pieces)
                self._pace_writing()

    async def _queue(self, pieces: asyncio.Queue[str | None], new: list[str]) -> None:
        """Pieces of text for the speaker."""
        for piece in new:
            self._queued_chars += len(piece)
            self._last_queued_at = time.monotonic()
            await pieces.put(piece)

    def _running_dry(self) -> bool:
        """Whether the client is about to play all it has of this reply, with no piece on its
        way to the voice and none for a while (:data:`RUNNING_DRY_MS`)."""
        if (not self.audio_out or self.audible_at is None or self.held
                or self._queued_chars > 0
                or time.monotonic() - self._last_queued_at < EARLY_AFTER_S):
            return False
        return self.audio_sent_ms - self.heard_ms(self._media_now()) < RUNNING_DRY_MS

    async def _unless_held(self) -> None:
        """While the client holds the reply (speech over it is being judged), its next audio
        is not sent: a cut then drops it unsent, a release sends it on. (The last audio sent
        is what the client had when the user's voice rose, not ~1 s later at the cut.)"""
        if self._unheld.is_set():
            return
        try:
            await asyncio.wait_for(self._unheld.wait(), HELD_SEND_LIMIT_S)
        except TimeoutError:
            logger.warning("session %s: the reply was held for %.0f s; sending on",
                           self._owner, HELD_SEND_LIMIT_S)

    async def _spoken_ahead(self, piece: str) -> np.ndarray | None:
        """The piece's audio if the adopted draft synthesized it while the turn was being
        confirmed (a failure there is no failure of the reply: it synthesizes again)."""
        draft = self._draft
        ahead = (draft.speech_for(piece, SpeechAhead(self.language, self.settings.output_rate,
                                                      self.settings.first_piece_words))
                 if draft is not None else None)
        if ahead is None:
            return None
        try:
            audio = await asyncio.shield(ahead)
        except Exception as error:
            logger.warning("session %s: the first piece synthesized ahead failed (%s); "
                           "synthesizing it again", self._owner, error)
            return None
        logger.debug("session %s: the first piece's audio was ready ahead", self._owner)
        return audio
