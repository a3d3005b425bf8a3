"""A reply written ahead: the language model starts on the transcript of a paused turn before
the turn is confirmed over, and nothing of it is sent until then.

When the user pauses, the final decode starts at once (``voice/session.py``); if it is ready
while the turn still waits for its confirming silence, a :class:`Draft` prefills the prompt and
takes the first tokens on the LLM scheduler. When the turn ends with the same words, the reply
adopts the draft (:meth:`Draft.adopt`: the tokens so far and the live stream) when its prompt is
exactly the draft's; if the user goes on, the draft is discarded and its generation stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Iterator, Sequence
from typing import Any

from llm.chat import Message, SamplingOptions
from llm.tools import Tool
from voice.ports import Engines
from voice.schedulers import Priority

logger = logging.getLogger(__name__)

AHEAD_TOKENS = 16  # enough for the first piece to speak; the rest waits for the turn's end


class Draft:
    """The first tokens of a reply to ``messages``, written while the turn is unconfirmed."""

    def __init__(self, owner: str, engines: Engines, messages: Sequence[Message],
                 sampling: SamplingOptions, tools: Sequence[Tool] = ()) -> None:
        self.messages = list(messages)
        self.sampling = sampling
        self.tools = list(tools)  # shown to the model (the deltas may hold a call's markup)
        self.deltas: list[str] = []
        self.cancel_event = threading.Event()
        self._owner = owner
        self._engines = engines
        self._stream: Iterator[str] | None = None
        self._done = False  # the model finished the whole reply within AHEAD_TOKENS
        self._stop = False
        self._task = asyncio.ensure_future(self._write())
        self._task.add_done_callback(_retrieve)

    async def _run(self, function: Any, *args: Any) -> Any:
        return await self._engines.llm.run(self._owner, function, *args,
                                           priority=Priority.URGENT)

    async def _write(self) -> None:
        extra = (self.tools,) if self.tools else ()  # engines without tools take three
        self._stream = await self._run(self._engines.chat.stream, self.messages, self.sampling,
                                       self.cancel_event, *extra)
        while not self._stop and len(self.deltas) < AHEAD_TOKENS:
            delta = await self._run(next, self._stream, None)
            if delta is None:
                self._done = True
                return
            self.deltas.append(delta)

    def matches(self, messages: Sequence[Message], sampling: SamplingOptions,
                tools: Sequence[Tool] = ()) -> bool:
        return (list(messages) == self.messages and sampling == self.sampling
                and list(tools) == self.tools)

    async def adopt(self) -> tuple[list[str], Iterator[str] | None]:
        """Stop writing ahead; the deltas so far and the stream to go on with (None when the
        reply is already complete). Raises what the model raised."""
        self._stop = True
        await self._task
        return self.deltas, None if self._done else self._stream

    async def discard(self) -> None:
        """Stop generation and forget the draft (the user went on, or the prompt changed)."""
        self._stop = True
        self.cancel_event.set()
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await self._task
        close = getattr(self._stream, "close", None)
        if close is not None:
            with contextlib.suppress(Exception):
                await self._run(close)


def _retrieve(task: asyncio.Future[None]) -> None:
    """A draft nobody adopts may have failed; its error is the reply's only if adopted."""
    if not task.cancelled():
        task.exception()
