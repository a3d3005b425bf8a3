"""A session's conversation: its items, what was heard of each reply, the prompt they make.

Sans-I/O and synchronous. Items are never deleted: a reply cut off before a word was heard
stays, empty, with status ``incomplete``. Only the memory bounds forget the oldest items (a
count and a character budget), so one client cannot grow the server's memory or the prompt
without limit.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator

from llm.chat import Message
from llm.tools import ToolCall
from voice.protocol import (
    ItemCreate,
    JsonObject,
    ProtocolError,
    function_call_item,
    function_call_output_item,
    mcp_approval_request_item,
    mcp_approval_response_item,
    mcp_call_item,
    mcp_list_tools_item,
    message_item,
)


@dataclasses.dataclass
class Item:
    """A conversation item: a message (the default ``kind``), a ``function_call`` the
    assistant made (``call_id``, ``name``, ``arguments`` as JSON text) or a
    ``function_call_output`` (``call_id``, the result in ``text``). MCP items
    (voice.protocol.mcp): ``mcp_list_tools`` (``server_label``, ``tools``), ``mcp_call``
    (``server_label``, ``name``, ``arguments``, the output in ``text`` or an ``error``),
    ``mcp_approval_request`` and ``mcp_approval_response`` (``approval_request_id``,
    ``approve``, the reason in ``text``). ``pieces`` are the spoken units of an assistant
    audio reply: (text, milliseconds of audio) in the order sent."""

    item_id: str
    role: str  # user | assistant | system
    text: str = ""
    audio: bool = False
    language: str | None = None
    status: str = "completed"  # in_progress | completed | incomplete
    pieces: list[tuple[str, float]] = dataclasses.field(default_factory=list)
    truncated_by_client: bool = False  # the client said how much it played: trust that
    kind: str = "message"  # message | function_call | function_call_output | mcp_*
    call_id: str | None = None
    name: str | None = None
    arguments: str | None = None
    server_label: str | None = None
    tools: list[JsonObject] | None = None  # mcp_list_tools
    error: JsonObject | None = None  # mcp_call
    approval_request_id: str | None = None
    approve: bool | None = None

    @property
    def size(self) -> int:
        """Characters the item holds (what the history budget counts)."""
        listed = len(json.dumps(self.tools)) if self.tools else 0
        return len(self.text) + len(self.arguments or "") + listed

    @property
    def spoken_ms(self) -> float:
        return sum(duration for _, duration in self.pieces)

    def to_json(self, *, transcribed: bool = True) -> JsonObject:
        """The protocol's item object; a user's audio not yet ``transcribed`` has a null
        transcript."""
        if self.kind == "function_call":
            return function_call_item(self.item_id, self.call_id or "", self.name or "",
                                      self.arguments or "{}", status=self.status)
        if self.kind == "function_call_output":
            return function_call_output_item(self.item_id, self.call_id or "", self.text)
        if self.kind.startswith("mcp_"):
            return self._mcp_json()
        if self.audio:
            return message_item(self.item_id, self.role, status=self.status, audio=True,
                                transcript=self.text if transcribed else None)
        return message_item(self.item_id, self.role, status=self.status, text=self.text)


    def _mcp_json(self) -> JsonObject:
        label = self.server_label or ""
        if self.kind == "mcp_list_tools":
            return mcp_list_tools_item(self.item_id, label, list(self.tools or []))
        if self.kind == "mcp_call":
            return mcp_call_item(self.item_id, label, self.name or "", self.arguments or "{}",
                                 output=self.text if self.status == "completed" else None,
                                 error=self.error,
                                 approval_request_id=self.approval_request_id)
        if self.kind == "mcp_approval_request":
            return mcp_approval_request_item(self.item_id, label, self.name or "",
                                             self.arguments or "{}")
        return mcp_approval_response_item(self.item_id, self.approval_request_id or "",
                                          bool(self.approve), self.text or None)


def heard_text(pieces: list[tuple[str, float]], heard_ms: float) -> str:
    """The part of a spoken reply that was heard in the first ``heard_ms`` of its audio."""
    heard: list[str] = []
    elapsed = 0.0
    for text, duration in pieces:
        if elapsed + duration <= heard_ms:
            heard.append(text)
        elif heard_ms > elapsed and duration > 0:
            words = text.split()
            keep = int(len(words) * (heard_ms - elapsed) / duration)
            if keep:
                heard.append(" ".join(words[:keep]))
            break
        else:
            break
        elapsed += duration
    return " ".join(heard)


class Conversation:
    """The items of one session, oldest first."""

    def __init__(self, *, max_items: int = 200, max_chars: int = 64_000) -> None:
        self.max_items = max_items
        self.max_chars = max_chars
        self.items: list[Item] = []

    def __iter__(self) -> Iterator[Item]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)

    @property
    def last_id(self) -> str | None:
        return self.items[-1].item_id if self.items else None

    def find(self, item_id: str) -> Item | None:
        return next((item for item in self.items if item.item_id == item_id), None)

    def add(self, item: Item) -> str | None:
        """Append ``item``; returns the id of the item before it. Forgets the oldest items
        beyond the item count or the character budget (the newest always stays)."""
        previous = self.last_id
        self.items.append(item)
        self.forget_beyond_limits()
        return previous

    def forget_beyond_limits(self) -> None:
        excess = len(self.items) - self.max_items
        if excess > 0:
            del self.items[:excess]
        chars = sum(item.size for item in self.items)
        drop = 0
        while chars > self.max_chars and drop < len(self.items) - 1:
            chars -= self.items[drop].size
            drop += 1
        del self.items[:drop]

    def item_from(self, event: ItemCreate, new_id: str) -> Item:
        """The item a ``conversation.item.create`` makes (``new_id`` if it names none), not
        added yet; :class:`ProtocolError` if its id is taken or it answers no approval
        request."""
        item = Item(event.item_id or new_id, event.role, event.text, kind=event.kind,
                    call_id=event.call_id, name=event.name, arguments=event.arguments,
                    approval_request_id=event.approval_request_id, approve=event.approve)
        if self.find(item.item_id) is not None:
            raise ProtocolError("item_id_in_use", f"item {item.item_id} already exists",
                                event_id=event.event_id, param="item.id")
        request = self.find(event.approval_request_id or "")
        if event.kind == "mcp_approval_response" and (
                request is None or request.kind != "mcp_approval_request"):
            raise ProtocolError("item_not_found", f"no MCP approval request with id "
                                f"{event.approval_request_id}", event_id=event.event_id,
                                param="item.approval_request_id")
        return item

    def delete(self, item_id: str, event_id: str | None) -> None:
        """Forget an item; :class:`ProtocolError` if there is none with that id."""
        item = self.find(item_id)
        if item is None:
            raise ProtocolError("item_not_found", f"no item with id {item_id}",
                                event_id=event_id, param="item_id")
        self.items.remove(item)

    def get(self, item_id: str, event_id: str | None) -> Item:
        item = self.find(item_id)
        if item is None:
            raise ProtocolError("item_not_found", f"no item with id {item_id}",
                                event_id=event_id, param="item_id")
        return item

    def truncate(self, item_id: str, audio_end_ms: int, event_id: str | None) -> Item:
        """The client played only ``audio_end_ms`` of an assistant audio item: keep what was
        heard. Raises :class:`ProtocolError` for an item that cannot be truncated so."""
        item = self.find(item_id)
        if item is None:
            raise ProtocolError("item_not_found", f"no item with id {item_id}",
                                event_id=event_id, param="item_id")
        if item.role != "assistant" or not item.audio:
            raise ProtocolError("invalid_item", "only assistant audio items can be truncated",
                                event_id=event_id, param="item_id")
        if audio_end_ms > item.spoken_ms + 1:
            raise ProtocolError("invalid_value",
                                f"audio_end_ms {audio_end_ms} is beyond the "
                                f"{item.spoken_ms:.0f} ms of audio sent", event_id=event_id,
                                param="audio_end_ms")
        item.text = heard_text(item.pieces, audio_end_ms)
        item.status = "incomplete"
        item.truncated_by_client = True
        return item

    def prompt(self, system: str, *, exclude: str | None = None) -> list[Message]:
        """The messages for the language model: the system prompt, then every item with text
        (what was heard of replies), calls and their results, except ``exclude`` (the reply
        being written)."""
        messages = [Message("system", system)]
        for item in self.items:
            if item.item_id == exclude:
                continue
            if item.kind in ("function_call", "mcp_call"):
                messages.append(Message("assistant", "", (_call_of(item),)))
                if item.kind == "mcp_call" and item.status != "in_progress":
                    messages.append(Message("tool", _outcome(item), tool_call_id=item.item_id))
            elif item.kind == "function_call_output":
                messages.append(Message("tool", item.text, tool_call_id=item.call_id or ""))
            elif item.kind == "mcp_approval_response" and item.approve is False:
                request = self.find(item.approval_request_id or "")
                if request is not None:  # the model learns the user said no
                    messages.append(Message("assistant", "", (_call_of(request),)))
                    messages.append(Message("tool", "Not run: the user declined"
                                            + (f" ({item.text})." if item.text else "."),
                                            tool_call_id=request.item_id))
            elif item.kind.startswith("mcp_"):
                continue  # listings and open approval requests are not part of the talk
            elif item.text:
                messages.append(Message(item.role, item.text))  # type: ignore[arg-type]
        return messages


def _outcome(call: Item) -> str:
    """What an MCP call gave, as the model reads it."""
    if call.error is not None:
        return f"It failed: {call.error.get('message') or call.error.get('type')}"
    return call.text


def _call_of(item: Item) -> ToolCall:
    try:
        arguments = json.loads(item.arguments or "{}")
    except ValueError:  # only valid JSON objects are ever stored; be safe anyway
        arguments = {}
    return ToolCall(item.name or "", arguments if isinstance(arguments, dict) else {},
                    item.call_id or item.item_id)
