"""Talking to MCP servers over streamable HTTP, with the ``mcp`` SDK's client.

The service runs the MCP tools a client names (``{"type": "mcp"}`` session tools): it lists a
server's tools and calls them. Each operation opens its own connection (an initialize
handshake, then the request, then the session is closed), so no connection outlives a call
and a server that restarts between two calls is no problem; on loopback that costs about
100 ms per call on a 2-core CPU (docs/benchmarks.md).

Every failure becomes a :class:`McpError` that says what happened in the protocol's terms:
``http_error`` (cannot connect: 502; no answer in time: 504; an HTTP status from the server),
``protocol_error`` (a JSON-RPC error: unknown tool, bad arguments) or
``tool_execution_error`` (the tool ran and reported an error).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping
from typing import Any

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp.types import TextContent

from voice.protocol import JsonObject, ListedTool, McpTool

logger = logging.getLogger(__name__)

MAX_OUTPUT_CHARS = 4000  # of one tool result: it goes into the model's prompt


class McpError(Exception):
    """A list or call that did not work, as the protocol's error object."""

    def __init__(self, kind: str, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.code = code

    def to_json(self) -> JsonObject:
        out: JsonObject = {"type": self.kind, "message": self.message}
        if self.kind != "tool_execution_error":
            out["code"] = self.code or 0
        return out


class McpConnector:
    """Lists and calls MCP tools; ``timeout_s`` bounds each operation, connection included."""

    def __init__(self, timeout_s: float = 10.0) -> None:
        self.timeout_s = timeout_s

    async def list_tools(self, server: McpTool) -> list[ListedTool]:
        """The server's tools that the session's ``allowed_tools`` let through."""
        async def listing(client: Client) -> list[ListedTool]:
            tools: list[ListedTool] = []
            cursor: str | None = None
            for _ in range(20):  # pages; a server that pages forever is cut off
                page = await client.list_tools(cursor=cursor)
                for tool in page.tools:
                    hints = tool.annotations
                    read_only = hints.read_only_hint if hints is not None else None
                    if server.allows(tool.name, read_only):
                        tools.append(ListedTool(
                            server, tool.name, tool.description or "",
                            tool.input_schema, read_only,
                            hints.model_dump(exclude_none=True) if hints is not None else None))
                cursor = page.next_cursor
                if not cursor:
                    break
            return tools

        tools: list[ListedTool] = await self._run(server, "list tools", listing)
        return tools

    async def call(self, tool: ListedTool, arguments: Mapping[str, Any]) -> str:
        """Run ``tool``; its result as text for the model (structured content as JSON)."""
        async def calling(client: Client) -> str:
            result = await client.call_tool(tool.name, dict(arguments))
            texts = [block.text for block in result.content if isinstance(block, TextContent)]
            text = "\n".join(texts)
            if result.is_error:
                raise McpError("tool_execution_error", text or f"{tool.name} failed")
            if not text and result.structured_content is not None:
                text = json.dumps(result.structured_content, ensure_ascii=False)
            if len(text) > MAX_OUTPUT_CHARS:
                text = text[:MAX_OUTPUT_CHARS] + " ..."
            return text

        text: str = await self._run(tool.server, f"call {tool.name}", calling)
        return text

    async def _run(self, server: McpTool, what: str, operation: Any) -> Any:
        try:
            async with asyncio.timeout(self.timeout_s):
                http = httpx2.AsyncClient(headers=dict(server.headers),
                                          timeout=httpx2.Timeout(self.timeout_s))
                async with http, Client(streamable_http_client(server.server_url,
                                                               http_client=http)) as client:
                    return await operation(client)
        except TimeoutError as error:
            raise McpError("http_error", f"MCP server {server.server_label} did not answer "
                             f"within {self.timeout_s:g} s ({what})", 504) from error
        except McpError:
            raise
        except Exception as error:  # the SDK wraps what went wrong in exception groups
            raise _failure(server, what, error) from error


def _leaves(error: BaseException) -> list[BaseException]:
    if isinstance(error, BaseExceptionGroup):
        return [leaf for inner in error.exceptions for leaf in _leaves(inner)]
    return [error]


def _failure(server: McpTool, what: str, error: BaseException) -> McpError:
    label = server.server_label
    for leaf in _leaves(error):
        if isinstance(leaf, McpError):
            return leaf
        if isinstance(leaf, MCPError):
            if leaf.message == "Not Found":  # the SDK's name for an HTTP 404 at the URL
                return McpError("http_error", f"MCP server {label}: nothing at "
                                  f"{server.server_url} (404)", 404)
            return McpError("protocol_error", f"MCP server {label} ({what}): "
                              f"{leaf.message}", leaf.code)
        if isinstance(leaf, httpx2.HTTPStatusError):
            status = leaf.response.status_code
            return McpError("http_error", f"MCP server {label} answered HTTP {status} "
                              f"({what})", status)
        if isinstance(leaf, httpx2.TimeoutException):
            return McpError("http_error", f"MCP server {label} did not answer in time "
                              f"({what})", 504)
        if isinstance(leaf, httpx2.TransportError):
            return McpError("http_error", f"cannot reach MCP server {label} at "
                              f"{server.server_url}: {leaf}", 502)
    logger.warning("MCP server %s (%s) failed unexpectedly: %r", label, what, error)
    return McpError("protocol_error", f"MCP server {label} ({what}) failed: "
                      f"{_leaves(error)[0]!r}", -32603)
