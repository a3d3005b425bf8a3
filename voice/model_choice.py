"""Which model files, and how many copies, the service loads, from its configuration and the
model cache: choices only (``voice.__main__``, the composition root, builds the engines)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from voice.config import ServiceConfig
from voice.models import (
    CATALOG,
    DEFAULT_TOOLS_LLM,
    ModelError,
    ModelKind,
    ModelStore,
    default_prepared_names,
    lookup,
)

logger = logging.getLogger("voice")

# Converting the 1.5B tools model holds its weights as float32: 10.0 GB at peak (docs/models.md).
TOOLS_LLM_CONVERSION_BYTES = 11 * 2**30


def defaults_to_prepare(store: ModelStore, available_bytes: int) -> tuple[list[str], str | None]:
    """The models ``voice models prepare`` readies when given no names, and why one was left
    out: the tools model is optional (the service runs without it), so on a machine with too
    little free memory to convert it, it is skipped with a message instead of failing the
    whole setup (or being killed for memory halfway)."""
    names = default_prepared_names()
    if (DEFAULT_TOOLS_LLM in names and available_bytes < TOOLS_LLM_CONVERSION_BYTES
            and not store.status(lookup(DEFAULT_TOOLS_LLM)).ready):
        names.remove(DEFAULT_TOOLS_LLM)
        return names, (
            f"skipped {DEFAULT_TOOLS_LLM} (the model for replies that may call tools): "
            f"converting it needs about {TOOLS_LLM_CONVERSION_BYTES / 2**30:.0f} GB of free "
            f"memory and {available_bytes / 2**30:.1f} GB is free. The service runs without "
            f"it (the small model then calls tools too, less reliably); prepare it on a "
            f"machine with more memory with `voice models prepare {DEFAULT_TOOLS_LLM}`")
    return names, None


def tools_llm_name(config: ServiceConfig, store: ModelStore, llm: str) -> str:
    """The model that writes replies that may call tools: ``[models] tools_llm``, or when it
    is "" the ``llm``. Unset, it is the catalog's default when the ``llm`` is the default too
    (an operator who chose a language model chose it for every reply), and only once it is
    prepared: until then the service runs with the ``llm`` writing them too, and says so."""
    if config.tools_llm_model is not None:
        return config.tools_llm_model.strip() or llm
    if config.llm_model is not None or llm == DEFAULT_TOOLS_LLM:
        return llm
    try:
        store.resolve(DEFAULT_TOOLS_LLM, ModelKind.LLM)
    except ModelError as error:
        logger.warning("%s; until then the language model %s also writes the replies that may "
                       "call tools (it calls the wrong function, or none, more often)", error, llm)
        return llm
    return DEFAULT_TOOLS_LLM


def tools_llm_copies(config: ServiceConfig, device: str, cores: int) -> tuple[int, int]:
    """Replicas of the tools model and threads per replica (0: the cores shared). On the CPU
    by default one per two cores, two threads each: fewer copies with more threads write a
    single call sooner (a call's delay is what a user waits for) and hold less memory."""
    if config.llm_tools_replicas:
        return config.llm_tools_replicas, config.llm_threads
    if device == "cuda":
        return config.llm_replicas, config.llm_threads
    return max(1, cores // 2), config.llm_threads or min(2, cores)


def tools_llm_cache_tokens(config: ServiceConfig) -> int:
    """The tools model's budget of kept states: its own setting, else a third of the
    conversational model's (the 1.5B keeps ~2x more a token, 344 KB, and only its system
    turns: ``voice.draft.keep_conversation``)."""
    return config.llm_tools_prompt_cache_tokens or config.llm_prompt_cache_tokens // 3


def piper_voices(config: ServiceConfig, store: ModelStore, default_voice: str) -> dict[str, Path]:
    """Language -> Piper .onnx: the default voice, every prepared catalog voice, then the
    configured ones (which win). The default voice's language comes first."""
    from tts.piper import language_of_piper_config

    def onnx_of(name_or_path: str) -> Path:
        path = store.resolve(name_or_path, ModelKind.TTS)
        if path.is_dir():
            found = sorted(path.glob("*.onnx"))
            if not found:
                raise ModelError(f"no .onnx voice in {path}")
            return found[0]
        return path

    def language_of(onnx: Path) -> str:
        config_json = onnx.with_name(onnx.name + ".json")
        return language_of_piper_config(json.loads(config_json.read_text(encoding="utf-8")))

    voices: dict[str, Path] = {}
    for spec in CATALOG.values():
        if spec.kind is ModelKind.TTS and store.status(spec).ready:
            onnx = onnx_of(spec.name)
            voices.setdefault(language_of(onnx), onnx)
    default = onnx_of(default_voice)
    default_language = language_of(default)
    voices[default_language] = default
    for language, voice in config.voices.items():
        voices[language] = onnx_of(voice)
    return {default_language: voices.pop(default_language), **voices}
