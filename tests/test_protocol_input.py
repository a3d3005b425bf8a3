"""Client input the protocol must refuse or bound, from literal JSON: lone surrogates, reply
lengths, unknown languages; and server events that always encode."""

from __future__ import annotations

import json

import pytest

from tests.protocol_helpers import parse_error, update
from voice.protocol import (
    Error,
    ProtocolError,
    ResponseCreate,
    SessionConfig,
    SessionUpdate,
    apply_session_update,
    encode_server_event,
    error_event,
    parse_client_event,
)

# The JSON escape \ud800 (a lone surrogate) as it arrives on the wire.
LONE = "\\ud800"


@pytest.mark.parametrize(("text", "param", "event_id"), [
    (f'{{"type": "bogus", "event_id": "{LONE}"}}', "event_id", None),
    (f'{{"type": "session.update", "event_id": "e1", "session": '
     f'{{"instructions": "Be kind {LONE}"}}}}', "session.instructions", "e1"),
    (f'{{"type": "conversation.item.create", "event_id": "e2", "item": {{"type": "message", '
     f'"role": "user", "content": [{{"type": "input_text", "text": "a{LONE}b"}}]}}}}',
     "item.content[0].text", "e2"),
    (f'{{"type": "session.update", "session": {{"audio": {{"output": '
     f'{{"voice": "{LONE}"}}}}}}}}', "session.audio.output.voice", None),
    (f'{{"type": "session.update", "session": {{"audio": {{"input": {{"transcription": '
     f'{{"language": "e{LONE}"}}}}}}}}}}', "session.audio.input.transcription.language", None),
    (f'{{"type": "response.create", "event_id": "e3", "response": '
     f'{{"instructions": "{LONE}"}}}}', "response.instructions", "e3"),
])
def test_a_lone_surrogate_anywhere_is_an_invalid_value_naming_where(
        text: str, param: str, event_id: str | None) -> None:
    error = parse_error(text)
    assert (error.code, error.param, error.event_id) == ("invalid_value", param, event_id)
    assert "surrogate" in error.message
    encode_server_event(error_event(error)).encode("utf-8")  # the answer can be sent


def test_a_lone_surrogate_in_a_key_is_refused_and_the_error_is_encodable() -> None:
    error = parse_error(f'{{"type": "session.update", "session": {{"x{LONE}": 1}}}}')
    assert error.code == "invalid_value" and error.param is not None
    encode_server_event(error_event(error)).encode("utf-8")


def test_a_surrogate_pair_is_an_ordinary_character() -> None:
    config = update('{"type": "session.update", "session": {"instructions": "\\ud83d\\ude00"}}')
    assert config.instructions == "😀"


def test_a_server_event_with_a_lone_surrogate_still_encodes_as_utf8() -> None:
    text = encode_server_event(Error({"event_id": "\ud800 é"}))
    text.encode("utf-8")
    assert json.loads(text)["error"]["event_id"] == "\ud800 é"


@pytest.mark.parametrize(("response", "limit"), [
    ('{"max_output_tokens": "inf"}', "inf"),
    ('{"max_output_tokens": null}', "inf"),
    ('{"max_output_tokens": 64}', 64),
    ('{"max_output_tokens": 1000000}', 1_000_000),  # capped by the session, not refused
    ('{"max_response_output_tokens": 32}', 32),  # beta name
    ("{}", None),
])
def test_response_create_carries_its_max_output_tokens(response: str,
                                                       limit: int | str | None) -> None:
    event = parse_client_event(f'{{"type": "response.create", "response": {response}}}')
    assert event == ResponseCreate(None, None, None, limit)  # type: ignore[arg-type]


@pytest.mark.parametrize(("response", "code"), [
    ('{"max_output_tokens": 0}', "invalid_value"),
    ('{"max_output_tokens": "lots"}', "invalid_value"),
    ('{"max_output_tokens": 1.5}', "invalid_type"),
    ('{"max_output_tokens": true}', "invalid_type"),
])
def test_a_bad_response_max_output_tokens_is_an_error(response: str, code: str) -> None:
    error = parse_error(f'{{"type": "response.create", "event_id": "r9", "response": {response}}}')
    assert (error.code, error.param, error.event_id) == (
        code, "response.max_output_tokens", "r9")


def _update_with_languages(text: str, known: set[str]) -> SessionConfig:
    event = parse_client_event(text)
    assert isinstance(event, SessionUpdate)
    return apply_session_update(SessionConfig(), event.session, event.event_id,
                                known_languages=known)


@pytest.mark.parametrize(("session", "param"), [
    ('{"audio": {"input": {"transcription": {"language": "zz"}}}}',
     "session.audio.input.transcription.language"),
    ('{"audio": {"input": {"transcription": {"languages": ["en", "xx"]}}}}',
     "session.audio.input.transcription.languages[1]"),
    ('{"input_audio_transcription": {"language": "ZZ"}}',
     "session.input_audio_transcription.language"),
])
def test_a_language_outside_the_known_set_is_an_invalid_value(session: str, param: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        _update_with_languages(
            f'{{"type": "session.update", "event_id": "u1", "session": {session}}}',
            {"en", "de"})
    assert (caught.value.code, caught.value.param, caught.value.event_id) == (
        "invalid_value", param, "u1")


def test_known_languages_pass_and_without_a_set_nothing_is_checked() -> None:
    text = ('{"type": "session.update", "session": {"audio": {"input": {"transcription": '
            '{"language": "DE", "languages": ["de", "en"]}}}}}')
    assert _update_with_languages(text, {"en", "de"}).language == "de"
    assert update('{"type": "session.update", "session": {"audio": {"input": '
                   '{"transcription": {"language": "zz"}}}}}').language == "zz"
