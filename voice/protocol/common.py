"""What every part of the protocol shares: errors, ids, field checks, rates, stage names."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Mapping
from typing import Any, Literal

from voice.audio import SUPPORTED_RATES

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

# Sample rates a session may use for PCM16 audio in and out (24 kHz is the protocol's own;
# 16 and 48 kHz are extensions).
AUDIO_RATES = SUPPORTED_RATES
DEFAULT_AUDIO_RATE = 24_000
# The stages of a turn's latency report (``response.done`` -> ``response.latency``), in
# milliseconds from the end of the user's speech.
LATENCY_STAGES = ("vad_ms", "transcript_ms", "llm_first_token_ms", "first_audio_ready_ms",
                  "first_audio_sent_ms")


UNSET: Any = object()


def get_field(obj: Mapping[str, Any], key: str, kinds: type | tuple[type, ...],
              event_id: str | None, path: str, *, nullable: bool = False) -> Any:
    if key not in obj:
        return UNSET
    value = obj[key]
    if value is None:
        # ``null`` for an optional field is the field left out (frameworks send "instructions":
        # null), unless null means something for it (``nullable``: e.g. no language pin).
        return None if nullable else UNSET
    if isinstance(value, bool) and bool not in (kinds if isinstance(kinds, tuple) else (kinds,)):
        raise ProtocolError("invalid_type", f"{path} must not be a boolean",
                            event_id=event_id, param=path)
    if not isinstance(value, kinds):
        names = kinds.__name__ if isinstance(kinds, type) else "/".join(k.__name__ for k in kinds)
        raise ProtocolError("invalid_type", f"{path} must be {names}, got "
                            f"{type(value).__name__}", event_id=event_id, param=path)
    return value


def token_limit(obj: Mapping[str, Any], key: str, event_id: str | None,
                 path: str) -> Any:  # TokenLimit, or UNSET when absent
    """``max_output_tokens``: a positive integer or ``"inf"`` (``null`` means ``"inf"``).
    Numbers above the server's limit are not errors: the session caps them."""
    limit = get_field(obj, key, (int, str), event_id, path, nullable=True)
    if limit is UNSET:
        return UNSET
    if limit is None or limit == "inf":
        return "inf"
    if isinstance(limit, int) and limit >= 1:
        return limit
    raise ProtocolError("invalid_value", f"{path} must be a positive integer or 'inf'",
                        event_id=event_id, param=path)


def check_language(code: str, known: Collection[str] | None, event_id: str | None,
                    path: str) -> None:
    if known is not None and code not in known:
        raise ProtocolError("invalid_value",
                            f"{path} {code!r} is not a language the speech recognizer knows; "
                            "use an ISO 639-1 code such as 'en' or 'de'",
                            event_id=event_id, param=path)


def as_float(value: int | float, event_id: str | None, path: str) -> float:
    """A JSON number as a float; an integer too large for one is out of range, not a crash."""
    try:
        return float(value)
    except OverflowError as error:
        raise ProtocolError("invalid_value", f"{path} is out of range", event_id=event_id,
                            param=path) from error


def is_modalities(value: list[Any]) -> bool:
    return bool(value) and all(isinstance(v, str) and v in ("text", "audio") for v in value)
