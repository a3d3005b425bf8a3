"""The reply yields to a sound over it while the guard judges it: ducked or held.

A mixin of :class:`~voice.session.Session`, beside :class:`~voice.interruptions.Interruptions`
(which judges the sound). Where the microphone was quiet while the reply played, a voice that
stands out from that level (``voice.ducking``), or before that level is known (the reply's
first 0.8 s), one that comes near the user's own voice where the client cancels the reply's
echo, makes the session ask the client to duck the reply (``output_audio_buffer.duck``),
or, where the client asked for it (``session.interruption.hold``), to hold it: playback
pauses where it is, and the server's count of what was played stops with it. The reply is
restored (``unduck``) once the sound is judged no interruption: a ducked one when the speech
ends, a held one once its words are judged, or sooner, at the speech's first pause, when a
look at it so far hears nothing of the user's. After such a release only a voice that rises
again can make the overlap the user's.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import numpy as np

from asr.transcript import TranscribeOptions, Transcript
from voice.ducking import MicLevels, near_voice, stands_out
from voice.interruptions import ASR_RATE, LOOK_S
from voice.overlap import Judgement, Verdict, settled
from voice.ports import Engines, SpeechDetector
from voice.protocol import OutputAudioDuck, OutputAudioUnduck, ServerEvent, SessionConfig
from voice.reply import Reply
from voice.schedulers import Priority
from voice.speech_over import Overlap
from voice.turn_effects import OverlapPaused
from voice.turns import TurnTaker

logger = logging.getLogger(__name__)


class Yielding:
    """Ducking or holding the reply while a sound over it is judged."""

    id: str
    engines: Engines
    turns: TurnTaker
    _detector: SpeechDetector | None
    _detector_origin: int
    _detector_lock: asyncio.Lock
    _pause_audio: np.ndarray
    _overlap: Overlap | None
    _judging_held: Overlap | None  # ended, held, its words not judged yet
    _mic_levels: MicLevels
    _spawn: Callable[[Awaitable[object]], asyncio.Future[object]]
    _emit: Callable[[ServerEvent], Awaitable[None]]
    _playing_reply: Callable[[], Reply | None]
    _quick_options: Callable[[], TranscribeOptions]
    _judge: Callable[[Transcript, np.ndarray, int, int], Judgement]
    _speech_ms: Callable[[Overlap, int, Judgement | None], int]

    @property
    def config(self) -> SessionConfig:
        raise NotImplementedError

    async def _duck_if_heard(self) -> None:
        """After each audio frame: ask the client to duck the reply once the speech over it
        stands out from what the microphone heard while the reply played (voice.ducking)."""
        overlap = self._overlap
        if (overlap is None or overlap.ducked is not None or overlap.released_at is not None
                or not self.config.interruption.duck_db or self.turns.overlap != overlap.start):
            return
        reply = self._playing_reply()
        if reply is None or reply.audible_at is None:
            return
        if overlap.floor is not None:
            if not stands_out(self._mic_levels, overlap.start, self.turns.now, overlap.floor):
                return
        elif not self._near_voice_alone(overlap):
            return
        overlap.ducked = reply
        hold = overlap.held = self.config.interruption.hold
        heard_ms = (self.turns.now - overlap.start) * 1000 // ASR_RATE
        logger.info("session %s: a sound of its own over the reply after %d ms; %s it",
                    self.id, heard_ms, "holding" if hold else "ducking")
        if hold:
            reply.hold(self.turns.now)
        await self._emit(OutputAudioDuck(
            reply.response_id, -float(self.config.interruption.duck_db),
            (overlap.start - self._detector_origin) * 1000 // ASR_RATE, hold))

    def _near_voice_alone(self, overlap: Overlap) -> bool:
        """Where no floor is known (the reply's first moments): whether the speech over it
        came near the user's voice in their last turn (voice.ducking.near_voice), in a
        microphone the client says does not hear the reply (``session.interruption.
        echo_cancelled``: on laptop speakers without a canceller the reply's echo comes as
        near, and each hold would pause the reply for its own echo). Without a voice known,
        nothing tells a sound of its own from the reply's yet."""
        return (overlap.cancelled and overlap.voice is not None
                and overlap.loud_as_user(self._mic_levels, self.turns.now))

    def _keep_held(self) -> None:
        """After each audio frame: a reply the client holds plays on later by as much."""
        reply = self._held_reply
        if reply is not None and reply.held and reply.audible_at is not None:
            self.turns.playing(reply.turn_id, reply.playing_until(self.turns.now))

    @property
    def _held_reply(self) -> Reply | None:
        """The reply held for speech over it that is still being judged."""
        overlap = self._overlap
        if overlap is None or self.turns.overlap != overlap.start:
            overlap = self._judging_held
        if overlap is None or not overlap.held or overlap.ducked is None \
                or overlap.ducked.cancelled:
            return None
        return overlap.ducked

    def _forget_overlap(self) -> None:
        """The session is reconfigured: speech over the reply is no longer judged, and a
        reply it ducked or held plays on."""
        for overlap in (self._overlap, self._judging_held):
            if overlap is not None:
                self._release(overlap)
        self._overlap = self._judging_held = None

    def _release(self, overlap: Overlap) -> None:
        """The sound that ducked or held the reply was no interruption: full volume again,
        or play on from where it paused."""
        reply, overlap.ducked = overlap.ducked, None
        if reply is None or reply.cancelled:
            return
        if overlap.held:
            reply.release(self.turns.now)
            if reply.audible_at is not None:
                self.turns.playing(reply.turn_id, reply.playing_until(self.turns.now))
            logger.info("session %s: the sound over the reply was no interruption; playing on",
                        self.id)
        self._spawn(self._emit(OutputAudioUnduck(reply.response_id)))

    def _overlap_paused(self, paused: OverlapPaused) -> None:
        """The speech over a held reply paused: if its words so far are not the user's, the
        reply plays on now. (The VAD ends the overlap only after the turn's longest silence,
        2 s under semantic_vad: too long a pause in the reply for a "mhm".)"""
        overlap, detector = self._overlap, self._detector
        if (overlap is None or overlap.start != paused.start or not overlap.held
                or overlap.ducked is None or detector is None):
            return
        self._spawn(self._judge_paused(overlap, detector, self._pause_audio, paused.at))

    async def _judge_paused(self, overlap: Overlap, detector: SpeechDetector,
                            audio: np.ndarray, at: int) -> None:
        audio = audio[-LOOK_S * ASR_RATE:]  # a look as the others: the latest seconds
        try:
            transcript = await self.engines.asr.run(
                self.id, self.engines.transcriber.transcribe, audio, self._quick_options(),
                priority=Priority.URGENT)
        except Exception:
            logger.exception("session %s: judging speech over the reply failed", self.id)
            return
        judgement = self._judge(transcript, audio, max(overlap.start, at - audio.size), at)
        overlap.heard(judgement, at)
        speech_ms = self._speech_ms(overlap, at, judgement)
        verdict = settled(judgement, speech_ms, voiced=overlap.voiced)
        logger.info("session %s: speech over the held reply paused: %r -> %s", self.id,
                    transcript.text, verdict.value)
        async with self._detector_lock:
            if (verdict is not Verdict.USER and detector is self._detector
                    and self._overlap is overlap and self.turns.overlap == overlap.start
                    and self.turns.overlap_paused_at == at):
                overlap.released_at, overlap.pause_verdict = self.turns.now, verdict
                self._release(overlap)

    def _voiced_since_release(self, overlap: Overlap, upto: int) -> bool:
        """Whether a voice stood out again (voice.ducking) since the held reply played on at
        the overlap's pause, or where no floor is known, came near the user's voice again;
        if not, what was heard since is the reply's residual echo (the client's canceller
        re-adapting after the user's sound), not more of the user."""
        if overlap.released_at is None:
            return True
        if overlap.floor is not None:
            return stands_out(self._mic_levels, overlap.released_at, upto, overlap.floor)
        if overlap.voice is not None:
            return near_voice(self._mic_levels, overlap.released_at, upto, overlap.voice)
        return True
