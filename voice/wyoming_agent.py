"""The conversation agent behind Wyoming's ``handle``: the language model, and the tools of the
MCP servers the operator named for it (``voice serve --wyoming-mcp LABEL=URL``; Home
Assistant's own MCP server, for one, offers its devices as tools).

A transcript is answered as a Realtime reply is: the model is shown the servers' tools (listed
once, again after a failure), a call it writes is run at once (no approval: the operator chose
these servers), and the answer is written from the outcome (or says it did not work). Text is
handed out as it is written. Engine calls run on the engines' schedulers.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from llm.chat import Message
from llm.prompts import CALL_WHEN_ASKED, fold_tool_results, system_prompt
from llm.tools import Tool, ToolCall, ToolCallError, ToolCallParser
from voice.mcp_client import McpConnector, McpError
from voice.ports import Engines
from voice.protocol import ListedTool, McpTool
from voice.reply_settings import model_tools
from voice.session_settings import SessionDefaults

logger = logging.getLogger(__name__)


class WyomingAgent:
    def __init__(self, engines: Engines, defaults: SessionDefaults,
                 servers: tuple[McpTool, ...] = ()) -> None:
        self.engines = engines
        self.defaults = defaults
        self.servers = servers
        self.connector = McpConnector(defaults.mcp_timeout_s)
        self._listed: list[ListedTool] | None = None
        self._lock = asyncio.Lock()

    async def tools(self) -> list[ListedTool]:
        """The servers' tools, listed once (a server that failed is asked again next time)."""
        async with self._lock:
            if self._listed is None:
                listed: list[ListedTool] = []
                complete = True
                for server in self.servers:
                    try:
                        listed += await self.connector.list_tools(server)
                    except McpError as error:
                        complete = False
                        logger.warning("Wyoming: MCP server %s cannot be listed: %s",
                                       server.server_label, error.message)
                if complete:
                    self._listed = listed
                return listed
            return self._listed

    async def answer(self, owner: str, text: str, language: str,
                     emit: Callable[[str], Awaitable[None]]) -> str:
        """The reply to ``text`` in ``language``; each piece goes to ``emit`` as written."""
        shown, by_name = model_tools(self.servers, await self.tools()) if self.servers \
            else ([], {})
        rule = CALL_WHEN_ASKED if shown else None
        messages = [Message("system", system_prompt(language, rule, self.defaults.assistant)),
                    Message("user", text)]
        written, calls = await self._write(owner, messages, shown, emit)
        if not calls and shown and not written.strip():
            # Only a call that cannot be made (or nothing): answer in words, not silence.
            words = [Message("system", system_prompt(language, None, self.defaults.assistant)),
                     Message("user", text)]
            return (await self._write(owner, words, [], emit))[0]
        if not calls:
            return written
        results = []
        for call in calls:
            try:
                results.append(await self.connector.call(by_name[call.name], call.arguments))
                logger.info("Wyoming %s: MCP %s answered", owner, call.name)
            except McpError as error:
                logger.warning("Wyoming %s: MCP %s failed: %s", owner, call.name,
                               error.message)
                results.append(f"It failed: {error.message}")
        folded = fold_tool_results([*messages, Message("assistant", "", tuple(calls)),
                                    *(Message("tool", result) for result in results)])
        if written and not written[-1].isspace():
            await emit(" ")
            written += " "
        more, _ = await self._write(owner, folded, [], emit)
        return written + more

    async def _write(self, owner: str, messages: list[Message], tools: Sequence[Tool],
                     emit: Callable[[str], Awaitable[None]]) -> tuple[str, list[ToolCall]]:
        llm = self.engines.llm
        sampling = dataclasses.replace(self.defaults.sampling,
                                       max_new_tokens=self.defaults.max_output_tokens)
        extra: tuple[Any, ...] = ()
        if tools:  # a second call repeats the first one's opening tokens (llm/tools.py)
            sampling = dataclasses.replace(sampling, no_repeat_ngram_size=0)
            extra = (None, list(tools))
        chat = self.engines.chat_for(bool(tools))
        stream = await llm.run(owner, chat.stream, messages, sampling, *extra)
        parser = ToolCallParser(tools) if tools else None
        text, calls = "", list[ToolCall]()
        try:
            while (delta := await llm.run(owner, next, stream, None)) is not None:
                for output in parser.feed(delta) if parser else [delta]:
                    text += await _hand_out(output, calls, emit, owner)
            for output in parser.finish() if parser else []:
                text += await _hand_out(output, calls, emit, owner)
        finally:
            close = getattr(stream, "close", None)
            if close is not None:  # stops generation in the engine (a client that left)
                await llm.run(owner, close)
        return text, calls


async def _hand_out(output: str | ToolCall | ToolCallError, calls: list[ToolCall],
                    emit: Callable[[str], Awaitable[None]], owner: str) -> str:
    if isinstance(output, ToolCall):
        calls.append(output)
        return ""
    if isinstance(output, ToolCallError):
        logger.warning("Wyoming %s: dropped a malformed tool call: %s", owner, output.message)
        return ""
    if output and (output.strip() or not calls):
        await emit(output)
        return output
    return ""
