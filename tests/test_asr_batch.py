"""Batched transcription: one encoder call and one decoder call for several utterances, and
for each utterance the transcript that transcribing it alone gives."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from asr.transcript import TranscribeOptions, Transcript
from asr.whisper import SAMPLE_RATE, Transcriber, TranscriberConfig
from tests.artifacts import build_random_whisper
from tests.prerequisites import missing
from tests.speech import ALLOWED_LANGUAGES, SHARED_TESTDATA, read_audio_file

# The random model's output is gibberish that the hallucination guards would reject; with them
# off, the text shows the decoded tokens themselves.
UNGUARDED = dataclasses.replace(TranscribeOptions(), no_speech_threshold=1.0,
                                log_prob_threshold=-np.inf, compression_ratio_threshold=np.inf,
                                max_new_tokens=24)


@pytest.fixture(scope="module")
def random_whisper_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_random_whisper(tmp_path_factory.mktemp("random-whisper"))


@pytest.fixture(scope="module", params=["fitted", "full"])
def random_whisper(random_whisper_folder: Path, request: pytest.FixtureRequest) -> Transcriber:
    """The random model with either encoder window. Its gibberish decodes in a fitted window
    mostly look wrong (text past the end of the audio), so they are decoded again in the 30 s
    window: both passes run."""
    return Transcriber(TranscriberConfig(str(random_whisper_folder),
                                         encoder_window=request.param))


def _noise(seconds: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(int(seconds * SAMPLE_RATE)) * 0.1).astype(np.float32)


def _assert_same(batched: Transcript, alone: Transcript) -> None:
    assert (batched.text, batched.language, batched.rejected) == (
        alone.text, alone.language, alone.rejected)
    assert batched.duration_s == alone.duration_s
    for field in ("language_probability", "no_speech_probability", "avg_log_probability",
                  "compression_ratio"):
        assert getattr(batched, field) == pytest.approx(getattr(alone, field), abs=1e-3), field


class _CountingWhisper:
    """Wraps a ctranslate2 Whisper model and records the batch size of each call."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.calls: list[tuple[str, int]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def encode(self, features: Any, **kwargs: Any) -> Any:
        self.calls.append(("encode", features.shape[0]))
        return self.inner.encode(features, **kwargs)

    def generate(self, encoded: Any, prompts: list[list[int]], **kwargs: Any) -> Any:
        self.calls.append(("generate", len(prompts)))
        return self.inner.generate(encoded, prompts, **kwargs)


def test_a_batch_gives_each_utterance_the_transcript_it_gets_alone(
    random_whisper: Transcriber,
) -> None:
    requests: list[tuple[np.ndarray, TranscribeOptions | None]] = [
        (_noise(1.0, 1), UNGUARDED),
        # Up to 2 s: all get the same fitted window alone as in the batch.
        (_noise(2.0, 2), dataclasses.replace(UNGUARDED, language="de")),
        (np.zeros(SAMPLE_RATE, np.float32), None),  # silence: rejected without decoding
        (_noise(1.5, 3), dataclasses.replace(UNGUARDED, allowed_languages=("fr", "it"))),
        (_noise(2.0, 4), dataclasses.replace(UNGUARDED, beam_size=2)),  # its own sub-batch
        (_noise(31.0, 5), UNGUARDED),  # longer than one window: transcribed alone
        (_noise(0.8, 6), None),  # default guards: the gibberish is rejected
    ]
    batched = random_whisper.transcribe_batch(requests)
    assert len(batched) == len(requests)
    for (audio, options), transcript in zip(requests, batched, strict=True):
        _assert_same(transcript, random_whisper.transcribe(audio, options))
    assert batched[0].text and batched[6].text == "" and batched[6].rejected is not None
    assert batched[1].language == "de" and batched[3].language in ("fr", "it")
    assert batched[2].rejected == "silence"


def test_utterances_with_the_same_options_share_one_encoder_and_one_decoder_call(
    random_whisper_folder: Path,
) -> None:
    # In the 30 s window: in a fitted one, the decodes that look wrong take a second pass.
    random_whisper = Transcriber(TranscriberConfig(str(random_whisper_folder),
                                                   encoder_window="full"))
    model = random_whisper._model
    counting = _CountingWhisper(model.model)
    model.model = counting
    try:
        random_whisper.transcribe_batch(
            [(_noise(1 + i / 4, i), UNGUARDED) for i in range(4)]
            + [(_noise(1.0, 9), dataclasses.replace(UNGUARDED, beam_size=2))])
    finally:
        model.model = counting.inner
    assert sorted(counting.calls) == [("encode", 1), ("encode", 4),
                                      ("generate", 1), ("generate", 4)]


def test_an_empty_batch_gives_no_transcripts(random_whisper: Transcriber) -> None:
    assert random_whisper.transcribe_batch([]) == []


@pytest.mark.real_models
def test_real_recordings_batched_get_the_same_text_as_transcribed_one_by_one(
    whisper_base: Transcriber,
) -> None:
    # On a CPU the batch's encoder window fits its longest utterance (9.4 s of Spanish), so
    # the shorter ones are encoded with more silence after them than alone: the same text
    # (on the development CPU, int8), with scores that differ a little. Batches of one window
    # give identical transcripts (tests/test_asr_window.py); so do 30 s windows, as on a GPU.
    folder = SHARED_TESTDATA / "real"
    if not (folder / "refs.json").exists():
        missing(f"{folder} is absent (the shared test recordings live beside the checkout)")
    references = json.loads((folder / "refs.json").read_text())
    names = ["de_voxforge_01.wav", "fr_voxforge_02.wav", "es_voxforge_03.wav",
             "en_voxforge_01.wav", "pl_neon_01.wav"]
    detect = TranscribeOptions(allowed_languages=ALLOWED_LANGUAGES)
    requests: list[tuple[np.ndarray, TranscribeOptions | None]] = [
        (read_audio_file(Path(folder / name)), detect) for name in names]
    requests.append((requests[0][0], TranscribeOptions(language="de")))
    batched = whisper_base.transcribe_batch(requests)
    for name, (audio, options), transcript in zip([*names, "pinned"], requests, batched,
                                                  strict=True):
        alone = whisper_base.transcribe(audio, options)
        assert (transcript.text, transcript.language, transcript.rejected) == (
            alone.text, alone.language, alone.rejected), name
        assert transcript.text, name
    for name, transcript in zip(names, batched, strict=False):
        assert transcript.language == references[name]["lang"], (name, transcript)
