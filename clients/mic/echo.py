"""Echo cancellation for ``voice-mic`` on laptop speakers: WebRTC's audio processing.

Without headphones the microphone hears the assistant's own reply, and the server takes it for
the user talking. :class:`EchoCanceller` runs WebRTC's audio processing module (from the
``livekit`` wheel: echo cancellation, noise suppression, high-pass filter) on 10 ms frames: what
the speaker actually played is the reverse stream, the microphone the forward stream, so the
reply is subtracted from what is sent while the user's own voice passes.

Thread-safe: the sound card's output and input callbacks call :meth:`played` and
:meth:`captured` from their own threads. Both streams must be at the same rate.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

FRAME_MS = 10  # what the module processes at a time
DEFAULT_DELAY_MS = 60  # playback -> microphone on a typical laptop; the module adapts


class EchoCanceller:
    def __init__(self, rate: int, *, delay_ms: int = DEFAULT_DELAY_MS) -> None:
        from livekit import rtc

        self._rtc = rtc
        self.rate = rate
        self.frame = rate * FRAME_MS // 1000
        self._module = rtc.AudioProcessingModule(echo_cancellation=True, noise_suppression=True,
                                                 high_pass_filter=True)
        self._module.set_stream_delay_ms(delay_ms)
        self._lock = threading.Lock()
        self._reverse = np.zeros(0, np.int16)
        self._forward = np.zeros(0, np.int16)

    def _frame(self, samples: np.ndarray) -> Any:
        return self._rtc.AudioFrame(samples.astype(np.int16).tobytes(), self.rate, 1, self.frame)

    def played(self, samples: np.ndarray) -> None:
        """Audio the speaker played just now (int16): the echo to expect."""
        with self._lock:
            self._reverse = np.concatenate([self._reverse, samples.astype(np.int16)])
            while self._reverse.size >= self.frame:
                chunk, self._reverse = self._reverse[:self.frame], self._reverse[self.frame:]
                self._module.process_reverse_stream(self._frame(chunk))

    def captured(self, samples: np.ndarray) -> np.ndarray:
        """Microphone audio (int16) -> the same with the echo removed. Returns whole frames
        only: up to 10 ms is held until the next call."""
        with self._lock:
            self._forward = np.concatenate([self._forward, samples.astype(np.int16)])
            whole = self._forward.size // self.frame * self.frame
            out = np.empty(whole, np.int16)
            for start in range(0, whole, self.frame):
                frame = self._frame(self._forward[start:start + self.frame])
                self._module.process_stream(frame)
                out[start:start + self.frame] = np.frombuffer(bytes(frame.data), np.int16)
            self._forward = self._forward[whole:]
            return out


def self_test(rate: int, seconds: float = 1.5) -> float:
    """How many dB a fresh canceller removes from a synthetic echo (a delayed, quieter copy of
    a noise-modulated tone played at the same time): a check at start-up that the module is
    loaded and working."""
    rng = np.random.default_rng(7)
    t = np.arange(int(rate * seconds)) / rate
    far = (0.3 * np.sin(2 * np.pi * 440 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t))
           + 0.05 * rng.standard_normal(t.size)).astype(np.float32)
    delay = int(0.03 * rate)
    echo = np.concatenate([np.zeros(delay, np.float32), far[:-delay] * 0.3])
    canceller = EchoCanceller(rate, delay_ms=30)
    out = np.zeros(0, np.int16)
    step = canceller.frame
    for start in range(0, far.size - step + 1, step):
        canceller.played((far[start:start + step] * 32767).astype(np.int16))
        out = np.concatenate([out, canceller.captured((echo[start:start + step] * 32767)
                                                       .astype(np.int16))])
    half = out.size // 2
    before = float(np.mean((echo[half:out.size] * 32767) ** 2)) + 1e-9
    after = float(np.mean(out[half:].astype(np.float64) ** 2)) + 1e-9
    return float(10 * np.log10(before / after))
