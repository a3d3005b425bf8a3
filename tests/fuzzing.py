"""Hypothesis strategies for client input: valid events, mutated events, JSON junk, raw text.

Shared by the parser fuzz test and the live-server fuzz test. Strings may hold any code
point, lone surrogates included (JSON escapes them as \\udXXX; the parser must refuse them).
"""

from __future__ import annotations

import copy
import dataclasses
import json
from typing import Any

from hypothesis import strategies as st

# Any code point, lone surrogates too: json.dumps writes those as \udXXX escapes.
CHARACTERS = st.characters()
# A websocket text frame is UTF-8: a lone surrogate can only arrive escaped inside JSON.
FRAME_CHARACTERS = st.characters(exclude_categories=("Cs",))
TEXT = st.text(CHARACTERS, max_size=24)


@dataclasses.dataclass(frozen=True)
class RawNumber:
    """A number token written into the JSON text as is: beyond what ``json.dumps`` makes."""

    text: str


# Parse as float overflow, float underflow, an int too big for a float, an int with more
# digits than Python converts, and the non-standard tokens Python's json accepts.
RAW_NUMBERS = ("1e400", "-1e400", "1e-400", "-0", "1" + "0" * 400, "9" * 5000, "NaN",
               "Infinity", "-Infinity", "1.7976931348623157e308", "4.9e-324")

LEAVES = (st.none() | st.booleans() | st.integers() | st.floats() | TEXT
          | st.sampled_from(RAW_NUMBERS).map(RawNumber)
          | st.sampled_from(("", "inf", "audio", "text", "realtime", "server_vad", "message",
                             "user", "input_text", "audio/pcm", "pcm16", "AAAA", "AAA=")))
JSON_VALUES = st.recursive(
    LEAVES, lambda children: st.lists(children, max_size=4)
    | st.dictionaries(TEXT, children, max_size=4), max_leaves=12)


