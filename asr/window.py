"""How much audio the Whisper encoder sees for one utterance, and how to read what the decoder
made of a window shorter than Whisper's 30 s.

Whisper was trained on 30 s windows (3000 log-mel frames), the end padded with silence. On a CPU
the encoder is most of the cost of a short utterance (whisper-base int8, 2 cores: about 0.9 s
for 3000 frames, 0.1 s for 800), and CTranslate2's encoder accepts shorter inputs. A window
that ends soon after the speech breaks the model, though. On the 34 real recordings of
``shared/testdata/real``, with 1-2 s of silence after the utterance whisper-base repeated the
sentence, often until the token limit; without timestamps even 3 s made beam search say it
twice; with timestamps one recording still looped at 2.75 s, none at 3 s or more. So the decoder
runs with timestamps in a window of the utterance plus 4 s, and its output is checked for the
signs of the known failures (a runaway decode, text past the end of the audio, a repeated
segment, a decode that stops before the audio ends): :class:`~asr.whisper.Transcriber` decodes
such an utterance again in the full window. Figures: ``docs/benchmarks.md``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

FRAMES_PER_SECOND = 100  # log-mel frames: one per 160 samples at 16 kHz
FULL_WINDOW_FRAMES = 3000  # Whisper's 30 s window
# Silence after the utterance in a fitted window (see the module docstring for the margins that
# failed), and the shortest window: below ~6 s the encoder's cost hardly shrinks any more.
WINDOW_MARGIN_S = 4.0
MIN_WINDOW_S = 6.0
WINDOW_STEP_FRAMES = 100  # windows come in whole seconds, so similar utterances share one
TIMESTAMP_S = 0.02  # the time step of Whisper's timestamp tokens
# Whisper's segment ends are coarse (often whole seconds): one may lie a little past the audio.
END_TOLERANCE_S = 1.0
# A decode longer than this is a loop, not speech: read speech of the real recordings needs
# under 5 tokens per second (timestamps included); fast speech perhaps twice that.
TOKENS_PER_SECOND = 15
TOKENS_MIN = 20


def fitted_window_frames(content_frames: int, *, margin_s: float = WINDOW_MARGIN_S,
                         min_window_s: float = MIN_WINDOW_S) -> int:
    """The encoder window (log-mel frames) for an utterance of ``content_frames`` frames: the
    utterance plus ``margin_s`` of silence, at least ``min_window_s``, rounded up to whole
    seconds and at most Whisper's 30 s window."""
    wanted = max(content_frames + margin_s * FRAMES_PER_SECOND, min_window_s * FRAMES_PER_SECOND)
    frames = math.ceil(wanted / WINDOW_STEP_FRAMES) * WINDOW_STEP_FRAMES
    return min(FULL_WINDOW_FRAMES, frames)


def token_limit(duration_s: float) -> int:
    """The most tokens a decode of ``duration_s`` seconds of audio may produce before it counts
    as a repetition loop."""
    return TOKENS_MIN + math.ceil(TOKENS_PER_SECOND * duration_s)


class TimestampedText(NamedTuple):
    """The text tokens of a timestamped decode, and what looks wrong with it (``None``: nothing;
    else ``"cut short"``, ``"past the end"`` or ``"repeated"``)."""

    tokens: list[int]
    problem: str | None


def read_timestamped(tokens: Sequence[int], timestamp_begin: int,
                     duration_s: float) -> TimestampedText:
    """Read a decode with timestamps (``<|0.00|> text<|2.40|><|2.40|> more<|4.00|>``) of
    ``duration_s`` seconds of audio in a fitted window.

    Text from a segment that starts at or after the end of the audio is dropped: the window's
    padding holds no speech. The signs of the known failures are reported: Whisper ends a window
    with a lone segment start (``<|6.84|><|6.84|>``) when that segment does not fit, so the
    rest of the audio was not transcribed (``"cut short"``); a segment that ends well after the
    audio (``"past the end"``) or says again what an earlier one said (``"repeated"``) is the
    start of a loop.
    """
    text: list[int] = []
    segments: list[list[int]] = []
    start, current = 0.0, []
    for token in tokens:
        if token < timestamp_begin:
            current.append(token)
            continue
        time = (token - timestamp_begin) * TIMESTAMP_S
        if not current:  # the start of a segment
            start = time
            if start >= duration_s:
                return TimestampedText(text, None)
            continue
        if time > duration_s + END_TOLERANCE_S:
            return TimestampedText(text, "past the end")
        if current in segments:
            return TimestampedText(text, "repeated")
        segments.append(current)
        text.extend(current)
        current = []
    text.extend(current)  # a segment the token limit cut off
    if not current and len(tokens) >= 2 and min(tokens[-2:]) >= timestamp_begin:
        return TimestampedText(text, "cut short")
    return TimestampedText(text, None)
