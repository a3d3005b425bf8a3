"""The wire protocol, sans I/O: OpenAI Realtime JSON events <-> typed Python values.

Client events are parsed by :func:`parse_client_event` into frozen dataclasses; anything
malformed raises :class:`ProtocolError`, which the server turns into an ``error`` event (never a
disconnect). Server events are :class:`ServerEvent` values made by the constructors below and
serialised by :func:`encode_server_event`, with the GA event names by default and the older
beta names for clients that connect with ``OpenAI-Beta: realtime=v1``.

Extensions keep to the protocol's shape and are documented in ``docs/protocol.md``: a
``language`` on transcripts and responses, an allowed ``languages`` set in the session's
transcription settings, 16 and 48 kHz PCM, binary frames of raw PCM16, and a ``latency``
report in ``response.done``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import uuid
from collections.abc import Callable, Collection, Mapping
from typing import Any, Literal

import numpy as np

from voice.audio import AudioFormatError, check_rate, decode_base64_pcm16, decode_pcm16

JsonObject = dict[str, Any]
# A reply-length setting as the client gave it: a number of tokens, or "inf" (the server caps
# both at its own limit; see voice.session).
TokenLimit = int | Literal["inf"]


class ProtocolError(Exception):
    """A client event the server cannot accept. Becomes an ``error`` event for the client."""

    def __init__(self, code: str, message: str, *, event_id: str | None = None,
                 param: str | None = None, error_type: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.event_id = event_id
        self.param = param
        self.error_type = error_type


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:20]}"


# -- session configuration --------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class TurnDetection:
    """``server_vad`` settings (Realtime names and defaults)."""

    threshold: float = 0.5
    prefix_padding_ms: int = 300
    silence_duration_ms: int = 500
    create_response: bool = True
    interrupt_response: bool = True


@dataclasses.dataclass(frozen=True)
class SessionConfig:
    """One session's settings; changed only by ``session.update``."""

    instructions: str = ""
    input_rate: int = 24_000
    output_rate: int = 24_000
    turn_detection: TurnDetection | None = TurnDetection()
    transcription: bool = True  # send input transcription events (partials and final)
    language: str | None = None  # pin the language of the user's speech
    languages: tuple[str, ...] | None = None  # allowed set for detection (extension)
    voice: str | None = None  # a voice name for every language (else per language)
    output_modalities: tuple[str, ...] = ("audio",)
    max_output_tokens: TokenLimit | None = None  # None: the server's default
    temperature: float | None = None

    def to_json(self, session_id: str, model: str) -> JsonObject:
        """The GA ``session`` object."""
        turn: JsonObject | None = None
        if self.turn_detection is not None:
            turn = {"type": "server_vad", **dataclasses.asdict(self.turn_detection)}
        transcription: JsonObject | None = None
        if self.transcription:
            transcription = {"model": "whisper", "language": self.language,
                             "languages": list(self.languages) if self.languages else None}
        return {
            "type": "realtime",
            "object": "realtime.session",
            "id": session_id,
            "model": model,
            "instructions": self.instructions,
            "output_modalities": list(self.output_modalities),
            "max_output_tokens": self.max_output_tokens or "inf",
            "audio": {
                "input": {"format": {"type": "audio/pcm", "rate": self.input_rate},
                          "turn_detection": turn, "transcription": transcription},
                "output": {"format": {"type": "audio/pcm", "rate": self.output_rate},
                           "voice": self.voice},
            },
        }


_UNSET: Any = object()


def _field(obj: Mapping[str, Any], key: str, kinds: type | tuple[type, ...], event_id: str | None,
           path: str, *, nullable: bool = False) -> Any:
    if key not in obj:
        return _UNSET
    value = obj[key]
    if value is None and nullable:
        return None
    if isinstance(value, bool) and bool not in (kinds if isinstance(kinds, tuple) else (kinds,)):
        raise ProtocolError("invalid_type", f"{path} must not be a boolean",
                            event_id=event_id, param=path)
    if not isinstance(value, kinds):
        names = kinds.__name__ if isinstance(kinds, type) else "/".join(k.__name__ for k in kinds)
        raise ProtocolError("invalid_type", f"{path} must be {names}, got "
                            f"{type(value).__name__}", event_id=event_id, param=path)
    return value


def _token_limit(obj: Mapping[str, Any], key: str, event_id: str | None,
                 path: str) -> Any:  # TokenLimit, or _UNSET when absent
    """``max_output_tokens``: a positive integer or ``"inf"`` (``null`` means ``"inf"``).
    Numbers above the server's limit are not errors: the session caps them."""
    limit = _field(obj, key, (int, str), event_id, path, nullable=True)
    if limit is _UNSET:
        return _UNSET
    if limit is None or limit == "inf":
        return "inf"
    if isinstance(limit, int) and limit >= 1:
        return limit
    raise ProtocolError("invalid_value", f"{path} must be a positive integer or 'inf'",
                        event_id=event_id, param=path)


