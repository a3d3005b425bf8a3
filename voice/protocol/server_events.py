"""Server events as frozen dataclasses: one definition of each event's name and fields.

The session builds these and the server encodes them (:meth:`ServerEvent.to_json`); clients
decode what they receive with :func:`parse_server_event` into the same classes. Field names are
the wire names. Nested objects the protocol defines in detail (a session, an item, a response,
an error) stay JSON objects, made by :func:`error_body` and, for a response's events
(:mod:`voice.protocol.response_events`), ``message_item`` and ``response_object``, so that
their shape is written in one place.

Extensions (documented in docs/protocol.md) are declared as fields with defaults: a
transcript's ``language``, a partial transcript's ``confirmed``/``tentative`` split, a
response's ``language`` and ``latency``.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any, ClassVar

from voice.protocol.common import JsonObject, ProtocolError, new_id

_EVENT_TYPES: dict[str, type[ServerEvent]] = {}

# GA name -> beta name, for clients that connect with "OpenAI-Beta: realtime=v1".
BETA_NAMES = {
    "response.output_audio.delta": "response.audio.delta",
    "response.output_audio.done": "response.audio.done",
    "response.output_audio_transcript.delta": "response.audio_transcript.delta",
    "response.output_audio_transcript.done": "response.audio_transcript.done",
    "response.output_text.delta": "response.text.delta",
    "response.output_text.done": "response.text.done",
    "conversation.item.added": "conversation.item.created",
}
_GA_NAMES = {beta: ga for ga, beta in BETA_NAMES.items()}


@dataclasses.dataclass(frozen=True)
class ServerEvent:
    """Base of every server event; subclasses set ``type`` and declare their fields."""

    type: ClassVar[str] = ""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.type:
            _EVENT_TYPES[cls.type] = cls

    @property
    def fields(self) -> JsonObject:
        """The event's body without ``type`` and ``event_id``."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def to_json(self, *, beta: bool = False) -> str:
        """The JSON text of the event; always encodable as UTF-8 (a websocket text frame).

        Non-ASCII text stays readable; a string that is not valid Unicode (a lone surrogate,
        which client input is checked for, but a bug could still pass on) is written as a JSON
        escape instead of failing the send."""
        kind = BETA_NAMES.get(self.type, self.type) if beta else self.type
        body = {"type": kind, "event_id": new_id("event"), **self.fields}
        text = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
        if not text.isascii():
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:
                text = json.dumps(body, ensure_ascii=True, separators=(",", ":"))
        return text


@dataclasses.dataclass(frozen=True)
class UnknownServerEvent(ServerEvent):
    """An event this version does not know (a newer server); kept whole."""

    name: str
    data: JsonObject

    @property
    def fields(self) -> JsonObject:
        return dict(self.data)


def encode_server_event(event: ServerEvent, *, beta: bool = False) -> str:
    return event.to_json(beta=beta)


def parse_server_event(data: str | bytes | Mapping[str, Any]) -> ServerEvent:
    """A received server event (JSON text or a decoded object) -> its class; GA or beta names.

    Unknown keys are ignored (a newer server may add some); a missing key of a known event
    raises ``ValueError``."""
    body = json.loads(data) if isinstance(data, str | bytes) else dict(data)
    kind = str(body.get("type", ""))
    cls = _EVENT_TYPES.get(_GA_NAMES.get(kind, kind))
    if cls is None:
        return UnknownServerEvent(kind, body)
    names = {f.name for f in dataclasses.fields(cls)}
    try:
        return cls(**{k: v for k, v in body.items() if k in names})
    except TypeError as error:
        raise ValueError(f"malformed {kind} event: {error}") from error


# -- session, errors ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class SessionCreated(ServerEvent):
    type: ClassVar[str] = "session.created"
    session: JsonObject


@dataclasses.dataclass(frozen=True)
class SessionUpdated(ServerEvent):
    type: ClassVar[str] = "session.updated"
    session: JsonObject


@dataclasses.dataclass(frozen=True)
class Error(ServerEvent):
    type: ClassVar[str] = "error"
    error: JsonObject

    @classmethod
    def of(cls, error: ProtocolError) -> Error:
        return cls(error_body(error))

    @property
    def code(self) -> str:
        return str(self.error.get("code") or "")

    @property
    def message(self) -> str:
        return str(self.error.get("message") or "")


def error_body(error: ProtocolError) -> JsonObject:
    return {"type": error.error_type, "code": error.code, "message": error.message,
            "param": error.param, "event_id": error.event_id}


def error_event(error: ProtocolError) -> Error:
    return Error.of(error)


# -- input audio buffer ------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class SpeechStarted(ServerEvent):
    type: ClassVar[str] = "input_audio_buffer.speech_started"
    audio_start_ms: int
    item_id: str


@dataclasses.dataclass(frozen=True)
class SpeechStopped(ServerEvent):
    type: ClassVar[str] = "input_audio_buffer.speech_stopped"
    audio_end_ms: int
    item_id: str


@dataclasses.dataclass(frozen=True)
class AudioCommitted(ServerEvent):
    type: ClassVar[str] = "input_audio_buffer.committed"
    item_id: str
    previous_item_id: str | None = None


@dataclasses.dataclass(frozen=True)
class AudioCleared(ServerEvent):
    type: ClassVar[str] = "input_audio_buffer.cleared"


# -- conversation ------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ItemAdded(ServerEvent):
    type: ClassVar[str] = "conversation.item.added"
    item: JsonObject
    previous_item_id: str | None = None


@dataclasses.dataclass(frozen=True)
class ItemDone(ServerEvent):
    type: ClassVar[str] = "conversation.item.done"
    item: JsonObject
    previous_item_id: str | None = None


@dataclasses.dataclass(frozen=True)
class ItemTruncated(ServerEvent):
    type: ClassVar[str] = "conversation.item.truncated"
    item_id: str
    content_index: int
    audio_end_ms: int


@dataclasses.dataclass(frozen=True)
class ItemDeleted(ServerEvent):
    type: ClassVar[str] = "conversation.item.deleted"
    item_id: str


@dataclasses.dataclass(frozen=True)
class ItemRetrieved(ServerEvent):
    type: ClassVar[str] = "conversation.item.retrieved"
    item: JsonObject


@dataclasses.dataclass(frozen=True)
class TranscriptDelta(ServerEvent):
    """A partial transcript: ``delta`` extends the confirmed text (extension fields say which
    words are confirmed and which are still tentative)."""

    type: ClassVar[str] = "conversation.item.input_audio_transcription.delta"
    item_id: str
    content_index: int
    delta: str
    confirmed: str = ""
    tentative: str = ""
    language: str | None = None


@dataclasses.dataclass(frozen=True)
class TranscriptCompleted(ServerEvent):
    type: ClassVar[str] = "conversation.item.input_audio_transcription.completed"
    item_id: str
    content_index: int
    transcript: str
    usage: JsonObject | None = None
    language: str | None = None
    language_probability: float | None = None


@dataclasses.dataclass(frozen=True)
class TranscriptFailed(ServerEvent):
    type: ClassVar[str] = "conversation.item.input_audio_transcription.failed"
    item_id: str
    content_index: int
    error: JsonObject
