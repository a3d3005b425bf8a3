"""What a Whisper decode is worth: the transcript's types, the hallucination guards that
judge a decode's segments, and the choice of language among the detected ones.

No model here: :mod:`asr.whisper` decodes, this module decides what of it to keep.
"""

from __future__ import annotations

import dataclasses
import logging
import zlib
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class TranscribeOptions:
    """Per-call settings. ``language`` pins the language; ``allowed_languages`` restricts
    detection to a set (the most probable language within the set wins). With
    ``previous_language`` (the conversation's so far), detection has hysteresis: another
    language wins only when its probability beats the previous one's by ``switch_margin``, so
    a short or mumbled turn does not flip the conversation's language while a clear switch
    does."""

    language: str | None = None
    allowed_languages: tuple[str, ...] | None = None
    previous_language: str | None = None
    switch_margin: float = 0.2
    beam_size: int = 1
    # Hallucination guards, applied per segment (Whisper's own rules plus a silence gate).
    no_speech_threshold: float = 0.6
    log_prob_threshold: float = -1.0
    compression_ratio_threshold: float = 2.4
    max_new_tokens: int | None = None
    # A decode in a fitted window that looks wrong is decoded again in the 30 s window (about
    # 0.9 s on a 2-core CPU). False keeps the fitted decode's trustworthy part instead (none
    # of a loop): for a quick look at a few words (what someone said over a reply), not for a
    # final transcript.
    retry_full_window: bool = True
    # Whisper's previous-text prompt (the protocol's transcription.prompt): words and spellings
    # to expect, such as an app's room names. Only its last ~220 tokens count.
    prompt: str | None = None
    # A first turn (no language pinned, none so far) whose detected language is less probable
    # than this (within the allowed ones) is decoded a second time in the runner-up language,
    # and the decode Whisper is surer of wins (:func:`surer`). Short or unusual speech is
    # often detected wrongly by a few tenths, and a decode in the wrong language is garbage
    # (docs/benchmarks.md, "A second language for a close call"). None: one decode.
    second_language_below: float | None = None
    second_language_margin: float = 0.1


@dataclasses.dataclass(frozen=True)
class Transcript:
    """What was said. ``text`` is empty when nothing trustworthy was heard; ``rejected`` then
    says why (``"silence"``, ``"no_speech"``, ``"low_confidence"``, ``"repetitive"``)."""

    text: str
    language: str
    language_probability: float
    no_speech_probability: float
    avg_log_probability: float
    compression_ratio: float
    duration_s: float
    decode_s: float
    rejected: str | None = None


def compression_ratio(text: str) -> float:
    data = text.encode("utf-8")
    return len(data) / max(1, len(zlib.compress(data)))



class Segment(NamedTuple):
    """The fields of a faster-whisper segment that :func:`judge` reads."""

    text: str
    avg_logprob: float
    compression_ratio: float
    no_speech_prob: float


def judge(segments: Sequence[Any], language: str, probability: float, duration: float,
           decode_s: float, options: TranscribeOptions) -> Transcript:
    kept: list[str] = []
    reasons: list[str] = []
    for segment in segments:
        text = segment.text.strip()
        if not text:
            continue
        if (segment.no_speech_prob > options.no_speech_threshold
                and segment.avg_logprob < options.log_prob_threshold):
            reasons.append("no_speech")
        elif segment.compression_ratio > options.compression_ratio_threshold:
            reasons.append("repetitive")
        elif segment.avg_logprob < options.log_prob_threshold - 0.5:
            reasons.append("low_confidence")
        else:
            kept.append(text)
    text = " ".join(kept).strip()
    no_speech = max((s.no_speech_prob for s in segments), default=1.0)
    log_prob = (float(np.mean([s.avg_logprob for s in segments])) if segments else 0.0)
    if reasons:
        logger.info("dropped %d whisper segment(s) as %s", len(reasons), ",".join(reasons))
    return Transcript(
        text=text,
        language=language,
        language_probability=probability,
        no_speech_probability=float(no_speech),
        avg_log_probability=log_prob,
        compression_ratio=compression_ratio(text) if text else 0.0,
        duration_s=duration,
        decode_s=decode_s,
        rejected=None if text else (reasons[0] if reasons else "no_speech"),
    )




def pick_language(scores: Sequence[tuple[str, float]],
                   options: TranscribeOptions) -> tuple[str, float]:
    """The language to decode from CTranslate2's detection scores (``("<|de|>", p)`` pairs),
    and its probability (renormalised within the allowed languages): the most probable one,
    unless the previous language is within ``switch_margin`` of it (hysteresis)."""
    probabilities = {token[2:-2]: float(p) for token, p in scores}
    allowed = options.allowed_languages or tuple(probabilities)
    total = sum(probabilities.get(code, 0.0) for code in allowed) or 1.0
    language = max(allowed, key=lambda code: probabilities.get(code, 0.0))
    best = probabilities.get(language, 0.0) / total
    previous = options.previous_language
    if previous is not None and previous != language and previous in allowed:
        kept = probabilities.get(previous, 0.0) / total
        if best - kept < options.switch_margin:
            return previous, kept
    return language, best


def runner_up(scores: Sequence[tuple[str, float]], options: TranscribeOptions,
              chosen: tuple[str, float]) -> tuple[str, float] | None:
    """The language to decode a second time in, or None: only for a first turn
    (``previous_language`` None) whose chosen language's probability is below
    ``options.second_language_below``; then the most probable other allowed language."""
    threshold = options.second_language_below
    if threshold is None or options.previous_language is not None or chosen[1] >= threshold:
        return None
    probabilities = {token[2:-2]: float(p) for token, p in scores}
    allowed = [code for code in options.allowed_languages or tuple(probabilities)
               if code != chosen[0]]
    if not allowed:
        return None
    total = sum(probabilities.get(code, 0.0) for code in (*allowed, chosen[0])) or 1.0
    language = max(allowed, key=lambda code: probabilities.get(code, 0.0))
    return language, probabilities.get(language, 0.0) / total


def surer(first: Transcript, second: Transcript, margin: float) -> Transcript:
    """Of two decodes of one utterance in two languages, the one Whisper is surer of: a
    decode that kept words over one that kept none, else the second only when its mean log
    probability beats the first's by ``margin`` (the more probable language keeps a tie)."""
    if not second.text:
        return first
    if not first.text:
        return second
    return second if second.avg_log_probability > first.avg_log_probability + margin else first
