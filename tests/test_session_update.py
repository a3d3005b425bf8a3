"""session.update, sans I/O: GA nested fields, the older beta flat names, and refusals."""

from __future__ import annotations

import pytest

from tests.protocol_helpers import update, update_error
from voice.protocol import (
    ProtocolError,
    SessionConfig,
    TurnDetection,
    apply_session_update,
)

# -- session.update: GA nested fields -------------------------------------------------------


@pytest.mark.parametrize("rate", [16000, 24000, 48000])
def test_ga_audio_formats_set_the_input_and_output_rates(rate: int) -> None:
    config = update(
        '{"type": "session.update", "session": {"type": "realtime", "audio": {'
        f'"input": {{"format": {{"type": "audio/pcm", "rate": {rate}}}}},'
        f'"output": {{"format": {{"type": "audio/pcm", "rate": {rate}}}}}}}}}}}')
    assert (config.input_rate, config.output_rate) == (rate, rate)


def test_input_and_output_rates_are_independent() -> None:
    config = update(
        '{"type": "session.update", "session": {"audio": {'
        '"input": {"format": {"type": "audio/pcm", "rate": 16000}},'
        '"output": {"format": {"type": "audio/pcm", "rate": 48000}}}}}')
    assert (config.input_rate, config.output_rate) == (16000, 48000)


def test_a_ga_format_without_a_rate_means_24_khz() -> None:
    before = SessionConfig(input_rate=16000)
    config = update('{"type": "session.update", "session": {"audio": {"input": '
                     '{"format": {"type": "audio/pcm"}}}}}', before)
    assert config.input_rate == 24000


def test_ga_server_vad_settings_are_applied() -> None:
    config = update(
        '{"type": "session.update", "session": {"audio": {"input": {"turn_detection": {'
        '"type": "server_vad", "threshold": 0.7, "silence_duration_ms": 800,'
        ' "prefix_padding_ms": 200, "create_response": false, "interrupt_response": false'
        '}}}}}')
    assert config.turn_detection == TurnDetection(
        threshold=0.7, prefix_padding_ms=200, silence_duration_ms=800, create_response=False,
        interrupt_response=False)


def test_null_turn_detection_turns_server_vad_off() -> None:
    config = update('{"type": "session.update", "session": {"audio": {"input": '
                     '{"turn_detection": null}}}}')
    assert config.turn_detection is None


def test_turn_detection_after_null_starts_again_from_the_defaults() -> None:
    off = SessionConfig(turn_detection=None)
    config = update('{"type": "session.update", "session": {"audio": {"input": '
                     '{"turn_detection": {"type": "server_vad", "threshold": 0.6}}}}}', off)
    assert config.turn_detection == TurnDetection(threshold=0.6)


def test_updating_only_the_threshold_keeps_the_other_vad_settings() -> None:
    first = update('{"type": "session.update", "session": {"audio": {"input": '
                    '{"turn_detection": {"type": "server_vad", "silence_duration_ms": 900,'
                    ' "prefix_padding_ms": 100}}}}}')
    second = update('{"type": "session.update", "session": {"audio": {"input": '
                     '{"turn_detection": {"threshold": 0.3}}}}}', first)
    assert second.turn_detection == TurnDetection(threshold=0.3, prefix_padding_ms=100,
                                                  silence_duration_ms=900)


def test_a_partial_update_keeps_every_other_setting() -> None:
    before = SessionConfig(instructions="Be kind.", input_rate=16000, output_rate=48000,
                           language="de", voice="thorsten", output_modalities=("text",),
                           max_output_tokens=100, temperature=0.8)
    after = update('{"type": "session.update", "session": {"audio": {"input": '
                    '{"turn_detection": {"threshold": 0.9}}}}}', before)
    assert after == SessionConfig(instructions="Be kind.", input_rate=16000, output_rate=48000,
                                  language="de", voice="thorsten", output_modalities=("text",),
                                  max_output_tokens=100, temperature=0.8,
                                  turn_detection=TurnDetection(threshold=0.9))


