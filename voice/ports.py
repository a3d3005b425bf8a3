"""What the session needs from the engines, as small protocols it owns (tests inject fakes).

All methods here are blocking: the session calls them from worker threads only.
"""

from __future__ import annotations

import collections
import dataclasses
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from asr.transcript import TranscribeOptions, Transcript
from asr.vad import VadConfig, VadEvent
from llm.chat import Message, SamplingOptions
from llm.paced import Pace
from llm.tools import Tool
from tts.piper import SpeechChunk
from voice.schedulers import Scheduler


class SpeechDetector(Protocol):
    """One stream's VAD (see :class:`asr.vad.StreamingVad`)."""

    in_speech: bool
    last_probability: float  # speech probability of the latest window

    def will_score(self, samples: int) -> bool: ...

    def feed(self, samples: np.ndarray) -> list[VadEvent]: ...

    def reset(self) -> None: ...

    def end_after(self, silence_ms: int) -> None: ...

    @property
    def utterance_samples(self) -> int: ...

    def current_utterance(self) -> np.ndarray: ...


class ScoresTurnEnd(Protocol):
    """The semantic turn model (see :class:`asr.turn.SmartTurnModel`)."""

    def probability(self, audio: np.ndarray) -> float:
        """How likely the user's turn (float32 16 kHz, up to now) is complete."""
        ...


class Transcribes(Protocol):
    def transcribe(self, audio: np.ndarray,
                   options: TranscribeOptions | None = None) -> Transcript: ...

    def transcribe_batch(self, requests: Sequence[tuple[np.ndarray, TranscribeOptions | None]],
                         ) -> list[Transcript]: ...


class StreamsReplies(Protocol):
    def stream(self, messages: Sequence[Message], options: SamplingOptions | None = None,
               cancel: threading.Event | None = None,
               tools: Sequence[Tool] = (), *, pace: Pace | None = None) -> Iterator[str]: ...


@runtime_checkable
class ReportsBatches(Protocol):
    """A reply engine that decodes several replies together tells each batch's size."""

    def report_batches(self, observe: Callable[[int], None]) -> None: ...


class Speaks(Protocol):
    kind: str
    name: str
    language: str

    def synthesize(self, text: str) -> Iterator[SpeechChunk]: ...


class Voices(Protocol):
    def for_language(self, language: str) -> Speaks: ...


class Activity:
    """How many replies are being written or spoken right now, over all sessions (the
    session counts its own; read to shed optional work under load), and of them (and of the
    replies written ahead of a turn's end) how many someone waits for the first words of.
    Changed on the event loop only; :attr:`awaited` may be read from any thread."""

    def __init__(self) -> None:
        self.replies = 0
        self.awaited = 0  # replies and drafts whose first words (or text) are still awaited
        self._awaited_by: collections.Counter[str] = collections.Counter()

    def await_first_words(self, owner: str) -> Callable[[], None]:
        """Count a reply (or draft) of session ``owner`` whose user waits for its first words;
        returns the function that says they came (or never will; calling it again does
        nothing)."""
        self.awaited += 1
        self._awaited_by[owner] += 1
        counted = True

        def came() -> None:
            nonlocal counted
            if counted:
                counted = False
                self.awaited -= 1
                self._awaited_by[owner] -= 1
                if not self._awaited_by[owner]:
                    del self._awaited_by[owner]
        return came

    def others_awaited(self, owner: str) -> bool:
        """Whether a session other than ``owner`` waits for a reply's first words."""
        return self.awaited > self._awaited_by[owner]


@dataclasses.dataclass(frozen=True)
class Engines:
    """The shared, process-wide engines and the schedulers their blocking calls run on
    (final and partial transcripts share ``asr``, partials at background priority)."""

    new_detector: Callable[[VadConfig], SpeechDetector]
    transcriber: Transcribes
    chat: StreamsReplies
    voices: Voices
    vad: Scheduler
    asr: Scheduler
    llm: Scheduler
    tts: Scheduler
    activity: Activity = dataclasses.field(default_factory=Activity)
    turn_model: ScoresTurnEnd | None = None  # None: semantic_vad falls back to silence only
    # Writes the replies whose prompt shows tools (None: ``chat`` does): a bigger model calls
    # the right function far more often than the small conversational one.
    tools_chat: StreamsReplies | None = None

    def first_words_awaited(self) -> bool:
        """Whether someone waits now for a transcript or for a reply's first words: the work
        a reply far ahead of its own listener gives way to (``voice.pacing``). Any thread."""
        return self.activity.awaited > 0 or self.asr.urgent > 0

    def chat_for(self, tools: bool) -> StreamsReplies:
        """The engine that writes a reply, given whether its prompt shows tools."""
        return self.tools_chat if tools and self.tools_chat is not None else self.chat

    @property
    def schedulers(self) -> tuple[Scheduler, ...]:
        return (self.vad, self.asr, self.llm, self.tts)
