"""When to duck the reply: a sound of its own over it, long before its words are known.

Pure functions and a small buffer, no I/O. The guard (``voice/interruptions.py``) needs the
user's words to tell an interruption from the reply's echo or a backchannel, and whisper-base
on two cores returns words after about a second of a voice. The sound says sooner that
*something* other than the reply is heard: where the microphone was quiet while the reply
played (the client cancels its echo, or a headset), speech that rises well above that level
is a sound of its own, from the moment the VAD hears it. The session then asks the client to
lower the reply's volume (``output_audio_buffer.duck``) until the words decide: a confirmed
interruption cuts the reply (``speech_started``), anything else restores it
(``output_audio_buffer.unduck``).

Where the microphone hears the reply (no echo cancelling: its loudness follows the reply's),
a rise says nothing (the next sentence's echo rises as much) and the sound never ducks.
"""

from __future__ import annotations

import numpy as np

from voice.audio import ASR_RATE
from voice.overlap import FLAT, LOUDNESS_HZ, follows, loudness

RATE = ASR_RATE  # media time counts samples at the rate the VAD and ASR hear
HOP = RATE // LOUDNESS_HZ  # one loudness value per 10 ms
KEEP_S = 8.0  # how much of the microphone's loudness is kept
FLOOR_MS = 1500  # the stretch before the speech whose level the speech is compared with
FLOOR_MIN_MS = 500  # ... at least this much of it while the reply was audible
FLOOR_AFTER_AUDIBLE_MS = 300  # the reply's first audio reaches the microphone a little later
FLOOR_PERCENTILE = 90  # the floor: residual echo and noise peaks count
RISE = 1.2  # a frame stands out 12 dB (log10 power units) above the floor ...
STAND_OUT_MS = 120  # ... for this much of the speech so far
ECHO_AUDIBLE = 0.5  # the floor's loudness follows the reply's this much: echo is heard
REPLY_SOUND = -5.0  # the reply made sound: louder than -50 dBFS (log10 power)
# A floor below -52 dBFS counts as -52 dBFS, so a voice must reach at least -40 dBFS: what an
# echo canceller lets through of the reply while it re-adapts after the user's sound came to
# -43..-56 dBFS in the simulated laptop rooms (a "sim" over a reply, docs/benchmarks.md), 25
# dB above a canceller's digital silence, while the voices over it were at -16..-28 dBFS.
QUIETEST_FLOOR = -5.2
# An echo the microphone hears but whose loudest (99th percentile, as much as is kept) stays
# below this (-45 dBFS) is a canceller's residual: no rise of it reaches a voice's level
# (:data:`QUIETEST_FLOOR` + :data:`RISE`), so the floor holds where the echo follows the reply.
ECHO_FAINT = -4.5
# Where no floor is known (the reply's first moments, or a microphone that hears the reply),
# a voice over the reply comes within this much (15 dB) of the user's own voice in their last
# turn: what a canceller still converging let through of the reply came 20-28 dB below the
# question's voice in the simulated laptop rooms, the voices over it within 10 dB
# (docs/benchmarks.md).
VOICE_RANGE = 1.5
VOICE_MIN_MS = 300  # a turn shorter than this says nothing of the user's voice


