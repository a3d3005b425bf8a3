"""Fake engines for session tests: fast, scripted, and observable.

They implement the protocols in ``voice/ports.py``. Speech is simulated with loud audio: the
fake detector treats any 32 ms window with an RMS above 0.05 as speech. Faults are scripted
too: put exceptions in ``failures`` and the next calls raise them, in order.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence

import numpy as np

from asr.transcript import TranscribeOptions, Transcript
from asr.vad import StreamingVad, VadConfig
from llm.chat import Message, SamplingOptions
from llm.paced import Pace
from llm.tools import Tool
from tts.piper import SpeechChunk
from voice.ports import Engines
from voice.schedulers import Scheduler

WINDOW = 512
RATE = 16_000


class EnergyModel:
    """A stand-in for the Silero network: a window is speech (1.0) when it is loud. Used by a
    real :class:`asr.vad.StreamingVad`, so sessions see the real detector's state machine."""

    def score(self, windows: np.ndarray,
              state: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, tuple[np.ndarray,
                                                                                  np.ndarray]]:
        frames = windows[:, -WINDOW:]
        loud = np.sqrt(np.mean(frames**2, axis=1)) > 0.05
        return loud.astype(np.float32), state


def FakeDetector(config: VadConfig) -> StreamingVad:  # noqa: N802 - a detector factory
    return StreamingVad(EnergyModel(), config)  # type: ignore[arg-type]


class FakeTurnModel:
    """The semantic turn model: a scripted completion probability per call (then ``rest``)."""

    def __init__(self, script: Sequence[float] = (), rest: float = 0.9) -> None:
        self.script = list(script)
        self.rest = rest
        self.calls: list[int] = []  # audio length of each call

    def probability(self, audio: np.ndarray) -> float:
        self.calls.append(audio.size)
        return self.script.pop(0) if self.script else self.rest


class FakeTranscriber:
    """Returns scripted (text, language) pairs for final decodes, in order.

    Partial decodes (``max_new_tokens`` set) return the first words of the next final text.
    """

    def __init__(self, script: Sequence[tuple[str, str]], delay_s: float = 0.02) -> None:
        self.script = list(script)
        self.delay_s = delay_s
        self.calls: list[TranscribeOptions] = []
        self.partial_calls = 0
        self.failures: list[Exception] = []  # raised by the next final decodes
        self.batch_sizes: list[int] = []  # of each transcribe_batch call
        self.observe: Callable[[], object] | None = None  # called at each final decode
        self.observed: list[object] = []

    def transcribe(self, audio: np.ndarray,
                   options: TranscribeOptions | None = None) -> Transcript:
        options = options or TranscribeOptions()
        self.calls.append(options)
        time.sleep(self.delay_s)
        return self._decode(audio, options)

    def transcribe_batch(
        self, requests: Sequence[tuple[np.ndarray, TranscribeOptions | None]],
    ) -> list[Transcript]:
        """One ``delay_s`` for the whole batch. A pending failure fails a batch holding a final
        decode without being used up, so that the final, retried alone, fails with it."""
        self.batch_sizes.append(len(requests))
        batch = [(audio, options or TranscribeOptions()) for audio, options in requests]
        if self.observe is not None:
            self.observed.extend(self.observe() for _, o in batch if o.max_new_tokens is None)
        self.calls.extend(options for _, options in batch)
        time.sleep(self.delay_s)
        if self.failures and len(batch) > 1 and any(o.max_new_tokens is None for _, o in batch):
            raise RuntimeError("a batch holding a failing final decode")
        return [self._decode(audio, options) for audio, options in batch]

    def _decode(self, audio: np.ndarray, options: TranscribeOptions) -> Transcript:
        if options.max_new_tokens is None and self.failures:
            raise self.failures.pop(0)
        text, language = self.script[0] if self.script else ("", "en")
        if options.max_new_tokens is not None:
            self.partial_calls += 1
            words = text.split()
            text = " ".join(words[: 1 + self.partial_calls])
        elif self.script:
            self.script.pop(0)
        if options.language:
            language = options.language
        return Transcript(text, language, 0.9, 0.01, -0.2, 1.2, audio.size / RATE, self.delay_s,
                          None if text else "no_speech")


