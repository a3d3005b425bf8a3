"""Partial transcripts while the user is still speaking, with a stable prefix.

The growing utterance is re-decoded every ``interval_s`` seconds of new audio. Words that two
consecutive hypotheses agree on from the start are *confirmed* (LocalAgreement-2, as in
ufal's whisper_streaming) and never change afterwards; the rest of the newest hypothesis is
*tentative*. At the end of speech, :meth:`PartialTranscriber.finish` returns the one final
decode of the whole utterance, which is the transcript of record.

Keeping partials from slowing the final result down is the caller's side of the contract
(see ``voice/session.py``): partial decodes run on their own worker with at most one in flight,
are skipped while one is running, and are abandoned once speech has stopped. This class is
synchronous and holds per-utterance state only; use one per session.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Protocol

import numpy as np

from asr.transcript import TranscribeOptions, Transcript
from asr.whisper import SAMPLE_RATE

_WORD = re.compile(r"\S+")


class Transcribes(Protocol):
    def transcribe(self, audio: np.ndarray,
                   options: TranscribeOptions | None = None) -> Transcript: ...


@dataclasses.dataclass(frozen=True)
class PartialTranscript:
    """``confirmed`` never changes once returned (it only grows); ``delta`` is what it grew by
    since the previous partial; ``tentative`` may still change."""

    confirmed: str
    tentative: str
    delta: str
    language: str
    audio_s: float
    # The utterance's language once a partial detected it surely (kept for its later
    # partials); None until then.
    sure_language: str | None = None

    @property
    def text(self) -> str:
        return f"{self.confirmed} {self.tentative}".strip()


def _normalise(word: str) -> str:
    return re.sub(r"[^\w]", "", word.lower())


def agreed_prefix(previous: list[str], current: list[str]) -> int:
    """How many leading words two hypotheses share (ignoring case and punctuation)."""
    count = 0
    for a, b in zip(previous, current, strict=False):
        if _normalise(a) != _normalise(b):
            break
        count += 1
    return count


KEEP_LANGUAGE_MIN_PROBABILITY = 0.7
"""A partial's detected language is kept for the utterance's later partials only when Whisper
was at least this sure of it. On half a second of speech base's detection is a guess (an
English question scored 0.2 for English on one CPU and came out Spanish on another), and a
guess kept would make every later partial a translation."""


class PartialTranscriber:
    """One utterance's partial transcripts. Call :meth:`due` with the audio so far, then
    :meth:`update` when it says a decode is due; :meth:`finish` at end of speech."""

    def __init__(self, transcriber: Transcribes, options: TranscribeOptions | None = None, *,
                 interval_s: float = 1.0, min_audio_s: float = 0.8,
                 max_new_tokens: int = 64) -> None:
        self.transcriber = transcriber
        self.options = options or TranscribeOptions()
        self.interval_s = interval_s
        self.min_audio_s = min_audio_s
        self.max_new_tokens = max_new_tokens
        self.reset()

    def reset(self) -> None:
        self._confirmed: list[str] = []
        self._previous: list[str] = []
        self._decoded_until_s = 0.0
        self._language: str | None = None

    def due(self, audio_samples: int) -> bool:
        """Whether enough new audio has come since the last partial decode."""
        seconds = audio_samples / SAMPLE_RATE
        return seconds >= self.min_audio_s and seconds - self._decoded_until_s >= self.interval_s

    def update(self, audio: np.ndarray) -> PartialTranscript | None:
        """Decode ``audio`` (the utterance so far) and return the new partial. Blocks.

        The first language detected with probability >= ``KEEP_LANGUAGE_MIN_PROBABILITY`` is
        kept for the following partials, which makes them cheaper and steadier; a less sure
        detection is made again at the next partial. The final decode detects it afresh.
        """
        self._decoded_until_s = audio.size / SAMPLE_RATE
        options = dataclasses.replace(
            self.options, max_new_tokens=self.max_new_tokens,
            language=self.options.language or self._language)
        transcript = self.transcriber.transcribe(audio, options)
        if not transcript.text:
            return None
        if self._language is None and (
                transcript.language_probability >= KEEP_LANGUAGE_MIN_PROBABILITY):
            self._language = transcript.language
        words = _WORD.findall(transcript.text)
        agreed = agreed_prefix(self._previous, words)
        self._previous = words
        new = words[len(self._confirmed):agreed] if agreed > len(self._confirmed) else []
        self._confirmed.extend(new)
        tentative = words[max(agreed, len(self._confirmed)):]
        return PartialTranscript(
            confirmed=" ".join(self._confirmed),
            tentative=" ".join(tentative),
            delta=" ".join(new),
            language=transcript.language,
            audio_s=self._decoded_until_s,
            sure_language=self._language,
        )

    def finish(self, audio: np.ndarray) -> Transcript:
        """The final transcript of the whole utterance (a full decode). Blocks."""
        self.reset()
        return self.transcriber.transcribe(audio, self.options)