def _check_language(code: str, known: Collection[str] | None, event_id: str | None,
                    path: str) -> None:
    if known is not None and code not in known:
        raise ProtocolError("invalid_value",
                            f"{path} {code!r} is not a language the speech recognizer knows; "
                            "use an ISO 639-1 code such as 'en' or 'de'",
                            event_id=event_id, param=path)


def _as_float(value: int | float, event_id: str | None, path: str) -> float:
    """A JSON number as a float; an integer too large for one is out of range, not a crash."""
    try:
        return float(value)
    except OverflowError as error:
        raise ProtocolError("invalid_value", f"{path} is out of range", event_id=event_id,
                            param=path) from error


def _is_modalities(value: list[Any]) -> bool:
    return bool(value) and all(isinstance(v, str) and v in ("text", "audio") for v in value)


def _audio_format_rate(value: Any, event_id: str | None, path: str) -> int:
    """GA ``{"type": "audio/pcm", "rate": N}`` or beta ``"pcm16"``."""
    if isinstance(value, str):
        if value != "pcm16":
            raise ProtocolError("unsupported_audio_format",
                                f"{path} {value!r} is not supported; use 'pcm16' or "
                                "{'type': 'audio/pcm', 'rate': 16000|24000|48000}",
                                event_id=event_id, param=path)
        return 24_000
    if not isinstance(value, dict):
        raise ProtocolError("invalid_type", f"{path} must be an object", event_id=event_id,
                            param=path)
    kind = value.get("type", "audio/pcm")
    if kind != "audio/pcm":
        raise ProtocolError("unsupported_audio_format",
                            f"{path}.type {kind!r} is not supported (only audio/pcm)",
                            event_id=event_id, param=f"{path}.type")
    rate = _field(value, "rate", int, event_id, f"{path}.rate")
    if rate is _UNSET:
        return 24_000
    try:
        return check_rate(rate)
    except AudioFormatError as error:
        raise ProtocolError("unsupported_sample_rate", str(error), event_id=event_id,
                            param=f"{path}.rate") from error


def _turn_detection(value: Any, current: TurnDetection | None, event_id: str | None,
                    path: str) -> TurnDetection | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ProtocolError("invalid_type", f"{path} must be an object or null",
                            event_id=event_id, param=path)
    kind = value.get("type", "server_vad")
    if kind not in ("server_vad", "semantic_vad"):
        raise ProtocolError("unsupported_turn_detection",
                            f"{path}.type {kind!r} is not supported (server_vad; semantic_vad "
                            "is treated as server_vad)",
                            event_id=event_id, param=f"{path}.type")
    base = current or TurnDetection()
    changes: dict[str, Any] = {}
    for key, kinds in (("threshold", (int, float)), ("prefix_padding_ms", int),
                       ("silence_duration_ms", int), ("create_response", bool),
                       ("interrupt_response", bool)):
        found = _field(value, key, kinds, event_id, f"{path}.{key}")
        if found is not _UNSET:
            changes[key] = found
    threshold = _as_float(changes.get("threshold", base.threshold), event_id,
                          f"{path}.threshold")
    if not 0.0 < threshold < 1.0:
        raise ProtocolError("invalid_value", f"{path}.threshold must be between 0 and 1",
                            event_id=event_id, param=f"{path}.threshold")
    for key in ("prefix_padding_ms", "silence_duration_ms"):
        if changes.get(key, 0) < 0 or changes.get(key, 0) > 10_000:
            raise ProtocolError("invalid_value", f"{path}.{key} must be 0..10000",
                                event_id=event_id, param=f"{path}.{key}")
    return dataclasses.replace(base, **changes)


def _transcription(value: Any, known: Collection[str] | None, event_id: str | None,
                   path: str) -> dict[str, Any]:
    if value is None:
        return {"transcription": False}
    if not isinstance(value, dict):
        raise ProtocolError("invalid_type", f"{path} must be an object or null",
                            event_id=event_id, param=path)
    changes: dict[str, Any] = {"transcription": True}
    language = _field(value, "language", str, event_id, f"{path}.language", nullable=True)
    if language is not _UNSET:
        changes["language"] = language.lower() if language else None
        if language:
            _check_language(language.lower(), known, event_id, f"{path}.language")
    languages = _field(value, "languages", list, event_id, f"{path}.languages", nullable=True)
    if languages is not _UNSET:
        if languages is not None and not all(isinstance(x, str) and x for x in languages):
            raise ProtocolError("invalid_type", f"{path}.languages must be a list of codes",
                                event_id=event_id, param=f"{path}.languages")
        changes["languages"] = tuple(x.lower() for x in languages) if languages else None
        for index, code in enumerate(changes["languages"] or ()):
            _check_language(code, known, event_id, f"{path}.languages[{index}]")
    return changes


