"""A session's settings and how ``session.update`` changes them (GA nested and beta flat)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Collection
from typing import Any

from voice.audio import AudioFormatError, check_rate
from voice.protocol.common import (
    UNSET,
    JsonObject,
    ProtocolError,
    TokenLimit,
    as_float,
    check_language,
    get_field,
    is_modalities,
    token_limit,
)
from voice.protocol.tools import (
    TOOL_CHOICES,
    AnyTool,
    names_of,
    parse_tool_choice,
    parse_tools,
    tool_choice_json,
)

EAGERNESS = ("low", "medium", "high", "auto")
# Whisper reads only the last ~220 tokens of its prompt; a longer one is a client's mistake.
MAX_TRANSCRIPTION_PROMPT_CHARS = 1000


@dataclasses.dataclass(frozen=True)
class TurnDetection:
    """Automatic turn detection (Realtime names and defaults). ``server_vad`` ends a turn
    after ``silence_duration_ms`` of silence; ``semantic_vad`` asks a turn model at every
    short pause whether the user finished, and waits longer the less eager it is (the
    ``server_vad`` fields then only keep the VAD's threshold and padding)."""

    type: str = "server_vad"  # server_vad | semantic_vad
    threshold: float = 0.5
    prefix_padding_ms: int = 300
    silence_duration_ms: int = 500
    create_response: bool = True
    interrupt_response: bool = True
    eagerness: str = "auto"  # semantic_vad: low | medium | high | auto (= medium)

    def to_json(self) -> JsonObject:
        common = {"create_response": self.create_response,
                  "interrupt_response": self.interrupt_response}
        if self.type == "semantic_vad":
            return {"type": "semantic_vad", "eagerness": self.eagerness, **common}
        return {"type": "server_vad", "threshold": self.threshold,
                "prefix_padding_ms": self.prefix_padding_ms,
                "silence_duration_ms": self.silence_duration_ms, **common}


@dataclasses.dataclass(frozen=True)
class Interruption:
    """How speech over the assistant's reply is taken (extension ``session.interruption``).

    With ``guard``, speech that starts while a reply is audible cuts it only once its words
    are the user's (not the reply's own echo, not a backchannel such as "mhm" or "genau")
    and it has lasted ``min_speech_ms``, or once it has lasted ``max_wait_ms`` unjudged.
    Without it, any speech cuts the reply at once (the fastest barge-in, for headsets).
    ``backchannels``: ``ignore`` (no trace) or ``keep`` (a user item in the history).
    ``resume``: a reply cut off by speech that transcribes to nothing (a cough, a door)
    goes on from the word where it stopped, as a new response. ``duck_db``: while the guard
    judges speech that clearly stands out from what the microphone heard during the reply,
    the client is asked to play the reply this many dB quieter (``output_audio_buffer.duck``;
    0: never). ``hold``: the client says it pauses the reply instead (the duck event then
    says ``hold``) and goes on from where it paused once the speech was no interruption; the
    server's count of what was played stops meanwhile. ``echo_cancelled``: the client says
    its microphone does not hear the reply (an echo canceller, or a headset), so in the
    reply's first moments, before a quiet level is known, speech as loud as the user's own
    voice ducks or holds it too."""

    guard: bool = True
    min_speech_ms: int = 250
    max_wait_ms: int = 1500
    backchannels: str = "ignore"  # ignore | keep
    resume: bool = True
    duck_db: int = 18
    hold: bool = False
    echo_cancelled: bool = False

    def to_json(self) -> JsonObject:
        return dataclasses.asdict(self)


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
    transcription_prompt: str | None = None  # words to expect (Whisper's previous text)
    voice: str | None = None  # a voice name for every language (else per language)
    output_modalities: tuple[str, ...] = ("audio",)
    max_output_tokens: TokenLimit | None = None  # None: the server's default
    temperature: float | None = None
    tools: tuple[AnyTool, ...] = ()  # functions and MCP servers
    tool_choice: str = "auto"  # auto | none | required | the name of the one tool to call
    interruption: Interruption = Interruption()  # extension

    def to_json(self, session_id: str, model: str) -> JsonObject:
        """The GA ``session`` object."""
        turn = None if self.turn_detection is None else self.turn_detection.to_json()
        transcription: JsonObject | None = None
        if self.transcription:
            # Only the GA keys: some clients (pipecat) fail on any other key in this object.
            transcription = {"model": "whisper", "language": self.language}
            if self.transcription_prompt:
                transcription["prompt"] = self.transcription_prompt
        extension: JsonObject = {}
        if self.languages:  # the allowed set (set it in transcription.languages)
            extension["languages"] = list(self.languages)
        if self.interruption != Interruption():
            extension["interruption"] = self.interruption.to_json()
        return {
            "type": "realtime",
            "object": "realtime.session",
            "id": session_id,
            "model": model,
            "instructions": self.instructions,
            "output_modalities": list(self.output_modalities),
            "max_output_tokens": self.max_output_tokens or "inf",
            "tools": [tool.to_json() for tool in self.tools],
            "tool_choice": tool_choice_json(self.tool_choice),
            "audio": {
                "input": {"format": {"type": "audio/pcm", "rate": self.input_rate},
                          "turn_detection": turn, "transcription": transcription},
                "output": {"format": {"type": "audio/pcm", "rate": self.output_rate},
                           "voice": self.voice},
            },
            **extension,
        }


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
    rate = get_field(value, "rate", int, event_id, f"{path}.rate")
    if rate is UNSET:
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
    base = current or TurnDetection()
    kind = get_field(value, "type", str, event_id, f"{path}.type")
    if kind is UNSET:
        kind = base.type
    if kind not in ("server_vad", "semantic_vad"):
        raise ProtocolError("unsupported_turn_detection",
                            f"{path}.type {kind!r} is not supported (server_vad or semantic_vad)",
                            event_id=event_id, param=f"{path}.type")
    changes: dict[str, Any] = {"type": kind}
    eagerness = get_field(value, "eagerness", str, event_id, f"{path}.eagerness")
    if eagerness is not UNSET:
        if eagerness not in EAGERNESS:
            raise ProtocolError("invalid_value",
                                f"{path}.eagerness must be one of {', '.join(EAGERNESS)}",
                                event_id=event_id, param=f"{path}.eagerness")
        changes["eagerness"] = eagerness
    for key, kinds in (("threshold", (int, float)), ("prefix_padding_ms", int),
                       ("silence_duration_ms", int), ("create_response", bool),
                       ("interrupt_response", bool)):
        found = get_field(value, key, kinds, event_id, f"{path}.{key}")
        if found is not UNSET:
            changes[key] = found
    threshold = as_float(changes.get("threshold", base.threshold), event_id,
                          f"{path}.threshold")
    if not 0.0 < threshold < 1.0:
        raise ProtocolError("invalid_value", f"{path}.threshold must be between 0 and 1",
                            event_id=event_id, param=f"{path}.threshold")
    for key in ("prefix_padding_ms", "silence_duration_ms"):
        if changes.get(key, 0) < 0 or changes.get(key, 0) > 10_000:
            raise ProtocolError("invalid_value", f"{path}.{key} must be 0..10000",
                                event_id=event_id, param=f"{path}.{key}")
    return dataclasses.replace(base, **changes)


def _interruption(value: Any, current: Interruption, event_id: str | None) -> Interruption:
    path = "session.interruption"
    if not isinstance(value, dict):
        raise ProtocolError("invalid_type", f"{path} must be an object", event_id=event_id,
                            param=path)
    changes: dict[str, Any] = {}
    for key, kind in (("guard", bool), ("resume", bool), ("hold", bool),
                      ("echo_cancelled", bool), ("min_speech_ms", int), ("max_wait_ms", int),
                      ("backchannels", str), ("duck_db", int)):
        found = get_field(value, key, kind, event_id, f"{path}.{key}")
        if found is not UNSET:
            changes[key] = found
    if not 0 <= changes.get("min_speech_ms", current.min_speech_ms) <= 5000:
        raise ProtocolError("invalid_value", f"{path}.min_speech_ms must be 0..5000",
                            event_id=event_id, param=f"{path}.min_speech_ms")
    if not 100 <= changes.get("max_wait_ms", current.max_wait_ms) <= 10_000:
        raise ProtocolError("invalid_value", f"{path}.max_wait_ms must be 100..10000",
                            event_id=event_id, param=f"{path}.max_wait_ms")
    if not 0 <= changes.get("duck_db", current.duck_db) <= 60:
        raise ProtocolError("invalid_value", f"{path}.duck_db must be 0..60",
                            event_id=event_id, param=f"{path}.duck_db")
    if changes.get("backchannels", "ignore") not in ("ignore", "keep"):
        raise ProtocolError("invalid_value", f"{path}.backchannels must be ignore or keep",
                            event_id=event_id, param=f"{path}.backchannels")
    return dataclasses.replace(current, **changes)


def _transcription(value: Any, known: Collection[str] | None, event_id: str | None,
                   path: str) -> dict[str, Any]:
    if value is None:
        return {"transcription": False}
    if not isinstance(value, dict):
        raise ProtocolError("invalid_type", f"{path} must be an object or null",
                            event_id=event_id, param=path)
    changes: dict[str, Any] = {"transcription": True}
    language = get_field(value, "language", str, event_id, f"{path}.language", nullable=True)
    if language is not UNSET:
        changes["language"] = language.lower() if language else None
        if language:
            check_language(language.lower(), known, event_id, f"{path}.language")
    languages = get_field(value, "languages", list, event_id, f"{path}.languages", nullable=True)
    if languages is not UNSET:
        if languages is not None and not all(isinstance(x, str) and x for x in languages):
            raise ProtocolError("invalid_type", f"{path}.languages must be a list of codes",
                                event_id=event_id, param=f"{path}.languages")
        changes["languages"] = tuple(x.lower() for x in languages) if languages else None
        for index, code in enumerate(changes["languages"] or ()):
            check_language(code, known, event_id, f"{path}.languages[{index}]")
    prompt = get_field(value, "prompt", str, event_id, f"{path}.prompt", nullable=True)
    if prompt is not UNSET:
        if prompt is not None and len(prompt) > MAX_TRANSCRIPTION_PROMPT_CHARS:
            raise ProtocolError("invalid_value", f"{path}.prompt is longer than "
                                f"{MAX_TRANSCRIPTION_PROMPT_CHARS} characters",
                                event_id=event_id, param=f"{path}.prompt")
        changes["transcription_prompt"] = (prompt or "").strip() or None
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
    if session.get("tools") is not None:
        changes["tools"] = parse_tools(session["tools"], event_id, "session.tools")
    tools = changes.get("tools", config.tools)
    if session.get("tool_choice") is not None:
        changes["tool_choice"] = parse_tool_choice(session["tool_choice"], tools, event_id,
                                                   "session.tool_choice")
    elif config.tool_choice not in TOOL_CHOICES and config.tool_choice not in names_of(tools):
        changes["tool_choice"] = "auto"  # the forced tool is gone
    instructions = get_field(session, "instructions", str, event_id, "session.instructions")
    if instructions is not UNSET:
        changes["instructions"] = instructions
    for key in ("output_modalities", "modalities"):
        modalities = get_field(session, key, list, event_id, f"session.{key}")
        if modalities is UNSET:
            continue
        if not is_modalities(modalities):
            raise ProtocolError("invalid_value", f"session.{key} must be ['audio'] or ['text']",
                                event_id=event_id, param=f"session.{key}")
        changes["output_modalities"] = ("audio",) if "audio" in modalities else ("text",)
    for key in ("max_output_tokens", "max_response_output_tokens"):
        limit = token_limit(session, key, event_id, f"session.{key}")
        if limit is not UNSET:
            changes["max_output_tokens"] = limit
    temperature = get_field(session, "temperature", (int, float), event_id, "session.temperature")
    if temperature is not UNSET:
        temperature = as_float(temperature, event_id, "session.temperature")
        if not 0.0 <= temperature <= 2.0 or math.isnan(temperature):
            raise ProtocolError("invalid_value", "session.temperature must be 0..2",
                                event_id=event_id, param="session.temperature")
        changes["temperature"] = temperature
    interruption = session.get("interruption")
    if interruption is not None:
        changes["interruption"] = _interruption(interruption, config.interruption, event_id)
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
    voice = get_field(session, "voice", str, event_id, "session.voice", nullable=True)
    if voice is not UNSET:
        changes["voice"] = voice
    # GA nested fields.
    audio = get_field(session, "audio", dict, event_id, "session.audio")
    if audio is not UNSET:
        audio_in = get_field(audio, "input", dict, event_id, "session.audio.input")
        if audio_in is not UNSET:
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
        audio_out = get_field(audio, "output", dict, event_id, "session.audio.output")
        if audio_out is not UNSET:
            if "format" in audio_out:
                changes["output_rate"] = _audio_format_rate(audio_out["format"], event_id,
                                                            "session.audio.output.format")
            voice = get_field(audio_out, "voice", str, event_id, "session.audio.output.voice",
                           nullable=True)
            if voice is not UNSET:
                changes["voice"] = voice
    return dataclasses.replace(config, **changes)
