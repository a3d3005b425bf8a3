"""Typed server events: one definition of each name and its fields, both ways on the wire."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest

from voice.protocol import (
    BETA_NAMES,
    AudioCommitted,
    AudioDelta,
    Error,
    ItemAdded,
    ProtocolError,
    ResponseDone,
    SessionCreated,
    SpeechStarted,
    TextDelta,
    TranscriptCompleted,
    UnknownServerEvent,
    encode_server_event,
    message_item,
    parse_server_event,
    response_object,
)
from voice.protocol.server_events import ServerEvent

IDS = {"response_id": "resp_1", "item_id": "item_2", "output_index": 0, "content_index": 0}

EXAMPLES: list[ServerEvent] = [
    SessionCreated({"id": "sess_1", "type": "realtime"}),
    SpeechStarted(120, "item_1"),
    AudioCommitted("item_1", None),
    ItemAdded(message_item("item_1", "user", audio=True, transcript=None), "item_0"),
    TranscriptCompleted("item_1", 0, "Hallo", {"type": "duration", "seconds": 1.2}, "de", 0.97),
    TextDelta(**IDS, delta="Grüß dich"),
    AudioDelta(**IDS, delta=base64.b64encode(np.arange(4, dtype="<i2").tobytes()).decode()),
    ResponseDone(response_object("resp_1", "cancelled", reason="turn_detected",
                                 latency={"vad_ms": 512.04})),
    Error.of(ProtocolError("invalid_value", "no", event_id="e1", param="x")),
]


def test_a_server_event_is_json_with_its_type_and_a_fresh_event_id() -> None:
    event = AudioCommitted("item_1", "item_0")
    first, second = json.loads(event.to_json()), json.loads(event.to_json())
    assert first.pop("event_id") != second.pop("event_id")
    assert first == {"type": "input_audio_buffer.committed", "item_id": "item_1",
                     "previous_item_id": "item_0"}


@pytest.mark.parametrize("event", EXAMPLES, ids=lambda e: e.type)
def test_every_event_parses_back_into_the_same_value(event: ServerEvent) -> None:
    for beta in (False, True):
        assert parse_server_event(encode_server_event(event, beta=beta)) == event


def test_non_ascii_text_stays_readable_on_the_wire() -> None:
    assert "Grüß dich" in TextDelta(**IDS, delta="Grüß dich").to_json()


@pytest.mark.parametrize(("ga", "beta"), sorted(BETA_NAMES.items()))
def test_beta_clients_get_the_beta_event_names(ga: str, beta: str) -> None:
    body = {"type": ga, **IDS, "delta": "x", "transcript": "x", "text": "x", "item": {}}
    event = parse_server_event(body)
    assert json.loads(event.to_json(beta=True))["type"] == beta
    assert json.loads(event.to_json())["type"] == ga
    assert parse_server_event(event.to_json(beta=True)) == event


def test_an_unknown_event_from_a_newer_server_is_kept_whole() -> None:
    event = parse_server_event('{"type": "response.brand_new", "x": 1}')
    assert isinstance(event, UnknownServerEvent)
    assert event.name == "response.brand_new" and event.fields["x"] == 1


def test_an_event_missing_a_field_it_must_have_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match=r"malformed input_audio_buffer\.speech_started"):
        parse_server_event({"type": "input_audio_buffer.speech_started", "item_id": "i"})


def test_reply_audio_decodes_to_pcm16_samples() -> None:
    delta = next(e for e in EXAMPLES if isinstance(e, AudioDelta))
    assert delta.samples().tolist() == [0, 1, 2, 3]


def test_response_done_exposes_status_reason_and_latency() -> None:
    done = next(e for e in EXAMPLES if isinstance(e, ResponseDone))
    assert (done.status, done.reason) == ("cancelled", "turn_detected")
    assert done.latency == {"vad_ms": 512.0}
