"""A user turn on its way to an answer: its committed audio and transcript, the final decode
started at its first pause, and whether its words end a sentence. Shared by the session's
endpointing (``voice/endpointing.py``) and its interruptions."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import re
from typing import Any

import numpy as np

from asr.transcript import Transcript
from voice.conversation import Item
from voice.reply_settings import TurnTimes

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class Speculation:
    """The final decode of a paused turn, started before the turn is known to be over; on a
    CPU that decodes two utterances at once, with a wider beam's decode of the same audio
    beside it (``refining``): the reply written ahead starts on the greedy words, and the
    wider beam's words replace them where they differ (:meth:`best`)."""

    at: int  # media time where the speech stopped
    audio: np.ndarray
    decoding: asyncio.Future[Transcript]
    refining: asyncio.Future[Transcript] | None = None

    def cancel(self) -> None:
        """The user went on: neither transcript is wanted (a decode already running still
        runs to its end on its worker)."""
        self.decoding.cancel()
        if self.refining is not None:
            self.refining.cancel()

    def ready(self) -> Transcript | None:
        """The best transcript decoded so far: the wider beam's where it is ready and its
        words differ from the greedy decode's, else the greedy one; None before the greedy
        decode is done, or if it failed."""
        greedy = _result(self.decoding)
        if greedy is None:
            return None
        refined = _result(self.refining)
        return refined if refined is not None and not same_words(refined.text,
                                                                 greedy.text) else greedy

    def refined_differs(self) -> bool:
        """Whether the wider beam's decode is done and heard other words than the greedy one
        (so a reply written ahead on the greedy words answers the wrong ones)."""
        return self.ready() is not _result(self.decoding)

    async def best(self) -> Transcript:
        """The turn's final transcript: the greedy decode's, unless the wider beam's (awaited,
        if there is one) heard other words. A failed wider decode leaves the greedy words."""
        greedy = await self.decoding
        if self.refining is not None:
            try:
                await self.refining
            except Exception as error:  # the greedy words stand
                logger.warning("the wider beam's decode failed (%s); keeping the greedy "
                               "transcript", error)
        return self.ready() or greedy


def _result(future: asyncio.Future[Transcript] | None) -> Transcript | None:
    if future is None or not future.done() or future.cancelled() or future.exception():
        return None
    return future.result()


def same_words(first: str, second: str) -> bool:
    """Whether two transcripts hold the same words, whatever their case and punctuation (a
    reply written on the one answers the other)."""
    return _words(first) == _words(second)


def _words(text: str) -> list[str]:
    return re.sub(r"[^\w\s]|_", " ", text.casefold()).split()


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
