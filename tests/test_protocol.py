"""The sans-I/O Realtime protocol: literal client JSON -> typed events or ProtocolError, and
binary frames (session.update: tests/test_session_update.py; what the server sends:
tests/test_protocol_objects.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.protocol_helpers import parse_error
from voice.protocol import (
    AudioAppend,
    AudioClear,
    AudioCommit,
    ItemCreate,
    ItemTruncate,
    ProtocolError,
    ResponseCancel,
    ResponseCreate,
    SessionUpdate,
    parse_binary_audio,
    parse_client_event,
)

# PCM16 LE samples [0, 1, -1, 32767, -32768, 256] in base64.
PCM_B64 = "AAABAP///38AgAAB"
PCM_SAMPLES = [0, 1, -1, 32767, -32768, 256]




# -- client events parse from literal GA JSON ----------------------------------------------


def test_session_update_carries_the_session_object_and_event_id() -> None:
    event = parse_client_event(
        '{"type": "session.update", "event_id": "evt_1",'
        ' "session": {"type": "realtime", "instructions": "Be brief."}}')
    assert event == SessionUpdate("evt_1", {"type": "realtime", "instructions": "Be brief."})


def test_audio_append_decodes_base64_pcm16_into_int16_samples() -> None:
    event = parse_client_event(
        f'{{"type": "input_audio_buffer.append", "event_id": "evt_2", "audio": "{PCM_B64}"}}')
    assert isinstance(event, AudioAppend)
    assert event.event_id == "evt_2"
    assert event.samples.dtype == np.int16
    assert event.samples.tolist() == PCM_SAMPLES


def test_audio_append_with_empty_audio_is_an_error_naming_the_event() -> None:
    error = parse_error('{"type": "input_audio_buffer.append", "event_id": "a0", "audio": ""}')
    assert (error.code, error.param, error.event_id) == (
        "input_audio_buffer_append_empty", "audio", "a0")
    assert "empty" in error.message


def test_audio_commit_parses_with_its_event_id() -> None:
    event = parse_client_event('{"type": "input_audio_buffer.commit", "event_id": "evt_3"}')
    assert event == AudioCommit("evt_3")


def test_audio_clear_parses_and_event_id_is_optional() -> None:
    assert parse_client_event('{"type": "input_audio_buffer.clear"}') == AudioClear(None)


def test_item_create_of_a_user_text_message_gives_role_and_text() -> None:
    event = parse_client_event(
        '{"type": "conversation.item.create", "event_id": "evt_4", "item": {'
        '"type": "message", "role": "user", "id": "item_1",'
        ' "content": [{"type": "input_text", "text": "Hello, "},'
        ' {"type": "input_text", "text": "world"}]}}')
    assert event == ItemCreate("evt_4", "item_1", "user", "Hello, world")


@pytest.mark.parametrize(("role", "part_type"), [
    ("system", "input_text"), ("assistant", "output_text"), ("assistant", "text")])
def test_item_create_accepts_system_and_assistant_text_messages(role: str,
                                                                part_type: str) -> None:
    event = parse_client_event(
        f'{{"type": "conversation.item.create", "item": {{"role": "{role}",'
        f' "content": [{{"type": "{part_type}", "text": "Hi"}}]}}}}')
    assert event == ItemCreate(None, None, role, "Hi")  # type: ignore[arg-type]


def test_response_create_without_a_response_object_uses_the_session_defaults() -> None:
    event = parse_client_event('{"type": "response.create", "event_id": "evt_5"}')
    assert event == ResponseCreate("evt_5", None, None)


def test_response_create_with_text_output_modalities_and_instructions() -> None:
    event = parse_client_event(
        '{"type": "response.create", "response": {"output_modalities": ["text"],'
        ' "instructions": "Answer in French."}}')
    assert event == ResponseCreate(None, "Answer in French.", ("text",))


def test_response_create_with_beta_modalities_including_audio_means_audio() -> None:
    event = parse_client_event(
        '{"type": "response.create", "response": {"modalities": ["text", "audio"]}}')
    assert event == ResponseCreate(None, None, ("audio",))


def test_response_create_with_a_null_response_is_the_same_as_none() -> None:
    event = parse_client_event('{"type": "response.create", "response": null}')
    assert event == ResponseCreate(None, None, None)


def test_response_cancel_without_a_response_id_cancels_the_active_response() -> None:
    event = parse_client_event('{"type": "response.cancel", "event_id": "evt_6"}')
    assert event == ResponseCancel("evt_6", None)


def test_response_cancel_with_a_response_id_carries_it() -> None:
    event = parse_client_event('{"type": "response.cancel", "response_id": "resp_1"}')
    assert event == ResponseCancel(None, "resp_1")


def test_item_truncate_parses_item_id_content_index_and_audio_end_ms() -> None:
    event = parse_client_event(
        '{"type": "conversation.item.truncate", "event_id": "evt_7", "item_id": "item_9",'
        ' "content_index": 0, "audio_end_ms": 1500}')
    assert event == ItemTruncate("evt_7", "item_9", 0, 1500)


def test_item_truncate_without_content_index_defaults_to_zero() -> None:
    event = parse_client_event(
        '{"type": "conversation.item.truncate", "item_id": "item_9", "audio_end_ms": 0}')
    assert event == ItemTruncate(None, "item_9", 0, 0)


def test_a_text_frame_may_arrive_as_utf8_bytes() -> None:
    assert parse_client_event(b'{"type": "input_audio_buffer.commit"}') == AudioCommit(None)


# -- bad input is a ProtocolError with a specific code ---------------------------------------


@pytest.mark.parametrize(("text", "code", "param"), [
    ('{"type": "input_audio_buffer.commit"', "invalid_json", None),
    ("", "invalid_json", None),
    ("not json at all", "invalid_json", None),
    (b"\xff\xfe\x00", "invalid_json", None),
    ('[{"type": "input_audio_buffer.commit"}]', "invalid_event", None),
    ('"input_audio_buffer.commit"', "invalid_event", None),
    ("null", "invalid_event", None),
    ('{"type": "input_audio_buffer.commit", "event_id": 7}', "invalid_type", "event_id"),
])
def test_a_frame_that_is_not_an_event_object_is_an_error_not_a_disconnect(
        text: str | bytes, code: str, param: str | None) -> None:
    error = parse_error(text)
    assert (error.code, error.param, error.event_id) == (code, param, None)
    assert error.error_type == "invalid_request_error"
    assert error.message


@pytest.mark.parametrize(("text", "code"), [
    ('{"event_id": "evt_1"}', "missing_type"),
    ('{"event_id": "evt_1", "type": null}', "missing_type"),
    ('{"event_id": "evt_1", "type": 5}', "missing_type"),
    ('{"event_id": "evt_1", "type": "response.function_call_arguments.delta"}',
     "unknown_event_type"),
    ('{"event_id": "evt_1", "type": "session.created"}', "unknown_event_type"),
    ('{"event_id": "evt_1", "type": "Input_Audio_Buffer.Commit"}', "unknown_event_type"),
])
def test_a_missing_or_unknown_type_is_an_error_that_names_the_event(text: str,
                                                                     code: str) -> None:
    error = parse_error(text)
    assert (error.code, error.param, error.event_id) == (code, "type", "evt_1")


@pytest.mark.parametrize(("text", "code", "param"), [
    # wrong field types
    ('{"type": "session.update", "session": "realtime"}', "invalid_type", "session"),
    ('{"type": "session.update"}', "invalid_type", "session"),
    ('{"type": "input_audio_buffer.append", "audio": 12345}', "invalid_type", "audio"),
    ('{"type": "input_audio_buffer.append"}', "invalid_type", "audio"),
    ('{"type": "input_audio_buffer.append", "audio": null}', "invalid_type", "audio"),
    ('{"type": "conversation.item.create", "item": "hello"}', "invalid_type", "item"),
    ('{"type": "conversation.item.create", "item": {"role": "user", "content": "hi"}}',
     "invalid_type", "item.content"),
    ('{"type": "conversation.item.create", "item": {"role": "user", "content": []}}',
     "invalid_type", "item.content"),
    ('{"type": "conversation.item.create", "item": {"role": "user", "content": ["hi"]}}',
     "invalid_type", "item.content[0]"),
    ('{"type": "conversation.item.create", "item": {"role": "user",'
     ' "content": [{"type": "input_text", "text": 3}]}}', "invalid_type", "item.content[0].text"),
    ('{"type": "conversation.item.create", "item": {"role": "user", "id": 4,'
     ' "content": [{"type": "input_text", "text": "hi"}]}}', "invalid_type", "item.id"),
    ('{"type": "response.create", "response": "now"}', "invalid_type", "response"),
    ('{"type": "response.create", "response": {"instructions": 1}}',
     "invalid_type", "response.instructions"),
    ('{"type": "response.create", "response": {"output_modalities": "text"}}',
     "invalid_type", "response.output_modalities"),
    ('{"type": "response.cancel", "response_id": 1}', "invalid_type", "response_id"),
    ('{"type": "conversation.item.truncate", "item_id": "i", "audio_end_ms": "1500"}',
     "invalid_type", "audio_end_ms"),
    ('{"type": "conversation.item.truncate", "item_id": "i", "audio_end_ms": 1.5}',
     "invalid_type", "audio_end_ms"),
    ('{"type": "conversation.item.truncate", "item_id": "i", "audio_end_ms": true}',
     "invalid_type", "audio_end_ms"),
    ('{"type": "conversation.item.truncate", "item_id": 9, "audio_end_ms": 10}',
     "invalid_type", "item_id"),
    ('{"type": "conversation.item.truncate", "item_id": null, "audio_end_ms": 10}',
     "missing_field", "item_id"),
    ('{"type": "conversation.item.truncate", "item_id": "i", "content_index": "0",'
     ' "audio_end_ms": 10}', "invalid_type", "content_index"),
    # missing required fields
    ('{"type": "conversation.item.truncate", "audio_end_ms": 10}', "missing_field", "item_id"),
    ('{"type": "conversation.item.truncate", "item_id": "i"}', "missing_field", "audio_end_ms"),
    # bad audio
    ('{"type": "input_audio_buffer.append", "audio": "not base64!"}', "invalid_audio", "audio"),
    ('{"type": "input_audio_buffer.append", "audio": "AAA"}', "invalid_audio", "audio"),
    ('{"type": "input_audio_buffer.append", "audio": "AAAA"}', "invalid_audio", "audio"),
    ('{"type": "input_audio_buffer.append", "audio": "AA\\nAA=="}', "invalid_audio", "audio"),
    ('{"type": "input_audio_buffer.append", "audio": "ÀÀÀÀ"}', "invalid_audio", "audio"),
    # bad values
    ('{"type": "conversation.item.truncate", "item_id": "i", "audio_end_ms": -1}',
     "invalid_value", "audio_end_ms"),
    ('{"type": "conversation.item.create", "item": {"role": "tool",'
     ' "content": [{"type": "input_text", "text": "hi"}]}}', "invalid_value", "item.role"),
    ('{"type": "conversation.item.create", "item": {'
     ' "content": [{"type": "input_text", "text": "hi"}]}}', "invalid_value", "item.role"),
    ('{"type": "response.create", "response": {"output_modalities": []}}',
     "invalid_value", "response.output_modalities"),
    ('{"type": "response.create", "response": {"modalities": ["video"]}}',
     "invalid_value", "response.modalities"),
    # unsupported features
    ('{"type": "conversation.item.create", "item": {"type": "message", "role": "user",'
     ' "content": [{"type": "input_image", "image_url": "data:image/png;base64,AA=="}]}}',
     "unsupported_content_type", "item.content[0].type"),
    ('{"type": "conversation.item.create", "item": {"type": "message", "role": "user",'
     ' "content": [{"type": "input_audio", "audio": "AAAA"}]}}',
     "unsupported_content_type", "item.content[0].type"),
    ('{"type": "conversation.item.create", "item": {"type": "mcp_call", "id": "m1"}}',
     "unsupported_item_type", "item.type"),
    ('{"type": "conversation.item.create", "item": {"type": "mcp_approval_response",'
     ' "approve": true}}', "missing_field", "item.approval_request_id"),
    ('{"type": "conversation.item.create", "item": {"type": "mcp_approval_response",'
     ' "approval_request_id": "r1"}}', "missing_field", "item.approve"),
    ('{"type": "conversation.item.create", "item": {"type": "mcp_approval_response",'
     ' "approval_request_id": "r1", "approve": "yes"}}', "invalid_type", "item.approve"),
    ('{"type": "conversation.item.create", "item": {"type": "function_call",'
     ' "name": "get_weather", "arguments": "{}"}}', "missing_field", "item.call_id"),
    ('{"type": "conversation.item.create", "item": {"type": "function_call",'
     ' "name": "get_weather", "call_id": "c1", "arguments": "{\\"city\\": "}}',
     "invalid_value", "item.arguments"),
    ('{"type": "conversation.item.create", "item": {"type": "function_call",'
     ' "name": "get_weather", "call_id": "c1", "arguments": "[1]"}}',
     "invalid_value", "item.arguments"),
    ('{"type": "conversation.item.create", "item": {"type": "function_call",'
     ' "call_id": "c1", "arguments": "{}"}}', "missing_field", "item.name"),
    ('{"type": "conversation.item.create", "item": {"type": "function_call_output",'
     ' "call_id": "c1"}}', "missing_field", "item.output"),
    ('{"type": "conversation.item.create", "item": {"type": "function_call_output",'
     ' "call_id": "c1", "output": {"temp": 21}}}', "invalid_type", "item.output"),
    ('{"type": "conversation.item.create", "item": {"type": "function_call_output",'
     ' "call_id": "", "output": "21"}}', "missing_field", "item.call_id"),
    ('{"type": "response.create", "response": {"tools": [{"type": "function", "name": "a b"}]}}',
     "invalid_value", "response.tools[0].name"),
    ('{"type": "response.create", "response": {"tool_choice": "always"}}',
     "invalid_value", "response.tool_choice"),
])
def test_a_malformed_event_is_an_error_with_a_specific_code_and_param(
        text: str, code: str, param: str) -> None:
    event = json.loads(text)
    event["event_id"] = "evt_bad"
    error = parse_error(json.dumps(event))
    assert (error.code, error.param, error.event_id) == (code, param, "evt_bad")
    assert error.message


def test_odd_length_pcm_says_how_many_bytes_arrived() -> None:
    error = parse_error('{"type": "input_audio_buffer.append", "audio": "AAAA"}')
    assert error.code == "invalid_audio"
    assert "3" in error.message


# Bugs: these inputs escape as non-ProtocolError exceptions or are silently accepted.


def test_deeply_nested_json_is_an_invalid_json_error() -> None:
    assert parse_error("[" * 100_000).code == "invalid_json"


def test_an_integer_too_long_to_convert_is_an_invalid_json_error() -> None:
    text = ('{"type": "conversation.item.truncate", "item_id": "i", "audio_end_ms": 1'
            + "0" * 5000 + "}")
    assert parse_error(text).code == "invalid_json"


@pytest.mark.parametrize("modalities", ['[{}]', '[["audio"]]'])
def test_response_create_with_object_modalities_is_an_invalid_value(modalities: str) -> None:
    error = parse_error(f'{{"type": "response.create", "response": '
                   f'{{"output_modalities": {modalities}}}}}')
    assert (error.code, error.param) == ("invalid_value", "response.output_modalities")


@pytest.mark.parametrize("response", ["false", "0", '""', "[]"])
def test_response_create_with_a_falsy_non_object_response_is_an_invalid_type(
        response: str) -> None:
    error = parse_error(f'{{"type": "response.create", "response": {response}}}')
    assert (error.code, error.param) == ("invalid_type", "response")


# -- binary frames ---------------------------------------------------------------------------


def test_a_binary_frame_of_even_length_is_raw_pcm16_samples() -> None:
    event = parse_binary_audio(b"\x01\x00\xff\x7f\x00\x80\xff\xff")
    assert event.event_id is None
    assert event.samples.dtype == np.int16
    assert event.samples.tolist() == [1, 32767, -32768, -1]


def test_an_empty_binary_frame_is_an_error() -> None:
    with pytest.raises(ProtocolError) as caught:
        parse_binary_audio(b"")
    assert caught.value.code == "input_audio_buffer_append_empty"


@pytest.mark.parametrize("frame", [b"\x00", b"\x01\x00\x02"])
def test_a_binary_frame_of_odd_length_is_an_invalid_audio_error(frame: bytes) -> None:
    with pytest.raises(ProtocolError) as caught:
        parse_binary_audio(frame)
    assert caught.value.code == "invalid_audio"
    assert caught.value.event_id is None
