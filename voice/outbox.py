"""One client's outgoing events, bounded by size so a client that stops reading cannot grow the
server's memory without limit."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable

from voice.protocol import ServerEvent


class Outbox:
    """Encoded server events waiting for the socket, at most ``limit`` characters of them.

    :meth:`put` never waits, so a session never stalls on a slow client. When an event would
    take the queue past ``limit``, the outbox overflows: it drops everything queued and every
    later event, and calls ``on_overflow`` once with the size it would have reached. (Events
    are JSON text, almost all ASCII: characters are about bytes.)
    """

    def __init__(self, limit: int, encode: Callable[[ServerEvent], str],
                 on_overflow: Callable[[int], None]) -> None:
        self.limit = limit
        self.overflowed = False
        self._encode = encode
        self._on_overflow = on_overflow
        self._queue: deque[tuple[str, ServerEvent]] = deque()
        self._size = 0
        self._closed = False
        self._ready = asyncio.Event()

    @property
    def size(self) -> int:
        """Characters queued now."""
        return self._size

    async def put(self, event: ServerEvent) -> None:
        if self._closed or self.overflowed:
            return
        text = self._encode(event)
        if self._queue and self._size + len(text) > self.limit:
            self.overflowed = True
            reached = self._size + len(text)
            self._queue.clear()
            self._size = 0
            self._ready.set()
            self._on_overflow(reached)
            return
        self._queue.append((text, event))
        self._size += len(text)
        self._ready.set()

    def close(self) -> None:
        """Accept nothing more; :meth:`get` returns what is queued, then None."""
        self._closed = True
        self._ready.set()

    async def get(self) -> tuple[str, ServerEvent] | None:
        """The next event to send (its text, and the event), waiting for one; None once closed
        (or overflowed) and empty."""
        while not self._queue:
            if self._closed or self.overflowed:
                return None
            self._ready.clear()
            await self._ready.wait()
        text, event = self._queue.popleft()
        self._size -= len(text)
        return text, event
