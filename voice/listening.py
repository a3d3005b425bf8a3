"""The user's audio on its way in: rate conversion, pacing, the manual buffer, arrival times.

Synchronous and free of I/O; the session waits for what :meth:`UserAudio.accept` says. Audio
arrives as PCM16 at the session's input rate and leaves as float32 16 kHz (the VAD and ASR
rate), the unit of media time.
"""

from __future__ import annotations

import bisect
import collections
import math

import numpy as np

from voice.audio import ASR_RATE, InputAudio, InputPacer


class BufferTooLongError(Exception):
    pass


class UserAudio:
    """One session's input audio."""

    def __init__(self, rate: int, *, burst_s: float, max_buffer_s: float) -> None:
        self._input = InputAudio(rate)
        self._pacer = InputPacer(burst_s)
        self.burst_s = burst_s
        self.max_buffer_s = max_buffer_s
        self.received = 0  # 16 kHz samples taken so far: the session's media time
        self._arrivals: collections.deque[tuple[int, float]] = collections.deque(maxlen=2000)
        self._buffer: list[np.ndarray] = []  # manual-turn audio
        self.buffered = 0
        self._refused = 0  # samples refused since the last report
        self._refused_reported = -math.inf

    @property
    def rate(self) -> int:
        return self._input.rate

    def set_rate(self, rate: int) -> None:
        if rate != self._input.rate:
            self._input = InputAudio(rate)

    def accept(self, samples: np.ndarray, now: float) -> tuple[np.ndarray | None, float]:
        """Convert ``samples``; returns (16 kHz audio or None if refused as too far ahead of
        real time, seconds to wait before taking it)."""
        converted = self._input.convert(samples)
        wait = self._pacer.admit(converted.size / ASR_RATE, now)
        if wait is None:
            self._refused += converted.size
            return None, 0.0
        return converted, wait

    def taken(self, samples: int, now: float) -> None:
        """``samples`` (16 kHz) were taken at monotonic time ``now``."""
        self.received += samples
        self._arrivals.append((self.received, now))

    def refusal_report(self, now: float) -> int | None:
        """Milliseconds refused since the last report, at most once a second (else None)."""
        if not self._refused or now - self._refused_reported < 1.0:
            return None
        self._refused_reported = now
        refused_ms, self._refused = self._refused * 1000 // ASR_RATE, 0
        return refused_ms

    def arrival_time(self, sample: int, now: float) -> float:
        """When the 16 kHz sample with this index reached the server (``now`` if unknown)."""
        index = bisect.bisect_left(self._arrivals, (sample, 0.0))
        if index >= len(self._arrivals):
            return now
        return self._arrivals[index][1]

    # -- manual turns --------------------------------------------------------------------

    def buffer(self, samples: np.ndarray) -> None:
        limit = int(self.max_buffer_s * ASR_RATE)
        if self.buffered + samples.size > limit:
            raise BufferTooLongError(f"the input audio buffer exceeds {self.max_buffer_s:.0f} "
                                     "s; commit or clear it")
        self._buffer.append(samples)
        self.buffered += samples.size

    def take_buffer(self) -> np.ndarray:
        audio = (np.concatenate(self._buffer) if self._buffer
                 else np.zeros(0, np.float32))
        self.clear()
        return audio

    def clear(self) -> None:
        self._buffer.clear()
        self.buffered = 0
