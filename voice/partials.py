"""Partial transcripts while the user speaks: at most one decode in flight, behind finals.

Each user turn gets a :class:`Partials`; the session calls :meth:`Partials.poll` after every
audio frame and drops the object when the turn ends (a decode still running is then abandoned,
never awaited: the final transcript is what counts).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from asr.streaming import PartialTranscriber
from asr.transcript import TranscribeOptions
from voice.ports import SpeechDetector, Transcribes
from voice.protocol import TranscriptDelta
from voice.schedulers import Priority, Scheduler, StaleJobError

logger = logging.getLogger(__name__)


class Partials:
    """The partial transcripts of one user item."""

    def __init__(self, item_id: str, owner: str, transcriber: Transcribes,
                 options: TranscribeOptions, asr: Scheduler, interval_s: float,
                 send: Callable[[TranscriptDelta], Awaitable[None]],
                 on_language: Callable[[str], None] | None = None) -> None:
        self.item_id = item_id
        self._on_language = on_language  # told the utterance's language once it is sure
        self._owner = owner
        self._asr = asr
        self._interval_s = interval_s
        self._send = send
        self._transcriber = PartialTranscriber(transcriber, options, interval_s=interval_s)
        self._task: asyncio.Task[None] | None = None
        self.active = True

    @property
    def decoding(self) -> bool:
        """Whether a partial decode of this item is queued or running."""
        return self._task is not None and not self._task.done()

    def poll(self, detector: SpeechDetector, threshold: float, *, busy: bool = False) -> None:
        """Start a decode if one is due and none is running. Under load (``busy``: the
        engines are working for others) partials are the first thing dropped: the final
        transcript and other users' replies need the processor more."""
        if not self.active or busy or not detector.in_speech:
            return
        if self._task is not None and not self._task.done():
            return  # at most one partial decode in flight
        if detector.last_probability < threshold:
            # The user has paused, maybe finished: a decode started now would compete with
            # the final one for the CPU (docs/benchmarks.md), so wait for more speech.
            return
        if not self._transcriber.due(detector.utterance_samples):
            return  # checked on every frame: no copy of the utterance until a decode is due
        self._task = asyncio.ensure_future(self._decode(detector.current_utterance()))

    def stop(self) -> None:
        self.active = False

    def cancel(self) -> None:
        self.active = False
        if self._task is not None:
            self._task.cancel()

    async def _decode(self, audio: object) -> None:
        try:
            # Behind every final transcript; dropped rather than run late under load.
            result = await self._asr.run(self._owner, self._transcriber.update, audio,
                                         priority=Priority.BACKGROUND,
                                         max_wait_s=self._interval_s)
        except StaleJobError:
            return
        except Exception:
            logger.exception("partial transcription failed (ignored)")
            return
        if result is None or not self.active:
            return  # the utterance ended meanwhile
        if result.sure_language is not None and self._on_language is not None:
            self._on_language(result.sure_language)
        if result.delta or result.tentative:
            await self._send(TranscriptDelta(self.item_id, 0, result.delta, result.confirmed,
                                             result.tentative, result.language))
