"""Client events: JSON text (or binary PCM frames) -> frozen dataclasses, or ProtocolError."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from typing import Any, Literal

import numpy as np

from voice.audio import AudioFormatError, decode_base64_pcm16, decode_pcm16
from voice.protocol.common import (
    UNSET,
    JsonObject,
    ProtocolError,
    TokenLimit,
    get_field,
    is_modalities,
    token_limit,
)
from voice.protocol.tools import AnyTool, parse_tool_choice, parse_tools


@dataclasses.dataclass(frozen=True)
class SessionUpdate:
    event_id: str | None
    session: JsonObject


@dataclasses.dataclass(frozen=True)
class AudioAppend:
    event_id: str | None
    samples: np.ndarray  # int16 at the session's input rate


@dataclasses.dataclass(frozen=True)
class AudioCommit:
    event_id: str | None


@dataclasses.dataclass(frozen=True)
class AudioClear:
    event_id: str | None


@dataclasses.dataclass(frozen=True)
class ItemCreate:
    """``conversation.item.create``: a message (``role``, ``text``), a function call the
    client records (``call_id``, ``name``, ``arguments``), a function's result (``call_id``,
    ``text`` = its output), or the answer to an MCP approval request
    (``approval_request_id``, ``approve``, ``text`` = the reason)."""

    event_id: str | None
    item_id: str | None
    role: Literal["user", "system", "assistant"]
    text: str
    kind: Literal["message", "function_call", "function_call_output",
                  "mcp_approval_response"] = "message"
    call_id: str | None = None
    name: str | None = None
    arguments: str | None = None
    approval_request_id: str | None = None
    approve: bool | None = None


@dataclasses.dataclass(frozen=True)
class ResponseCreate:
    event_id: str | None
    instructions: str | None
    output_modalities: tuple[str, ...] | None
    max_output_tokens: TokenLimit | None = None  # None: the session's setting
    tools: tuple[AnyTool, ...] | None = None  # None: the session's
    tool_choice: str | None = None  # None: the session's
    metadata: dict[str, str] | None = None  # echoed in response.created and response.done


@dataclasses.dataclass(frozen=True)
class ResponseCancel:
    event_id: str | None
    response_id: str | None


@dataclasses.dataclass(frozen=True)
class ItemTruncate:
    event_id: str | None
    item_id: str
    content_index: int
    audio_end_ms: int


@dataclasses.dataclass(frozen=True)
class ItemDelete:
    """``conversation.item.delete``: forget an item (frameworks keep their history in sync)."""

    event_id: str | None
    item_id: str


@dataclasses.dataclass(frozen=True)
class ItemRetrieve:
    """``conversation.item.retrieve``: send an item back as the server holds it."""

    event_id: str | None
    item_id: str


ClientEvent = (SessionUpdate | AudioAppend | AudioCommit | AudioClear | ItemCreate
               | ResponseCreate | ResponseCancel | ItemTruncate | ItemDelete | ItemRetrieve)


def parse_binary_audio(data: bytes) -> AudioAppend:
    """A binary websocket frame: raw PCM16 LE mono at the session's input rate (extension)."""
    try:
        samples = decode_pcm16(data)
    except AudioFormatError as error:
        raise ProtocolError("invalid_audio", str(error)) from error
    if samples.size == 0:
        raise ProtocolError("input_audio_buffer_append_empty",
                            "the binary audio frame is empty; send at least one PCM16 sample")
    return AudioAppend(None, samples)


def _lone_surrogate_path(data: Any) -> str | None:
    """Where in a parsed JSON value a string (or key) holds a lone UTF-16 surrogate.

    JSON allows escapes such as ``"\\ud800"`` that are not Unicode text; such a string cannot be
    encoded as UTF-8, so it can be neither used nor sent back. Iterative: the nesting depth
    is whatever :func:`json.loads` accepted."""
    stack: list[tuple[str, Any]] = [("", data)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, str):
            if not value.isascii():
                try:
                    value.encode("utf-8")
                except UnicodeEncodeError:
                    return path or "the event"
        elif isinstance(value, dict):
            for key, item in value.items():
                child = f"{path}.{key}" if path else str(key)
                stack.append((child, key))
                stack.append((child, item))
        elif isinstance(value, list):
            stack.extend((f"{path}[{index}]", item) for index, item in enumerate(value))
    return None


def parse_client_event(text: str | bytes) -> ClientEvent:
    """One text frame -> a client event, or :class:`ProtocolError`."""
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as error:  # JSONDecodeError, huge ints, deep nesting
        raise ProtocolError("invalid_json", f"the message is not valid JSON: {error}") from error
    if not isinstance(data, dict):
        raise ProtocolError("invalid_event", "an event must be a JSON object")
    event_id = data.get("event_id")
    bad = _lone_surrogate_path(data)
    if bad is not None:
        clean_id = event_id if isinstance(event_id, str) and _lone_surrogate_path(
            event_id) is None else None  # never echo what cannot be encoded
        raise ProtocolError("invalid_value",
                            f"{bad} holds a lone UTF-16 surrogate (an escape such as \\ud800 "
                            "without its pair); strings must be valid Unicode",
                            event_id=clean_id, param=bad.encode("utf-8", "replace").decode())
    if event_id is not None and not isinstance(event_id, str):
        raise ProtocolError("invalid_type", "event_id must be a string", param="event_id")
    kind = data.get("type")
    if not isinstance(kind, str):
        raise ProtocolError("missing_type", "the event has no 'type' string", event_id=event_id,
                            param="type")
    parser = _PARSERS.get(kind)
    if parser is None:
        raise ProtocolError("unknown_event_type", f"unknown event type {kind!r}",
                            event_id=event_id, param="type")
    return parser(data, event_id)


