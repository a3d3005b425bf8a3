"""Sound devices for voice-mic: the ``AudioDevice`` interface, the real card through sounddevice
(PortAudio), the playback buffer an output callback drains, device lookup, and streaming
resampling between a device's rate and the session's."""

from __future__ import annotations

import collections
import contextlib
import threading
from collections.abc import Callable
from typing import Any, Protocol, TextIO

import numpy as np
import soxr

from clients.mic.echo import EchoCanceller, self_test

BLOCK_MS = 20

InputCallback = Callable[[np.ndarray], None]


class DeviceError(Exception):
    """A sound device is missing or cannot be opened (the message is one line for the user)."""


class AudioDevice(Protocol):
    """Microphone in, speaker out.

    ``start`` calls ``on_input`` with int16 mono blocks at ``input_rate`` from another thread
    (PortAudio's). ``play`` queues int16 mono samples at ``output_rate`` and returns the value
    ``played_samples`` will have when the first of them starts playing. ``played_samples``
    counts samples actually consumed by the output, not samples queued; ``stop_playback``
    drops everything queued and returns ``played_samples`` at that moment. ``duck`` sets the
    volume of what plays from now on (1.0: full; the server's ``output_audio_buffer.duck``);
    ``hold`` pauses playback where it is (a short fade, nothing dropped) or goes on.
    ``echo_cancelled``: what the speaker plays is taken out of what the microphone hears.
    """

    input_rate: int
    output_rate: int
    echo_cancelled: bool

    def start(self, on_input: InputCallback) -> None: ...

    def play(self, samples: np.ndarray) -> int: ...

    def stop_playback(self) -> int: ...

    def duck(self, gain: float) -> None: ...

    def hold(self, held: bool) -> None: ...

    @property
    def played_samples(self) -> int: ...

    @property
    def pending_samples(self) -> int: ...

    def close(self) -> None: ...