def test_an_empty_session_update_changes_nothing() -> None:
    before = SessionConfig(instructions="x", input_rate=48000)
    assert update('{"type": "session.update", "session": {}}', before) == before


def test_transcription_language_is_pinned_and_lowercased() -> None:
    config = update('{"type": "session.update", "session": {"audio": {"input": '
                     '{"transcription": {"model": "whisper-1", "language": "FR"}}}}}')
    assert (config.transcription, config.language) == (True, "fr")


def test_transcription_languages_extension_sets_the_allowed_set() -> None:
    config = update('{"type": "session.update", "session": {"audio": {"input": '
                     '{"transcription": {"languages": ["EN", "de", "uk"]}}}}}')
    assert config.languages == ("en", "de", "uk")
    assert config.language is None


def test_null_language_and_languages_unpin_the_language() -> None:
    before = SessionConfig(language="en", languages=("en", "de"))
    config = update('{"type": "session.update", "session": {"audio": {"input": '
                     '{"transcription": {"language": null, "languages": null}}}}}', before)
    assert (config.language, config.languages) == (None, None)


def test_a_transcription_prompt_is_kept_echoed_and_cleared() -> None:
    config = update('{"type": "session.update", "session": {"audio": {"input": '
                    '{"transcription": {"prompt": "  Küche, Wohnzimmer, Schlafzimmer "}}}}}')
    assert config.transcription_prompt == "Küche, Wohnzimmer, Schlafzimmer"
    echoed = config.to_json("sess_1", "m")["audio"]["input"]["transcription"]
    assert echoed["prompt"] == "Küche, Wohnzimmer, Schlafzimmer"
    # Another transcription setting leaves it as it was; null or "" clears it.
    assert update('{"type": "session.update", "session": {"audio": {"input": '
                  '{"transcription": {"language": "de"}}}}}',
                  config).transcription_prompt == "Küche, Wohnzimmer, Schlafzimmer"
    for empty in ("null", '""', '"  "'):
        cleared = update('{"type": "session.update", "session": {"audio": {"input": '
                         f'{{"transcription": {{"prompt": {empty}}}}}}}}}}}', config)
        assert cleared.transcription_prompt is None
        assert "prompt" not in cleared.to_json("sess_1", "m")["audio"]["input"]["transcription"]


@pytest.mark.parametrize(("prompt", "code"), [('"' + "x" * 1001 + '"', "invalid_value"),
                                              ("42", "invalid_type")])
def test_a_transcription_prompt_that_is_too_long_or_not_text_is_refused(prompt: str,
                                                                        code: str) -> None:
    error = update_error('{"type": "session.update", "session": {"input_audio_transcription": '
                         f'{{"prompt": {prompt}}}}}}}')
    assert (error.code, error.param) == (code, "session.input_audio_transcription.prompt")


def test_null_transcription_turns_transcription_events_off() -> None:
    config = update('{"type": "session.update", "session": {"audio": {"input": '
                     '{"transcription": null}}}}')
    assert config.transcription is False


def test_output_voice_instructions_modalities_and_token_limit_are_applied() -> None:
    config = update(
        '{"type": "session.update", "session": {"type": "realtime",'
        ' "instructions": "Speak slowly.", "output_modalities": ["text"],'
        ' "max_output_tokens": 256, "audio": {"output": {"voice": "alloy"}}}}')
    assert config.instructions == "Speak slowly."
    assert config.output_modalities == ("text",)
    assert config.max_output_tokens == 256
    assert config.voice == "alloy"


def test_a_null_voice_goes_back_to_the_per_language_voices() -> None:
    config = update('{"type": "session.update", "session": {"audio": {"output": '
                     '{"voice": null}}}}', SessionConfig(voice="alloy"))
    assert config.voice is None