def apply_session_update(config: SessionConfig, session: Any, event_id: str | None = None, *,
                         known_languages: Collection[str] | None = None) -> SessionConfig:
    """Apply a ``session.update`` payload (GA nested or beta flat fields) to ``config``.

    ``known_languages``, when given, is the set of language codes the speech recognizer
    knows: a transcription ``language`` or ``languages`` entry outside it is refused here, so
    that a bad setting fails now rather than on every spoken turn."""
    if not isinstance(session, dict):
        raise ProtocolError("invalid_type", "session must be an object", event_id=event_id,
                            param="session")
    changes: dict[str, Any] = {}
    kind = session.get("type", "realtime")
    if kind != "realtime":
        raise ProtocolError("unsupported_session_type",
                            f"session.type {kind!r} is not supported (realtime)",
                            event_id=event_id, param="session.type")
    if session.get("tools"):
        raise ProtocolError("unsupported_feature", "tools (function calling) are not supported",
                            event_id=event_id, param="session.tools")
    instructions = _field(session, "instructions", str, event_id, "session.instructions")
    if instructions is not _UNSET:
        changes["instructions"] = instructions
    for key in ("output_modalities", "modalities"):
        modalities = _field(session, key, list, event_id, f"session.{key}")
        if modalities is _UNSET:
            continue
        if not _is_modalities(modalities):
            raise ProtocolError("invalid_value", f"session.{key} must be ['audio'] or ['text']",
                                event_id=event_id, param=f"session.{key}")
        changes["output_modalities"] = ("audio",) if "audio" in modalities else ("text",)
    for key in ("max_output_tokens", "max_response_output_tokens"):
        limit = _token_limit(session, key, event_id, f"session.{key}")
        if limit is not _UNSET:
            changes["max_output_tokens"] = limit
    temperature = _field(session, "temperature", (int, float), event_id, "session.temperature")
    if temperature is not _UNSET:
        temperature = _as_float(temperature, event_id, "session.temperature")
        if not 0.0 <= temperature <= 2.0 or math.isnan(temperature):
            raise ProtocolError("invalid_value", "session.temperature must be 0..2",
                                event_id=event_id, param="session.temperature")
        changes["temperature"] = temperature
    # Beta flat fields.
    if "input_audio_format" in session:
        changes["input_rate"] = _audio_format_rate(session["input_audio_format"], event_id,
                                                   "session.input_audio_format")
    if "output_audio_format" in session:
        changes["output_rate"] = _audio_format_rate(session["output_audio_format"], event_id,
                                                    "session.output_audio_format")
    if "turn_detection" in session:
        changes["turn_detection"] = _turn_detection(session["turn_detection"],
                                                    config.turn_detection, event_id,
                                                    "session.turn_detection")
    if "input_audio_transcription" in session:
        changes.update(_transcription(session["input_audio_transcription"], known_languages,
                                      event_id, "session.input_audio_transcription"))
    voice = _field(session, "voice", str, event_id, "session.voice", nullable=True)
    if voice is not _UNSET:
        changes["voice"] = voice
    # GA nested fields.
    audio = _field(session, "audio", dict, event_id, "session.audio")
    if audio is not _UNSET:
        audio_in = _field(audio, "input", dict, event_id, "session.audio.input")
        if audio_in is not _UNSET:
            if "format" in audio_in:
                changes["input_rate"] = _audio_format_rate(audio_in["format"], event_id,
                                                           "session.audio.input.format")
            if "turn_detection" in audio_in:
                changes["turn_detection"] = _turn_detection(
                    audio_in["turn_detection"], config.turn_detection, event_id,
                    "session.audio.input.turn_detection")
            if "transcription" in audio_in:
                changes.update(_transcription(audio_in["transcription"], known_languages,
                                              event_id, "session.audio.input.transcription"))
        audio_out = _field(audio, "output", dict, event_id, "session.audio.output")
        if audio_out is not _UNSET:
            if "format" in audio_out:
                changes["output_rate"] = _audio_format_rate(audio_out["format"], event_id,
                                                            "session.audio.output.format")
            voice = _field(audio_out, "voice", str, event_id, "session.audio.output.voice",
                           nullable=True)
            if voice is not _UNSET:
                changes["voice"] = voice
    return dataclasses.replace(config, **changes)


