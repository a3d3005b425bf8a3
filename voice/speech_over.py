"""Speech over the reply while the guard judges it: what was heard of it, and how long the
user's voice in it has lasted.

State of one overlap for :class:`~voice.interruptions.Interruptions` (which judges it) and
:class:`~voice.yielding.Yielding` (which ducks or holds the reply meanwhile); no I/O. How
long the speech has lasted decides what a look's words may do (voice.overlap.confirms): the
VAD's speech may be echo, so where a level tells the user's voice from the reply's leak
(voice.ducking: a quiet floor under the reply, or where none is known yet, the user's own
voice in their last turn), the voice's length counts instead.
"""

from __future__ import annotations

import asyncio
import dataclasses

from voice.audio import ASR_RATE
from voice.ducking import (
    MicLevels,
    near_voice,
    near_voice_span_ms,
    stands_out,
    voice_span_ms,
)
from voice.overlap import Judgement, Verdict, confirms
from voice.reply import Reply


@dataclasses.dataclass
class Overlap:
    """Unconfirmed speech over the reply, and the quick decodes of it."""

    start: int
    judged_until: int = 0  # media time up to which audio was last sent to be judged
    decoding: asyncio.Future[object] | None = None
    judgements: list[Judgement] = dataclasses.field(default_factory=list)
    floor: float | None = None  # the microphone's level before it (voice.ducking)
    # Without that level: the user's voice in their last turn, and whether a sound near it
    # was heard (voice.ducking.near_voice).
    voice: float | None = None
    near_voice: bool = False
    # The client says its microphone does not hear the reply (session.interruption.
    # echo_cancelled): a sound near the user's voice is theirs.
    cancelled: bool = False
    voiced: bool = False  # a voice of its own stood out of that level (voice.ducking)
    ducked: Reply | None = None  # the reply whose playback it ducked (or held)
    held: bool = False  # held rather than ducked (session.interruption.hold)
    released_at: int | None = None  # played on at its pause, before it ended (media time)
    pause_verdict: Verdict | None = None  # ... for what was said up to that pause
    # Media time up to which every look heard nothing, until one heard words (0: none yet).
    quiet_until: int = 0
    words_heard: bool = False

    @property
    def measured(self) -> bool:
        """Whether the length of a voice of its own can be told from the VAD's speech: a
        floor is known, or the user's voice where the client cancels the reply's echo."""
        return self.floor is not None or (self.voice is not None and self.cancelled)

    def heard(self, judgement: Judgement, upto: int) -> None:
        """Note a look at the speech up to media time ``upto``: while the looks hear nothing
        (a leak of the reply's echo, noise, a breath), the words to come have not begun."""
        if self.words_heard:
            return
        if judgement.verdict is Verdict.NOTHING:
            self.quiet_until = max(self.quiet_until, upto)
        else:
            self.words_heard = True

    def words_ms(self, upto: int) -> int | None:
        """How long the words can have lasted by ``upto``: since the last look that heard
        nothing before them (None: no look heard nothing first)."""
        if not self.quiet_until:
            return None
        return max(0, upto - self.quiet_until) * 1000 // ASR_RATE

    def user(self, judgement: Judgement, speech_ms: int) -> bool:
        """Whether this look, after ``speech_ms`` of speech (of the voice, once one stood out:
        :attr:`voiced`), makes it the user's (:func:`voice.overlap.confirms`). Where a voice
        can be measured (:attr:`measured`), the rules for a voice apply from the start, to
        the VAD's speech until a voice stands out: a first look at 0.35 s may hear a
        sentence in a "sim" before its voice has stood out for 120 ms, and a voice too soft
        to stand out still interrupts once it has lasted 0.8 s."""
        return confirms(judgement, self.judgements[-1] if self.judgements else None, speech_ms,
                        voiced=self.measured)

    def speech_ms(self, levels: MicLevels, upto: int, vad_ms: int,
                  judgement: Judgement | None = None) -> int:
        """How long the speech has lasted by media time ``upto``: ``vad_ms`` (the VAD's
        speech, to its end once it ended), or where a voice can be measured
        (:attr:`measured`) and one stood out (:attr:`voiced`, noted here; a voice too soft
        to stand out keeps the VAD's), its voice's (voice.ducking.voice_span_ms, or
        near_voice_span_ms where no floor is known: residual echo after a backchannel keeps
        the VAD going, and looks hearing words in it would cut);
        and for one or two words (``judgement`` not sure, or none yet), no longer than since
        the looks last heard nothing before the first words (a leak of the reply's own echo
        can start the speech, and hold the reply, ~0.5 s before a "sim": the word alone is
        short; a sentence's first look often hears nothing, and its words are sure:
        docs/benchmarks.md)."""
        words_ms = self.words_ms(upto)
        if words_ms is not None and (judgement is None or not judgement.sure):
            vad_ms = min(vad_ms, words_ms)
        if not self.measured:
            return vad_ms
        if self.floor is not None:
            if not self.voiced:
                self.voiced = stands_out(levels, self.start, upto, self.floor)
            span = voice_span_ms(levels, self.start, upto, self.floor) if self.voiced else None
        else:
            assert self.voice is not None
            self.voiced = self.voiced or self.loud_as_user(levels, upto)
            span = near_voice_span_ms(levels, self.start, upto, self.voice) \
                if self.voiced else None
        return vad_ms if span is None else min(vad_ms, span)

    def loud_as_user(self, levels: MicLevels, upto: int) -> bool:
        """Whether the speech may be the user's by its loudness: where no floor is known,
        some of it by ``upto`` came near the user's voice in their last turn (:attr:`voice`;
        whisper makes sentences of what a canceller that has not converged yet lets through
        of the reply, "That's what we're doing.", 20-28 dB below the user's voice). Without
        a floor or a voice known, any speech may be."""
        if self.voice is None or self.near_voice:
            return True
        self.near_voice = near_voice(levels, self.start, upto, self.voice)
        return self.near_voice
