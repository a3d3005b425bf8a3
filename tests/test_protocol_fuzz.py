"""Property-based fuzzing of the sans-I/O protocol: any input is an event or a typed error.

Whatever text or bytes a client sends, parsing (and applying a ``session.update``) either gives
a typed client event or raises :class:`ProtocolError`, never another exception; and the error
event built from it encodes to UTF-8 JSON that says the same code.
"""

from __future__ import annotations

import copy
import json

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fuzzing import (
    EDGE_VALUES,
    JSON_VALUES,
    VALID_EVENTS,
    client_text,
    dump,
    field_paths,
    mutated_events,
)
from voice.protocol import (
    AudioAppend,
    AudioClear,
    AudioCommit,
    ItemCreate,
    ItemTruncate,
    ProtocolError,
    ResponseCancel,
    ResponseCreate,
    ServerEvent,
    SessionConfig,
    SessionUpdate,
    SessionUpdated,
    apply_session_update,
    encode_server_event,
    error_event,
    parse_binary_audio,
    parse_client_event,
)

SESSION_UPDATES = tuple(e for e in VALID_EVENTS if e["type"] == "session.update")
FUZZ = settings(max_examples=300, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _encodes_as_utf8_json(event: ServerEvent) -> dict[str, object]:
    """The event as a GA client gets it; a beta client's encoding must work too."""
    for beta in (True, False):
        text = encode_server_event(event, beta=beta)
        decoded: dict[str, object] = json.loads(text.encode("utf-8"))
        assert isinstance(decoded, dict) and isinstance(decoded["type"], str)
    assert decoded["type"] == event.type
    return decoded


def _assert_error_is_answerable(error: ProtocolError) -> None:
    assert isinstance(error.code, str) and error.code
    assert isinstance(error.message, str) and error.message
    assert error.event_id is None or isinstance(error.event_id, str)
    assert error.param is None or isinstance(error.param, str)
    sent = _encodes_as_utf8_json(error_event(error))
    assert sent["error"] == {"type": error.error_type, "code": error.code,
                             "message": error.message, "param": error.param,
                             "event_id": error.event_id}


def _assert_well_typed(event: object) -> None:
    """The parsed event holds the types its dataclass declares."""
    event_id = getattr(event, "event_id", None)
    assert event_id is None or isinstance(event_id, str)
    if isinstance(event, AudioAppend):
        assert isinstance(event.samples, np.ndarray) and event.samples.dtype == np.int16
    elif isinstance(event, ItemCreate):
        assert event.role in ("user", "system", "assistant") and isinstance(event.text, str)
        assert event.item_id is None or isinstance(event.item_id, str)
    elif isinstance(event, ResponseCreate):
        assert event.instructions is None or isinstance(event.instructions, str)
        assert event.output_modalities in (None, ("audio",), ("text",))
    elif isinstance(event, ResponseCancel):
        assert event.response_id is None or isinstance(event.response_id, str)
    elif isinstance(event, ItemTruncate):
        assert isinstance(event.item_id, str) and isinstance(event.content_index, int)
        assert isinstance(event.audio_end_ms, int) and event.audio_end_ms >= 0
    else:
        assert isinstance(event, SessionUpdate | AudioCommit | AudioClear)


def _check_session_update(session: object) -> None:
    try:
        config = apply_session_update(SessionConfig(), session, "evt")
    except ProtocolError as error:
        _assert_error_is_answerable(error)
        return
    assert config.output_modalities in (("audio",), ("text",))
    assert config.turn_detection is None or 0 < config.turn_detection.threshold < 1
    assert config.temperature is None or 0 <= config.temperature <= 2
    _encodes_as_utf8_json(SessionUpdated(config.to_json("sess_1", "local")))


def _check_text(text: str | bytes) -> None:
    try:
        event = parse_client_event(text)
    except ProtocolError as error:
        _assert_error_is_answerable(error)
        return
    _assert_well_typed(event)
    if isinstance(event, SessionUpdate):
        _check_session_update(event.session)


@FUZZ
@given(client_text())
def test_any_text_frame_parses_to_an_event_or_a_typed_error(text: str) -> None:
    _check_text(text)


def test_every_field_of_every_event_set_to_each_edge_value_is_an_event_or_a_typed_error(
) -> None:
    """Exhaustive where random search is thin: each field of each valid event, each edge value
    (e.g. a 401-digit integer as ``turn_detection.threshold`` or ``temperature``)."""
    failures = []
    for template in VALID_EVENTS:
        for path in field_paths(template):
            for value in EDGE_VALUES:
                event = copy.deepcopy(template)
                *parents, key = path
                parent = event
                for step in parents:
                    parent = parent[step]
                parent[key] = value
                try:
                    _check_text(dump(event))
                except Exception as error:
                    failures.append(f"{template['type']} {'.'.join(map(str, path))} = "
                                    f"{dump(value)[:40]}: {error!r}")
    assert not failures, "\n".join(failures)


@FUZZ
@given(client_text())
def test_any_utf8_frame_given_as_bytes_parses_to_an_event_or_a_typed_error(text: str) -> None:
    _check_text(text.encode("utf-8", "surrogatepass"))  # invalid UTF-8 must be typed too


@FUZZ
@given(st.binary(max_size=64))
def test_any_bytes_as_a_text_frame_parse_to_an_event_or_a_typed_error(data: bytes) -> None:
    _check_text(data)


@FUZZ
@given(st.binary(max_size=4096))
def test_any_binary_frame_is_audio_samples_or_an_invalid_audio_error(data: bytes) -> None:
    try:
        event = parse_binary_audio(data)
    except ProtocolError as error:
        expected = "input_audio_buffer_append_empty" if not data else "invalid_audio"
        assert error.code == expected and (not data or len(data) % 2), error.code
        _assert_error_is_answerable(error)
        return
    assert event.samples.dtype == np.int16 and event.samples.size == len(data) // 2


@FUZZ
@given(st.one_of(JSON_VALUES.map(lambda value: {"type": "session.update", "session": value}),
                 mutated_events(SESSION_UPDATES)))
def test_any_session_update_payload_gives_a_config_or_a_typed_error(
        event: dict[str, object]) -> None:
    _check_text(dump(event))


@settings(max_examples=50, deadline=None)
@given(st.sampled_from(("event_id", "type")), st.integers(0xD800, 0xDFFF))
def test_lone_surrogate_escapes_are_answered_with_encodable_errors(key: str,
                                                                   code: int) -> None:
    other = "type" if key == "event_id" else "event_id"
    _check_text(f'{{"{key}": "x\\u{code:04x}", "{other}": "no.such.event"}}')