def _parse_session_update(data: JsonObject, event_id: str | None) -> SessionUpdate:
    session = data.get("session")
    if not isinstance(session, dict):
        raise ProtocolError("invalid_type", "session must be an object", event_id=event_id,
                            param="session")
    return SessionUpdate(event_id, session)


def _parse_append(data: JsonObject, event_id: str | None) -> AudioAppend:
    audio = data.get("audio")
    if not isinstance(audio, str):
        raise ProtocolError("invalid_type", "audio must be a base64 string", event_id=event_id,
                            param="audio")
    try:
        samples = decode_base64_pcm16(audio)
    except AudioFormatError as error:
        raise ProtocolError("invalid_audio", str(error), event_id=event_id,
                            param="audio") from error
    if samples.size == 0:
        raise ProtocolError("input_audio_buffer_append_empty",
                            "audio is empty; send at least one PCM16 sample", event_id=event_id,
                            param="audio")
    return AudioAppend(event_id, samples)


def _parse_item_create(data: JsonObject, event_id: str | None) -> ItemCreate:
    item = data.get("item")
    if not isinstance(item, dict):
        raise ProtocolError("invalid_type", "item must be an object", event_id=event_id,
                            param="item")
    kind = item.get("type", "message")
    if kind in ("function_call", "function_call_output"):
        return _parse_function_item(item, kind, event_id)
    if kind == "mcp_approval_response":
        return _parse_approval(item, event_id)
    if kind != "message":
        raise ProtocolError("unsupported_item_type",
                            f"item.type {kind!r} is not supported (message, function_call, "
                            "function_call_output, mcp_approval_response)", event_id=event_id,
                            param="item.type")
    role = item.get("role")
    if role not in ("user", "system", "assistant"):
        raise ProtocolError("invalid_value", "item.role must be user, system or assistant",
                            event_id=event_id, param="item.role")
    content = item.get("content")
    if not isinstance(content, list) or not content:
        raise ProtocolError("invalid_type", "item.content must be a non-empty list",
                            event_id=event_id, param="item.content")
    texts = []
    for index, part in enumerate(content):
        if not isinstance(part, dict):
            raise ProtocolError("invalid_type", f"item.content[{index}] must be an object",
                                event_id=event_id, param=f"item.content[{index}]")
        if part.get("type") not in ("input_text", "text", "output_text"):
            raise ProtocolError("unsupported_content_type",
                                f"item.content[{index}].type {part.get('type')!r} is not "
                                "supported (input_text)", event_id=event_id,
                                param=f"item.content[{index}].type")
        text = part.get("text")
        if not isinstance(text, str):
            raise ProtocolError("invalid_type", f"item.content[{index}].text must be a string",
                                event_id=event_id, param=f"item.content[{index}].text")
        texts.append(text)
    item_id = item.get("id")
    if item_id is not None and not isinstance(item_id, str):
        raise ProtocolError("invalid_type", "item.id must be a string", event_id=event_id,
                            param="item.id")
    return ItemCreate(event_id, item_id, role, "".join(texts))


def _parse_function_item(item: JsonObject, kind: str, event_id: str | None) -> ItemCreate:
    item_id = get_field(item, "id", str, event_id, "item.id")
    call_id = get_field(item, "call_id", str, event_id, "item.call_id")
    if call_id is UNSET or not call_id:
        raise ProtocolError("missing_field", f"a {kind} item needs a call_id",
                            event_id=event_id, param="item.call_id")
    item_id = None if item_id is UNSET else item_id
    if kind == "function_call_output":
        output = get_field(item, "output", str, event_id, "item.output")
        if output is UNSET:
            raise ProtocolError("missing_field", "a function_call_output item needs an output "
                                "string", event_id=event_id, param="item.output")
        return ItemCreate(event_id, item_id, "user", output, "function_call_output", call_id)
    name = get_field(item, "name", str, event_id, "item.name")
    arguments = get_field(item, "arguments", str, event_id, "item.arguments")
    if name is UNSET or not name:
        raise ProtocolError("missing_field", "a function_call item needs a name",
                            event_id=event_id, param="item.name")
    arguments = "{}" if arguments is UNSET else arguments
    try:
        valid = isinstance(json.loads(arguments), dict)
    except ValueError:
        valid = False
    if not valid:
        raise ProtocolError("invalid_value", "item.arguments must be a JSON object as text",
                            event_id=event_id, param="item.arguments")
    return ItemCreate(event_id, item_id, "assistant", "", "function_call", call_id, name,
                      arguments)


