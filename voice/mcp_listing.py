"""A session's MCP servers: their tool listings, started when a client names a server.

When ``session.update`` (or ``response.create``) brings an MCP server the session has not
listed yet, its tools are listed in the background: a ``mcp_list_tools`` conversation item,
``mcp_list_tools.in_progress``, then ``.completed`` and the item again with its tools (or
``.failed`` and an ``error`` event). A reply waits for the listings of its servers before it
shows the model their tools; a server whose listing failed simply offers none.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Hashable

from voice.conversation import Conversation, Item
from voice.mcp_client import McpConnector, McpError
from voice.protocol import (
    ItemAdded,
    ItemDone,
    ListedTool,
    McpListToolsCompleted,
    McpListToolsFailed,
    McpListToolsInProgress,
    McpTool,
    ProtocolError,
    ServerEvent,
    new_id,
)

logger = logging.getLogger(__name__)


def _key(server: McpTool) -> Hashable:
    """What makes two named servers the same listing: where, as whom, which tools."""
    return (server.server_label, server.server_url, tuple(sorted(server.headers.items())),
            server.allowed_tools)


class SessionMcp:
    """The tool listings of one session's MCP servers."""

    def __init__(self, owner: str, connector: McpConnector, conversation: Conversation,
                 send: Callable[[ServerEvent], Awaitable[None]],
                 report_error: Callable[[ProtocolError], Awaitable[None]]) -> None:
        self.owner = owner
        self.connector = connector
        self._conversation = conversation
        self._send = send
        self._report_error = report_error
        self._listings: dict[Hashable, asyncio.Task[list[ListedTool]]] = {}

    def update(self, servers: tuple[McpTool, ...]) -> None:
        """Start listing each of ``servers`` not listed (or being listed) yet."""
        for server in servers:
            key = _key(server)
            if key not in self._listings:
                self._listings[key] = asyncio.ensure_future(self._list(server))

    async def _list(self, server: McpTool) -> list[ListedTool]:
        item = Item(new_id("item"), "assistant", kind="mcp_list_tools",
                    server_label=server.server_label, tools=[])
        previous = self._conversation.add(item)
        await self._send(ItemAdded(item.to_json(), previous))
        await self._send(McpListToolsInProgress(item.item_id))
        try:
            tools = await self.connector.list_tools(server)
        except McpError as error:
            logger.warning("session %s: listing MCP server %s failed: %s", self.owner,
                           server.server_label, error.message)
            item.status = "incomplete"
            await self._send(McpListToolsFailed(item.item_id))
            await self._send(ItemDone(item.to_json()))
            await self._report_error(ProtocolError(
                "mcp_list_tools_failed", error.message, error_type="server_error",
                param="session.tools"))
            return []
        item.tools = [tool.to_json() for tool in tools]
        self._conversation.forget_beyond_limits()  # the listing grew the item
        logger.info("session %s: MCP server %s lists %d allowed tool(s): %s", self.owner,
                    server.server_label, len(tools), ", ".join(t.name for t in tools))
        await self._send(McpListToolsCompleted(item.item_id))
        await self._send(ItemDone(item.to_json()))
        return tools

    async def tools(self, servers: tuple[McpTool, ...]) -> list[ListedTool]:
        """The tools of ``servers``, once listed (a failed listing gives none)."""
        self.update(servers)
        tasks = [self._listings[_key(server)] for server in servers]
        listed = await asyncio.gather(*(asyncio.shield(task) for task in tasks),
                                      return_exceptions=True)
        return [tool for tools in listed if isinstance(tools, list) for tool in tools]

    def listed_now(self, servers: tuple[McpTool, ...]) -> list[ListedTool]:
        """The tools of ``servers`` listed so far (for writing a reply ahead)."""
        tools: list[ListedTool] = []
        for server in servers:
            task = self._listings.get(_key(server))
            if task is not None and task.done() and not task.cancelled() \
                    and task.exception() is None:
                tools.extend(task.result())
        return tools

    async def close(self) -> None:
        for task in self._listings.values():
            task.cancel()
        if self._listings:
            await asyncio.gather(*self._listings.values(), return_exceptions=True)
