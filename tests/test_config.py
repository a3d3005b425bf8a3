"""Configuration: defaults < TOML file < command-line flags, and refusals with reasons."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from llm.prompts import Assistant
from voice.__main__ import main
from voice.config import ConfigError
from voice.config_file import build_config, load_toml
from voice.model_choice import (
    defaults_to_prepare,
    tools_llm_cache_tokens,
    tools_llm_copies,
    tools_llm_name,
)
from voice.models import MANIFEST, ModelStore
from voice.session_settings import session_defaults

TOML = """
port = 9000
api_keys = ["from-file"]

[models]
llm = "smollm2-135m-instruct"
device = "cpu"

[voices]
de = "de_DE-thorsten-medium"

[vad]
silence_duration_ms = 700

[asr]
languages = ["de", "fr"]
partial_interval_s = 0

[llm]
replicas = 3
context_tokens = 3000

[assistant]
name = "Hal"
persona = "You answer questions about ACME."

[limits]
max_sessions = 3
"""


def test_the_file_overrides_defaults_and_flags_override_the_file(tmp_path: Path) -> None:
    path = tmp_path / "voice.toml"
    path.write_text(TOML)
    config = build_config(load_toml(path), {"port": 9100, "max_sessions": None,
                                            "vad_silence_duration_ms": None})
    assert config.port == 9100  # flag wins
    assert config.api_keys == ("from-file",) and config.llm_model == "smollm2-135m-instruct"
    assert config.voices == {"de": "de_DE-thorsten-medium"}
    assert config.vad_silence_duration_ms == 700 and config.languages == ("de", "fr")
    assert config.limits.max_sessions == 3 and config.limits.max_message_bytes == 1 << 20
    assert config.host == "127.0.0.1" and config.vad_threshold == 0.5  # defaults
    assert config.llm_replicas == 3 and config.llm_context_tokens == 3000
    defaults = session_defaults(config, {"llm": "x"})
    assert defaults.partial_interval_s == 0
    assert defaults.config.turn_detection is not None
    assert defaults.config.turn_detection.silence_duration_ms == 700
    assert defaults.config.languages == ("de", "fr")
    assert defaults.assistant == Assistant(name="Hal", persona="You answer questions about ACME.")
    assert session_defaults(build_config({}, {}), {"llm": "x"}).assistant == Assistant()


@pytest.mark.parametrize(("use_mkl", "device", "configured", "beam"), [
    ("1", "cpu", 0, 2),   # Intel's MKL: a two-beam decode costs what a greedy one does
    ("0", "cpu", 0, 1),   # oneDNN (AMD): greedy, the wider beam is slower there
    ("1", "cuda", 0, 1),  # a GPU: not measured, greedy
    ("0", "cpu", 3, 3),   # a beam set in the configuration is kept as set
])
def test_a_final_transcripts_automatic_beam_follows_ctranslate2s_backend(
        monkeypatch: pytest.MonkeyPatch, use_mkl: str, device: str, configured: int,
        beam: int) -> None:
    monkeypatch.setenv("CT2_USE_MKL", use_mkl)  # as CTranslate2 reads it, whatever the CPU
    config = build_config({"beam_size": configured}, {})
    assert session_defaults(config, {"llm": "x"}, asr_device=device).beam_size == beam


@pytest.mark.parametrize(("text", "message"), [
    ("[vad]\nthreshhold = 0.4\n", "unknown setting vad.threshhold"),
    ("[limits]\nmax_users = 3\n", "unknown setting limits.max_users"),
    ("port = [", "cannot read config file"),
    ('host = "10.0.0.5"\n', "without API keys"),
    ("[llm]\nreplicas = 0\n", "replicas must be at least 1"),
    ("[llm]\ncontext_tokens = 1000\n", "must leave room for a reply"),
    ('[asr]\nlanguages = ["en", "xx"]\n', "unknown language code.s. xx in languages"),
    ('[asr]\nthreads = -1\n', "asr threads must be 0 .automatic. or more"),
    ('[asr]\nbeam_size = -1\n', "asr beam_size must be 0 .automatic. or more"),
    ('[asr]\nsecond_language_below = 1.5\n', "asr second_language_below must be between"),
    ('[llm]\ntools_prompt_cache_tokens = -1\n', "tools_prompt_cache_tokens must be 0"),
    ('[llm]\ncall_when_torn = 1.5\n', "call_when_torn must be between 0 .off. and 1"),
    ('[llm]\nmax_output_tokens = 2000\n', "must be between 1 and max_output_tokens_limit"),
    ('[limits]\nmax_item_chars = 100000\n', "must be between 1 and max_history_chars"),
    ('[assistant]\nname = ""\n', "assistant name must be one line of 1 to 64 characters"),
    ('[assistant]\nname = "a\\nb"\n', "assistant name must be one line"),
    ('[assistant]\npersona = 3\n', "assistant persona must be text"),
    ('[assistant]\nmaker = "x"\n', "unknown setting assistant.maker"),
])
def test_bad_config_files_are_refused_with_the_reason(tmp_path: Path, text: str,
                                                      message: str) -> None:
    path = tmp_path / "voice.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        build_config(load_toml(path), {})


def test_serve_reports_config_errors_without_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--home", str(tmp_path), "serve", "--host", "0.0.0.0"]) == 2
    assert "refusing to listen on 0.0.0.0 without API keys" in capsys.readouterr().err


def test_serve_refuses_models_that_are_not_prepared(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--home", str(tmp_path), "serve", "--port", "0"]) == 2
    assert "voice models prepare whisper-base" in capsys.readouterr().err


@pytest.mark.parametrize("damage", ["prepared copy", "path"])
def test_serve_reports_a_model_that_fails_to_load_in_one_line_with_the_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], damage: str
) -> None:
    folder = tmp_path / "models" / "asr" / "whisper-base"
    folder.mkdir(parents=True)
    (folder / "model.bin").write_bytes(b"not a model")
    flags = ["--port", "0"]
    if damage == "prepared copy":
        (folder / "voice-model.json").write_text('{"name": "whisper-base"}')
    else:
        flags += ["--asr", str(folder)]
    assert main(["--home", str(tmp_path), "serve", *flags]) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("error: cannot load the speech recognition model")
    if damage == "prepared copy":
        assert f"remove {folder} and run `voice models prepare whisper-base`" in lines[0]
    else:
        assert f"check that {folder} is a speech recognition model" in lines[0]


def test_wyoming_beyond_loopback_needs_insecure_because_it_has_no_authentication() -> None:
    with pytest.raises(ConfigError, match="Wyoming protocol has no authentication"):
        build_config({"host": "0.0.0.0", "api_keys": ("k",), "wyoming_port": 10300}, {})
    assert build_config({"host": "0.0.0.0", "api_keys": ("k",), "wyoming_port": 10300,
                         "insecure": True}, {}).wyoming_port == 10300
    assert build_config({"wyoming_port": 10300}, {}).wyoming_port == 10300  # loopback


def test_mcp_hosts_must_be_host_names(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="mcp hosts"):
        build_config({"mcp_hosts": ("http://x/mcp",)}, {})
    path = tmp_path / "voice.toml"
    path.write_text('[mcp]\nhosts = ["127.0.0.1:8000"]\ntimeout_s = 5\n')
    config = build_config(load_toml(path), {})
    assert (config.mcp_hosts, config.mcp_timeout_s) == (("127.0.0.1:8000",), 5)


def test_api_keys_are_read_from_a_mounted_secret_file(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from voice.__main__ import _keys_from_environment

    secret = tmp_path / "keys"
    secret.write_text("alpha,beta\ngamma\n")
    monkeypatch.delenv("VOICE_API_KEYS", raising=False)
    monkeypatch.setenv("VOICE_API_KEYS_FILE", str(secret))
    assert _keys_from_environment() == ("alpha", "beta", "gamma")
    monkeypatch.setenv("VOICE_API_KEYS_FILE", str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match="cannot read VOICE_API_KEYS_FILE"):
        _keys_from_environment()


def test_websocket_compression_is_a_boolean_setting(tmp_path) -> None:  # type: ignore[no-untyped-def]
    config = tmp_path / "voice.toml"
    config.write_text("websocket_compression = false\n")
    assert build_config(load_toml(config), {}).websocket_compression is False
    assert build_config({}, {}).websocket_compression is True
    config.write_text('websocket_compression = "no"\n')
    with pytest.raises(ConfigError, match="websocket_compression"):
        build_config(load_toml(config), {})


def test_replies_that_may_call_tools_get_the_bigger_model_once_it_is_prepared(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = ModelStore(tmp_path, progress=False)
    llm = "qwen2.5-coder-0.5b-instruct"
    with caplog.at_level(logging.WARNING, logger="voice"):
        assert tools_llm_name(build_config({}, {}), store, llm) == llm
    assert "run `voice models prepare qwen2.5-coder-1.5b-instruct`" in caplog.text
    # asked for by name: used (a model that is not there fails to load, with the fix)
    chosen = build_config({}, {"tools_llm_model": "qwen2.5-coder-1.5b-instruct"})
    assert tools_llm_name(chosen, store, llm) == "qwen2.5-coder-1.5b-instruct"
    assert tools_llm_name(build_config({}, {"tools_llm_model": ""}), store, llm) == llm
    # a language model chosen by the operator writes every reply unless tools_llm is named
    own = build_config({}, {"llm_model": "/models/my-7b"})
    assert tools_llm_name(own, store, "/models/my-7b") == "/models/my-7b"
    folder = tmp_path / "models" / "llm" / "qwen2.5-coder-1.5b-instruct"
    folder.mkdir(parents=True)
    (folder / MANIFEST).write_text('{"name": "qwen2.5-coder-1.5b-instruct"}')
    assert tools_llm_name(build_config({}, {}), store, llm) == "qwen2.5-coder-1.5b-instruct"


def test_the_tools_model_runs_as_fewer_copies_with_more_threads_on_the_cpu() -> None:
    defaults = build_config({}, {})
    assert tools_llm_copies(defaults, "cpu", 2) == (1, 2)
    assert tools_llm_copies(defaults, "cpu", 16) == (8, 2)
    assert tools_llm_copies(defaults, "cpu", 1) == (1, 1)
    assert tools_llm_copies(defaults, "cuda", 16) == (defaults.llm_replicas, 0)
    chosen = build_config({}, {"llm_tools_replicas": 3, "llm_threads": 4})
    assert tools_llm_copies(chosen, "cpu", 2) == (3, 4)


def test_the_tools_models_kept_states_get_a_third_of_the_budget_unless_set() -> None:
    assert tools_llm_cache_tokens(build_config({}, {})) == 1024
    assert tools_llm_cache_tokens(build_config({}, {"llm_prompt_cache_tokens": 600})) == 200
    assert tools_llm_cache_tokens(build_config(
        {}, {"llm_tools_prompt_cache_tokens": 3500})) == 3500


def test_setup_skips_the_tools_model_where_there_is_too_little_memory_to_convert_it(
    tmp_path: Path,
) -> None:
    store = ModelStore(tmp_path, progress=False)
    names, skipped = defaults_to_prepare(store, 4 * 2**30)
    assert "qwen2.5-coder-1.5b-instruct" not in names and "qwen2.5-coder-0.5b-instruct" in names
    assert skipped is not None and "4.0 GB is free" in skipped
    assert "voice models prepare qwen2.5-coder-1.5b-instruct" in skipped
    names, skipped = defaults_to_prepare(store, 16 * 2**30)
    assert "qwen2.5-coder-1.5b-instruct" in names and skipped is None
    folder = tmp_path / "models" / "llm" / "qwen2.5-coder-1.5b-instruct"
    folder.mkdir(parents=True)
    (folder / MANIFEST).write_text('{"name": "qwen2.5-coder-1.5b-instruct"}')
    assert "qwen2.5-coder-1.5b-instruct" in defaults_to_prepare(store, 4 * 2**30)[0]
