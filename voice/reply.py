"""One response: transcript -> LLM -> segmenter -> TTS -> audio deltas, and its cancellation.

A :class:`Reply` streams all the way: LLM deltas go to the segmenter, finished pieces to a TTS
task that runs alongside generation (piece N is spoken while piece N+1 is written), and audio
goes out in small deltas as soon as each piece is synthesized. Engine calls go through the
engines' schedulers (``voice/schedulers.py``); every ``next()`` of the model's lazy iterator
runs in a worker thread. Once cancelled, nothing more of the reply is sent except its
``response.done`` with status ``cancelled``; generation stops within one token.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from asr.transcript import Transcript
from llm.tools import Tool, ToolCall, ToolCallError, ToolCallParser
from tts.segmenter import Segmenter, SegmenterConfig
from voice.conversation import Conversation, Item
from voice.draft import Draft
from voice.faults import engine_failure
from voice.mcp_listing import SessionMcp
from voice.ports import Engines
from voice.protocol import (
    AudioDone,
    AudioTranscriptDelta,
    AudioTranscriptDone,
    ContentPartAdded,
    ContentPartDone,
    ItemAdded,
    ItemDone,
    ListedTool,
    OutputItemAdded,
    OutputItemDone,
    ProtocolError,
    ResponseCreated,
    ResponseDone,
    ResponseResumed,
    ServerEvent,
    TextDelta,
    TextDone,
    response_object,
)
from voice.reply_audio import EARLY_PIECE_MIN_WORDS, ReplyAudio
from voice.reply_calls import ReplyCalls
from voice.reply_settings import (
    ReplySettings,
    TurnTimes,
    model_tools,
    prompt_messages,
    reply_tools,
    sampling_of,
)
from voice.schedulers import Priority

logger = logging.getLogger(__name__)



@dataclasses.dataclass(frozen=True)
class Resume:
    """What a reply that resumes a cut-off one says: ``lead`` (the words not heard yet),
    then, if the cut-off reply was still being written, what the model writes after
    ``written`` (all it wrote), with the same ``messages``."""

    lead: str
    written: str | None
    messages: list[Any]
    response_id: str  # the cut-off response
    item_id: str
    word_index: int


class Reply(ReplyAudio):
    """One response of one session. Run it with :meth:`run`; stop it with :meth:`cancel`."""

    def __init__(self, response_id: str, turn_id: str, item: Item, settings: ReplySettings,
                 times: TurnTimes, *, owner: str, engines: Engines, conversation: Conversation,
                 send: Callable[[ServerEvent], Awaitable[None]],
                 report_error: Callable[[ProtocolError], Awaitable[None]],
                 media_now: Callable[[], int], draft: Draft | None = None,
                 mcp: SessionMcp | None = None, resume: Resume | None = None,
                 nothing_to_answer: Callable[[Transcript], bool] | None = None,
                 ask_again: Callable[[Transcript], tuple[str, str] | None] | None = None,
                 ) -> None:
        self.response_id = response_id
        self.turn_id = turn_id
        self.item = item
        self.settings = settings
        self.language = settings.language
        self.times = times
        self._owner = owner
        self._engines = engines
        self._conversation = conversation
        self._send_now = send
        self._report_error = report_error
        self._media_now = media_now
        self.cancel_event = threading.Event()  # read by the model's thread between tokens
        self.cancel_reason: str | None = None
        self.failure: ProtocolError | None = None
        self.text = ""
        self.tokens = 0
        self._start_audio()
        self.messages: list[Any] = []  # the prompt of the message (to resume it)
        self.written_all = False  # the model finished writing (not cut short)
        self.resume = resume
        self._nothing_to_answer = nothing_to_answer  # e.g. a "mhm" that cut a reply
        self._ask_again = ask_again  # what to say to speech heard but not made out
        self._fixed: str | None = None  # said instead of the model's words
        self.task: asyncio.Task[None] | None = None
        self.finished = False
        self._draft = draft  # written ahead while the turn was unconfirmed, if any
        self.outputs: list[Item] = []  # the response's output items, in order
        self._message_index: int | None = None  # the message's output index, once opened
        self._tools: list[Tool] = []  # shown to the model for this reply
        self.tools_shown: tuple[Tool, ...] = ()  # in its first prompt (the next may show them)
        self._mcp = mcp
        self._mcp_tools: dict[str, ListedTool] = {}  # which of them an MCP server runs
        self._stopped = asyncio.Event()  # set with cancel_event, for awaiting it
        self._space_before = False  # the next text continues a sentence already sent
        self._malformed = 0  # calls the model wrote that could not be made
        self._calls = ReplyCalls(response_id, owner, conversation, self.outputs, self._send,
                                 mcp.connector if mcp is not None else None, self._stopped)

    def cancel(self, reason: str) -> None:
        if self.cancelled:
            return
        self.cancel_reason = reason
        self.cancel_event.set()
        self._stopped.set()
        self._unheld.set()  # audio waiting for a release is dropped, not sent
        if self._pace is not None:
            self._pace.release()
        if self._draft is not None:
            self._draft.cancel_event.set()  # its stream may be this reply's now
        logger.info("session %s: response %s cancelled (%s)", self._owner, self.response_id,
                    reason)

    async def _send(self, event: ServerEvent) -> None:
        """Send an event of this reply; dropped once it is cancelled (in one place)."""
        if not self.cancelled:
            await self._send_now(event)

    async def _run_engine(self, scheduler: Any, function: Callable[..., Any], *args: Any,
                          priority: Priority = Priority.NORMAL) -> Any:
        return await scheduler.run(self._owner, function, *args, priority=priority)

    # -- the pipeline ---------------------------------------------------------------------

    async def run(self, transcript: Awaitable[Transcript] | None) -> str:
        """The whole response; returns its final status (completed, cancelled, failed, or
        no_speech when the user's turn transcribed to nothing and nothing was sent)."""
        status = "completed"
        try:
            if transcript is not None:
                heard = await transcript
                again = (self._ask_again(heard) if not heard.text and self._ask_again
                         else None)
                if again is not None:
                    logger.info("session %s: speech not made out (%s); asking again in %s",
                                self._owner, heard.rejected, again[1])
                    self._fixed, self.language = again
                elif not heard.text or (self._nothing_to_answer is not None
                                        and self._nothing_to_answer(heard)):
                    logger.info("session %s: nothing to answer (%s); no reply", self._owner,
                                heard.rejected or f"{heard.text!r}, an acknowledgement")
                    self.cancel("no_speech")
                    return "no_speech"
                elif not self.settings.language_pinned:
                    self.language = heard.language
            if not self.cancelled:
                await self._generate()
        except asyncio.CancelledError:
            self.cancel_event.set()
            raise
        except Exception as error:
            logger.exception("session %s: response %s failed", self._owner, self.response_id)
            status = "failed"
            self.failure = engine_failure("response_failed", "the reply", error)
            await self._report_error(self.failure)
        finally:
            if self.cancelled and status != "failed":
                status = "cancelled"
            if self.cancel_reason != "no_speech":
                await self._finish(status)
            self.finished = True
        return status

    def _part(self, text: str) -> dict[str, str]:
        return ({"type": "audio", "transcript": text} if self.audio_out
                else {"type": "text", "text": text})

    def _ids(self) -> dict[str, Any]:
        return {"response_id": self.response_id, "item_id": self.item.item_id,
                "output_index": self._message_index or 0, "content_index": 0}

    async def _open_message(self) -> None:
        """Add the reply's message item: at once, or with tools at its first words (a reply
        that only calls a function has no message)."""
        self._message_index = len(self.outputs)
        self.outputs.append(self.item)
        self._conversation.add(self.item)
        added = self.item.to_json()
        await self._send(OutputItemAdded(self.response_id, self._message_index, added))
        await self._send(ItemAdded(added))
        await self._send(ContentPartAdded(**self._ids(), part=self._part("")))

    async def _generate(self) -> None:
        settings = self.settings
        await self._send(ResponseCreated(response_object(
            self.response_id, "in_progress", modalities=settings.modalities,
            language=self.language, max_output_tokens=settings.max_output_tokens,
            metadata=settings.metadata)))
        if self.resume is not None:
            await self._resume(self.resume)
            return
        if self._fixed is not None:
            await self._say(self._fixed)
            return
        exclude = self.item.item_id
        listed = await self._mcp.tools(settings.mcp_servers) if self._mcp is not None else []
        await self._calls.run_approved({(t.server.server_label, t.name): t for t in listed})
        self._calls.answer_needed = False  # the prompt below holds their outcome already
        messages = prompt_messages(self._conversation, settings, self.language, exclude=exclude)
        self._tools, self._mcp_tools = model_tools(
            reply_tools(self._conversation, settings, exclude=exclude), listed)
        self.tools_shown = tuple(self._tools)
        if not self._tools:
            await self._open_message()
        self.messages = messages

        async def write(pieces: asyncio.Queue[str | None]) -> None:
            await self._write(messages, pieces)
            if self.cancelled:
                return
            if self._calls.answer_needed:
                # The MCP calls ran: say what came of them, without calling again.
                self._tools, self._mcp_tools = [], {}
                self._space_before = bool(self.text) and not self.text[-1].isspace()
                await self._write(prompt_messages(self._conversation, settings, self.language,
                                                  exclude=exclude), pieces)
            elif self._malformed and not self.outputs and settings.tool_choice == "auto":
                # All the model wrote was a call that cannot be made (a question taken for
                # a command: "get_legs"): answer in words, not with silence.
                logger.info("session %s: %s answers in words after a malformed call",
                            self._owner, self.response_id)
                self._tools, self._mcp_tools = [], {}
                words = dataclasses.replace(settings, tool_choice="none")
                await self._write(prompt_messages(self._conversation, words, self.language,
                                                  exclude=exclude), pieces)
        await self._write_and_speak(write)

    async def _resume(self, resume: Resume) -> None:
        """Speak the rest of a cut-off reply (and, if it was still being written, go on
        writing it), as this new response."""
        await self._send(ResponseResumed(self.response_id, resume.response_id,
                                         resume.item_id, resume.word_index))
        await self._say(resume.lead, resume.messages, resume.written)

    async def _say(self, lead: str, messages: list[Any] | None = None,
                   prefix: str | None = None) -> None:
        """Say ``lead`` as the reply's message; then, with a ``prefix``, the model goes on
        after it (see :meth:`_write`)."""
        await self._open_message()
        self.messages = messages or []

        async def write(pieces: asyncio.Queue[str | None]) -> None:
            await self._write(self.messages, pieces, lead=lead, prefix=prefix)
        await self._write_and_speak(write)

    async def _write(self, messages: list[Any], pieces: asyncio.Queue[str | None], *,
                     lead: str = "", prefix: str | None = "") -> None:
        """Pull LLM deltas in a worker thread; stream them as text and as speakable pieces.
        A resumed reply says ``lead`` first, then lets the model go on after ``prefix`` (None:
        the model had finished; nothing more to write)."""
        llm = self._engines.llm
        sampling = sampling_of(self.settings, bool(self._tools))
        if prefix:
            sampling = dataclasses.replace(sampling, prefix=prefix)
        tools = self._tools
        calls = ToolCallParser(tools) if tools else None
        ahead: list[str] = [lead] if lead else []
        stream: Iterator[str] | None = None
        draft, self._draft = self._draft, None
        if prefix is None:  # only the lead to say
            if draft is not None:
                await draft.discard()
        elif draft is not None and draft.matches(messages, sampling, tools):
            self._draft = draft  # a cancel reaches its stream
            ahead, stream = await draft.adopt()
            self._follow(draft.pace)
            logger.debug("session %s: %s adopts %d token(s) written ahead", self._owner,
                         self.response_id, len(ahead))
        else:
            if draft is not None:
                await draft.discard()
            extra = (tools,) if tools else ()  # engines without tools take three arguments
            chat = self._engines.chat_for(bool(tools))
            start = chat.stream
            if self._paced:
                self._pace = self._new_pace()
                start = functools.partial(chat.stream, pace=self._pace)
            stream = await self._run_engine(llm, start, messages, sampling,
                                            self.cancel_event, *extra)
        segmenter = Segmenter(SegmenterConfig(
            language=self.language, first_piece_max_words=self.settings.first_piece_words))
        if calls is not None and sampling.prefix:
            calls.feed(sampling.prefix)  # the call's opening, written for the model
        try:
            while True:
                if ahead:
                    delta: str | None = ahead.pop(0)
                elif stream is not None:
                    delta = await self._run_engine(llm, next, stream, None)
                else:
                    delta = None
                if delta is None or self.cancelled:
                    self.written_all = delta is None and not self.cancelled
                    break
                if self.times.llm_first_token is None:
                    self.times.llm_first_token = time.monotonic()
                self.tokens += 1
                await self._output(calls.feed(delta) if calls else [delta], segmenter, pieces)
            if not self.cancelled:
                if calls is not None:
                    await self._output(calls.finish(), segmenter, pieces)
                await self._queue(pieces, segmenter.flush())
        finally:
            if self._pace is not None:
                self._pace.release()  # before the close, which waits for a held writing
                self._pace = None
            close = getattr(stream, "close", None) if stream is not None else None
            if close is not None:
                # Stops generation in the engine; after a cancel, next() has returned already.
                await self._run_engine(llm, close)

    async def _output(self, outputs: list[str | ToolCall | ToolCallError], segmenter: Segmenter,
                      pieces: asyncio.Queue[str | None]) -> None:
        """Text to the client and the speaker; calls as function-call items; a call the model
        got wrong as an error event (never a call with arguments that do not fit)."""
        for output in outputs:
            if isinstance(output, ToolCall):
                await self._calls.call(output, self._mcp_tools)
            elif isinstance(output, ToolCallError):
                self._malformed += 1
                logger.warning("session %s: dropped a malformed tool call: %s (%r)",
                               self._owner, output.message, output.text[:200])
                await self._report_error(ProtocolError(
                    "invalid_tool_call", f"the model wrote a function call that cannot be made "
                    f"({output.message}); it was left out", error_type="server_error"))
            elif output:
                if self._message_index is None:
                    if not output.strip():
                        continue  # no message for the whitespace around a call
                    await self._open_message()
                elif self._space_before and not output[0].isspace():
                    output = " " + output  # the answer to a call goes on after a space
                self._space_before = False
                self.text += output
                if not self.audio_out:
                    self.item.text = self.text
                delta_event = AudioTranscriptDelta if self.audio_out else TextDelta
                await self._send(delta_event(**self._ids(), delta=output))
                await self._queue(pieces, segmenter.feed(output))
                if self._running_dry():
                    await self._queue(pieces, segmenter.cut_early(EARLY_PIECE_MIN_WORDS))
                self._pace_writing()

    async def _finish(self, status: str) -> None:
        item = self.item
        for call in self.outputs:
            if call.kind in ("function_call", "mcp_call") and call.status == "in_progress":
                call.status = "incomplete"
        if self._message_index is None:
            pass  # no message was opened: nothing of it to finish
        elif status == "failed":
            item.status = "incomplete"  # it keeps what was written or spoken before the fault
        elif status == "cancelled":
            if item.status == "in_progress":
                item.status = "incomplete"
        elif not item.truncated_by_client:
            item.text = self.text.strip()
            item.status = "completed"
            ids = self._ids()
            if self.audio_out:
                await self._send(AudioDone(**ids))
                await self._send(AudioTranscriptDone(**ids, transcript=item.text))
            else:
                await self._send(TextDone(**ids, text=item.text))
            await self._send(ContentPartDone(**ids, part=self._part(item.text)))
            done = item.to_json()
            await self._send(OutputItemDone(self.response_id, self._message_index, done))
            await self._send(ItemDone(done))
        failure = self.failure
        await self._send_now(ResponseDone(response_object(
            self.response_id, status, output=[output.to_json() for output in self.outputs],
            modalities=self.settings.modalities, reason=self.cancel_reason,
            language=self.language, latency=self.times.report(),
            usage={"output_tokens": self.tokens, "input_tokens": 0,
                   "total_tokens": self.tokens},
            max_output_tokens=self.settings.max_output_tokens,
            error=None if failure is None else {"type": failure.error_type,
                                                "code": failure.code},
            metadata=self.settings.metadata)))
