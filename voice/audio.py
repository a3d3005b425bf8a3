"""Audio at the service boundary: wire formats in and out, and resampling (soxr).

On the wire, audio is PCM16 little-endian mono at 16, 24 (the Realtime default) or 48 kHz.
Inside, the ASR side works on float32 mono 16 kHz and TTS chunks carry their own rate. Every
conversion happens here, once per direction, with streaming soxr resamplers so that chunk
boundaries leave no clicks.
"""

from __future__ import annotations

import base64
import binascii

import numpy as np
import soxr

ASR_RATE = 16_000
SUPPORTED_RATES = (16_000, 24_000, 48_000)
DEFAULT_RATE = 24_000


class AudioFormatError(ValueError):
    """Audio that cannot be decoded; the message says what is wrong."""


def decode_base64_pcm16(data: str) -> np.ndarray:
    """Base64 text of PCM16 LE mono -> int16 samples."""
    if not isinstance(data, str):
        raise AudioFormatError("audio must be a base64 string")
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as error:
        raise AudioFormatError(f"audio is not valid base64: {error}") from error
    return decode_pcm16(raw)


def decode_pcm16(raw: bytes) -> np.ndarray:
    if len(raw) % 2:
        raise AudioFormatError(
            f"PCM16 audio must have an even number of bytes, got {len(raw)}")
    samples: np.ndarray = np.frombuffer(raw, dtype="<i2")
    return samples


def encode_base64_pcm16(samples: np.ndarray) -> str:
    return base64.b64encode(np.asarray(samples, dtype="<i2").tobytes()).decode("ascii")


def int16_to_float(samples: np.ndarray) -> np.ndarray:
    return np.asarray(samples, dtype=np.float32) / 32768.0


def float_to_int16(samples: np.ndarray) -> np.ndarray:
    clipped: np.ndarray = np.clip(samples, -1.0, 1.0) * 32767.0
    return clipped.astype(np.int16)


def check_rate(rate: int) -> int:
    if rate not in SUPPORTED_RATES:
        raise AudioFormatError(
            f"unsupported sample rate {rate}; use one of {', '.join(map(str, SUPPORTED_RATES))}")
    return rate


class StreamResampler:
    """Resamples a stream chunk by chunk (soxr keeps the filter state between chunks)."""

    def __init__(self, in_rate: int, out_rate: int) -> None:
        self.in_rate = in_rate
        self.out_rate = out_rate
        self._stream = (None if in_rate == out_rate else
                        soxr.ResampleStream(in_rate, out_rate, 1, dtype="float32",
                                            quality="HQ"))

    def process(self, samples: np.ndarray, last: bool = False) -> np.ndarray:
        """float32 in, float32 out; pass ``last=True`` with the final chunk to flush."""
        samples = np.asarray(samples, dtype=np.float32)
        if self._stream is None:
            return samples
        return np.asarray(self._stream.resample_chunk(samples, last=last), dtype=np.float32)


class InputAudio:
    """Client PCM16 at the session's input rate -> float32 16 kHz for the VAD and ASR."""

    def __init__(self, rate: int) -> None:
        self.rate = check_rate(rate)
        self._resampler = StreamResampler(rate, ASR_RATE)

    def convert(self, samples: np.ndarray) -> np.ndarray:
        return self._resampler.process(int16_to_float(samples))


def to_output(samples: np.ndarray, rate: int, out_rate: int) -> np.ndarray:
    """A whole TTS chunk (int16 at ``rate``) -> int16 at the client's output rate."""
    if rate == out_rate:
        return np.asarray(samples, dtype=np.int16)
    resampled = soxr.resample(int16_to_float(samples), rate, out_rate, quality="HQ")
    return float_to_int16(resampled)


class InputPacer:
    """Holds a client's audio to real time, with a burst allowance (a token bucket).

    Sans-I/O: :meth:`admit` takes the duration of the audio just received and the time now.
    The bucket holds at most ``burst_s`` seconds of audio and refills at ``speed`` seconds per
    second, so a client may catch up after a network stall. Audio a little ahead of that is
    admitted after a wait (the returned seconds), which pushes back on the client through its
    socket; audio that would have to wait more than ``max_wait_s`` is refused (``None``) and
    must be reported to the client: a session cannot be kept from reading its socket for long
    (its keepalive would time out), nor feed the engines faster than real time.
    """

    def __init__(self, burst_s: float = 4.0, speed: float = 1.0, max_wait_s: float = 1.0) -> None:
        if burst_s <= 0 or speed <= 0 or max_wait_s < 0:
            raise ValueError("burst_s and speed must be positive, max_wait_s not negative")
        self.burst_s = burst_s
        self.speed = speed
        self.max_wait_s = max_wait_s
        self._tokens = burst_s
        self._last: float | None = None

    def admit(self, duration_s: float, now: float) -> float | None:
        """Seconds to wait before taking this audio, or None if it is refused."""
        if self._last is not None:
            self._tokens = min(self.burst_s, self._tokens + (now - self._last) * self.speed)
        self._last = now
        wait = max(0.0, (duration_s - self._tokens) / self.speed)
        if wait > self.max_wait_s:
            return None
        self._tokens -= duration_s
        return wait