class MicLevels:
    """The microphone's loudness contour (log10 mean power per 10 ms) over the last
    :data:`KEEP_S` seconds, by media time (samples at 16 kHz since the session began)."""

    def __init__(self, keep_s: float = KEEP_S) -> None:
        self._keep = int(keep_s * LOUDNESS_HZ)
        self._levels = np.zeros(0)
        self._end = 0  # media time of the end of the last whole frame
        self._rest = np.zeros(0, np.float32)  # samples of the next, incomplete frame

    @property
    def end(self) -> int:
        return self._end

    @property
    def kept(self) -> int:
        """How many samples of audio the levels kept cover."""
        return self._levels.size * HOP

    def add(self, samples: np.ndarray, end: int) -> None:
        """Audio that ends at media time ``end``. A gap (audio not seen) starts afresh."""
        if end - samples.size != self._end + self._rest.size:
            self._levels, self._rest = np.zeros(0), np.zeros(0, np.float32)
            self._end = end - samples.size
        data = np.concatenate([self._rest, samples.astype(np.float32)])
        whole = data.size // HOP * HOP
        if whole:
            self._levels = np.concatenate([self._levels, loudness(data[:whole], RATE)])
            self._levels = self._levels[-self._keep:]
            self._end += whole
        self._rest = data[whole:]

    def between(self, start: int, end: int) -> np.ndarray:
        """The levels of the frames from media time ``start`` to ``end`` that are kept."""
        first = self._end - self._levels.size * HOP
        lo = max(0, (start - first) // HOP)
        hi = max(0, min(self._levels.size, (end - first) // HOP))
        return self._levels[lo:hi]


def floor_level(levels: MicLevels, speech_start: int, reply: np.ndarray,
                audible_at: int) -> float | None:
    """The microphone's level while the reply played, just before speech that began at media
    time ``speech_start`` (the VAD's, padding included) over a reply audible since
    ``audible_at`` (``reply``: its loudness contour from then on): a high percentile of the
    :data:`FLOOR_MS` before it, and at least :data:`QUIETEST_FLOOR`. None when it cannot tell a
    sound of its own from the reply: less than :data:`FLOOR_MIN_MS` of it while the reply was
    audible, or a microphone whose level since the reply became audible (as much as is kept)
    follows the reply's and came near a voice's (:data:`ECHO_FAINT`), or a reply silent all
    that while (either way the microphone may hear the reply, so a rise may be its next
    sentence)."""
    heard_from = audible_at + FLOOR_AFTER_AUDIBLE_MS * RATE // 1000
    first = max(speech_start - FLOOR_MS * RATE // 1000, heard_from)
    floor = levels.between(first, speech_start)
    if floor.size * 1000 < FLOOR_MIN_MS * LOUDNESS_HZ:
        return None
    # Whether the microphone hears the reply, over all of it that was kept: only a stretch in
    # which the reply made sound can say (a quiet floor in a pause of the reply says nothing
    # of its next sentence's echo).
    history_from = max(heard_from, speech_start - levels.kept)
    history = levels.between(history_from, speech_start)
    at = (speech_start - history.size * HOP - audible_at) // HOP
    spoken = reply[max(0, at):max(0, at + history.size)]
    if not spoken.size or spoken.max() < REPLY_SOUND:
        return None
    if (np.ptp(history) >= FLAT and follows(history, reply, at) >= ECHO_AUDIBLE
            and np.percentile(history, 99) > ECHO_FAINT):
        return None
    return max(float(np.percentile(floor, FLOOR_PERCENTILE)), QUIETEST_FLOOR)


def _loud_ms(levels: MicLevels, speech_start: int, now: int, threshold: float) -> int:
    """How much of the speech that began at media time ``speech_start`` was, by ``now``, at
    least ``threshold`` loud."""
    speech = levels.between(speech_start, now)
    return int(np.count_nonzero(speech >= threshold)) * 1000 // LOUDNESS_HZ


def voiced_ms(levels: MicLevels, speech_start: int, now: int, floor: float) -> int:
    """How much of the speech that began at media time ``speech_start`` was, by ``now``, at
    least :data:`RISE` above ``floor`` (:func:`floor_level`)."""
    return _loud_ms(levels, speech_start, now, floor + RISE)


def _span_ms(levels: MicLevels, speech_start: int, now: int, threshold: float) -> int:
    """From the first to the end of the last 10 ms at least ``threshold`` loud in the speech
    that began at media time ``speech_start``, by ``now``."""
    loud = np.flatnonzero(levels.between(speech_start, now) >= threshold)
    return int(loud[-1] + 1 - loud[0]) * 1000 // LOUDNESS_HZ if loud.size else 0


def voice_span_ms(levels: MicLevels, speech_start: int, now: int, floor: float) -> int:
    """How long a voice of its own lasted in the speech that began at media time
    ``speech_start`` (the VAD's, padding included), by ``now``: from the first to the end of
    the last 10 ms that stood :data:`RISE` above ``floor``. The VAD's speech starts with its
    padding and may go on for seconds after a "genau" (the echo canceller lets some of the
    reply through while it re-adapts to the room after the user's sound); this does not."""
    return _span_ms(levels, speech_start, now, floor + RISE)


def stands_out(levels: MicLevels, speech_start: int, now: int, floor: float) -> bool:
    """Whether the speech that began at media time ``speech_start`` has, by ``now``, held
    :data:`STAND_OUT_MS` of sound at least :data:`RISE` above ``floor``."""
    return voiced_ms(levels, speech_start, now, floor) >= STAND_OUT_MS


def voice_level(samples: np.ndarray) -> float | None:
    """The level of a voice in a turn's audio (``samples`` at :data:`RATE`): a high
    percentile of its loudness (its pauses and padding are quieter), or None for a turn too
    short to tell."""
    levels = loudness(samples, RATE)
    if levels.size * 1000 < VOICE_MIN_MS * LOUDNESS_HZ:
        return None
    return float(np.percentile(levels, FLOOR_PERCENTILE))


def near_voice(levels: MicLevels, speech_start: int, now: int, voice: float) -> bool:
    """Whether the speech that began at media time ``speech_start`` has, by ``now``, held
    :data:`STAND_OUT_MS` of sound within :data:`VOICE_RANGE` of ``voice`` (the user's voice,
    :func:`voice_level`)."""
    return _loud_ms(levels, speech_start, now, voice - VOICE_RANGE) >= STAND_OUT_MS


def near_voice_span_ms(levels: MicLevels, speech_start: int, now: int, voice: float) -> int:
    """How long a voice near the user's (:func:`near_voice`) lasted in the speech that began
    at media time ``speech_start``, by ``now``, as :func:`voice_span_ms` where no floor is
    known."""
    return _span_ms(levels, speech_start, now, voice - VOICE_RANGE)
