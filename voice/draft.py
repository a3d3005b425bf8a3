"""A reply written ahead: the language model starts on the transcript of a paused turn before
the turn is confirmed over, and nothing of it is sent until then.

When the user pauses, the final decode starts at once (``voice/session.py``); if it is ready
while the turn still waits for its confirming silence, a :class:`Draft` prefills the prompt and
takes the first tokens on the LLM scheduler. When the turn ends with the same words, the reply
adopts the draft (:meth:`Draft.adopt`: the tokens so far and the live stream) when its prompt is
exactly the draft's; if the user goes on, the draft is discarded and its generation stopped.

A draft of a spoken reply also synthesizes its first piece (:class:`SpeechAhead`), so that on a
fast machine, where the words are written long before the confirming silence is over, the first
audio is ready when the turn ends instead of one synthesis later. The reply takes that audio
when its own first piece is the same text in the same language and rate
(:meth:`Draft.speech_for`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import threading
import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from llm.chat import Message, SamplingOptions
from llm.tools import Tool, ToolCallParser
from tts.segmenter import FIRST_PIECE_MAX_WORDS, Segmenter, SegmenterConfig, speakable
from voice.audio import to_output
from voice.conversation import Conversation
from voice.pacing import WritingPace
from voice.ports import Engines
from voice.reply_settings import ReplySettings, prompt_messages
from voice.schedulers import Priority
from voice.user_turn import retrieve

if TYPE_CHECKING:
    from voice.reply import Reply

logger = logging.getLogger(__name__)

# Enough for the first piece to speak; the rest waits for the turn's end (the model's thread
# is held there too, not only this reader: it would otherwise write the whole reply).
AHEAD_TOKENS = 16


@dataclasses.dataclass(frozen=True)
class SpeechAhead:
    """How the reply would speak: its language (the voice and the segmenter follow it) and
    the client's output rate."""

    language: str
    out_rate: int
    first_piece_words: int = FIRST_PIECE_MAX_WORDS  # cut as the reply will cut it


class Draft:
    """The first tokens of a reply to ``messages``, written while the turn is unconfirmed,
    and with ``speech``, the audio of its first piece."""

    def __init__(self, owner: str, engines: Engines, messages: Sequence[Message],
                 sampling: SamplingOptions, tools: Sequence[Tool] = (),
                 speech: SpeechAhead | None = None) -> None:
        self.messages = list(messages)
        self.sampling = sampling
        self.tools = list(tools)  # shown to the model (the deltas may hold a call's markup)
        self.deltas: list[str] = []
        self.cancel_event = threading.Event()
        self.pace = WritingPace(hold_after_tokens=AHEAD_TOKENS)  # the reply's, once adopted
        self.speech = speech
        self.first_piece: str | None = None  # the reply's first piece, once written
        self._first_audio: asyncio.Future[np.ndarray] | None = None
        self._owner = owner
        self._engines = engines
        self._started = time.monotonic()
        self._stream: Iterator[str] | None = None
        self._done = False  # the model finished the whole reply within AHEAD_TOKENS
        self._stop = False
        self._pieces = (_FirstPiece(speech.language, speech.first_piece_words, tools)
                        if speech is not None else None)
        self._task = asyncio.ensure_future(self._write())
        self._task.add_done_callback(retrieve)

    async def _run(self, function: Any, *args: Any) -> Any:
        return await self._engines.llm.run(self._owner, function, *args,
                                           priority=Priority.URGENT)

    async def _write(self) -> None:
        # Its user is likely to wait for these words: replies far ahead give way to them.
        came = self._engines.activity.await_first_words(self._owner)
        try:
            await self._write_first_tokens()
        finally:
            came()

    async def _write_first_tokens(self) -> None:
        extra = (self.tools,) if self.tools else ()  # engines without tools take three
        chat = self._engines.chat_for(bool(self.tools))
        self._stream = await self._run(functools.partial(chat.stream, pace=self.pace),
                                       self.messages, self.sampling, self.cancel_event, *extra)
        while not self._stop and len(self.deltas) < AHEAD_TOKENS:
            delta = await self._run(next, self._stream, None)
            if delta is None:
                self._done = True
                self._speak_ahead(self._pieces.finish() if self._pieces is not None else None)
                return
            self.deltas.append(delta)
            if len(self.deltas) == 1:
                logger.debug("session %s: draft's first token after %.0f ms", self._owner,
                             self._since_start())
            self._speak_ahead(self._pieces.feed(delta) if self._pieces is not None else None)

    def _speak_ahead(self, piece: str | None) -> None:
        """Synthesize the first piece, once it is written (and only it)."""
        if piece is None or self.speech is None or self._stop:
            return
        self._pieces = None
        self.first_piece = piece
        self._first_audio = asyncio.ensure_future(self._synthesize(self.speech, piece))
        self._first_audio.add_done_callback(retrieve)

    async def _synthesize(self, speech: SpeechAhead, piece: str) -> np.ndarray:
        tts = self._engines.tts
        voice = await tts.run(self._owner, self._engines.voices.for_language, speech.language,
                              priority=Priority.URGENT)
        audio: np.ndarray = await tts.run(self._owner, synthesize, voice, speakable(piece),
                                          speech.out_rate, priority=Priority.URGENT)
        logger.debug("session %s: draft's first piece (%d words) spoken after %.0f ms",
                     self._owner, len(piece.split()), self._since_start())
        return audio

    def _since_start(self) -> float:
        return (time.monotonic() - self._started) * 1000

    def speech_for(self, piece: str, speech: SpeechAhead) -> asyncio.Future[np.ndarray] | None:
        """The audio of ``piece`` synthesized ahead, if the reply speaks the same first piece
        the same way (None: synthesize it now)."""
        if self._first_audio is None or piece != self.first_piece or speech != self.speech:
            return None
        return self._first_audio

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
        self.pace.release()
        if self._first_audio is not None:
            self._first_audio.cancel()  # never runs if it has not started yet
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await self._task
        close = getattr(self._stream, "close", None)
        if close is not None:
            with contextlib.suppress(Exception):
                await self._run(close)