# -- client events --------------------------------------------------------------------------


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
    event_id: str | None
    item_id: str | None
    role: Literal["user", "system", "assistant"]
    text: str


@dataclasses.dataclass(frozen=True)
class ResponseCreate:
    event_id: str | None
    instructions: str | None
    output_modalities: tuple[str, ...] | None
    max_output_tokens: TokenLimit | None = None  # None: the session's setting


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


ClientEvent = (SessionUpdate | AudioAppend | AudioCommit | AudioClear | ItemCreate
               | ResponseCreate | ResponseCancel | ItemTruncate)


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
    if item.get("type", "message") != "message":
        raise ProtocolError("unsupported_item_type",
                            f"item.type {item.get('type')!r} is not supported (message)",
                            event_id=event_id, param="item.type")
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


def _parse_response_create(data: JsonObject, event_id: str | None) -> ResponseCreate:
    response = data.get("response")
    if response is None:
        response = {}
    if not isinstance(response, dict):
        raise ProtocolError("invalid_type", "response must be an object", event_id=event_id,
                            param="response")
    instructions = _field(response, "instructions", str, event_id, "response.instructions")
    modalities = None
    for key in ("output_modalities", "modalities"):
        value = _field(response, key, list, event_id, f"response.{key}")
        if value is not _UNSET:
            if not _is_modalities(value):
                raise ProtocolError("invalid_value", f"response.{key} must be audio or text",
                                    event_id=event_id, param=f"response.{key}")
            modalities = ("audio",) if "audio" in value else ("text",)
    limit = None
    for key in ("max_output_tokens", "max_response_output_tokens"):
        value = _token_limit(response, key, event_id, f"response.{key}")
        if value is not _UNSET:
            limit = value
    return ResponseCreate(event_id, None if instructions is _UNSET else instructions, modalities,
                          limit)


def _parse_cancel(data: JsonObject, event_id: str | None) -> ResponseCancel:
    response_id = _field(data, "response_id", str, event_id, "response_id", nullable=True)
    return ResponseCancel(event_id, None if response_id is _UNSET else response_id)


def _parse_truncate(data: JsonObject, event_id: str | None) -> ItemTruncate:
    item_id = _field(data, "item_id", str, event_id, "item_id")
    content_index = _field(data, "content_index", int, event_id, "content_index")
    audio_end_ms = _field(data, "audio_end_ms", int, event_id, "audio_end_ms")
    if item_id is _UNSET or audio_end_ms is _UNSET:
        raise ProtocolError("missing_field", "item_id and audio_end_ms are required",
                            event_id=event_id, param="item_id" if item_id is _UNSET
                            else "audio_end_ms")
    if audio_end_ms < 0:
        raise ProtocolError("invalid_value", "audio_end_ms must be >= 0", event_id=event_id,
                            param="audio_end_ms")
    return ItemTruncate(event_id, item_id, 0 if content_index is _UNSET else content_index,
                        audio_end_ms)


_PARSERS: dict[str, Callable[[JsonObject, str | None], ClientEvent]] = {
    "session.update": _parse_session_update,
    "input_audio_buffer.append": _parse_append,
    "input_audio_buffer.commit": lambda data, event_id: AudioCommit(event_id),
    "input_audio_buffer.clear": lambda data, event_id: AudioClear(event_id),
    "conversation.item.create": _parse_item_create,
    "response.create": _parse_response_create,
    "response.cancel": _parse_cancel,
    "conversation.item.truncate": _parse_truncate,
}


# -- server events --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ServerEvent:
    type: str
    fields: JsonObject = dataclasses.field(default_factory=dict)


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


def encode_server_event(event: ServerEvent, *, beta: bool = False) -> str:
    """The JSON text of a server event; always encodable as UTF-8 (a websocket text frame).

    Non-ASCII text stays readable; a string that is not valid Unicode (a lone surrogate, which
    client input is checked for, but a bug could still pass on) is written as a JSON escape
    instead of failing the send."""
    kind = BETA_NAMES.get(event.type, event.type) if beta else event.type
    body = {"type": kind, "event_id": new_id("event"), **event.fields}
    text = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            text = json.dumps(body, ensure_ascii=True, separators=(",", ":"))
    return text


def error_event(error: ProtocolError) -> ServerEvent:
    return ServerEvent("error", {"error": {
        "type": error.error_type, "code": error.code, "message": error.message,
        "param": error.param, "event_id": error.event_id}})


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
                    error: Mapping[str, Any] | None = None) -> JsonObject:
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
    if latency is not None:
        body["latency"] = {key: round(value, 1) for key, value in latency.items()}
    return body