@pytest.mark.parametrize("value", ['"inf"', "null"])
def test_max_output_tokens_inf_is_kept_for_the_session_to_cap(value: str) -> None:
    config = update(f'{{"type": "session.update", "session": {{"max_output_tokens": {value}}}}}',
                     SessionConfig(max_output_tokens=50))
    assert config.max_output_tokens == "inf"


def test_max_output_tokens_above_any_old_bound_is_not_an_error() -> None:
    config = update('{"type": "session.update", "session": {"max_output_tokens": 1000000}}')
    assert config.max_output_tokens == 1_000_000  # the session caps it at its limit


def test_output_modalities_with_audio_means_audio_with_its_transcript() -> None:
    config = update('{"type": "session.update", "session": '
                     '{"output_modalities": ["audio", "text"]}}', SessionConfig(
                         output_modalities=("text",)))
    assert config.output_modalities == ("audio",)


# -- session.update: the older beta flat names ----------------------------------------------


def test_beta_flat_fields_are_applied() -> None:
    config = update(
        '{"type": "session.update", "session": {'
        '"modalities": ["text"], "instructions": "Hi.", "voice": "verse",'
        ' "input_audio_format": "pcm16", "output_audio_format": "pcm16",'
        ' "input_audio_transcription": {"model": "whisper-1", "language": "es"},'
        ' "turn_detection": {"type": "server_vad", "threshold": 0.4,'
        ' "prefix_padding_ms": 250, "silence_duration_ms": 600},'
        ' "temperature": 0.8, "max_response_output_tokens": 1024}}',
        SessionConfig(input_rate=16000, output_rate=48000))
    assert config == SessionConfig(
        instructions="Hi.", input_rate=24000, output_rate=24000,
        turn_detection=TurnDetection(threshold=0.4, prefix_padding_ms=250,
                                     silence_duration_ms=600), transcription=True, language="es",
        voice="verse", output_modalities=("text",), max_output_tokens=1024, temperature=0.8)


def test_beta_null_turn_detection_and_transcription_turn_them_off() -> None:
    config = update('{"type": "session.update", "session": {"turn_detection": null,'
                     ' "input_audio_transcription": null}}')
    assert (config.turn_detection, config.transcription) == (None, False)


def test_beta_max_response_output_tokens_inf_is_kept_for_the_session_to_cap() -> None:
    config = update('{"type": "session.update", "session": '
                     '{"max_response_output_tokens": "inf"}}', SessionConfig(max_output_tokens=9))
    assert config.max_output_tokens == "inf"


def test_an_integer_temperature_is_stored_as_a_float() -> None:
    config = update('{"type": "session.update", "session": {"temperature": 1}}')
    assert config.temperature == 1.0
    assert isinstance(config.temperature, float)


# -- session.update: errors -----------------------------------------------------------------


