"""Server events of a response: its lifecycle, its output items and their content parts
(text, audio, transcripts), and the nested ``response`` and message item objects they carry.
The base class and the parser are in :mod:`voice.protocol.server_events`."""

from __future__ import annotations

import base64
import dataclasses
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from voice.protocol.common import JsonObject
from voice.protocol.server_events import ServerEvent

# -- responses ---------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _ResponseEvent(ServerEvent):
    """An event carrying the whole response object."""

    response: JsonObject

    @property
    def id(self) -> str:
        return str(self.response.get("id") or "")

    @property
    def language(self) -> str | None:
        """The language the reply is written and spoken in (an extension)."""
        language = self.response.get("language")
        return language if isinstance(language, str) else None


@dataclasses.dataclass(frozen=True)
class ResponseCreated(_ResponseEvent):
    type: ClassVar[str] = "response.created"


@dataclasses.dataclass(frozen=True)
class ResponseDone(_ResponseEvent):
    type: ClassVar[str] = "response.done"

    @property
    def status(self) -> str:
        return str(self.response.get("status", ""))

    @property
    def reason(self) -> str | None:
        details = self.response.get("status_details") or {}
        return details.get("reason") if isinstance(details, dict) else None

    @property
    def latency(self) -> dict[str, float]:
        return dict(self.response.get("latency") or {})

    @property
    def text(self) -> str:
        """Everything the response said: the transcript (or text) of its output items."""
        return "".join(part.get("transcript") or part.get("text") or ""
                       for item in self.response.get("output") or []
                       for part in item.get("content") or [])


@dataclasses.dataclass(frozen=True)
class OutputItemAdded(ServerEvent):
    type: ClassVar[str] = "response.output_item.added"
    response_id: str
    output_index: int
    item: JsonObject


@dataclasses.dataclass(frozen=True)
class OutputItemDone(ServerEvent):
    type: ClassVar[str] = "response.output_item.done"
    response_id: str
    output_index: int
    item: JsonObject


@dataclasses.dataclass(frozen=True)
class _ContentEvent(ServerEvent):
    """Events about one content part of one output item of a response."""

    response_id: str
    item_id: str
    output_index: int
    content_index: int


@dataclasses.dataclass(frozen=True)
class ContentPartAdded(_ContentEvent):
    type: ClassVar[str] = "response.content_part.added"
    part: JsonObject


@dataclasses.dataclass(frozen=True)
class ContentPartDone(_ContentEvent):
    type: ClassVar[str] = "response.content_part.done"
    part: JsonObject


@dataclasses.dataclass(frozen=True)
class AudioDelta(_ContentEvent):
    """A piece of reply audio: base64 PCM16 mono at the session's output rate."""

    type: ClassVar[str] = "response.output_audio.delta"
    delta: str

    def samples(self) -> np.ndarray:
        return np.frombuffer(base64.b64decode(self.delta), "<i2")


@dataclasses.dataclass(frozen=True)
class AudioDone(_ContentEvent):
    type: ClassVar[str] = "response.output_audio.done"


@dataclasses.dataclass(frozen=True)
class AudioTranscriptDelta(_ContentEvent):
    type: ClassVar[str] = "response.output_audio_transcript.delta"
    delta: str


@dataclasses.dataclass(frozen=True)
class AudioTranscriptDone(_ContentEvent):
    type: ClassVar[str] = "response.output_audio_transcript.done"
    transcript: str


@dataclasses.dataclass(frozen=True)
class TextDelta(_ContentEvent):
    type: ClassVar[str] = "response.output_text.delta"
    delta: str


@dataclasses.dataclass(frozen=True)
class TextDone(_ContentEvent):
    type: ClassVar[str] = "response.output_text.done"
    text: str


# -- nested objects ----------------------------------------------------------------------------


def message_item(item_id: str, role: str, *, status: str = "completed", text: str | None = None,
                 transcript: str | None = None, audio: bool = False) -> JsonObject:
    """A conversation item of type message, as the Realtime API describes it."""
    if role == "user":
        part: JsonObject = ({"type": "input_audio", "transcript": transcript} if audio
                            else {"type": "input_text", "text": text or ""})
    elif role == "assistant":
        part = ({"type": "output_audio", "transcript": transcript or ""} if audio
                else {"type": "output_text", "text": text or ""})
    else:
        part = {"type": "input_text", "text": text or ""}
    return {"id": item_id, "object": "realtime.item", "type": "message", "role": role,
            "status": status, "content": [part]}


def response_object(response_id: str, status: str, *, output: list[JsonObject] | None = None,
                    modalities: tuple[str, ...] = ("audio",), reason: str | None = None,
                    language: str | None = None, latency: Mapping[str, float] | None = None,
                    usage: Mapping[str, int] | None = None,
                    max_output_tokens: int | None = None,
                    error: Mapping[str, Any] | None = None,
                    metadata: Mapping[str, str] | None = None) -> JsonObject:
    details: JsonObject | None = None
    if status == "cancelled":
        details = {"type": "cancelled", "reason": reason or "client_cancelled"}
    elif status in ("failed", "incomplete"):
        details = {"type": status, "reason": reason, "error": dict(error) if error else None}
    body: JsonObject = {
        "id": response_id, "object": "realtime.response", "status": status,
        "status_details": details, "output": output or [],
        "output_modalities": list(modalities), "conversation_id": None,
        "usage": dict(usage) if usage else None, "language": language,
    }
    if max_output_tokens is not None:
        body["max_output_tokens"] = max_output_tokens
    if metadata is not None:
        body["metadata"] = dict(metadata)  # echoed from response.create (clients match on it)
    if latency is not None:
        body["latency"] = {key: round(value, 1) for key, value in latency.items()}
    return body
