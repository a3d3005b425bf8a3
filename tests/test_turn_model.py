"""Smart Turn v3.2 (semantic end of turn): input preparation, catalog entry, real speech.

The model is int8 with static activation quantization, which makes a probability between about
0.1 and 0.9 unstable: adding noise of 1e-5 to the features of an ambiguous clip moved its score
anywhere between 0.07 and 0.90 on the development machine, while clear cases (0.01 or 0.99) did
not move. So the features are compared with a reference computation (tolerance), and behaviour
on real speech is asserted as counts over the 34 recordings with a margin, never per clip.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import wave
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from pathlib import Path

import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view

from asr.turn import FRAMES, MODEL_FILE, N_MELS, SAMPLE_RATE, WINDOW, SmartTurnModel
from asr.vad import SileroVadModel, StreamingVad, VadConfig, VadEventType
from tests.prerequisites import missing
from tests.speech import SHARED_TESTDATA, to_16k
from voice.models import ModelKind, default_model_names, lookup

RECORDINGS = SHARED_TESTDATA / "real"
NAME = "smart-turn-v3.2"


# -- the reference computation ---------------------------------------------------------------
# What pipecat 1.14.0 (pipecat/audio/turn/smart_turn/local_smart_turn_v3.py and
# _whisper_features.py) feeds the model, i.e. transformers' WhisperFeatureExtractor with
# chunk_length=8 and do_normalize=True, written out in float64: keep the last 8 s, zero-pad at
# the START, normalise the waveform over the whole window (float32, eps 1e-7), centred STFT
# (reflect padding, periodic Hann, n_fft 400, hop 160), power, Slaney mel (80 bins, 0-8 kHz),
# log10 with a 1e-10 floor, drop the last frame, clamp at max - 8, then (x + 4) / 4.


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:  # Slaney: linear below 1 kHz, log above
    hz = np.asarray(hz, np.float64)
    log_part = 15.0 + np.log(np.maximum(hz, 1e-9) / 1000.0) / (np.log(6.4) / 27.0)
    return np.where(hz < 1000.0, hz / (200.0 / 3.0), log_part)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    mel = np.asarray(mel, np.float64)
    return np.where(mel < 15.0, mel * (200.0 / 3.0),
                    1000.0 * np.exp((mel - 15.0) * (np.log(6.4) / 27.0)))


def _slaney_filterbank(n_fft: int = 400, n_mels: int = N_MELS) -> np.ndarray:
    """``[n_mels, n_fft // 2 + 1]`` triangles with Slaney area normalisation."""
    edges = _mel_to_hz(np.linspace(_hz_to_mel(np.array(0.0)), _hz_to_mel(np.array(8000.0)),
                                   n_mels + 2))
    bins = np.linspace(0.0, SAMPLE_RATE / 2, n_fft // 2 + 1)
    bank = np.zeros((n_mels, bins.size))
    for i in range(n_mels):
        low, centre, high = edges[i], edges[i + 1], edges[i + 2]
        rising = (bins - low) / (centre - low)
        falling = (high - bins) / (high - centre)
        bank[i] = np.clip(np.minimum(rising, falling), 0.0, None) * 2.0 / (high - low)
    return bank


def reference_features(audio: np.ndarray) -> np.ndarray:
    samples = np.asarray(audio, np.float32)[-WINDOW:]
    samples = np.concatenate([np.zeros(WINDOW - samples.size, np.float32), samples])
    samples = (samples - samples.mean()) / np.sqrt(samples.var() + 1e-7)
    padded = np.pad(samples.astype(np.float64), 200, mode="reflect")
    frames = sliding_window_view(padded, 400)[::160]
    hann = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(400) / 400)
    power = np.abs(np.fft.rfft(frames * hann, axis=-1)) ** 2
    log_mel = np.log10(np.maximum(_slaney_filterbank() @ power.T, 1e-10))[:, :-1]
    log_mel = np.maximum(log_mel, log_mel.max() - 8.0)
    return ((log_mel + 4.0) / 4.0).astype(np.float32)


# -- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def model_folder(prepared_model) -> Path:  # type: ignore[no-untyped-def]
    return Path(prepared_model(NAME))


@pytest.fixture(scope="module")
def smart_turn(model_folder: Path) -> SmartTurnModel:
    return SmartTurnModel(model_folder)


@dataclasses.dataclass(frozen=True)
class Turn:
    name: str
    complete: np.ndarray  # the whole sentence, from VAD start (with prefix) to VAD speech end
    cut: np.ndarray  # the same, cut mid-word between 50 % and 60 % of its length


def _read_recording(name: str) -> np.ndarray:
    with wave.open(str(RECORDINGS / name)) as reader:
        rate = reader.getframerate()
        samples = np.frombuffer(reader.readframes(reader.getnframes()), np.int16)
    return to_16k(samples, rate)  # soxr; the Polish ones are 22,050 Hz


def _whole_turn(vad_model: SileroVadModel, audio: np.ndarray) -> np.ndarray:
    """The utterance the service's VAD would hand over, trailing silence trimmed; the long
    silence setting keeps a sentence with a pause inside in one piece."""
    vad = StreamingVad(vad_model, VadConfig(silence_duration_ms=3000))
    events = vad.feed(np.concatenate([audio, np.zeros(4 * SAMPLE_RATE, np.float32)]))
    stops = [e for e in events if e.type is VadEventType.SPEECH_STOPPED]
    assert len(stops) == 1 and stops[0].audio is not None, events
    return stops[0].audio


def _cut_mid_word(audio: np.ndarray) -> np.ndarray:
    """Cut right after the loudest 20 ms between 50 % and 60 % of the turn: inside a vowel."""
    frame = SAMPLE_RATE // 50
    frames = audio[: audio.size // frame * frame].reshape(-1, frame)
    low, high = int(0.5 * len(frames)), int(0.6 * len(frames))
    loudest = low + int(np.argmax(np.sqrt((frames[low:high] ** 2).mean(axis=1))))
    return audio[: (loudest + 1) * frame]


@cache
def _references() -> dict[str, dict[str, object]]:
    return dict(json.loads((RECORDINGS / "refs.json").read_text(encoding="utf-8")))


@pytest.fixture(scope="module")
def turns(silero_vad_model: SileroVadModel) -> list[Turn]:
    if not (RECORDINGS / "refs.json").exists():
        missing(f"{RECORDINGS} is absent (the shared test recordings live beside the checkout)")
    result = []
    for name in sorted(_references()):
        whole = _whole_turn(silero_vad_model, _read_recording(name))
        result.append(Turn(name, whole, _cut_mid_word(whole)))
    assert len(result) == 34
    return result


# -- catalog ----------------------------------------------------------------------------------


def test_smart_turn_is_an_offline_default_model_read_from_the_pipecat_wheel() -> None:
    spec = lookup(NAME)
    assert spec.kind is ModelKind.TURN and spec.license == "BSD-2-Clause"
    assert spec.package is not None and spec.hub is None
    assert spec.package.requirements == ["pipecat-ai==1.14.0"]
    (onnx,) = spec.package.files
    assert onnx.name == MODEL_FILE and onnx.size == 8_679_182
    assert default_model_names(gpu=False)[ModelKind.TURN] == NAME


@pytest.mark.real_models
def test_prepared_model_file_has_the_catalog_sha256(model_folder: Path) -> None:
    package = lookup(NAME).package
    assert package is not None
    data = (model_folder / MODEL_FILE).read_bytes()
    assert len(data) == package.files[0].size
    assert hashlib.sha256(data).hexdigest() == package.files[0].sha256


# -- input preparation ------------------------------------------------------------------------


@pytest.mark.real_models
@pytest.mark.parametrize("seconds", [0.4, 3.0, 8.0, 11.5])
def test_features_match_the_whisper_extractor_pipecat_uses(smart_turn: SmartTurnModel,
                                                          seconds: float) -> None:
    # Speech-like input: a falling chirp with harmonics under noise; 11.5 s checks that the
    # LAST 8 s are kept, 0.4 s that the padding goes before the audio.
    rng = np.random.default_rng(3)
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    pitch = 2 * np.pi * np.cumsum(np.linspace(220, 110, t.size)) / SAMPLE_RATE
    audio = (0.3 * np.sin(pitch) + 0.1 * np.sin(3 * pitch) * (t / max(seconds, 1))
             + 0.01 * rng.standard_normal(t.size)).astype(np.float32)
    ours, reference = smart_turn.features(audio), reference_features(audio)
    assert ours.shape == reference.shape == (N_MELS, FRAMES) and ours.dtype == np.float32
    # float32 STFT (faster-whisper) against float64: about 1e-5 apart on values in -1.5..1.5.
    np.testing.assert_allclose(ours, reference, atol=2e-4)


@pytest.mark.real_models
def test_features_of_real_speech_match_the_reference(smart_turn: SmartTurnModel,
                                                     turns: list[Turn]) -> None:
    for turn in turns[::4]:
        for audio in (turn.complete, turn.cut):
            np.testing.assert_allclose(smart_turn.features(audio), reference_features(audio),
                                       atol=2e-4, err_msg=turn.name)


def test_audio_that_is_not_mono_is_rejected_before_the_model() -> None:
    from asr.turn import model_window

    with pytest.raises(ValueError, match="mono"):
        model_window(np.zeros((2, 16000), np.float32))


# -- behaviour on real speech -----------------------------------------------------------------


@pytest.mark.real_models
def test_most_whole_sentences_are_scored_complete(smart_turn: SmartTurnModel,
                                                  turns: list[Turn]) -> None:
    # Seen on the development machine: 28 of 34 above 0.5, median 0.98 (below: en 1 of 1,
    # nl 1 of 5, pl 2 of 3, pt 2 of 5).
    scores = {t.name: smart_turn.probability(t.complete) for t in turns}
    complete = [name for name, p in scores.items() if p > 0.5]
    assert len(complete) >= 24, scores


@pytest.mark.real_models
def test_cutting_a_sentence_mid_word_lowers_its_score(smart_turn: SmartTurnModel,
                                                      turns: list[Turn]) -> None:
    # Seen: the cut clip scores lower than its whole sentence for 29 of 34 recordings (median
    # 0.83 against 0.98), and 14 cut clips are scored incomplete against 6 whole ones. The model
    # does NOT call most cut clips incomplete on this read speech (20 of 34 stay above 0.5), so
    # that is not asserted. Zero-padding after the audio instead of before fails this test.
    whole = np.array([smart_turn.probability(t.complete) for t in turns])
    cut = np.array([smart_turn.probability(t.cut) for t in turns])
    assert (cut < whole).sum() >= 24, (whole.round(3), cut.round(3))
    assert (cut <= 0.5).sum() > (whole <= 0.5).sum(), (whole.round(3), cut.round(3))


@pytest.mark.real_models
def test_english_sentences_stopped_before_their_last_words_are_incomplete(
    smart_turn: SmartTurnModel, prepared_model  # type: ignore[no-untyped-def]
) -> None:
    # Natural (Piper) English prosody, without Piper's random variation: with it, over 8
    # syntheses each the stopped ones scored 0.01 to 0.11, but CI once saw 0.48 for "I would
    # like to book a flight to". Without it: 0.98 and 0.96 whole, 0.007 and 0.034 stopped.
    from tts.piper import PiperSynthesizer

    voice = PiperSynthesizer(prepared_model("en_US-joe-medium") / "en_US-joe-medium.onnx",
                             deterministic=True)

    def say(text: str) -> np.ndarray:
        chunks = list(voice.synthesize(text))
        return to_16k(np.concatenate([c.samples for c in chunks]), chunks[0].sample_rate)

    for whole in ("I would like to book a flight to Paris.", "Can you tell me the time, please?"):
        assert smart_turn.probability(say(whole)) > 0.8, whole
    for stopped in ("What is the weather like in", "I would like to book a flight to"):
        assert smart_turn.probability(say(stopped)) < 0.3, stopped


@pytest.mark.real_models
def test_probability_gives_the_same_answers_from_several_threads(smart_turn: SmartTurnModel,
                                                                 turns: list[Turn]) -> None:
    clips = [t.cut for t in turns[:6]] + [t.complete for t in turns[:6]]
    alone = [smart_turn.probability(clip) for clip in clips]
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(smart_turn.probability, clips))
    assert together == alone