class _FirstPiece:
    """The reply's first speakable piece, from its first deltas, cut as the reply cuts it (a
    tool call's markup is no piece: after a call there is nothing to speak ahead)."""

    def __init__(self, language: str, first_piece_words: int, tools: Sequence[Tool]) -> None:
        self._segmenter = Segmenter(SegmenterConfig(language=language,
                                                    first_piece_max_words=first_piece_words))
        self._calls = ToolCallParser(tools) if tools else None
        self._called = False

    def feed(self, delta: str) -> str | None:
        """The first piece, if ``delta`` completes it."""
        outputs = self._calls.feed(delta) if self._calls is not None else [delta]
        return self._take(outputs, end=False)

    def finish(self) -> str | None:
        """The first piece, if the reply ended within the deltas fed."""
        outputs = self._calls.finish() if self._calls is not None else []
        return self._take(outputs, end=True)

    def _take(self, outputs: list[Any], *, end: bool) -> str | None:
        pieces: list[str] = []
        for output in outputs:
            if not isinstance(output, str):
                self._called = True
            elif not self._called and output:
                pieces += self._segmenter.feed(output)
        if end and not self._called:
            pieces += self._segmenter.flush()
        return pieces[0] if pieces and not self._called else None


def synthesize(voice: Any, text: str, out_rate: int) -> np.ndarray:
    """One piece as int16 at the client's rate (runs in a TTS worker thread)."""
    chunks = [to_output(c.samples, c.sample_rate, out_rate) for c in voice.synthesize(text)]
    return np.concatenate(chunks) if chunks else np.zeros(0, np.int16)


async def keep_history(engines: Engines, owner: str, conversation: Conversation,
                       reply: Reply) -> None:
    """After a completed reply, have its language model read the conversation so far, as
    the next reply's prompt will begin, while the user listens and thinks: the next reply
    then reads only the new question (``ChatModel.prefill``; docs/benchmarks.md, "A
    conversation's history read once"). While another reply is being written or a
    transcript waits, only if the kept states' budget has room: the reloads a full budget
    costs made four sessions slower, but the reading itself is work the next reply would do
    on its turn's critical path (docs/benchmarks.md, "A conversation kept under load")."""
    busy = engines.activity.replies > 0 or engines.asr.depth > 0 or engines.asr.running > 0
    await keep_conversation(engines, owner, conversation, reply.settings, reply.language,
                            reply.tools_shown, reload=not busy)


async def keep_conversation(engines: Engines, owner: str, conversation: Conversation,
                            settings: ReplySettings, language: str,
                            tools: Sequence[Tool], *, reload: bool = True) -> None:
    """Have the language model that a reply with ``tools`` uses read the conversation so
    far under the system prompt of ``language`` (a separate tools model: the system turn
    only), at background priority; with ``reload=False``, not if the kept states' budget is
    full (``ChatModel.prefill``, ``ChatModel.cache_system_turn``). Engines without them are
    skipped; a failure only costs the next reply that time."""
    chat = engines.chat_for(bool(tools))
    messages = prompt_messages(conversation, settings, language)
    if chat is not engines.chat:
        # A model of its own for replies that may call (the 1.5B on a CPU) keeps system turns
        # only: its budget holds two or three with their tools (~400 tokens each), and a
        # conversation's state beside one made the next reply reload the model and read it
        # again, +2 s on a call (docs/benchmarks.md, "The tools model keeps its system turns").
        keep = getattr(chat, "cache_system_turn", None)
        call = (None if keep is None
                else functools.partial(keep, messages[0].content, tools, reload=reload))
    else:
        prefill = getattr(chat, "prefill", None)
        call = (None if prefill is None
                else functools.partial(prefill, messages, tools, reload=reload))
    if call is None:
        return
    try:
        await engines.llm.run(owner, call, priority=Priority.BACKGROUND)
    except Exception:
        logger.warning("session %s: could not keep the conversation's state", owner,
                       exc_info=True)