class FakeChat:
    """Streams the words of scripted replies, one word per token, ``delay_s`` apart."""

    def __init__(self, replies: Sequence[str], delay_s: float = 0.01) -> None:
        self.replies = list(replies)
        self.delay_s = delay_s
        self.requests: list[list[Message]] = []
        self.options: list[SamplingOptions | None] = []
        self.tools: list[list[Tool]] = []  # the tools each stream() was given
        self.threads: list[threading.Thread] = []  # where each stream() was called
        # (words streamed first, exception): the next replies fail like this, in order.
        self.failures: list[tuple[int, Exception]] = []
        self.tokens_after_cancel = 0
        self.paces: list[Pace | None] = []  # the pace each stream() was given
        self.held_s = 0.0  # how long the writing was held by its pace, all replies together
        self.active = 0
        self.closed = 0
        self.prefilled: list[list[Message]] = []  # the conversations prefill() was given
        self.prefill_reloads: list[bool] = []  # whether each prefill() could reload the model
        self.system_turns: list[tuple[str, list[str]]] = []  # cache_system_turn(): tool names
        self._lock = threading.Lock()

    def stream(self, messages: Sequence[Message], options: SamplingOptions | None = None,
               cancel: threading.Event | None = None,
               tools: Sequence[Tool] = (), *, pace: Pace | None = None) -> Iterator[str]:
        self.requests.append(list(messages))
        self.tools.append(list(tools))
        self.options.append(options)
        self.threads.append(threading.current_thread())
        reply = self.replies.pop(0) if self.replies else "Okay."
        if options is not None and options.prefix:
            # A model continues after the opening it was given: script the whole reply.
            assert reply.startswith(options.prefix), (reply, options.prefix)
            reply = reply[len(options.prefix):]
        failure = self.failures.pop(0) if self.failures else None
        if failure is not None and failure[0] == 0:
            raise failure[1]
        self.paces.append(pace)
        return self._tokens(reply, cancel, failure, pace)

    def prefill(self, messages: Sequence[Message], tools: Sequence[Tool] = (), *,
                reload: bool = True) -> bool:
        self.prefilled.append(list(messages))
        self.prefill_reloads.append(reload)
        return True

    def cache_system_turn(self, system: str, tools: Sequence[Tool] = (), *,
                          reload: bool = True) -> bool:
        self.system_turns.append((system, [tool.name for tool in tools]))
        return True

    def _tokens(self, reply: str, cancel: threading.Event | None,
                failure: tuple[int, Exception] | None = None,
                pace: Pace | None = None) -> Iterator[str]:
        with self._lock:
            self.active += 1
        try:
            for index, word in enumerate(reply.split(" ")):
                time.sleep(self.delay_s)
                # Held as ChatModel holds it (between tokens, until the pace or a cancel).
                while (pace is not None and pace(index) > 0
                       and not (cancel is not None and cancel.is_set())):
                    held_from = time.monotonic()
                    time.sleep(0.002)
                    self.held_s += time.monotonic() - held_from
                if cancel is not None and cancel.is_set():
                    self.tokens_after_cancel += 1
                    return
                if failure is not None and index == failure[0]:
                    raise failure[1]
                yield word if index == 0 else " " + word
        finally:
            with self._lock:
                self.active -= 1
                self.closed += 1


class FakeVoice:
    """10 ms of a tone per character, at 16 kHz, after ``delay_s``."""

    kind = "fake"

    def __init__(self, language: str, delay_s: float = 0.01,
                 failures: list[Exception] | None = None) -> None:
        self.language = language
        self.name = f"fake-{language}"
        self.delay_s = delay_s
        self.spoken: list[str] = []
        self.failures = failures if failures is not None else []

    def synthesize(self, text: str) -> Iterator[SpeechChunk]:
        time.sleep(self.delay_s)
        if self.failures:
            raise self.failures.pop(0)
        self.spoken.append(text)
        samples = (np.sin(np.arange(len(text) * 160) * 0.2) * 8000).astype(np.int16)
        yield SpeechChunk(samples, RATE)


class FakeVoices:
    def __init__(self, delay_s: float = 0.01) -> None:
        self.voices: dict[str, FakeVoice] = {}
        self.requested: list[str] = []
        self.delay_s = delay_s
        self.failures: list[Exception] = []  # shared by every voice: the next pieces fail

    def for_language(self, language: str) -> FakeVoice:
        self.requested.append(language)
        return self.voices.setdefault(language,
                                      FakeVoice(language, self.delay_s, self.failures))


def fake_engines(transcriber: FakeTranscriber, chat: FakeChat,
                 voices: FakeVoices | None = None,
                 turn_model: FakeTurnModel | None = None,
                 tools_chat: FakeChat | None = None) -> Engines:
    return Engines(new_detector=FakeDetector, transcriber=transcriber, chat=chat,
                   voices=voices or FakeVoices(), vad=Scheduler("fake-vad", 2),
                   asr=Scheduler("fake-asr", 4), llm=Scheduler("fake-llm", 8),
                   tts=Scheduler("fake-tts", 4), turn_model=turn_model, tools_chat=tools_chat)


def tone(seconds: float, rate: int = 24_000, amplitude: float = 0.5) -> np.ndarray:
    """Loud int16 audio that the fake detector hears as speech."""
    t = np.arange(int(seconds * rate)) / rate
    return (np.sin(2 * np.pi * 220 * t) * amplitude * 32767).astype(np.int16)


def silence(seconds: float, rate: int = 24_000) -> np.ndarray:
    return np.zeros(int(seconds * rate), np.int16)
