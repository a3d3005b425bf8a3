"""The tool calls of one response: function calls the client runs, MCP calls the server runs.

A call the model writes becomes an output item of the response. A function the client declared
becomes a ``function_call`` item (nothing of it is spoken; the client answers with its
output). A tool of an MCP server becomes a ``mcp_call`` item that the server runs at once,
or, when the session's ``require_approval`` says so, a ``mcp_approval_request`` item that
ends the response; a later ``response.create`` runs the calls the client approved. After an
MCP call (done or failed) the reply answers from its outcome: :attr:`ReplyCalls.answer_needed`.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from llm.tools import ToolCall
from voice.conversation import Conversation, Item
from voice.mcp_client import McpConnector, McpError
from voice.protocol import (
    FunctionCallArgumentsDelta,
    FunctionCallArgumentsDone,
    ItemAdded,
    ItemDone,
    ListedTool,
    McpCallArgumentsDelta,
    McpCallArgumentsDone,
    McpCallCompleted,
    McpCallFailed,
    McpCallInProgress,
    OutputItemAdded,
    OutputItemDone,
    ServerEvent,
    new_id,
)

logger = logging.getLogger(__name__)


def approved_requests(conversation: Conversation) -> list[Item]:
    """Approval requests the client approved whose call has not been run yet, oldest first."""
    ran = {item.approval_request_id for item in conversation if item.kind == "mcp_call"}
    approved = {item.approval_request_id for item in conversation
                if item.kind == "mcp_approval_response" and item.approve}
    return [item for item in conversation if item.kind == "mcp_approval_request"
            and item.item_id in approved and item.item_id not in ran]


class ReplyCalls:
    """Emits and runs the calls of one response, appending its output items to ``outputs``."""

    def __init__(self, response_id: str, owner: str, conversation: Conversation,
                 outputs: list[Item], send: Callable[[ServerEvent], Awaitable[None]],
                 connector: McpConnector | None, cancelled: asyncio.Event) -> None:
        self.response_id = response_id
        self._owner = owner
        self._conversation = conversation
        self._outputs = outputs
        self._send = send
        self._connector = connector
        self._cancelled = cancelled
        self.answer_needed = False  # an MCP call finished: the reply speaks its outcome

    async def _add(self, item: Item) -> int:
        index = len(self._outputs)
        self._outputs.append(item)
        self._conversation.add(item)
        await self._send(OutputItemAdded(self.response_id, index, item.to_json()))
        await self._send(ItemAdded(item.to_json()))
        return index

    async def _done(self, item: Item, index: int) -> None:
        await self._send(OutputItemDone(self.response_id, index, item.to_json()))
        await self._send(ItemDone(item.to_json()))

    async def call(self, call: ToolCall, mcp_tools: Mapping[str, ListedTool]) -> None:
        """One call the model wrote (its arguments fit the tool's schema already)."""
        tool = mcp_tools.get(call.name)
        if tool is None:
            await self._function_call(call)
        elif tool.server.needs_approval(tool.name, tool.read_only):
            await self._approval_request(tool, call)
        else:
            await self._mcp_call(tool, call.arguments_json)

    async def _function_call(self, call: ToolCall) -> None:
        item = Item(new_id("item"), "assistant", kind="function_call", call_id=new_id("call"),
                    name=call.name, arguments=call.arguments_json, status="in_progress")
        index = await self._add(item)
        call_id = item.call_id or ""
        await self._send(FunctionCallArgumentsDelta(self.response_id, item.item_id, index,
                                                    call_id, call.arguments_json))
        await self._send(FunctionCallArgumentsDone(self.response_id, item.item_id, index,
                                                   call_id, call.name, call.arguments_json))
        if not self._cancelled.is_set():
            item.status = "completed"
        await self._done(item, index)
        logger.info("session %s: response %s calls %s", self._owner, self.response_id,
                    call.name)

    async def _approval_request(self, tool: ListedTool, call: ToolCall) -> None:
        item = Item(new_id("item"), "assistant", kind="mcp_approval_request",
                    server_label=tool.server.server_label, name=tool.name,
                    arguments=call.arguments_json)
        index = await self._add(item)
        await self._done(item, index)
        logger.info("session %s: response %s asks approval to call %s on %s", self._owner,
                    self.response_id, tool.name, tool.server.server_label)

    async def run_approved(self, mcp_tools: Mapping[tuple[str, str], ListedTool]) -> None:
        """Run the calls the client approved since the last response."""
        for request in approved_requests(self._conversation):
            tool = mcp_tools.get((request.server_label or "", request.name or ""))
            await self._mcp_call(tool, request.arguments or "{}", request=request)

    async def _mcp_call(self, tool: ListedTool | None, arguments: str, *,
                        request: Item | None = None) -> None:
        if tool is not None:
            label, name = tool.server.server_label, tool.name
        else:  # an approved request whose tool is no longer offered
            assert request is not None
            label, name = request.server_label or "", request.name or ""
        item = Item(new_id("item"), "assistant", kind="mcp_call", server_label=label,
                    name=name, arguments=arguments, status="in_progress",
                    approval_request_id=request.item_id if request is not None else None)
        index = await self._add(item)
        await self._send(McpCallArgumentsDelta(self.response_id, item.item_id, index, arguments))
        await self._send(McpCallArgumentsDone(self.response_id, item.item_id, index, arguments))
        await self._send(McpCallInProgress(item.item_id, index))
        try:
            if tool is None or self._connector is None:
                raise McpError("protocol_error", f"the tool {item.name} of {label} is not "
                               "offered to this response any more", -32602)
            item.text = await self._run(tool, json.loads(arguments))
            item.status = "completed"
            await self._send(McpCallCompleted(item.item_id, index))
            logger.info("session %s: MCP %s.%s answered", self._owner, label, item.name)
        except McpError as error:
            item.error = error.to_json()
            item.status = "incomplete"
            await self._send(McpCallFailed(item.item_id, index))
            logger.warning("session %s: MCP %s.%s failed: %s", self._owner, label, item.name,
                           error.message)
        await self._done(item, index)
        self.answer_needed = True

    async def _run(self, tool: ListedTool, arguments: dict[str, Any]) -> str:
        """The call, given up at once when the response is cancelled (the user spoke)."""
        assert self._connector is not None
        call = asyncio.ensure_future(self._connector.call(tool, arguments))
        stop = asyncio.ensure_future(self._cancelled.wait())
        try:
            await asyncio.wait((call, stop), return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
        if not call.done():
            call.cancel()
            await asyncio.gather(call, return_exceptions=True)
            raise McpError("tool_execution_error", "cancelled: the response was cancelled")
        return call.result()
