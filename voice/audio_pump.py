"""A session's audio on its way to the voice detector, fed in the background.

Feeding the detector takes a trip to an engine thread and back to the event loop. Awaited for
each client message, that trip caps how much audio a session can take per second: on an H100
at 32 sessions the loop ran a timer ~45 ms late on average, a session needs a detection about
every 32 ms of audio, and the sessions fell seconds behind their clients (docs/benchmarks.md,
"Out of GPU memory, and the load ramp again"). Here the message is only queued; one task per
session feeds whatever has arrived, up to ``max_feed`` samples at a time (what depends on the
detector, such as the quick looks at speech over a reply, still sees the audio in steps of at
most that much), so a slow trip makes the next feed bigger instead of the session later.

A failure of a feed is raised by the next :meth:`AudioPump.check` or :meth:`AudioPump.settle`,
that is, while the session handles its next client event, as if that event had failed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import numpy as np


class AudioPump:
    def __init__(self, feed: Callable[[np.ndarray], Awaitable[None]],
                 spawn: Callable[[Awaitable[None]], asyncio.Future[object]], *,
                 max_feed: int = 1600) -> None:
        """``max_feed``: the most samples fed at once (whole messages; 1600 is 100 ms at the
        detector's 16 kHz), unless one message alone is more."""
        self._feed = feed
        self._max_feed = max_feed
        self._spawn = spawn
        self._chunks: list[np.ndarray] = []
        self._task: asyncio.Future[object] | None = None
        self._failure: BaseException | None = None

    def put(self, samples: np.ndarray) -> None:
        """Queue audio for the detector (fed in arrival order)."""
        self._chunks.append(samples)
        if self._task is None:
            self._task = self._spawn(self._run())

    async def _run(self) -> None:
        try:
            while self._chunks and self._failure is None:
                taken, size = 0, 0
                while taken < len(self._chunks) and (
                        taken == 0 or size + self._chunks[taken].size <= self._max_feed):
                    size += self._chunks[taken].size
                    taken += 1
                chunks, self._chunks = self._chunks[:taken], self._chunks[taken:]
                await self._feed(chunks[0] if len(chunks) == 1 else np.concatenate(chunks))
        except Exception as error:  # raised to the session with its next event
            self._failure = error
            self._chunks.clear()
        finally:
            self._task = None

    def discard(self) -> None:
        """Drop the audio not fed yet (the client left)."""
        self._chunks.clear()

    def check(self) -> None:
        """Raise the failure of a feed since the last check, if any."""
        failure, self._failure = self._failure, None
        if failure is not None:
            raise failure

    async def settle(self) -> None:
        """Wait until everything queued has been fed (then :meth:`check`): events other than
        audio see the session as if each audio message had been handled before them."""
        while self._task is not None:
            await asyncio.shield(self._task)
        self.check()