def dump(value: Any, ascii_only: bool = True) -> str:
    """JSON text of ``value``; :class:`RawNumber` leaves are written verbatim."""
    if isinstance(value, RawNumber):
        return value.text
    if isinstance(value, dict):
        return "{" + ",".join(f"{_leaf(key, ascii_only)}:"
                              f"{dump(item, ascii_only)}" for key, item in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(dump(item, ascii_only) for item in value) + "]"
    return _leaf(value, ascii_only)


def _leaf(value: Any, ascii_only: bool) -> str:
    text = json.dumps(value, ensure_ascii=ascii_only)
    try:
        text.encode()
    except UnicodeEncodeError:  # a lone surrogate: only its escaped form fits a text frame
        return json.dumps(value)
    return text


# One valid example of every client event, GA and beta spellings.
VALID_EVENTS: tuple[dict[str, Any], ...] = (
    {"type": "session.update", "event_id": "evt_1", "session": {
        "type": "realtime", "instructions": "Be brief.", "output_modalities": ["text"],
        "max_output_tokens": 50,
        "audio": {
            "input": {"format": {"type": "audio/pcm", "rate": 16000},
                      "turn_detection": {"type": "server_vad", "threshold": 0.6,
                                         "prefix_padding_ms": 200, "silence_duration_ms": 400,
                                         "create_response": True, "interrupt_response": True},
                      "transcription": {"model": "whisper", "language": "de",
                                        "languages": ["de", "en"]}},
            "output": {"format": {"type": "audio/pcm", "rate": 48000}, "voice": "alloy"}}}},
    {"type": "session.update", "event_id": "evt_2", "session": {
        "modalities": ["text", "audio"], "input_audio_format": "pcm16",
        "output_audio_format": "pcm16", "turn_detection": None,
        "input_audio_transcription": {"language": "en"}, "max_response_output_tokens": "inf",
        "temperature": 0.8, "voice": "alloy"}},
    {"type": "input_audio_buffer.append", "event_id": "evt_3", "audio": "AAAAAA=="},
    {"type": "input_audio_buffer.commit", "event_id": "evt_4"},
    {"type": "input_audio_buffer.clear", "event_id": "evt_5"},
    {"type": "conversation.item.create", "event_id": "evt_6", "item": {
        "id": "item_1", "type": "message", "role": "user",
        "content": [{"type": "input_text", "text": "Hallo"}, {"type": "text", "text": "!"}]}},
    {"type": "response.create", "event_id": "evt_7", "response": {
        "instructions": "Answer in one word.", "output_modalities": ["text"]}},
    {"type": "response.cancel", "event_id": "evt_8", "response_id": "resp_1"},
    {"type": "conversation.item.truncate", "event_id": "evt_9", "item_id": "item_1",
     "content_index": 0, "audio_end_ms": 1500},
)


NUMBERS = (st.sampled_from(RAW_NUMBERS).map(RawNumber) | st.integers(-(2**70), 2**70)
           | st.floats() | st.sampled_from((0, -1, 1, 2**31, 2**63, 0.5, -0.0)))
STRINGS = TEXT | st.sampled_from(("", " ", "inf", "-1", "0", "xx", "EN", "a" * 5000))


def _edge_values(value: Any) -> st.SearchStrategy[Any]:
    """Values at the edges of what a field of ``value``'s kind holds, or of a near kind."""
    if isinstance(value, bool):
        return st.sampled_from((0, 1, "true", None, not value))
    if isinstance(value, int | float):
        return NUMBERS
    if isinstance(value, str):
        return STRINGS | NUMBERS
    if isinstance(value, list):
        return st.lists(STRINGS | NUMBERS | st.none(), max_size=4) | st.just([[]])
    return JSON_VALUES


def field_paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every key/index path inside ``value`` (not the root)."""
    found: list[tuple[Any, ...]] = []
    items = (value.items() if isinstance(value, dict)
             else enumerate(value) if isinstance(value, list) else ())
    for key, item in items:
        found.append((*prefix, key))
        found += field_paths(item, (*prefix, key))
    return found


# What the exhaustive test puts in every field: each raw number, each JSON kind, odd strings.
EDGE_VALUES: tuple[Any, ...] = (*map(RawNumber, RAW_NUMBERS), None, True, False, 0, -1,
                                2**63, 0.5, "", "inf", "a" * 5000, "\x00", [], [None], {},
                                {"type": None}, [[[]]])


@st.composite
def mutated_events(draw: st.DrawFn, templates: tuple[dict[str, Any], ...] = VALID_EVENTS
                   ) -> dict[str, Any]:
    """A valid event with one to three fields set to edge values or junk, deleted, or added."""
    event: dict[str, Any] = copy.deepcopy(draw(st.sampled_from(templates)))
    for _ in range(draw(st.integers(1, 3))):
        paths = field_paths(event)
        if not paths:
            break
        *parents, key = draw(st.sampled_from(paths))
        parent = event
        for step in parents:
            parent = parent[step]
        operation = draw(st.sampled_from(("edge", "replace", "delete", "add")))
        if operation == "edge":
            parent[key] = draw(_edge_values(parent[key]))
        elif operation == "replace":
            parent[key] = draw(JSON_VALUES)
        elif operation == "delete" or not isinstance(parent, dict):
            del parent[key]
        else:
            parent[draw(TEXT)] = draw(JSON_VALUES)
    return event


def valid_text() -> st.SearchStrategy[str]:
    return st.sampled_from(VALID_EVENTS).map(dump)


def client_text() -> st.SearchStrategy[str]:
    """Any text frame a client might send: valid, mutated, JSON junk, or not JSON at all."""
    ascii_only = st.booleans()
    return st.one_of(
        valid_text(),
        st.tuples(mutated_events(), ascii_only).map(lambda pair: dump(*pair)),
        st.tuples(JSON_VALUES, ascii_only).map(lambda pair: dump(*pair)),
        st.tuples(st.dictionaries(st.sampled_from(("type", "event_id", "session", "item",
                                                    "response", "audio", "item_id")),
                                  JSON_VALUES), ascii_only).map(lambda pair: dump(*pair)),
        st.text(FRAME_CHARACTERS),
        st.sampled_from(("", "{", "[]", "null", '{"type":', "\ufeff{}", '{"type":"a"}{}',
                         "[" * 5000 + "]" * 5000, '{"a":' * 3000 + "1" + "}" * 3000)),
    )