class PlaybackBuffer:
    """A thread-safe queue of samples that an output callback drains."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._chunks: collections.deque[np.ndarray] = collections.deque()
        self._offset = 0  # samples of _chunks[0] already played
        self._pending = 0
        self._played = 0
        self.gain = 1.0  # the volume wanted (duck)
        self.held = False  # paused (hold): a last block fades out, then silence
        self._gain = 1.0  # the volume of the last sample played: changes ramp over a block

    def push(self, samples: np.ndarray) -> int:
        chunk = np.asarray(samples, dtype=np.int16).reshape(-1).copy()
        with self._lock:
            position = self._played + self._pending
            if chunk.size:
                self._chunks.append(chunk)
                self._pending += chunk.size
            return position

    def read_into(self, out: np.ndarray) -> int:
        """Fill ``out`` (1-D int16) with queued samples, then silence; returns how many were
        real samples."""
        wanted = out.shape[0]
        filled = 0
        target = 0.0 if self.held else self.gain
        with self._lock:
            if target == 0.0 and self._gain == 0.0:  # held, faded out: nothing plays
                out[:] = 0
                return 0
            while filled < wanted and self._chunks:
                chunk = self._chunks[0]
                take = min(wanted - filled, chunk.size - self._offset)
                out[filled:filled + take] = chunk[self._offset:self._offset + take]
                filled += take
                self._offset += take
                if self._offset >= chunk.size:
                    self._chunks.popleft()
                    self._offset = 0
            self._pending -= filled
            self._played += filled
        out[filled:] = 0
        gain, self._gain = self._gain, target
        if filled and (gain != 1.0 or target != 1.0):
            ramp = np.linspace(gain, target, filled) if gain != target else gain
            out[:filled] = np.round(out[:filled] * ramp).astype(out.dtype)
        return filled

    def clear(self) -> int:
        with self._lock:
            self._chunks.clear()
            self._offset = 0
            self._pending = 0
            return self._played

    @property
    def played(self) -> int:
        with self._lock:
            return self._played

    @property
    def pending(self) -> int:
        with self._lock:
            return self._pending


def _sounddevice() -> Any:
    """The sounddevice module, imported on first use (it needs the PortAudio library)."""
    try:
        import sounddevice
    except (ImportError, OSError) as error:
        raise DeviceError(f"sound is unavailable: {error} (install libportaudio2)") from error
    return sounddevice


def _device_list(sd: Any) -> list[dict[str, Any]]:
    try:
        return [dict(device, index=index) for index, device in enumerate(sd.query_devices())]
    except Exception as error:
        raise DeviceError(f"cannot list sound devices: {error}") from error


def _default_device(sd: Any, kind: str) -> int | None:
    try:
        device = sd.query_devices(kind=kind)
    except Exception:
        return None
    index = device.get("index") if isinstance(device, dict) else None
    return int(index) if index is not None and int(index) >= 0 else None


def resolve_device(sd: Any, spec: str | int | None, kind: str) -> int:
    """The index of the ``kind`` ("input" or "output") device named by ``spec``: an index, a
    case-insensitive part of its name, or None for the default."""
    channels = f"max_{kind}_channels"
    devices = _device_list(sd)
    if spec is None or spec == "":
        default = _default_device(sd, kind)
        if default is None:
            raise DeviceError(f"there is no default {kind} device; pick one with "
                              f"--{kind}-device (see --list-devices)")
        return default
    text = str(spec).strip()
    if text.isdigit():
        index = int(text)
        if index >= len(devices) or devices[index][channels] <= 0:
            raise DeviceError(f"there is no {kind} device number {index} (see --list-devices)")
        return index
    matches = [d for d in devices if text.lower() in str(d["name"]).lower() and d[channels] > 0]
    exact = [d for d in matches if str(d["name"]).lower() == text.lower()]
    if exact:
        matches = exact
    if not matches:
        raise DeviceError(f"no {kind} device matches {text!r} (see --list-devices)")
    if len(matches) > 1:
        names = ", ".join(f"{d['index']}: {d['name']}" for d in matches)
        raise DeviceError(f"{text!r} matches several {kind} devices ({names}); "
                          "give a longer name or the number")
    return int(matches[0]["index"])


def list_devices(out: TextIO, sd: Any = None) -> None:
    """Print the input and output devices, defaults marked with ``*``."""
    sd = sd if sd is not None else _sounddevice()
    devices = _device_list(sd)
    try:
        apis = [str(api["name"]) for api in sd.query_hostapis()]
    except Exception:
        apis = []
    for kind in ("input", "output"):
        default = _default_device(sd, kind)
        channels = f"max_{kind}_channels"
        print(f"{kind.capitalize()} devices:", file=out)
        rows = [d for d in devices if d[channels] > 0]
        for device in rows:
            api_index = int(device.get("hostapi", -1))
            api = apis[api_index] if 0 <= api_index < len(apis) else "?"
            mark = "*" if device["index"] == default else " "
            print(f"  {mark} {device['index']:>3}  {device['name']}  ({device[channels]} ch, "
                  f"{float(device.get('default_samplerate', 0)):.0f} Hz, {api})", file=out)
        if not rows:
            print("    (none)", file=out)
    print("* = default. Choose with --input-device / --output-device NUMBER or part of the "
          "name.", file=out)


class BufferedOutput:
    """Playback through a :class:`PlaybackBuffer` that an output callback drains."""

    _buffer: PlaybackBuffer
    echo_cancelled = False

    def play(self, samples: np.ndarray) -> int:
        return self._buffer.push(samples)

    def stop_playback(self) -> int:
        self._buffer.gain = 1.0
        self._buffer.held = False
        return self._buffer.clear()

    def duck(self, gain: float) -> None:
        self._buffer.gain = gain

    def hold(self, held: bool) -> None:
        self._buffer.held = held

    @property
    def played_samples(self) -> int:
        return self._buffer.played

    @property
    def pending_samples(self) -> int:
        return self._buffer.pending


class SoundDeviceAudio(BufferedOutput):
    """The real sound card through sounddevice (PortAudio) streams.

    Streams run at the session rate when the device supports it, else at the device's own
    default rate (the client resamples). Both callbacks only copy memory: blocks go to the
    event loop through ``on_input`` (which must be thread-safe), playback comes from a
    :class:`PlaybackBuffer`.
    """

    def __init__(self, rate: int, input_device: str | int | None = None,
                 output_device: str | int | None = None, *, block_ms: int = BLOCK_MS,
                 echo_cancellation: bool = True) -> None:
        self._sd = _sounddevice()
        self.input_index = resolve_device(self._sd, input_device, "input")
        self.output_index = resolve_device(self._sd, output_device, "output")
        self.input_rate = self._rate(self.input_index, "input", rate)
        self.output_rate = self._rate(self.output_index, "output", rate)
        self.input_name = str(self._sd.query_devices(self.input_index)["name"])
        self.output_name = str(self._sd.query_devices(self.output_index)["name"])
        self._block = self.input_rate * block_ms // 1000
        self._buffer = PlaybackBuffer()
        self._streams: list[Any] = []
        self.overflows = 0
        self.underflows = 0
        # What the speaker plays is taken out of what the microphone hears (clients/mic/echo.py);
        # the two streams must share a rate for that.
        self.echo: EchoCanceller | None = None
        self.echo_note = "echo cancellation off (--no-aec)"
        if echo_cancellation and self.input_rate == self.output_rate:
            decibels = self_test(self.input_rate)
            if decibels >= 10:
                self.echo = EchoCanceller(self.input_rate)
                self.echo_cancelled = True
                self.echo_note = (f"echo cancellation on (WebRTC; {decibels:.0f} dB off a test "
                                  "echo)")
            else:
                self.echo_note = (f"echo cancellation off: its self-test removed only "
                                  f"{decibels:.0f} dB; use headphones or --mute-while-speaking")
        elif echo_cancellation:
            self.echo_note = (f"echo cancellation off: the microphone ({self.input_rate} Hz) "
                              f"and speaker ({self.output_rate} Hz) rates differ")

    def _rate(self, index: int, kind: str, wanted: int) -> int:
        check = (self._sd.check_input_settings if kind == "input"
                 else self._sd.check_output_settings)
        try:
            check(device=index, samplerate=wanted, channels=1, dtype="int16")
            return wanted
        except Exception:
            return int(self._sd.query_devices(index)["default_samplerate"])

    def start(self, on_input: InputCallback) -> None:
        def record(indata: np.ndarray, frames: int, when: Any, status: Any) -> None:
            if status and status.input_overflow:
                self.overflows += 1
            samples = indata[:, 0].copy()
            on_input(self.echo.captured(samples) if self.echo is not None else samples)

        def play(outdata: np.ndarray, frames: int, when: Any, status: Any) -> None:
            if status and status.output_underflow:
                self.underflows += 1
            self._buffer.read_into(outdata[:, 0])
            if self.echo is not None:
                self.echo.played(outdata[:, 0])

        try:
            output = self._sd.OutputStream(device=self.output_index, samplerate=self.output_rate,
                                           channels=1, dtype="int16", latency="low",
                                           callback=play)
            self._streams.append(output)
            microphone = self._sd.InputStream(device=self.input_index,
                                              samplerate=self.input_rate, channels=1,
                                              dtype="int16", blocksize=self._block,
                                              latency="low", callback=record)
            self._streams.append(microphone)
            output.start()
            microphone.start()
        except Exception as error:
            self.close()
            raise DeviceError(f"cannot open the sound devices: {error}") from error

    def close(self) -> None:
        streams, self._streams = self._streams, []
        for stream in streams:
            with contextlib.suppress(Exception):
                stream.stop()
            with contextlib.suppress(Exception):
                stream.close()


class Resampler:
    """Streaming int16 resampling (no clicks at block edges); a no-op when rates match."""

    def __init__(self, in_rate: int, out_rate: int) -> None:
        self._stream = (soxr.ResampleStream(in_rate, out_rate, 1, dtype="float32")
                        if in_rate != out_rate else None)

    def __call__(self, samples: np.ndarray) -> np.ndarray:
        if self._stream is None:
            return samples
        floats = self._stream.resample_chunk(samples.astype(np.float32) / 32768.0)
        pcm: np.ndarray = (np.clip(floats, -1.0, 1.0) * 32767).astype(np.int16)
        return pcm
