"""Shared fixtures: tiny generated artifacts and the real prepared models."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.artifacts import build_random_decoder, build_tiny_piper_voice
from voice.models import ModelStore, lookup


@pytest.fixture(scope="session")
def random_decoder_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random 2-layer CTranslate2 decoder with tokenizer.json and chat.json."""
    return build_random_decoder(tmp_path_factory.mktemp("random-decoder"))


@pytest.fixture(scope="session")
def tiny_voice_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Piper-format voice (.onnx with its .onnx.json beside it)."""
    return build_tiny_piper_voice(tmp_path_factory.mktemp("tiny-voice"))


@pytest.fixture(scope="session")
def real_model_store() -> ModelStore:
    return ModelStore(progress=False)


@pytest.fixture(scope="session")
def prepared_model(real_model_store: ModelStore):  # type: ignore[no-untyped-def]
    """Returns a function name -> folder of a real prepared model.

    ``make test`` prepares the models first and sets VOICE_REQUIRE_MODELS=1, so there a missing
    model fails the test; a bare ``pytest`` run skips these tests with the reason shown.
    """

    def get(name: str) -> Path:
        status = real_model_store.status(lookup(name))
        if not status.ready:
            message = (f"model {name} is not prepared in {real_model_store.home}; "
                       f"run `voice models prepare {name}` (make test does)")
            if os.environ.get("VOICE_REQUIRE_MODELS") == "1":
                pytest.fail(message)
            pytest.skip(message)
        return status.path

    return get