def _parse_approval(item: JsonObject, event_id: str | None) -> ItemCreate:
    item_id = get_field(item, "id", str, event_id, "item.id")
    request = get_field(item, "approval_request_id", str, event_id, "item.approval_request_id")
    if request is UNSET or not request:
        raise ProtocolError("missing_field", "a mcp_approval_response item needs the "
                            "approval_request_id it answers", event_id=event_id,
                            param="item.approval_request_id")
    approve = get_field(item, "approve", bool, event_id, "item.approve")
    if approve is UNSET:
        raise ProtocolError("missing_field", "a mcp_approval_response item needs approve "
                            "(true or false)", event_id=event_id, param="item.approve")
    reason = item.get("reason")
    if reason is not None and not isinstance(reason, str):
        raise ProtocolError("invalid_type", "item.reason must be a string", event_id=event_id,
                            param="item.reason")
    return ItemCreate(event_id, None if item_id is UNSET else item_id, "user", reason or "",
                      "mcp_approval_response", approval_request_id=request, approve=approve)


def _parse_response_create(data: JsonObject, event_id: str | None) -> ResponseCreate:
    response = data.get("response")
    if response is None:
        response = {}
    if not isinstance(response, dict):
        raise ProtocolError("invalid_type", "response must be an object", event_id=event_id,
                            param="response")
    instructions = get_field(response, "instructions", str, event_id, "response.instructions")
    modalities = None
    for key in ("output_modalities", "modalities"):
        value = get_field(response, key, list, event_id, f"response.{key}")
        if value is not UNSET:
            if not is_modalities(value):
                raise ProtocolError("invalid_value", f"response.{key} must be audio or text",
                                    event_id=event_id, param=f"response.{key}")
            modalities = ("audio",) if "audio" in value else ("text",)
    limit = None
    for key in ("max_output_tokens", "max_response_output_tokens"):
        value = token_limit(response, key, event_id, f"response.{key}")
        if value is not UNSET:
            limit = value
    tools = (parse_tools(response["tools"], event_id, "response.tools")
             if response.get("tools") is not None else None)
    choice = (parse_tool_choice(response["tool_choice"], tools, event_id,
                                "response.tool_choice")
              if response.get("tool_choice") is not None else None)
    metadata = get_field(response, "metadata", dict, event_id, "response.metadata")
    if metadata is not UNSET and (len(metadata) > 16 or not all(
            isinstance(k, str) and isinstance(v, str) and len(k) <= 64 and len(v) <= 512
            for k, v in metadata.items())):
        raise ProtocolError("invalid_value", "response.metadata must map at most 16 keys (64 "
                            "characters) to strings (512 characters)", event_id=event_id,
                            param="response.metadata")
    return ResponseCreate(event_id, None if instructions is UNSET else instructions, modalities,
                          limit, tools, choice, None if metadata is UNSET else metadata)


def _parse_cancel(data: JsonObject, event_id: str | None) -> ResponseCancel:
    response_id = get_field(data, "response_id", str, event_id, "response_id", nullable=True)
    return ResponseCancel(event_id, None if response_id is UNSET else response_id)


def _parse_truncate(data: JsonObject, event_id: str | None) -> ItemTruncate:
    item_id = get_field(data, "item_id", str, event_id, "item_id")
    content_index = get_field(data, "content_index", int, event_id, "content_index")
    audio_end_ms = get_field(data, "audio_end_ms", int, event_id, "audio_end_ms")
    if item_id is UNSET or audio_end_ms is UNSET:
        raise ProtocolError("missing_field", "item_id and audio_end_ms are required",
                            event_id=event_id, param="item_id" if item_id is UNSET
                            else "audio_end_ms")
    if audio_end_ms < 0:
        raise ProtocolError("invalid_value", "audio_end_ms must be >= 0", event_id=event_id,
                            param="audio_end_ms")
    return ItemTruncate(event_id, item_id, 0 if content_index is UNSET else content_index,
                        audio_end_ms)


def _item_id(data: JsonObject, event_id: str | None) -> str:
    item_id = get_field(data, "item_id", str, event_id, "item_id")
    if item_id is UNSET or not item_id:
        raise ProtocolError("missing_field", "item_id is required", event_id=event_id,
                            param="item_id")
    return str(item_id)


_PARSERS: dict[str, Callable[[JsonObject, str | None], ClientEvent]] = {
    "session.update": _parse_session_update,
    "input_audio_buffer.append": _parse_append,
    "input_audio_buffer.commit": lambda data, event_id: AudioCommit(event_id),
    "input_audio_buffer.clear": lambda data, event_id: AudioClear(event_id),
    "conversation.item.create": _parse_item_create,
    "response.create": _parse_response_create,
    "response.cancel": _parse_cancel,
    "conversation.item.truncate": _parse_truncate,
    "conversation.item.delete": lambda data, event_id: ItemDelete(
        event_id, _item_id(data, event_id)),
    "conversation.item.retrieve": lambda data, event_id: ItemRetrieve(
        event_id, _item_id(data, event_id)),
}