@pytest.mark.parametrize(("session", "code", "param"), [
    # formats and rates
    ('{"audio": {"input": {"format": {"type": "audio/pcm", "rate": 8000}}}}',
     "unsupported_sample_rate", "session.audio.input.format.rate"),
    ('{"audio": {"output": {"format": {"type": "audio/pcm", "rate": 44100}}}}',
     "unsupported_sample_rate", "session.audio.output.format.rate"),
    ('{"audio": {"input": {"format": {"type": "audio/pcm", "rate": "24000"}}}}',
     "invalid_type", "session.audio.input.format.rate"),
    ('{"audio": {"input": {"format": {"type": "audio/pcm", "rate": 24000.0}}}}',
     "invalid_type", "session.audio.input.format.rate"),
    ('{"audio": {"input": {"format": {"type": "audio/pcmu"}}}}',
     "unsupported_audio_format", "session.audio.input.format.type"),
    ('{"audio": {"output": {"format": {"type": "audio/pcma"}}}}',
     "unsupported_audio_format", "session.audio.output.format.type"),
    ('{"audio": {"input": {"format": "g711_ulaw"}}}',
     "unsupported_audio_format", "session.audio.input.format"),
    ('{"audio": {"input": {"format": 16000}}}', "invalid_type", "session.audio.input.format"),
    ('{"input_audio_format": "g711_ulaw"}',
     "unsupported_audio_format", "session.input_audio_format"),
    ('{"output_audio_format": "g711_alaw"}',
     "unsupported_audio_format", "session.output_audio_format"),
    # turn detection
    ('{"audio": {"input": {"turn_detection": {"type": "server_vad", "threshold": 1.5}}}}',
     "invalid_value", "session.audio.input.turn_detection.threshold"),
    ('{"audio": {"input": {"turn_detection": {"threshold": 0}}}}',
     "invalid_value", "session.audio.input.turn_detection.threshold"),
    ('{"audio": {"input": {"turn_detection": {"threshold": 1}}}}',
     "invalid_value", "session.audio.input.turn_detection.threshold"),
    ('{"audio": {"input": {"turn_detection": {"threshold": -0.2}}}}',
     "invalid_value", "session.audio.input.turn_detection.threshold"),
    ('{"turn_detection": {"threshold": NaN}}',
     "invalid_value", "session.turn_detection.threshold"),
    ('{"audio": {"input": {"turn_detection": {"threshold": true}}}}',
     "invalid_type", "session.audio.input.turn_detection.threshold"),
    ('{"audio": {"input": {"turn_detection": {"threshold": "0.5"}}}}',
     "invalid_type", "session.audio.input.turn_detection.threshold"),
    ('{"audio": {"input": {"turn_detection": {"silence_duration_ms": 500.5}}}}',
     "invalid_type", "session.audio.input.turn_detection.silence_duration_ms"),
    ('{"audio": {"input": {"turn_detection": {"silence_duration_ms": -1}}}}',
     "invalid_value", "session.audio.input.turn_detection.silence_duration_ms"),
    ('{"audio": {"input": {"turn_detection": {"prefix_padding_ms": 10001}}}}',
     "invalid_value", "session.audio.input.turn_detection.prefix_padding_ms"),
    ('{"audio": {"input": {"turn_detection": {"create_response": 1}}}}',
     "invalid_type", "session.audio.input.turn_detection.create_response"),
    ('{"audio": {"input": {"turn_detection": {"type": "push_to_talk"}}}}',
     "unsupported_turn_detection", "session.audio.input.turn_detection.type"),
    ('{"audio": {"input": {"turn_detection": "server_vad"}}}',
     "invalid_type", "session.audio.input.turn_detection"),
    ('{"turn_detection": {"prefix_padding_ms": true}}',
     "invalid_type", "session.turn_detection.prefix_padding_ms"),
    # transcription
    ('{"audio": {"input": {"transcription": "whisper"}}}',
     "invalid_type", "session.audio.input.transcription"),
    ('{"audio": {"input": {"transcription": {"language": 1}}}}',
     "invalid_type", "session.audio.input.transcription.language"),
    ('{"audio": {"input": {"transcription": {"languages": "en"}}}}',
     "invalid_type", "session.audio.input.transcription.languages"),
    ('{"audio": {"input": {"transcription": {"languages": ["en", ""]}}}}',
     "invalid_type", "session.audio.input.transcription.languages"),
    ('{"input_audio_transcription": {"languages": ["en", 2]}}',
     "invalid_type", "session.input_audio_transcription.languages"),
    # structure
    ('{"audio": "pcm16"}', "invalid_type", "session.audio"),
    ('{"audio": {"input": []}}', "invalid_type", "session.audio.input"),
    ('{"audio": {"output": {"voice": 3}}}', "invalid_type", "session.audio.output.voice"),
    ('{"voice": false}', "invalid_type", "session.voice"),
    ('{"instructions": ["Be brief."]}', "invalid_type", "session.instructions"),
    # modalities, token limit, temperature
    ('{"output_modalities": []}', "invalid_value", "session.output_modalities"),
    ('{"output_modalities": ["video"]}', "invalid_value", "session.output_modalities"),
    ('{"modalities": "text"}', "invalid_type", "session.modalities"),
    ('{"max_output_tokens": 0}', "invalid_value", "session.max_output_tokens"),
    ('{"max_output_tokens": "infinite"}', "invalid_value", "session.max_output_tokens"),
    ('{"max_output_tokens": true}', "invalid_type", "session.max_output_tokens"),
    ('{"max_output_tokens": 100.0}', "invalid_type", "session.max_output_tokens"),
    ('{"max_response_output_tokens": -5}',
     "invalid_value", "session.max_response_output_tokens"),
    ('{"temperature": 2.5}', "invalid_value", "session.temperature"),
    ('{"temperature": -0.1}', "invalid_value", "session.temperature"),
    ('{"temperature": NaN}', "invalid_value", "session.temperature"),
    ('{"temperature": Infinity}', "invalid_value", "session.temperature"),
    ('{"temperature": false}', "invalid_type", "session.temperature"),
    ('{"temperature": "0.8"}', "invalid_type", "session.temperature"),
    # tools
    ('{"tools": [{"type": "mcp", "server_label": "x", "server_url": "ftp://x"}]}',
     "invalid_value", "session.tools[0].server_url"),
    ('{"tools": [{"type": "mcp", "server_label": "x", "server_url": "http://[::1"}]}',
     "invalid_value", "session.tools[0].server_url"),
    ('{"tools": [{"type": "mcp", "server_label": "a b", "server_url": "http://x"}]}',
     "invalid_value", "session.tools[0].server_label"),
    ('{"tools": [{"type": "mcp", "server_label": "x", "connector_id": "connector_gmail"}]}',
     "unsupported_feature", "session.tools[0].connector_id"),
    ('{"tools": [{"type": "mcp", "server_label": "x", "server_url": "http://x", '
     '"headers": {"A": 1}}]}', "invalid_value", "session.tools[0].headers"),
    ('{"tools": [{"type": "mcp", "server_label": "x", "server_url": "http://x", '
     '"allowed_tools": {"names": ["a"]}}]}', "unknown_parameter",
     "session.tools[0].allowed_tools.names"),
    ('{"tools": [{"type": "mcp", "server_label": "x", "server_url": "http://x", '
     '"require_approval": "sometimes"}]}', "invalid_value",
     "session.tools[0].require_approval"),
    ('{"tools": [{"type": "mcp", "server_label": "x", "server_url": "http://x"}, '
     '{"type": "mcp", "server_label": "x", "server_url": "http://y"}]}', "duplicate_tool",
     "session.tools[1].server_label"),
    ('{"tools": [{"type": "mcp", "server_label": "x", "server_url": "http://x"}], '
     '"tool_choice": {"type": "mcp", "server_label": "x", "name": "a"}}',
     "unsupported_feature", "session.tool_choice"),
    ('{"tools": {"name": "get_weather"}}', "invalid_type", "session.tools"),
    ('{"tools": [{"type": "function", "name": "get weather"}]}',
     "invalid_value", "session.tools[0].name"),
    ('{"tools": [{"type": "function", "name": "a"}, {"type": "function", "name": "a"}]}',
     "duplicate_tool", "session.tools[1].name"),
    ('{"tools": [{"type": "function", "name": "a", "parameters": {"type": "objekt"}}]}',
     "invalid_value", "session.tools[0].parameters"),
    ('{"tools": [{"type": "function", "name": "a", "parameters": []}]}',
     "invalid_type", "session.tools[0].parameters"),
    ('{"tools": [{"type": "function", "name": "a", "description": 5}]}',
     "invalid_type", "session.tools[0].description"),
    ('{"tools": [{"type": "retrieval", "name": "a"}]}', "invalid_value", "session.tools[0].type"),
    ('{"tools": [{"type": "function", "name": "a"}], "tool_choice": {"type": "function", '
     '"name": "b"}}', "invalid_value", "session.tool_choice.name"),
    ('{"tool_choice": "sometimes"}', "invalid_value", "session.tool_choice"),
    ('{"type": "transcription"}', "unsupported_session_type", "session.type"),
])
def test_a_bad_session_update_is_an_error_with_a_specific_code_and_param(
        session: str, code: str, param: str) -> None:
    error = update_error(
        f'{{"type": "session.update", "event_id": "evt_s", "session": {session}}}')
    assert (error.code, error.param, error.event_id) == (code, param, "evt_s")
    assert error.message


