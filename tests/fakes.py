"""Fake engines for session tests: fast, scripted, and observable.

They implement the protocols in ``voice/ports.py``. Speech is simulated with loud audio: the
fake detector treats any 32 ms window with an RMS above 0.05 as speech. Faults are scripted
too: put exceptions in ``failures`` and the next calls raise them, in order.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence

import numpy as np

from asr.vad import VadConfig, VadEvent, VadEventType
from asr.whisper import TranscribeOptions, Transcript
from llm.chat import Message, SamplingOptions
from tts.piper import SpeechChunk
from voice.ports import Engines
from voice.schedulers import Scheduler

WINDOW = 512
RATE = 16_000


class FakeDetector:
    """An energy VAD with the same event contract as :class:`asr.vad.StreamingVad`."""

    def __init__(self, config: VadConfig) -> None:
        self.config = config
        self.reset()

    def reset(self) -> None:
        self.in_speech = False
        self.last_probability = 0.0
        self._pending = np.zeros(0, np.float32)
        self._position = 0
        self._start = 0
        self._last_speech = 0
        self._utterance: list[np.ndarray] = []

    @property
    def utterance_samples(self) -> int:
        return len(self._utterance) * WINDOW

    def current_utterance(self) -> np.ndarray:
        return np.concatenate(self._utterance) if self._utterance else np.zeros(0, np.float32)

    def will_score(self, samples: int) -> bool:
        return self._pending.size + samples >= WINDOW

    def feed(self, samples: np.ndarray) -> list[VadEvent]:
        data = np.concatenate([self._pending, samples])
        events = []
        count = data.size // WINDOW
        for index in range(count):
            window = data[index * WINDOW:(index + 1) * WINDOW]
            loud = float(np.sqrt(np.mean(window**2))) > 0.05
            self.last_probability = 1.0 if loud else 0.0
            start = self._position
            self._position += WINDOW
            if not self.in_speech:
                if loud:
                    self.in_speech = True
                    self._start, self._last_speech = start, self._position
                    self._utterance = [window]
                    events.append(VadEvent(VadEventType.SPEECH_STARTED, start))
                continue
            self._utterance.append(window)
            if loud:
                self._last_speech = self._position
            if self._position - self._last_speech >= self.config.silence_duration_ms * 16:
                audio = np.concatenate(self._utterance)[: self._last_speech - self._start]
                events.append(VadEvent(VadEventType.SPEECH_STOPPED, self._start,
                                       self._last_speech, audio, "silence"))
                self.in_speech = False
                self._utterance = []
        self._pending = data[count * WINDOW:]
        return events


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
        self.threads: list[threading.Thread] = []  # where each stream() was called
        # (words streamed first, exception): the next replies fail like this, in order.
        self.failures: list[tuple[int, Exception]] = []
        self.tokens_after_cancel = 0
        self.active = 0
        self.closed = 0
        self._lock = threading.Lock()

    def stream(self, messages: Sequence[Message], options: SamplingOptions | None = None,
               cancel: threading.Event | None = None) -> Iterator[str]:
        self.requests.append(list(messages))
        self.options.append(options)
        self.threads.append(threading.current_thread())
        reply = self.replies.pop(0) if self.replies else "Okay."
        failure = self.failures.pop(0) if self.failures else None
        if failure is not None and failure[0] == 0:
            raise failure[1]
        return self._tokens(reply, cancel, failure)

    def _tokens(self, reply: str, cancel: threading.Event | None,
                failure: tuple[int, Exception] | None = None) -> Iterator[str]:
        with self._lock:
            self.active += 1
        try:
            for index, word in enumerate(reply.split(" ")):
                time.sleep(self.delay_s)
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
                 voices: FakeVoices | None = None) -> Engines:
    return Engines(new_detector=FakeDetector, transcriber=transcriber, chat=chat,
                   voices=voices or FakeVoices(), vad=Scheduler("fake-vad", 2),
                   asr=Scheduler("fake-asr", 4), llm=Scheduler("fake-llm", 8),
                   tts=Scheduler("fake-tts", 4))


def tone(seconds: float, rate: int = 24_000, amplitude: float = 0.5) -> np.ndarray:
    """Loud int16 audio that the fake detector hears as speech."""
    t = np.arange(int(seconds * rate)) / rate
    return (np.sin(2 * np.pi * 220 * t) * amplitude * 32767).astype(np.int16)


def silence(seconds: float, rate: int = 24_000) -> np.ndarray:
    return np.zeros(int(seconds * rate), np.int16)
