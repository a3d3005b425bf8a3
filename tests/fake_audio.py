"""A fake sound card for voice-mic tests: a "microphone" that says given audio at real-time pace
and a "speaker" that consumes played audio at real-time pace and keeps it."""

from __future__ import annotations

import collections
import threading
import time
import wave
from pathlib import Path
from typing import Any

import numpy as np
import soxr

from clients.mic.devices import BLOCK_MS, BufferedOutput, InputCallback, PlaybackBuffer


class FakeAudio(BufferedOutput):
    """A sound card for tests and demos: the "microphone" plays back given audio at real-time
    pace (silence when there is none left), the "speaker" consumes played audio at real-time
    pace and keeps it.

    ``say`` queues more audio for the microphone at any time. Both sides run in their own
    threads, like PortAudio callbacks.
    """

    def __init__(self, speech: np.ndarray | None = None, rate: int = 16_000, *,
                 input_rate: int | None = None, output_rate: int | None = None,
                 block_ms: int = BLOCK_MS) -> None:
        self.input_rate = input_rate or rate
        self.output_rate = output_rate or rate
        self.block_ms = block_ms
        self._buffer = PlaybackBuffer()
        self._lock = threading.Lock()
        self._speech: collections.deque[np.ndarray] = collections.deque()
        self._played: list[np.ndarray] = []
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.input_blocks = 0
        if speech is not None:
            self.say(speech, rate)

    @classmethod
    def from_wav(cls, path: str | Path, rate: int = 16_000) -> FakeAudio:
        """A fake microphone that says the contents of a mono or stereo PCM16 WAV file."""
        with wave.open(str(path), "rb") as wav:
            frames = np.frombuffer(wav.readframes(wav.getnframes()), "<i2")
            samples = frames.reshape(-1, wav.getnchannels())[:, 0]
            source_rate = wav.getframerate()
        fake = cls(None, rate)
        fake.say(samples, source_rate)
        return fake

    def say(self, samples: np.ndarray, rate: int | None = None) -> None:
        """Queue audio (int16, or float in [-1, 1]) for the microphone."""
        array = np.asarray(samples).reshape(-1)
        if array.dtype != np.int16:
            array = (np.clip(array.astype(np.float32), -1.0, 1.0) * 32767).astype(np.int16)
        if rate is not None and rate != self.input_rate:
            floats = soxr.resample(array.astype(np.float32) / 32768.0, rate, self.input_rate)
            array = (np.clip(floats, -1.0, 1.0) * 32767).astype(np.int16)
        with self._lock:
            self._speech.append(array)

    @property
    def speaking(self) -> bool:
        """Whether queued microphone audio is still being delivered."""
        with self._lock:
            return bool(self._speech)

    def start(self, on_input: InputCallback) -> None:
        for target, args in ((self._microphone, (on_input,)), (self._speaker, ())):
            thread = threading.Thread(target=target, args=args, daemon=True,
                                      name=f"fake-audio-{target.__name__.strip('_')}")
            thread.start()
            self._threads.append(thread)

    def _ticks(self) -> Any:
        """Yields once per block, at real-time pace (catching up after a stall)."""
        period = self.block_ms / 1000
        started = time.monotonic()
        count = 0
        while not self._stop.is_set():
            count += 1
            delay = started + count * period - time.monotonic()
            if delay > 0 and self._stop.wait(delay):
                return
            yield

    def _microphone(self, on_input: InputCallback) -> None:
        block = self.input_rate * self.block_ms // 1000
        for _ in self._ticks():
            out = np.zeros(block, np.int16)
            filled = 0
            with self._lock:
                while filled < block and self._speech:
                    head = self._speech[0]
                    take = min(block - filled, head.size)
                    out[filled:filled + take] = head[:take]
                    filled += take
                    if take == head.size:
                        self._speech.popleft()
                    else:
                        self._speech[0] = head[take:]
            self.input_blocks += 1
            on_input(out)

    def _speaker(self) -> None:
        block = np.zeros(self.output_rate * self.block_ms // 1000, np.int16)
        for _ in self._ticks():
            with self._lock:  # keeps played_audio() consistent with played_samples
                filled = self._buffer.read_into(block)
                if filled:
                    self._played.append(block[:filled].copy())

    def stop_playback(self) -> int:
        with self._lock:  # keeps played_audio() consistent with played_samples
            return super().stop_playback()

    def played_audio(self) -> np.ndarray:
        """Everything the speaker has played so far (int16 at ``output_rate``)."""
        with self._lock:
            return np.concatenate(self._played) if self._played else np.zeros(0, np.int16)

    def close(self) -> None:
        self._stop.set()
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(5)
        self._threads = []
