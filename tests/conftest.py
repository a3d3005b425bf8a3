"""Shared fixtures: tiny generated artifacts and the real prepared models."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.artifacts import build_random_decoder, build_tiny_piper_voice
from tests.prerequisites import missing
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
            missing(f"model {name} is not prepared in {real_model_store.home}; "
                    f"run `voice models prepare {name}` (make test does)")
        return status.path

    return get


@pytest.fixture(scope="session")
def whisper_base(prepared_model):  # type: ignore[no-untyped-def]
    from asr.whisper import Transcriber, TranscriberConfig

    return Transcriber(TranscriberConfig(str(prepared_model("whisper-base"))))


@pytest.fixture(scope="session")
def joe_voice(prepared_model):  # type: ignore[no-untyped-def]
    from tts.piper import PiperSynthesizer

    return PiperSynthesizer(prepared_model("en_US-joe-medium") / "en_US-joe-medium.onnx")


@pytest.fixture(scope="session")
def english_question(joe_voice) -> np.ndarray:  # type: ignore[no-untyped-def]
    """tests.speech.ENGLISH_SENTENCE spoken by the Piper joe voice, float32 16 kHz."""
    from tests.speech import ENGLISH_SENTENCE, to_16k, with_silence

    chunks = list(joe_voice.synthesize(ENGLISH_SENTENCE))
    return with_silence(to_16k(np.concatenate([c.samples for c in chunks]),
                               chunks[0].sample_rate))


@pytest.fixture(scope="session")
def silero_vad_model():  # type: ignore[no-untyped-def]
    from asr.vad import SileroVadModel

    return SileroVadModel()