def test_an_unsupported_rate_names_the_supported_ones() -> None:
    error = update_error('{"type": "session.update", "session": {"audio": {"input": '
                          '{"format": {"type": "audio/pcm", "rate": 8000}}}}}')
    assert "8000" in error.message
    assert "16000" in error.message and "24000" in error.message and "48000" in error.message


def test_a_session_that_is_not_an_object_is_rejected_by_apply_session_update() -> None:
    with pytest.raises(ProtocolError) as caught:
        apply_session_update(SessionConfig(), ["realtime"], "evt_x")
    assert (caught.value.code, caught.value.param, caught.value.event_id) == (
        "invalid_type", "session", "evt_x")


def test_an_empty_tools_list_is_accepted() -> None:
    assert update('{"type": "session.update", "session": {"tools": []}}') == SessionConfig()


WEATHER = ('{"type": "function", "name": "get_weather", "description": "The weather in a city",'
           ' "parameters": {"type": "object", "properties": {"city": {"type": "string"}},'
           ' "required": ["city"]}}')


def test_session_tools_and_a_forced_tool_choice_are_kept_and_reported() -> None:
    config = update(f'{{"type": "session.update", "session": {{"tools": [{WEATHER}], '
                    '"tool_choice": {"type": "function", "name": "get_weather"}}}')
    session = config.to_json("sess_1", "local")
    assert [tool["name"] for tool in session["tools"]] == ["get_weather"]
    assert session["tools"][0]["parameters"]["required"] == ["city"]
    assert session["tool_choice"] == {"type": "function", "name": "get_weather"}


