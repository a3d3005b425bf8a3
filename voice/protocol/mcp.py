"""MCP tools on the wire: ``{"type": "mcp"}`` session tools, their items and events, as the
Realtime GA protocol defines them.

A client names an MCP server in ``session.tools`` (or per ``response.create``)::

    {"type": "mcp", "server_label": "home", "server_url": "http://127.0.0.1:8000/mcp",
     "allowed_tools": ["set_light"], "headers": {"Authorization": "Bearer ..."},
     "require_approval": "never"}

The server lists the tools (a ``mcp_list_tools`` conversation item, announced by
``mcp_list_tools.in_progress`` and ``.completed`` or ``.failed``), shows them to the model, and
when the model calls one, runs it itself: a ``mcp_call`` output item, its arguments in
``response.mcp_call_arguments.delta``/``.done``, then ``response.mcp_call.in_progress`` and
``.completed`` or ``.failed``; the item's ``output`` or ``error`` holds the outcome. A call
that needs approval is a ``mcp_approval_request`` item instead; the client answers with a
``conversation.item.create`` of type ``mcp_approval_response`` and ``response.create``.

Only ``server_url`` servers over http(s) (no ``connector_id``/``tunnel_id``); which hosts may
be named is the operator's choice (``[mcp] hosts`` in the config, see ``voice/config.py``).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any, ClassVar
from urllib.parse import urlsplit

from voice.protocol.common import JsonObject, ProtocolError
from voice.protocol.server_events import ServerEvent

_LABEL = re.compile(r"[A-Za-z0-9_-]{1,64}")
MAX_HEADERS = 32
APPROVALS = ("always", "never")


@dataclasses.dataclass(frozen=True)
class ToolFilter:
    """Which tools of a server a rule covers: by name, by the read-only hint, or both."""

    tool_names: tuple[str, ...] | None = None
    read_only: bool | None = None

    def matches(self, name: str, read_only: bool | None) -> bool:
        if self.tool_names is None and self.read_only is None:
            return False  # an empty filter names no tool
        if self.tool_names is not None and name not in self.tool_names:
            return False
        return self.read_only is None or bool(read_only) == self.read_only

    def to_json(self) -> JsonObject:
        out: JsonObject = {}
        if self.tool_names is not None:
            out["tool_names"] = list(self.tool_names)
        if self.read_only is not None:
            out["read_only"] = self.read_only
        return out


@dataclasses.dataclass(frozen=True)
class McpTool:
    """An MCP server the client offers the model, and the rules for its tools."""

    server_label: str
    server_url: str
    allowed_tools: ToolFilter | None = None  # None: every tool the server lists
    headers: Mapping[str, str] = dataclasses.field(default_factory=dict)
    # "always" (the protocol's default), "never", or per tool: (always, never) filters
    require_approval: str | tuple[ToolFilter | None, ToolFilter | None] = "always"
    server_description: str = ""

    @property
    def host(self) -> str:
        return (urlsplit(self.server_url).hostname or "").lower()

    @property
    def netloc(self) -> str:
        """``host:port`` as written in the URL (lower case)."""
        return urlsplit(self.server_url).netloc.rpartition("@")[2].lower()

    def allows(self, name: str, read_only: bool | None) -> bool:
        return self.allowed_tools is None or self.allowed_tools.matches(name, read_only)

    def needs_approval(self, name: str, read_only: bool | None) -> bool:
        rule = self.require_approval
        if isinstance(rule, str):
            return rule == "always"
        always, never = rule
        if never is not None and never.matches(name, read_only):
            return False
        if always is not None and always.matches(name, read_only):
            return True
        return True  # a tool no rule names asks, as "always" would

    def to_json(self) -> JsonObject:
        """The tool as ``session.updated`` shows it: headers are left out (they may hold
        credentials) except their names."""
        out: JsonObject = {"type": "mcp", "server_label": self.server_label,
                           "server_url": self.server_url}
        if self.allowed_tools is not None:
            out["allowed_tools"] = self.allowed_tools.to_json()
        if isinstance(self.require_approval, str):
            out["require_approval"] = self.require_approval
        else:
            always, never = self.require_approval
            out["require_approval"] = {
                key: rule.to_json() for key, rule in (("always", always), ("never", never))
                if rule is not None}
        if self.server_description:
            out["server_description"] = self.server_description
        return out


def _filter(value: Any, event_id: str | None, param: str) -> ToolFilter:
    if isinstance(value, list):
        value = {"tool_names": value}
    if not isinstance(value, dict):
        raise ProtocolError("invalid_type", f"{param} must be a list of tool names or an "
                            "object with tool_names and/or read_only", event_id=event_id,
                            param=param)
    unknown = set(value) - {"tool_names", "read_only"}
    if unknown:
        raise ProtocolError("unknown_parameter", f"{param}.{sorted(unknown)[0]} is not known",
                            event_id=event_id, param=f"{param}.{sorted(unknown)[0]}")
    names = value.get("tool_names")
    if names is not None and (not isinstance(names, list)
                              or not all(isinstance(n, str) and n for n in names)):
        raise ProtocolError("invalid_type", f"{param}.tool_names must be a list of names",
                            event_id=event_id, param=f"{param}.tool_names")
    read_only = value.get("read_only")
    if read_only is not None and not isinstance(read_only, bool):
        raise ProtocolError("invalid_type", f"{param}.read_only must be true or false",
                            event_id=event_id, param=f"{param}.read_only")
    return ToolFilter(None if names is None else tuple(names), read_only)


def parse_mcp_tool(entry: JsonObject, event_id: str | None, where: str) -> McpTool:
    """One ``{"type": "mcp"}`` entry of a tools list; :class:`ProtocolError` names what is
    wrong with it."""
    for unsupported in ("connector_id", "tunnel_id"):
        if entry.get(unsupported) is not None:
            raise ProtocolError("unsupported_feature", f"{where}.{unsupported}: only MCP "
                                "servers named by server_url are supported",
                                event_id=event_id, param=f"{where}.{unsupported}")
    label = entry.get("server_label")
    if not isinstance(label, str) or not _LABEL.fullmatch(label):
        raise ProtocolError("invalid_value", f"{where}.server_label must be 1 to 64 letters, "
                            "digits, '_' or '-'", event_id=event_id,
                            param=f"{where}.server_label")
    url = entry.get("server_url")
    try:
        parts = urlsplit(url) if isinstance(url, str) else None
        hostname = parts.hostname if parts is not None else None
    except ValueError:  # such as an unclosed "[" of an IPv6 address
        parts = hostname = None
    if not isinstance(url, str) or parts is None or parts.scheme not in ("http", "https") \
            or not hostname:
        raise ProtocolError("invalid_value", f"{where}.server_url must be an http(s) URL",
                            event_id=event_id, param=f"{where}.server_url")
    headers = entry.get("headers") or {}
    if not isinstance(headers, dict) or len(headers) > MAX_HEADERS or not all(
            isinstance(k, str) and isinstance(v, str) and "\n" not in k + v
            for k, v in headers.items()):
        raise ProtocolError("invalid_value", f"{where}.headers must map at most {MAX_HEADERS} "
                            "header names to one-line strings", event_id=event_id,
                            param=f"{where}.headers")
    authorization = entry.get("authorization")
    if authorization is not None:
        if not isinstance(authorization, str) or "\n" in authorization:
            raise ProtocolError("invalid_value", f"{where}.authorization must be a token",
                                event_id=event_id, param=f"{where}.authorization")
        headers = {**headers, "Authorization": f"Bearer {authorization}"}
    allowed = entry.get("allowed_tools")
    description = entry.get("server_description") or ""
    if not isinstance(description, str):
        raise ProtocolError("invalid_type", f"{where}.server_description must be a string",
                            event_id=event_id, param=f"{where}.server_description")
    return McpTool(label, url, None if allowed is None else _filter(
        allowed, event_id, f"{where}.allowed_tools"), headers,
        _approval(entry.get("require_approval", "always"), event_id,
                  f"{where}.require_approval"), description)


def _approval(value: Any, event_id: str | None,
              param: str) -> str | tuple[ToolFilter | None, ToolFilter | None]:
    if value is None or value in APPROVALS:
        return value or "always"
    if not isinstance(value, dict) or set(value) - {"always", "never"}:
        raise ProtocolError("invalid_value", f"{param} must be always, never, or an object "
                            "with always and/or never filters", event_id=event_id, param=param)
    return tuple(  # type: ignore[return-value]
        None if value.get(key) is None else _filter(value[key], event_id, f"{param}.{key}")
        for key in ("always", "never"))


@dataclasses.dataclass(frozen=True)
class ListedTool:
    """One tool an MCP server lists (and the session allows)."""

    server: McpTool
    name: str
    description: str
    input_schema: Mapping[str, Any]
    read_only: bool | None = None
    annotations: JsonObject | None = None

    def to_json(self) -> JsonObject:
        """As a ``mcp_list_tools`` item lists it."""
        out: JsonObject = {"name": self.name, "input_schema": dict(self.input_schema),
                           "description": self.description}
        if self.annotations:
            out["annotations"] = self.annotations
        return out


# -- items --------------------------------------------------------------------------------

def mcp_list_tools_item(item_id: str, server_label: str,
                        tools: list[JsonObject]) -> JsonObject:
    return {"id": item_id, "type": "mcp_list_tools", "server_label": server_label,
            "tools": tools}


def mcp_call_item(item_id: str, server_label: str, name: str, arguments: str, *,
                  output: str | None = None, error: JsonObject | None = None,
                  approval_request_id: str | None = None) -> JsonObject:
    return {"id": item_id, "type": "mcp_call", "server_label": server_label, "name": name,
            "arguments": arguments, "output": output, "error": error,
            "approval_request_id": approval_request_id}


def mcp_approval_request_item(item_id: str, server_label: str, name: str,
                              arguments: str) -> JsonObject:
    return {"id": item_id, "type": "mcp_approval_request", "server_label": server_label,
            "name": name, "arguments": arguments}


def mcp_approval_response_item(item_id: str, approval_request_id: str, approve: bool,
                               reason: str | None) -> JsonObject:
    return {"id": item_id, "type": "mcp_approval_response",
            "approval_request_id": approval_request_id, "approve": approve, "reason": reason}


# -- events -------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class McpListToolsInProgress(ServerEvent):
    type: ClassVar[str] = "mcp_list_tools.in_progress"
    item_id: str


@dataclasses.dataclass(frozen=True)
class McpListToolsCompleted(ServerEvent):
    type: ClassVar[str] = "mcp_list_tools.completed"
    item_id: str


@dataclasses.dataclass(frozen=True)
class McpListToolsFailed(ServerEvent):
    type: ClassVar[str] = "mcp_list_tools.failed"
    item_id: str


@dataclasses.dataclass(frozen=True)
class McpCallArgumentsDelta(ServerEvent):
    type: ClassVar[str] = "response.mcp_call_arguments.delta"
    response_id: str
    item_id: str
    output_index: int
    delta: str


@dataclasses.dataclass(frozen=True)
class McpCallArgumentsDone(ServerEvent):
    type: ClassVar[str] = "response.mcp_call_arguments.done"
    response_id: str
    item_id: str
    output_index: int
    arguments: str


@dataclasses.dataclass(frozen=True)
class McpCallInProgress(ServerEvent):
    type: ClassVar[str] = "response.mcp_call.in_progress"
    item_id: str
    output_index: int


@dataclasses.dataclass(frozen=True)
class McpCallCompleted(ServerEvent):
    type: ClassVar[str] = "response.mcp_call.completed"
    item_id: str
    output_index: int


@dataclasses.dataclass(frozen=True)
class McpCallFailed(ServerEvent):
    type: ClassVar[str] = "response.mcp_call.failed"
    item_id: str
    output_index: int
