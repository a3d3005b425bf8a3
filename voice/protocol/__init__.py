"""The wire protocol, sans I/O: OpenAI Realtime JSON events <-> typed Python values.

Client events are parsed by :func:`parse_client_event` into frozen dataclasses
(:mod:`voice.protocol.client_events`); anything malformed raises :class:`ProtocolError`, which
the server turns into an ``error`` event (never a disconnect). Server events are frozen
dataclasses too (:mod:`voice.protocol.server_events`), encoded with ``to_json()`` (GA event
names by default, the older beta names for clients that connect with
``OpenAI-Beta: realtime=v1``) and decoded by clients with :func:`parse_server_event`. A
session's settings and ``session.update`` live in :mod:`voice.protocol.session_config`; names
every part shares (rates, latency stages) in :mod:`voice.protocol.common`.

Extensions keep to the protocol's shape and are documented in ``docs/protocol.md``: a
``language`` on transcripts and responses, an allowed ``languages`` set in the session's
transcription settings, 16 and 48 kHz PCM, binary frames of raw PCM16, and a ``latency``
report in ``response.done``.
"""

from voice.protocol.client_events import (
    AudioAppend,
    AudioClear,
    AudioCommit,
    ClientEvent,
    ItemCreate,
    ItemTruncate,
    ResponseCancel,
    ResponseCreate,
    SessionUpdate,
    parse_binary_audio,
    parse_client_event,
)
from voice.protocol.common import (
    AUDIO_RATES,
    DEFAULT_AUDIO_RATE,
    LATENCY_STAGES,
    JsonObject,
    ProtocolError,
    TokenLimit,
    new_id,
)
from voice.protocol.server_events import (
    BETA_NAMES,
    AudioCleared,
    AudioCommitted,
    AudioDelta,
    AudioDone,
    AudioTranscriptDelta,
    AudioTranscriptDone,
    ContentPartAdded,
    ContentPartDone,
    Error,
    ItemAdded,
    ItemDone,
    ItemTruncated,
    OutputItemAdded,
    OutputItemDone,
    ResponseCreated,
    ResponseDone,
    ServerEvent,
    SessionCreated,
    SessionUpdated,
    SpeechStarted,
    SpeechStopped,
    TextDelta,
    TextDone,
    TranscriptCompleted,
    TranscriptDelta,
    TranscriptFailed,
    UnknownServerEvent,
    encode_server_event,
    error_body,
    error_event,
    message_item,
    parse_server_event,
    response_object,
)
from voice.protocol.session_config import SessionConfig, TurnDetection, apply_session_update
from voice.protocol.tools import (
    TOOL_CHOICES,
    FunctionCallArgumentsDelta,
    FunctionCallArgumentsDone,
    FunctionTool,
    function_call_item,
    function_call_output_item,
    parse_tool_choice,
    parse_tools,
    tool_choice_json,
)

__all__ = [
    "AUDIO_RATES", "BETA_NAMES", "DEFAULT_AUDIO_RATE", "LATENCY_STAGES", "TOOL_CHOICES",
    "AudioAppend", "AudioClear", "AudioCleared", "AudioCommit", "AudioCommitted", "AudioDelta",
    "AudioDone",
    "AudioTranscriptDelta", "AudioTranscriptDone", "ClientEvent", "ContentPartAdded",
    "ContentPartDone", "Error", "FunctionCallArgumentsDelta", "FunctionCallArgumentsDone",
    "FunctionTool", "ItemAdded", "ItemCreate", "ItemDone", "ItemTruncate", "ItemTruncated",
    "JsonObject", "OutputItemAdded", "OutputItemDone", "ProtocolError", "ResponseCancel",
    "ResponseCreate", "ResponseCreated", "ResponseDone", "ServerEvent", "SessionConfig",
    "SessionCreated", "SessionUpdate", "SessionUpdated", "SpeechStarted", "SpeechStopped",
    "TextDelta", "TextDone", "TokenLimit", "TranscriptCompleted", "TranscriptDelta",
    "TranscriptFailed", "TurnDetection", "UnknownServerEvent", "apply_session_update",
    "encode_server_event", "error_body", "error_event", "function_call_item",
    "function_call_output_item", "message_item", "new_id", "parse_binary_audio",
    "parse_client_event", "parse_server_event", "parse_tool_choice", "parse_tools",
    "response_object", "tool_choice_json",
]
