"""How far a spoken reply's writing may run ahead of what the client is playing.

The language model writes several times faster than speech, so unchecked it writes a whole
reply within its first seconds of playback, taking the cores that the reply's other work
needs at that moment (the echo guard's looks at the microphone, the next piece's synthesis,
other sessions' first words). A spoken reply therefore holds its writing while the audio
ahead of the listener (synthesized and not yet played, plus the pieces waiting for synthesis)
reaches ``write_ahead_ms``; it goes on as the audio plays down. The first pieces are never
held back by playback that has not started: only what is already written counts.

:func:`writing_hold_s` is the rule (pure, in wall-clock milliseconds); :class:`WritingPace`
carries its answer to the model's thread (``llm.chat.Pace``): the reply sets when the writing
may go on, the model's thread asks after every token.

A reply far ahead of its listener also **gives way** to other users' turns: while someone
waits for a transcript or for a reply's first words (``Engines.first_words_awaited``) and at
least ``give_way_ms`` of the reply's audio is with its client and not yet played, its writing
waits, so that on a small CPU the other turn's decode and first tokens get the cores instead
of words that would only be heard seconds later (docs/benchmarks.md, "A reply far ahead of
its listener gives way").
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

# How long a piece of text takes to say, until the reply's own pieces tell (Piper's voices
# speak ~14-16 characters a second).
DEFAULT_MS_PER_CHAR = 65.0
# Held before playback starts (the first pieces written are already that far ahead): until
# the first audio is sent, which sets the pace again; bounded so that nothing waits for ever.
UNTIL_PLAYBACK_S = 30.0
# A writing that gives way looks again this often whether it still has to.
GIVE_WAY_POLL_S = 0.05


def writing_hold_s(*, buffered_ms: float, queued_ms: float, write_ahead_ms: float,
                   playing: bool) -> float:
    """Seconds the writing should wait now.

    ``buffered_ms``: audio sent to the client and not yet played; ``queued_ms``: the speech
    of the pieces written but not yet synthesized (an estimate); ``playing``: the client has
    started playing the reply (so ``buffered_ms`` plays down in real time). The writing goes
    on while the two together are under ``write_ahead_ms``; else it waits until playback has
    brought them under it. When synthesis is what lags (the pieces waiting alone reach the
    limit), or before playback starts, it waits until the next piece is synthesized or sent,
    which sets the pace again.
    """
    if write_ahead_ms <= 0:
        return 0.0
    excess = buffered_ms + queued_ms - write_ahead_ms
    if excess < 0:
        return 0.0
    if playing and excess <= buffered_ms:
        return excess / 1000
    return UNTIL_PLAYBACK_S


class WritingPace:
    """When a reply's writing may go on (``llm.chat.Pace``). Thread-safe: the reply sets it on
    the event loop, the model's thread calls it after each token.

    ``hold_after_tokens`` holds the writing once that many tokens are written, until
    :meth:`lift_token_limit` (a reply written ahead of its turn's end needs only its first
    words before the turn is confirmed). :meth:`give_way` makes it wait for others' turns
    while far enough ahead of its listener."""

    def __init__(self, hold_after_tokens: int | None = None) -> None:
        self._lock = threading.Lock()
        self._resume_at = 0.0  # time.monotonic() from when the writing may go on
        self._token_limit = hold_after_tokens
        self._released = False
        self._others_waiting: Callable[[], bool] | None = None
        self._give_way_ms = 0.0
        self._ahead: tuple[float, float] | None = None  # (monotonic time, audio ahead ms)

    def __call__(self, written: int) -> float:
        now = time.monotonic()
        with self._lock:
            if self._released:
                return 0.0
            if self._token_limit is not None and written >= self._token_limit:
                return UNTIL_PLAYBACK_S
            wait = max(0.0, self._resume_at - now)
            others_waiting, ahead = self._others_waiting, self._ahead
        if wait > 0 or others_waiting is None or ahead is None:
            return wait
        # What is ahead plays down in real time, and covers the wait: once the client is down
        # to give_way_ms the writing goes on, whoever waits.
        ahead_ms = ahead[1] - (now - ahead[0]) * 1000
        if 0 < self._give_way_ms <= ahead_ms and others_waiting():
            return GIVE_WAY_POLL_S
        return 0.0

    def give_way(self, others_waiting: Callable[[], bool], give_way_ms: float) -> None:
        """Wait while ``others_waiting()`` and at least ``give_way_ms`` of audio is ahead of
        the listener (as last told by :meth:`playing_ahead`). ``others_waiting`` is called
        in the model's thread."""
        with self._lock:
            self._others_waiting = others_waiting
            self._give_way_ms = give_way_ms

    def playing_ahead(self, ahead_ms: float) -> None:
        """The client is playing the reply and has ``ahead_ms`` of it not yet played, now."""
        with self._lock:
            self._ahead = (time.monotonic(), ahead_ms)

    def hold_until(self, resume_at: float) -> None:
        """The writing may go on from monotonic time ``resume_at``."""
        with self._lock:
            self._resume_at = resume_at

    def lift_token_limit(self) -> None:
        with self._lock:
            self._token_limit = None

    def release(self) -> None:
        """Never hold again (the reply is cancelled, finished, or not paced)."""
        with self._lock:
            self._released = True
