"""Function calling on the wire: tool definitions, ``tool_choice``, function-call items and the
``response.function_call_arguments.*`` events, as the Realtime GA protocol defines them.

A client declares tools in ``session.tools`` (or per ``response.create``) as
``{"type": "function", "name", "description", "parameters"}`` with ``parameters`` a JSON
Schema object. When the model calls one, the response carries an output item of type
``function_call`` (``call_id``, ``name``, ``arguments`` as JSON text) announced by
``response.output_item.added``, its arguments by ``response.function_call_arguments.delta`` and
``.done``, and the item again in ``response.output_item.done`` and ``response.done``. The client
runs the function and answers with a ``conversation.item.create`` of type
``function_call_output`` (the same ``call_id``, the result as text), then ``response.create``.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping
from typing import Any, ClassVar

import jsonschema

from voice.protocol.common import JsonObject, ProtocolError
from voice.protocol.mcp import McpTool, parse_mcp_tool
from voice.protocol.server_events import ServerEvent

MAX_TOOLS = 64
MAX_TOOLS_CHARS = 32_000  # all definitions as JSON: they are part of every prompt
TOOL_CHOICES = ("auto", "none", "required")
_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")


@dataclasses.dataclass(frozen=True)
class FunctionTool:
    """One function the client offers the model."""

    name: str
    description: str = ""
    parameters: Mapping[str, Any] = dataclasses.field(
        default_factory=lambda: {"type": "object", "properties": {}})

    def to_json(self) -> JsonObject:
        return {"type": "function", "name": self.name, "description": self.description,
                "parameters": dict(self.parameters)}


AnyTool = FunctionTool | McpTool


def functions_of(tools: tuple[AnyTool, ...]) -> tuple[FunctionTool, ...]:
    return tuple(tool for tool in tools if isinstance(tool, FunctionTool))


def mcp_servers_of(tools: tuple[AnyTool, ...]) -> tuple[McpTool, ...]:
    return tuple(tool for tool in tools if isinstance(tool, McpTool))


def parse_tools(value: Any, event_id: str | None, param: str) -> tuple[AnyTool, ...]:
    """A ``tools`` list -> function tools and MCP servers (:mod:`voice.protocol.mcp`);
    :class:`ProtocolError` names the first bad entry."""
    if not isinstance(value, list):
        raise ProtocolError("invalid_type", f"{param} must be a list", event_id=event_id,
                            param=param)
    if len(value) > MAX_TOOLS:
        raise ProtocolError("too_many_tools", f"{param} has {len(value)} tools; the limit is "
                            f"{MAX_TOOLS}", event_id=event_id, param=param)
    if len(json.dumps(value, ensure_ascii=False)) > MAX_TOOLS_CHARS:
        raise ProtocolError("tools_too_large", f"{param} is over {MAX_TOOLS_CHARS} characters "
                            "as JSON (every prompt carries them)", event_id=event_id,
                            param=param)
    tools: list[AnyTool] = []
    for index, entry in enumerate(value):
        where = f"{param}[{index}]"
        if not isinstance(entry, dict):
            raise ProtocolError("invalid_type", f"{where} must be an object", event_id=event_id,
                                param=where)
        kind = entry.get("type", "function")
        if kind == "mcp":
            server = parse_mcp_tool(entry, event_id, where)
            if any(isinstance(tool, McpTool) and tool.server_label == server.server_label
                   for tool in tools):
                raise ProtocolError("duplicate_tool", f"two MCP servers are labelled "
                                    f"{server.server_label!r}", event_id=event_id,
                                    param=f"{where}.server_label")
            tools.append(server)
            continue
        if kind != "function":
            raise ProtocolError("invalid_value", f"{where}.type must be 'function' or 'mcp'",
                                event_id=event_id, param=f"{where}.type")
        name = entry.get("name")
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise ProtocolError("invalid_value", f"{where}.name must be 1 to 64 letters, digits, "
                                "'_' or '-'", event_id=event_id, param=f"{where}.name")
        if any(isinstance(tool, FunctionTool) and tool.name == name for tool in tools):
            raise ProtocolError("duplicate_tool", f"two tools are named {name!r}",
                                event_id=event_id, param=f"{where}.name")
        description = entry.get("description", "")
        if not isinstance(description, str):
            raise ProtocolError("invalid_type", f"{where}.description must be a string",
                                event_id=event_id, param=f"{where}.description")
        parameters = entry.get("parameters", {"type": "object", "properties": {}})
        if not isinstance(parameters, dict):
            raise ProtocolError("invalid_type", f"{where}.parameters must be a JSON Schema "
                                "object", event_id=event_id, param=f"{where}.parameters")
        try:
            jsonschema.Draft202012Validator.check_schema(parameters)
        except jsonschema.SchemaError as error:
            raise ProtocolError("invalid_value", f"{where}.parameters is not a valid JSON "
                                f"Schema: {error.message}", event_id=event_id,
                                param=f"{where}.parameters") from error
        tools.append(FunctionTool(name, description, parameters))
    return tuple(tools)


def parse_tool_choice(value: Any, tools: tuple[AnyTool, ...] | None, event_id: str | None,
                      param: str) -> str:
    """``tool_choice`` -> "auto", "none", "required", or the name of the one function to call
    (one of ``tools``; not checked when ``tools`` is None)."""
    if isinstance(value, str) and value in TOOL_CHOICES:
        return value
    if isinstance(value, dict) and value.get("type") == "mcp":
        raise ProtocolError("unsupported_feature", f"{param}: forcing an MCP tool is not "
                            "supported; use auto or required", event_id=event_id, param=param)
    if isinstance(value, dict) and value.get("type") == "function":
        name = value.get("name")
        if not isinstance(name, str) or not name or (
                tools is not None and name not in names_of(tools)):
            raise ProtocolError("invalid_value", f"{param}.name must name one of the tools",
                                event_id=event_id, param=f"{param}.name")
        return name
    raise ProtocolError("invalid_value", f"{param} must be auto, none, required or "
                        '{"type": "function", "name": ...}', event_id=event_id, param=param)


def names_of(tools: tuple[AnyTool, ...]) -> set[str]:
    """The names of the functions among ``tools``."""
    return {tool.name for tool in functions_of(tools)}


def tool_choice_json(choice: str) -> str | JsonObject:
    return choice if choice in TOOL_CHOICES else {"type": "function", "name": choice}


def function_call_item(item_id: str, call_id: str, name: str, arguments: str, *,
                       status: str = "completed") -> JsonObject:
    return {"id": item_id, "object": "realtime.item", "type": "function_call",
            "status": status, "call_id": call_id, "name": name, "arguments": arguments}


def function_call_output_item(item_id: str, call_id: str, output: str) -> JsonObject:
    return {"id": item_id, "object": "realtime.item", "type": "function_call_output",
            "status": "completed", "call_id": call_id, "output": output}


@dataclasses.dataclass(frozen=True)
class FunctionCallArgumentsDelta(ServerEvent):
    type: ClassVar[str] = "response.function_call_arguments.delta"
    response_id: str
    item_id: str
    output_index: int
    call_id: str
    delta: str


@dataclasses.dataclass(frozen=True)
class FunctionCallArgumentsDone(ServerEvent):
    type: ClassVar[str] = "response.function_call_arguments.done"
    response_id: str
    item_id: str
    output_index: int
    call_id: str
    name: str
    arguments: str