def test_removing_the_forced_tool_sets_tool_choice_back_to_auto() -> None:
    config = update(f'{{"type": "session.update", "session": {{"tools": [{WEATHER}], '
                    '"tool_choice": {"type": "function", "name": "get_weather"}}}')
    config = apply_session_update(config, {"tools": []})
    assert config.tool_choice == "auto" and config.tools == ()


def test_a_rejected_update_leaves_the_config_unchanged() -> None:
    before = SessionConfig(instructions="keep")
    update_error('{"type": "session.update", "session": {"instructions": "new",'
                  ' "audio": {"input": {"format": {"type": "audio/pcm", "rate": 8000}}}}}',
                  before)
    assert before == SessionConfig(instructions="keep")


@pytest.mark.parametrize("key", ["output_modalities", "modalities"])
def test_session_modalities_with_object_entries_are_an_invalid_value(key: str) -> None:
    error = update_error(f'{{"type": "session.update", "session": {{"{key}": [{{}}]}}}}')
    assert (error.code, error.param) == ("invalid_value", f"session.{key}")


def test_null_for_an_optional_field_is_the_field_left_out() -> None:
    # Frameworks send null for what they do not set (LiveKit: "instructions": null).
    config = apply_session_update(SessionConfig(instructions="Be brief."),
                                  {"instructions": None, "max_output_tokens": None,
                                   "tools": [], "output_modalities": None})
    assert config.instructions == "Be brief."
    assert config.output_modalities == ("audio",)
