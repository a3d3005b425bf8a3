"""voice-mic: talk to the voice service with this computer's microphone and speakers.

    voice-mic                              hands-free: just talk (the default)
    voice-mic --mute-while-speaking        hands-free on laptop speakers, no headphones
    voice-mic --push-to-talk               press Enter, talk, press Enter again
    voice-mic --list-devices               then --input-device / --output-device NAME|INDEX

The terminal shows what you say as it is recognised (partial, then final), the reply text as it
is written, and per turn the latency measured by the server from the end of your speech.

Which mode when:

  hands-free (default)    With headphones or a headset. The server hears when you start and
                          stop talking; talk over a reply to interrupt it (barge-in): playback
                          stops at once and the server keeps only the part you heard. Without
                          headphones the reply leaks from the speakers into the microphone and
                          interrupts itself: use one of the two modes below.
  --mute-while-speaking   Hands-free on laptop speakers: the microphone is not sent while the
                          reply plays (and a short tail after it), so the assistant does not
                          hear itself. You cannot interrupt it by voice; wait for it to finish.
  --push-to-talk          Noisy rooms, speakers without echo cancellation, or when you want to
                          decide when your turn ends: press Enter, talk, press Enter to send.
                          Enter during a reply interrupts it. Type q + Enter (or Ctrl-C) to quit.

The server address defaults to ws://127.0.0.1:8765/v1/realtime; a server with API keys needs
--key or VOICE_API_KEY. --reconnect keeps trying (with backoff) when the connection drops.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import dataclasses
import os
import sys
import threading
import time
import wave
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, TextIO

import numpy as np
import soxr

from clients.client import (
    SUPPORTED_RATES,
    Event,
    OtherEvent,
    ReplyAudio,
    ReplyTextDelta,
    ResponseDone,
    ResponseStarted,
    ServerError,
    SpeechStarted,
    SpeechStopped,
    Transcript,
    TranscriptDelta,
    VoiceClient,
    VoiceClientError,
)

DEFAULT_URL = "ws://127.0.0.1:8765/v1/realtime"
BLOCK_MS = 20
PROGRAM = "voice-mic"

InputCallback = Callable[[np.ndarray], None]


class DeviceError(Exception):
    """A sound device is missing or cannot be opened (the message is one line for the user)."""


# -- audio devices ---------------------------------------------------------------------------


class AudioDevice(Protocol):
    """Microphone in, speaker out.

    ``start`` calls ``on_input`` with int16 mono blocks at ``input_rate`` from another thread
    (PortAudio's). ``play`` queues int16 mono samples at ``output_rate`` and returns the value
    ``played_samples`` will have when the first of them starts playing. ``played_samples``
    counts samples actually consumed by the output, not samples queued; ``stop_playback``
    drops everything queued and returns ``played_samples`` at that moment.
    """

    input_rate: int
    output_rate: int

    def start(self, on_input: InputCallback) -> None: ...

    def play(self, samples: np.ndarray) -> int: ...

    def stop_playback(self) -> int: ...

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
        with self._lock:
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


class _BufferedOutput:
    """Playback through a :class:`PlaybackBuffer` that an output callback drains."""

    _buffer: PlaybackBuffer

    def play(self, samples: np.ndarray) -> int:
        return self._buffer.push(samples)

    def stop_playback(self) -> int:
        return self._buffer.clear()

    @property
    def played_samples(self) -> int:
        return self._buffer.played

    @property
    def pending_samples(self) -> int:
        return self._buffer.pending


class SoundDeviceAudio(_BufferedOutput):
    """The real sound card through sounddevice (PortAudio) streams.

    Streams run at the session rate when the device supports it, else at the device's own
    default rate (the client resamples). Both callbacks only copy memory: blocks go to the
    event loop through ``on_input`` (which must be thread-safe), playback comes from a
    :class:`PlaybackBuffer`.
    """

    def __init__(self, rate: int, input_device: str | int | None = None,
                 output_device: str | int | None = None, *, block_ms: int = BLOCK_MS) -> None:
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
            on_input(indata[:, 0].copy())

        def play(outdata: np.ndarray, frames: int, when: Any, status: Any) -> None:
            if status and status.output_underflow:
                self.underflows += 1
            self._buffer.read_into(outdata[:, 0])

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


class FakeAudio(_BufferedOutput):
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


class _Resampler:
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


# -- terminal ---------------------------------------------------------------------------------


LATENCY_LABELS = (("vad_ms", "end of speech heard"), ("transcript_ms", "transcript"),
                  ("llm_first_token_ms", "first token"), ("first_audio_ready_ms", "audio ready"))


def format_latency(latency: dict[str, float]) -> str:
    """``ResponseDone.latency`` as one line (milliseconds after the end of the user's speech)."""
    stages = ", ".join(f"{label} {latency[key]:.0f}" for key, label in LATENCY_LABELS
                       if key in latency)
    total = latency.get("first_audio_sent_ms")
    head = (f"{total:.0f} ms from the end of your speech to the first reply audio"
            if total is not None else "no reply audio")
    return f"latency: {head}" + (f" ({stages} ms)" if stages else "")


class Console:
    """What the user sees. On a terminal, partial transcripts update one status line in place;
    elsewhere (a pipe, a test) every line is printed in full."""

    def __init__(self, out: TextIO, err: TextIO, live: bool | None = None) -> None:
        self.out = out
        self.err = err
        self.live = live if live is not None else _isatty(out)
        self._status = False
        self._reply_open = False
        self._last_partial = ""

    def _write(self, text: str) -> None:
        self.out.write(text)
        self.out.flush()

    def _settle(self) -> None:
        """End the status line or the reply line in progress."""
        if self._status:
            self._write("\r\x1b[K")
            self._status = False
        if self._reply_open:
            self._write("\n")
            self._reply_open = False

    def line(self, text: str) -> None:
        self._settle()
        self._write(text + "\n")

    def note(self, text: str) -> None:
        self.line(f"  ({text})")

    def error(self, text: str) -> None:
        self._settle()
        self.err.write(f"{PROGRAM}: {text}\n")
        self.err.flush()

    def status(self, text: str) -> None:
        """A transient line (terminal only)."""
        if not self.live:
            return
        if self._reply_open:
            self._settle()
        self._write("\r\x1b[K" + text)
        self._status = True

    def partial(self, confirmed: str, tentative: str) -> None:
        text = " ".join(part for part in (confirmed.strip(), tentative.strip()) if part)
        if not text or text == self._last_partial:
            return
        self._last_partial = text
        if self.live:
            self.status(f"you: {confirmed.strip()} \x1b[2m{tentative.strip()}\x1b[0m…")
        else:
            self.line(f"you (partial): {text} …")

    def user(self, text: str, language: str | None) -> None:
        self._last_partial = ""
        if text.strip():
            self.line(f"you: {text.strip()}" + (f"  [{language}]" if language else ""))
        else:
            self.note("nothing intelligible heard")

    def reply_delta(self, delta: str) -> None:
        if self._status:
            self._write("\r\x1b[K")
            self._status = False
        if not self._reply_open:
            self._write("assistant: ")
            delta = delta.lstrip()
            self._reply_open = True
        self._write(delta)

    def reply_end(self) -> None:
        if self._reply_open:
            self._write("\n")
            self._reply_open = False


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


# -- the client -------------------------------------------------------------------------------


@dataclasses.dataclass
class Options:
    url: str = DEFAULT_URL
    key: str | None = None
    language: str | None = None
    rate: int = 24_000
    push_to_talk: bool = False
    mute_while_speaking: bool = False
    mute_tail_s: float = 0.3
    reconnect: bool = False
    instructions: str | None = None
    reconnect_delays_s: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0, 8.0)  # then the last again
    open_timeout_s: float = 10.0


@dataclasses.dataclass
class _Reply:
    response_id: str
    start: int | None = None  # device position (played_samples) of its first sample
    samples: int = 0


@dataclasses.dataclass(frozen=True)
class Interruption:
    response_id: str
    played_ms: float  # how much of the reply the user heard
    played_samples: int  # the device's played_samples when playback stopped


_START, _STOP = "start", "stop"  # push-to-talk markers on the microphone queue
_MAX_QUEUED_BLOCKS = 250  # 5 s of microphone audio; older blocks are dropped beyond that


class MicApp:
    """Microphone -> server -> speaker, for one user, across reconnections.

    ``keys`` feeds push-to-talk lines (``None`` ends input); by default they are read from
    standard input in a daemon thread. The counters and lists below are for tests and tools.
    """

    def __init__(self, options: Options, audio: AudioDevice, *, out: TextIO | None = None,
                 err: TextIO | None = None, keys: asyncio.Queue[str | None] | None = None,
                 live: bool | None = None,
                 on_event: Callable[[Event], None] | None = None) -> None:
        if options.rate not in SUPPORTED_RATES:
            raise ValueError(f"rate must be one of {SUPPORTED_RATES}")
        self.options = options
        self.audio = audio
        self.console = Console(out or sys.stdout, err or sys.stderr, live)
        self._keys = keys
        self._on_event = on_event
        self._loop: asyncio.AbstractEventLoop | None = None
        self._mic: asyncio.Queue[np.ndarray | str] | None = None
        self._stop: asyncio.Event | None = None
        self._online = False
        self._talking = False  # push-to-talk: the user pressed Enter to talk
        self._turn_samples = 0
        self._mute_until = 0.0
        self._reply: _Reply | None = None
        self._active_response: str | None = None
        self._dropped: set[str] = set()  # interrupted responses whose late audio is ignored
        self._expected_errors: collections.Counter[str] = collections.Counter()
        self._out_resampler = _Resampler(options.rate, audio.output_rate)
        # Observable state.
        self.connections = 0
        self.session_ids: list[str] = []
        self.sent_samples = 0  # microphone samples (device rate) sent to the server
        self.muted_samples = 0  # microphone samples held back by --mute-while-speaking
        self.speech_started = 0
        self.transcripts: list[str] = []
        self.responses: list[ResponseDone] = []
        self.interruptions: list[Interruption] = []
        self.truncations: list[int] = []  # audio_end_ms confirmed by conversation.item.truncated
        self.errors: list[ServerError] = []

    def stop(self) -> None:
        """Ask :meth:`run` to finish (thread-safe)."""
        if self._loop is not None and self._stop is not None:
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._stop.set)

    async def run(self) -> int:
        """Connect, talk until stopped; returns the exit status (0 = stopped by the user)."""
        self._loop = asyncio.get_running_loop()
        self._mic = asyncio.Queue()
        self._stop = asyncio.Event()
        client: VoiceClient | None = None
        try:
            try:
                client = await VoiceClient.connect(self.options.url, api_key=self.options.key,
                                                   open_timeout=self.options.open_timeout_s)
            except VoiceClientError as error:
                self.console.error(_explain(error))
                return 1
            try:
                self.audio.start(self._on_input)
            except DeviceError as error:
                self.console.error(str(error))
                await client.close()
                return 1
            if self.options.push_to_talk and self._keys is None:
                self._keys = asyncio.Queue()
                _read_stdin_lines(self._loop, self._keys)
            while True:
                lost = await self._session(client)
                if lost is None:
                    return 0
                self.console.error(f"connection lost: {lost}")
                if not self.options.reconnect:
                    return 1
                reconnected = await self._reconnect()
                if reconnected is None:
                    return 0 if self._stop.is_set() else 1
                client = reconnected
        finally:
            self._online = False
            self.audio.close()
            if client is not None and not client.closed:  # Ctrl-C: say goodbye to the server
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(client.close(), 2)

    def _on_input(self, block: np.ndarray) -> None:
        """Called from the audio thread: hand the block to the event loop."""
        loop = self._loop
        if loop is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop is closing
            loop.call_soon_threadsafe(self._offer, block)

    def _offer(self, item: np.ndarray | str) -> None:
        assert self._mic is not None
        if isinstance(item, np.ndarray) and not self._online:
            return
        while self._mic.qsize() >= _MAX_QUEUED_BLOCKS:
            self._mic.get_nowait()
        self._mic.put_nowait(item)

    # -- one connection --------------------------------------------------------------------

    async def _session(self, client: VoiceClient) -> str | None:
        """Runs one connection; returns None when stopped, else why the connection was lost."""
        assert self._mic is not None and self._stop is not None
        options = self.options
        self.connections += 1
        self.session_ids.append(client.session_id)
        self._reply = None
        self._active_response = None
        self._talking = False
        try:
            await client.configure(input_rate=options.rate, output_rate=options.rate,
                                   server_vad=not options.push_to_talk,
                                   language=options.language, instructions=options.instructions)
        except Exception as error:  # the connection closed right away
            return _describe_close(client, error)
        while not self._mic.empty():  # nothing recorded while offline is sent
            self._mic.get_nowait()
        self._online = True
        again = "re" if self.connections > 1 else ""
        mode = ("push-to-talk: press Enter to talk, Enter again to send"
                if options.push_to_talk else
                "hands-free, muted while the assistant speaks" if options.mute_while_speaking
                else "hands-free: just talk")
        self.console.line(f"{again}connected to {options.url} (session {client.session_id}); "
                          f"{mode}; Ctrl-C quits")
        tasks = [asyncio.ensure_future(self._receive(client)),
                 asyncio.ensure_future(self._send(client))]
        if options.push_to_talk:
            tasks.append(asyncio.ensure_future(self._read_keys(client)))
        stopping = asyncio.ensure_future(self._stop.wait())
        try:
            done, _ = await asyncio.wait([*tasks, stopping], return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._online = False
            for task in [*tasks, stopping]:
                task.cancel()
            await asyncio.gather(*tasks, stopping, return_exceptions=True)
        self.console.reply_end()
        if self._stop.is_set():
            with contextlib.suppress(Exception):
                await client.close()
            return None
        failure = next((t.exception() for t in done if t is not stopping
                        and not t.cancelled() and t.exception() is not None), None)
        with contextlib.suppress(Exception):
            await client.close()
        return _describe_close(client, failure)

    async def _reconnect(self) -> VoiceClient | None:
        assert self._stop is not None
        delays = self.options.reconnect_delays_s
        attempt = 0
        while True:
            delay = delays[min(attempt, len(delays) - 1)]
            attempt += 1
            self.console.note(f"reconnecting in {delay:g} s")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._stop.wait()
            if self._stop.is_set():
                return None
            try:
                return await VoiceClient.connect(self.options.url, api_key=self.options.key,
                                                 open_timeout=self.options.open_timeout_s)
            except VoiceClientError as error:
                if _refused_for_good(error):
                    self.console.error(_explain(error))
                    return None
                self.console.note(f"still no connection: {error}")

    async def _send(self, client: VoiceClient) -> None:
        """Microphone blocks (and push-to-talk markers) to the server, in order."""
        assert self._mic is not None
        options = self.options
        resample = _Resampler(self.audio.input_rate, options.rate)
        while True:
            item = await self._mic.get()
            if isinstance(item, str):
                await self._push_to_talk(client, item)
                continue
            if options.push_to_talk and not self._talking:
                continue
            if options.mute_while_speaking and self._assistant_audible():
                self.muted_samples += item.size
                continue
            await client.send_audio(resample(item), options.rate)
            self.sent_samples += item.size
            self._turn_samples += item.size

    def _assistant_audible(self) -> bool:
        now = time.monotonic()
        if self.audio.pending_samples > 0:
            self._mute_until = now + self.options.mute_tail_s
        return now < self._mute_until

    async def _push_to_talk(self, client: VoiceClient, marker: str) -> None:
        if marker == _START:
            self._talking = True
            self._turn_samples = 0
            await client.clear()
            return
        self._talking = False
        if self._turn_samples < self.audio.input_rate // 5:
            self.console.note("too short: press Enter, talk, then press Enter")
            await client.clear()
            return
        await client.commit()
        await client.create_response()
        self.console.status("thinking…")

    async def _read_keys(self, client: VoiceClient) -> None:
        assert self._keys is not None and self._mic is not None
        pressed = False
        self.console.note("press Enter to talk")
        while True:
            line = await self._keys.get()
            if line is None or line.strip().lower() in ("q", "quit", "exit"):
                self.stop()
                return
            pressed = not pressed
            if pressed:
                await self._barge_in(client, cancel=True)
                self._offer(_START)
                self.console.note("listening… press Enter to send")
                self.console.status("● recording")
            else:
                self._offer(_STOP)

    async def _barge_in(self, client: VoiceClient, *, cancel: bool) -> None:
        """The user talks over the reply: stop playback now and tell the server what was heard.

        With ``cancel`` (push-to-talk) the response is cancelled first; under server_vad the
        server has cancelled it already. The cancel must come before the truncate: the server's
        own estimate on cancel would otherwise overwrite the client's figure.
        """
        if cancel and self._active_response is not None:
            self._dropped.add(self._active_response)
            self._expected_errors["response_cancel_not_active"] += 1
            await client.cancel()
        reply = self._reply
        if reply is None or reply.start is None:
            return
        self._reply = None
        self._dropped.add(reply.response_id)
        if self.audio.played_samples >= reply.start + reply.samples:
            return  # it had finished playing
        played = self.audio.stop_playback()
        heard = min(max(played - reply.start, 0), reply.samples)
        played_ms = heard * 1000 / self.audio.output_rate
        self.interruptions.append(Interruption(reply.response_id, played_ms, played))
        self._expected_errors["item_not_found"] += 1  # the server may have dropped an empty item
        await client.interrupt(played_ms)
        self.console.reply_end()
        self.console.note(f"interrupted after {played_ms / 1000:.1f} s of the reply")

    async def _receive(self, client: VoiceClient) -> None:
        async for event in client.events():
            if self._on_event is not None:
                self._on_event(event)
            await self._handle(client, event)

    async def _handle(self, client: VoiceClient, event: Event) -> None:
        console = self.console
        if isinstance(event, SpeechStarted):
            self.speech_started += 1
            if not self.options.push_to_talk:
                await self._barge_in(client, cancel=False)
            console.status("listening…")
        elif isinstance(event, SpeechStopped):
            console.status("…")
        elif isinstance(event, TranscriptDelta):
            console.partial(event.confirmed, event.tentative)
        elif isinstance(event, Transcript):
            self.transcripts.append(event.text)
            console.user(event.text, event.language)
        elif isinstance(event, ResponseStarted):
            self._active_response = event.response_id
        elif isinstance(event, ReplyTextDelta):
            if event.response_id not in self._dropped:
                console.reply_delta(event.delta)
        elif isinstance(event, ReplyAudio):
            self._play(event)
        elif isinstance(event, ResponseDone):
            self._finish(event)
        elif isinstance(event, ServerError):
            if self._expected_errors[event.code] > 0:
                self._expected_errors[event.code] -= 1
                return
            self.errors.append(event)
            console.error(f"server error ({event.code}): {event.message}")
        elif isinstance(event, OtherEvent) and event.type == "conversation.item.truncated":
            self.truncations.append(int(event.data.get("audio_end_ms", 0)))

    def _play(self, event: ReplyAudio) -> None:
        if event.response_id in self._dropped:
            return
        reply = self._reply
        if reply is None or reply.response_id != event.response_id:
            reply = self._reply = _Reply(event.response_id)
            self._out_resampler = _Resampler(event.rate or self.options.rate,
                                             self.audio.output_rate)
        samples = self._out_resampler(event.samples)
        position = self.audio.play(samples)
        if reply.start is None:
            reply.start = position
        reply.samples += samples.size

    def _finish(self, event: ResponseDone) -> None:
        self.responses.append(event)
        if self._active_response == event.response_id:
            self._active_response = None
        self.console.reply_end()
        if event.status == "completed":
            if event.latency:
                self.console.line(format_latency(event.latency))
        elif event.response_id not in self._dropped:  # else "interrupted" was shown
            reason = f": {event.reason.replace('_', ' ')}" if event.reason else ""
            self.console.note(f"reply {event.status}{reason}")


def _read_stdin_lines(loop: asyncio.AbstractEventLoop, keys: asyncio.Queue[str | None]) -> None:
    """Feed standard input lines to ``keys`` from a daemon thread (never blocks the loop)."""

    def reader() -> None:
        try:
            for line in sys.stdin:
                loop.call_soon_threadsafe(keys.put_nowait, line)
            loop.call_soon_threadsafe(keys.put_nowait, None)
        except (RuntimeError, ValueError, OSError):
            return

    threading.Thread(target=reader, daemon=True, name="voice-mic-keys").start()


def _status_code(error: BaseException) -> int | None:
    cause = error.__cause__
    response = getattr(cause, "response", None)
    code = getattr(response, "status_code", None)
    return int(code) if isinstance(code, int) else None


def _refused_for_good(error: VoiceClientError) -> bool:
    return _status_code(error) in (401, 403)


def _explain(error: VoiceClientError) -> str:
    message = " ".join(str(error).split())
    if _status_code(error) == 401:
        message += " (wrong or missing API key: pass --key or set VOICE_API_KEY)"
    return message


def _describe_close(client: VoiceClient, failure: BaseException | None) -> str:
    code = client.close_code
    reason = client.close_reason
    if code is None and failure is not None:
        return " ".join(f"{type(failure).__name__}: {failure}".split())
    if code in (None, 1006):
        return "the connection dropped without a goodbye"
    meanings = {1000: "closed", 1001: "going away", 1008: "policy", 1009: "message too big",
                1011: "server error"}
    detail = reason or meanings.get(code, "")
    return f"the server closed the connection ({code}{' ' + detail if detail else ''})"


# -- command line -----------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROGRAM, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default=DEFAULT_URL, help="the service (default: %(default)s)")
    parser.add_argument("--key", default=os.environ.get("VOICE_API_KEY"),
                        help="API key, when the server has keys (default: $VOICE_API_KEY)")
    parser.add_argument("--language", help="pin the language you speak (ISO 639-1, e.g. de); "
                                           "default: detected each turn")
    parser.add_argument("--instructions", help="system instructions for the assistant")
    parser.add_argument("--rate", type=int, choices=SUPPORTED_RATES, default=24_000,
                        help="audio sample rate to and from the server (default: %(default)s)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--push-to-talk", action="store_true",
                      help="manual turns: Enter to talk, Enter to send (see above)")
    mode.add_argument("--mute-while-speaking", action="store_true",
                      help="hands-free without headphones: do not send the microphone while "
                           "the reply plays")
    parser.add_argument("--mute-tail-ms", type=int, default=300,
                        help="with --mute-while-speaking, stay muted this long after the reply "
                             "(default: %(default)s)")
    parser.add_argument("--reconnect", action="store_true",
                        help="reconnect with backoff when the connection drops")
    parser.add_argument("--input-device", help="microphone: number or part of the name")
    parser.add_argument("--output-device", help="speaker: number or part of the name")
    parser.add_argument("--list-devices", action="store_true",
                        help="list input and output devices and exit")
    return parser


def main(argv: Sequence[str] | None = None, *, audio: AudioDevice | None = None,
         out: TextIO | None = None, err: TextIO | None = None,
         keys: asyncio.Queue[str | None] | None = None) -> int:
    """The ``voice-mic`` command. ``audio``, ``out``, ``err`` and ``keys`` replace the sound
    card, the terminal and the keyboard (for tests)."""
    args = build_parser().parse_args(argv)
    out = out or sys.stdout
    err = err or sys.stderr
    try:
        if args.list_devices:
            list_devices(out)
            return 0
        if audio is None:
            audio = SoundDeviceAudio(args.rate, args.input_device, args.output_device)
    except DeviceError as error:
        print(f"{PROGRAM}: {error}", file=err)
        return 1
    options = Options(url=args.url, key=args.key or None, language=args.language,
                      rate=args.rate, push_to_talk=args.push_to_talk,
                      mute_while_speaking=args.mute_while_speaking,
                      mute_tail_s=max(0, args.mute_tail_ms) / 1000, reconnect=args.reconnect,
                      instructions=args.instructions)
    app = MicApp(options, audio, out=out, err=err, keys=keys)
    try:
        return asyncio.run(app.run())
    except KeyboardInterrupt:
        print("", file=out)
        return 0
    except DeviceError as error:
        print(f"{PROGRAM}: {error}", file=err)
        return 1


if __name__ == "__main__":
    sys.exit(main())
