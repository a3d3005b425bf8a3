"""The text of a tool call in a reply: the markers models open and close calls with, and tests
on partial text that :class:`llm.tools.ToolCallParser` uses to hold back what may be markup.
Pure functions on strings."""

from __future__ import annotations

import json
from collections.abc import Collection

CALL_START = "<tool_call>"
CALL_END = "</tool_call>"
MISTRAL_CALLS = "[TOOL_CALLS]"
MISTRAL_ARGS = "[ARGS]"
MISTRAL_CALL_ID = "[CALL_ID]"
# Start and end markers of a call at the start of a reply. Besides Qwen2.5's own tags, its 1.5B
# coder model sometimes wraps a call in the <tools></tools> tags its prompt lists functions in
# (only there: later in a reply, "<tools>" is text).
MARKERS = {CALL_START: CALL_END, "<tools>": "</tools>"}
FENCE = "```"


def is_proper_prefix(text: str, marker: str) -> bool:
    return len(text) < len(marker) and marker.startswith(text)


def fence_content(block: str) -> str:
    """What a ```` ```lang ... ``` ```` block holds, without its fences and language tag."""
    inner = block[len(FENCE):]
    if inner.endswith(FENCE):
        inner = inner[:-len(FENCE)]
    first, newline, rest = inner.partition("\n")
    return rest if newline and first.strip().isalnum() else inner


def opens_call(text: str, names: Collection[str]) -> bool | None:
    """Whether ``text``, from a ``{`` (or a template's doubled ``{{``), opens a call of one of
    ``names`` as ``{"name": "<name>"``: True, False, or None while too little of it is here."""
    rest = text[2:] if text.startswith("{{") else text[1:]
    for expected in ('"name"', ":", '"'):
        rest = rest.lstrip()
        if len(rest) < len(expected):
            return None if expected.startswith(rest) else False
        if not rest.startswith(expected):
            return False
        rest = rest[len(expected):]
    name, quote, _ = rest.partition('"')
    if not quote:
        return None if any(known.startswith(name) for known in names) else False
    return name in names


def looks_like_call(text: str) -> bool:
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return False
    return isinstance(value, dict) and "name" in value


def partial_marker_length(text: str) -> int:
    """The length of the longest end of ``text`` that is a proper beginning of a call marker
    (``<tool_call>``, ``[TOOL_CALLS]``)."""
    for length in range(min(len(text), len(MISTRAL_CALLS) - 1), 0, -1):
        if any(length < len(marker) and marker.startswith(text[-length:])
               for marker in (CALL_START, MISTRAL_CALLS)):
            return length
    return 0
