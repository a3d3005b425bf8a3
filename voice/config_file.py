"""The config file and the command line: a TOML file's sections mapped onto
:class:`~voice.config.ServiceConfig` fields, then flags over them, then the checks."""

from __future__ import annotations

import dataclasses
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from voice.config import ConfigError, Limits, ServiceConfig

_SECTIONS: dict[str, dict[str, str]] = {
    "": {"host": "host", "port": "port", "api_keys": "api_keys", "insecure": "insecure",
         "allowed_origins": "allowed_origins", "allowed_hosts": "allowed_hosts",
         "wyoming_port": "wyoming_port", "wyoming_mcp": "wyoming_mcp",
         "memory_trim_interval_s": "memory_trim_interval_s",
         "memory_mmap_threshold_kib": "memory_mmap_threshold_kib",
         "websocket_compression": "websocket_compression"},
    "models": {"asr": "asr_model", "llm": "llm_model", "tools_llm": "tools_llm_model",
               "voice": "voice", "turn": "turn_model",
               "device": "device", "compute_type": "compute_type"},
    "vad": {"type": "vad_type", "eagerness": "vad_eagerness", "threshold": "vad_threshold",
            "prefix_padding_ms": "vad_prefix_padding_ms",
            "silence_duration_ms": "vad_silence_duration_ms"},
    "asr": {"languages": "languages", "partial_interval_s": "partial_interval_s",
            "beam_size": "beam_size", "second_language_below": "second_language_below",
            "threads": "asr_threads"},
    "llm": {"max_output_tokens": "max_output_tokens",
            "max_output_tokens_limit": "max_output_tokens_limit", "replicas": "llm_replicas",
            "tools_replicas": "llm_tools_replicas", "threads": "llm_threads", "batch": "llm_batch",
            "context_tokens": "llm_context_tokens", "write_ahead_s": "llm_write_ahead_s",
            "give_way_s": "llm_give_way_s",
            "prompt_cache_tokens": "llm_prompt_cache_tokens",
            "tools_prompt_cache_tokens": "llm_tools_prompt_cache_tokens",
            "call_when_torn": "llm_call_when_torn"},
    "tts": {"first_piece_words": "tts_first_piece_words"},
    "assistant": {"name": "assistant_name", "persona": "assistant_persona",
                  "ask_again_min_speech_s": "ask_again_min_speech_s"},
    "mcp": {"hosts": "mcp_hosts", "timeout_s": "mcp_timeout_s"},
}


def load_toml(path: Path) -> dict[str, Any]:
    """Read a config file into ServiceConfig field values (unknown keys are errors)."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise ConfigError(f"cannot read config file {path}: {error}") from error
    values: dict[str, Any] = {}
    for section, keys in _SECTIONS.items():
        table = data if section == "" else data.get(section, {})
        if not isinstance(table, dict):
            raise ConfigError(f"[{section}] in {path} must be a table")
        for key, value in table.items():
            if isinstance(value, dict) and section == "":
                continue
            if key not in keys:
                raise ConfigError(f"unknown setting {section + '.' if section else ''}{key} "
                                  f"in {path}")
            values[keys[key]] = tuple(value) if isinstance(value, list) else value
    if "voices" in data:
        if not isinstance(data["voices"], dict):
            raise ConfigError(f"[voices] in {path} must map languages to voices")
        values["voices"] = {str(k): str(v) for k, v in data["voices"].items()}
    if "limits" in data:
        limits = data["limits"]
        known = {f.name for f in dataclasses.fields(Limits)}
        unknown = set(limits) - known
        if unknown:
            raise ConfigError(f"unknown setting limits.{sorted(unknown)[0]} in {path}")
        values["limits"] = Limits(**limits)
    return values


def build_config(file_values: Mapping[str, Any], flag_values: Mapping[str, Any]) -> ServiceConfig:
    """Defaults < config file < flags (flags that were not given are None and ignored)."""
    merged = dict(file_values)
    limits = merged.pop("limits", Limits())
    for key, value in flag_values.items():
        if value is None:
            continue
        if key in {f.name for f in dataclasses.fields(Limits)}:
            limits = dataclasses.replace(limits, **{key: value})
        else:
            merged[key] = value
    try:
        config = ServiceConfig(**merged, limits=limits)
    except TypeError as error:
        raise ConfigError(str(error)) from error
    config.check()
    return config
