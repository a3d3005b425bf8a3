"""How far a spoken reply's writing may run ahead of what the client is playing.

The language model writes several times faster than speech, so unchecked it writes a whole
reply within its first seconds of playback, taking the cores that the reply's other work
needs at that moment (the echo guard's looks at the microphone, the next piece's synthesis,
other sessions' first words). A spoken reply therefore holds its writing while the audio
ahead of the listener (synthesized and not yet played, plus the pieces waiting for synthesis)
reaches ``write_ahead_ms``; it goes on as the audio plays down. The first pieces are never
held back by playback that has not started: only what is already written counts.

A spoken reply also **yields** while it is comfortably ahead of its listener (``yield_ahead_ms``
of speech or more, a few seconds): as long as work that others wait for needs the cores (a
transcript being decoded, or another reply that is not that far ahead: its first words, or
its next piece before its playback runs dry), it holds its writing. :class:`Writers` knows
which spoken replies are being written, all sessions together. A reply that yields loses
nothing its listener hears, and writes again when its own audio ahead falls to that margin.

:func:`writing_hold_s` is the rule (pure, in wall-clock milliseconds); :class:`WritingPace`
carries its answer to the model's thread (``llm.chat.Pace``): the reply sets when the writing
may go on, the model's thread asks after every token.
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
YIELD_POLL_S = 0.03  # a yielding writing looks again this often whether others still wait


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
    words before the turn is confirmed)."""

    def __init__(self, hold_after_tokens: int | None = None) -> None:
        self._lock = threading.Lock()
        self._resume_at = 0.0  # time.monotonic() from when the writing may go on
        self._token_limit = hold_after_tokens
        self._released = False
        self._writers: Writers | None = None  # with whom it shares the cores, once it yields
        self._ahead_until = 0.0  # time.monotonic() until which it is comfortably ahead

    def __call__(self, written: int) -> float:
        with self._lock:
            if self._released:
                return 0.0
            if self._token_limit is not None and written >= self._token_limit:
                return UNTIL_PLAYBACK_S
            now = time.monotonic()
            hold = max(0.0, self._resume_at - now)
            writers, ahead = self._writers, now < self._ahead_until
        if hold > 0 or not ahead or writers is None:
            return hold
        return YIELD_POLL_S if writers.others_wait(self) else 0.0

    def share(self, writers: Writers) -> None:
        """Yield to ``writers``' work while comfortably ahead (see :meth:`ahead_until`)."""
        with self._lock:
            if self._released:
                return
            self._writers = writers
        writers.add(self)

    def ahead_until(self, until: float) -> None:
        """The listener has enough of the reply ahead until monotonic time ``until`` (0: not
        ahead, e.g. before playback starts): until then the writing yields to others."""
        with self._lock:
            self._ahead_until = until

    @property
    def waiting_for_cores(self) -> bool:
        """Whether this writing needs the cores now: not comfortably ahead, not held, not
        done (called by the others' threads)."""
        with self._lock:
            now = time.monotonic()
            return (not self._released and now >= self._ahead_until
                    and now >= self._resume_at and self._token_limit is None)

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
            writers, self._writers = self._writers, None
        if writers is not None:
            writers.remove(self)


class Writers:
    """The spoken replies being written now, all sessions together, and whether any of them,
    or other work (``busy()``: a transcript being decoded), waits for the cores. Thread-safe:
    replies join and leave on the event loop, the models' threads ask."""

    def __init__(self, busy: Callable[[], bool] = lambda: False) -> None:
        self._lock = threading.Lock()
        self._paces: list[WritingPace] = []
        self._busy = busy

    def add(self, pace: WritingPace) -> None:
        with self._lock:
            self._paces.append(pace)

    def remove(self, pace: WritingPace) -> None:
        with self._lock:
            if pace in self._paces:
                self._paces.remove(pace)

    def __len__(self) -> int:
        with self._lock:
            return len(self._paces)

    def others_wait(self, pace: WritingPace) -> bool:
        """Whether work other than ``pace``'s writing waits for the cores."""
        with self._lock:
            others = [p for p in self._paces if p is not pace]
        return self._busy() or any(p.waiting_for_cores for p in others)
