"""What the server sends, as JSON: errors as error events, the session object and the
response object (statuses, reasons, latency)."""

from __future__ import annotations

import json

import pytest

from tests.protocol_helpers import parse_error, update
from voice.protocol import (
    ProtocolError,
    SessionConfig,
    encode_server_event,
    error_event,
    response_object,
)

# -- errors as server events -----------------------------------------------------------------


def test_a_protocol_error_serialises_as_an_error_event() -> None:
    error = ProtocolError("unsupported_sample_rate", "unsupported sample rate 8000",
                          event_id="evt_9", param="session.audio.input.format.rate")
    wire = json.loads(encode_server_event(error_event(error)))
    assert wire.pop("event_id")
    assert wire == {"type": "error", "error": {
        "type": "invalid_request_error", "code": "unsupported_sample_rate",
        "message": "unsupported sample rate 8000", "param": "session.audio.input.format.rate",
        "event_id": "evt_9"}}


def test_an_error_from_parsing_round_trips_into_an_error_event() -> None:
    error = parse_error('{"type": "nope", "event_id": "evt_n"}')
    wire = json.loads(encode_server_event(error_event(error)))
    assert wire["error"]["code"] == "unknown_event_type"
    assert wire["error"]["param"] == "type"
    assert wire["error"]["event_id"] == "evt_n"


def test_an_error_without_param_or_event_id_has_nulls() -> None:
    wire = json.loads(encode_server_event(error_event(parse_error("{"))))
    assert wire["error"]["code"] == "invalid_json"
    assert wire["error"]["param"] is None
    assert wire["error"]["event_id"] is None


def test_the_default_session_has_the_ga_shape() -> None:
    session = SessionConfig().to_json("sess_1", "local-model")
    assert session["type"] == "realtime"
    assert session["object"] == "realtime.session"
    assert (session["id"], session["model"]) == ("sess_1", "local-model")
    assert session["output_modalities"] == ["audio"]
    assert session["max_output_tokens"] == "inf"
    audio_in = session["audio"]["input"]
    assert audio_in["format"] == {"type": "audio/pcm", "rate": 24000}
    assert audio_in["turn_detection"] == {
        "type": "server_vad", "threshold": 0.5, "prefix_padding_ms": 300,
        "silence_duration_ms": 500, "create_response": True, "interrupt_response": True}
    assert audio_in["transcription"]["language"] is None
    assert session["audio"]["output"] == {"format": {"type": "audio/pcm", "rate": 24000},
                                          "voice": None}
    json.dumps(session)  # serialisable as is


def test_the_session_json_reflects_an_update() -> None:
    config = update(
        '{"type": "session.update", "session": {"max_output_tokens": 64, "audio": {'
        '"input": {"format": {"type": "audio/pcm", "rate": 16000}, "turn_detection": null,'
        ' "transcription": {"language": "de", "languages": ["de", "en"]}},'
        '"output": {"format": {"type": "audio/pcm", "rate": 48000}, "voice": "eva"}}}}')
    session = config.to_json("sess_2", "m")
    assert session["max_output_tokens"] == 64
    assert session["audio"]["input"]["format"]["rate"] == 16000
    assert session["audio"]["input"]["turn_detection"] is None
    assert session["audio"]["input"]["transcription"]["language"] == "de"
    # The allowed set is echoed beside the GA keys, never inside the GA transcription object.
    assert session["audio"]["input"]["transcription"] == {"model": "whisper", "language": "de"}
    assert session["languages"] == ["de", "en"]
    assert session["audio"]["output"] == {"format": {"type": "audio/pcm", "rate": 48000},
                                          "voice": "eva"}


def test_a_session_without_transcription_has_null_transcription() -> None:
    session = SessionConfig(transcription=False).to_json("s", "m")
    assert session["audio"]["input"]["transcription"] is None


def test_a_cancelled_response_has_cancelled_status_details_and_rounded_latency() -> None:
    body = response_object("resp_1", "cancelled", reason="turn_detected",
                           modalities=("text",), language="en",
                           latency={"first_audio_ms": 412.3456, "first_text_ms": 99.96})
    assert body["id"] == "resp_1"
    assert body["object"] == "realtime.response"
    assert body["status"] == "cancelled"
    assert body["status_details"] == {"type": "cancelled", "reason": "turn_detected"}
    assert body["output_modalities"] == ["text"]
    assert body["output"] == []
    assert body["language"] == "en"
    assert body["latency"] == {"first_audio_ms": 412.3, "first_text_ms": 100.0}


def test_a_cancelled_response_without_a_reason_was_cancelled_by_the_client() -> None:
    body = response_object("resp_1", "cancelled")
    assert body["status_details"] == {"type": "cancelled", "reason": "client_cancelled"}


def test_a_completed_response_has_no_status_details_and_no_latency_unless_given() -> None:
    body = response_object("resp_2", "completed", usage={"total_tokens": 12})
    assert body["status_details"] is None
    assert body["usage"] == {"total_tokens": 12}
    assert "latency" not in body


@pytest.mark.parametrize("status", ["failed", "incomplete"])
def test_failed_and_incomplete_responses_carry_their_reason(status: str) -> None:
    body = response_object("resp_3", status, reason="max_output_tokens")
    assert body["status_details"] == {"type": status, "reason": "max_output_tokens",
                                      "error": None}
