"""A user turn on its way to an answer: its committed audio and transcript, the final decode
started at its first pause, and whether its words end a sentence. Shared by the session's
endpointing (``voice/endpointing.py``) and its interruptions."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import numpy as np

from asr.transcript import Transcript
from voice.conversation import Item
from voice.reply_settings import TurnTimes


@dataclasses.dataclass
class Speculation:
    """The final decode of a paused turn, started before the turn is known to be over."""

    at: int  # media time where the speech stopped
    audio: np.ndarray
    decoding: asyncio.Future[Transcript]


def retrieve(future: asyncio.Future[Any]) -> None:
    """Mark the outcome of work nobody may await (a dropped speculation, a draft nobody
    adopted) as seen, so that its error is not reported as never retrieved."""
    if not future.cancelled():
        future.exception()


@dataclasses.dataclass
class UserTurn:
    """A committed user audio item on its way to a transcript."""

    item: Item
    audio: np.ndarray
    times: TurnTimes
    transcript: asyncio.Future[Transcript] | None = None
    speech_s: float | None = None  # from the VAD's start of speech to its end, if it heard them


def ends_sentence(text: str) -> bool:
    """Whether Whisper ended ``text`` with a full stop, a question or an exclamation mark
    (closing quotes aside); an ellipsis trails off and ends nothing."""
    text = text.rstrip().rstrip("\"'»”’)]")
    return text.endswith((".", "?", "!", "。", "？", "！")) and not text.endswith(("..", "…"))
