"""The encoder window fitted to an utterance: how long it is, how a decode in it is read, and
transcripts of real speech as good as those of Whisper's 30 s window."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import jiwer
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from asr import whisper
from asr.transcript import TranscribeOptions
from asr.whisper import SAMPLE_RATE, Transcriber, TranscriberConfig, default_cpu_threads
from asr.window import (
    FULL_WINDOW_FRAMES,
    WINDOW_MARGIN_S,
    fitted_window_frames,
    read_timestamped,
    token_limit,
)
from tests.prerequisites import missing
from tests.speech import ALLOWED_LANGUAGES, SHARED_TESTDATA, normalise_words, read_audio_file

DETECT = TranscribeOptions(allowed_languages=ALLOWED_LANGUAGES)


def test_the_window_is_the_utterance_plus_the_margin_in_whole_seconds() -> None:
    assert fitted_window_frames(600) == 1000  # 6.0 s of speech + 4 s
    assert fitted_window_frames(601) == 1100
    assert fitted_window_frames(938) == 1400


def test_a_short_utterance_gets_the_shortest_window() -> None:
    assert fitted_window_frames(0) == fitted_window_frames(150) == 600


def test_a_long_utterance_gets_whisper_s_30_s_window_at_most() -> None:
    assert fitted_window_frames(2600) == fitted_window_frames(3000) == FULL_WINDOW_FRAMES


@given(st.integers(0, FULL_WINDOW_FRAMES), st.integers(0, FULL_WINDOW_FRAMES))
def test_the_window_holds_the_utterance_and_its_margin_and_grows_with_it(a: int, b: int) -> None:
    short, long = sorted((a, b))
    frames = fitted_window_frames(short)
    assert frames % 100 == 0
    assert frames >= min(FULL_WINDOW_FRAMES, short + WINDOW_MARGIN_S * 100)
    assert frames <= fitted_window_frames(long) <= FULL_WINDOW_FRAMES


def test_the_token_limit_grows_with_the_audio_and_leaves_room_for_fast_speech() -> None:
    assert token_limit(0.0) == 20
    assert token_limit(6.0) == 110  # read speech of 6 s takes about 20 tokens
    assert token_limit(2.0) < token_limit(2.1)


TS = 1000  # the first timestamp token in these made-up decodes: <|0.00|>; TS + 50: <|1.00|>


def test_a_timestamped_decode_gives_its_text_tokens() -> None:
    tokens = [TS, 5, 6, TS + 120, TS + 120, 7, TS + 200]  # <|0.00|> a b<|2.40|><|2.40|> c<|4.00|>
    assert read_timestamped(tokens, TS, duration_s=5.0) == ([5, 6, 7], None)


def test_text_placed_after_the_end_of_the_audio_is_dropped() -> None:
    tokens = [TS, 5, 6, TS + 150, TS + 250, 7, 8, TS + 300]  # c d "at" 5.0-6.0 s
    assert read_timestamped(tokens, TS, duration_s=4.9) == ([5, 6], None)


def test_a_decode_that_leaves_its_last_segment_for_a_next_window_is_cut_short() -> None:
    tokens = [TS, 5, 6, TS + 342, TS + 342]  # <|0.00|> a b<|6.84|><|6.84|> and nothing more
    assert read_timestamped(tokens, TS, duration_s=11.0).problem == "cut short"
    # Only silence was left after 6.84 s when the audio ends there.
    assert read_timestamped(tokens, TS, duration_s=6.8) == ([5, 6], None)


def test_a_segment_ending_well_after_the_audio_is_the_start_of_a_loop() -> None:
    # A 6.25 s sentence said at 0-5 s and "again" at 5-10 s.
    tokens = [TS, 5, 6, TS + 250, TS + 250, 5, 6, TS + 500]
    assert read_timestamped(tokens, TS, duration_s=6.25).problem == "past the end"
    # Segment ends are coarse: one a little after the end of the audio is fine.
    assert read_timestamped([TS, 5, 6, TS + 400], TS, duration_s=7.75) == ([5, 6], None)


def test_a_segment_that_repeats_an_earlier_one_is_the_start_of_a_loop() -> None:
    tokens = [TS, 5, 6, TS + 100, TS + 100, 5, 6, TS + 200]
    assert read_timestamped(tokens, TS, duration_s=6.0).problem == "repeated"
    assert read_timestamped([TS, 5, 6, TS + 100, TS + 100, 5, 7, TS + 200], TS,
                            duration_s=6.0) == ([5, 6, 5, 7], None)


# -- real speech --------------------------------------------------------------------------

CLIPS = ("de_voxforge_05.wav", "en_voxforge_01.wav", "es_voxforge_03.wav",
         "fr_voxforge_02.wav", "pl_neon_01.wav")


def _real(name: str) -> np.ndarray:
    path = SHARED_TESTDATA / "real" / name
    if not path.exists():
        missing(f"{path} is absent (the shared test recordings live beside the checkout)")
    return read_audio_file(Path(path))


def _reference(name: str) -> str:
    return str(json.loads((SHARED_TESTDATA / "real" / "refs.json").read_text())[name]["text"])


@pytest.fixture(scope="module")
def fitted_whisper(prepared_model) -> Transcriber:  # type: ignore[no-untyped-def]
    return Transcriber(TranscriberConfig(str(prepared_model("whisper-base")),
                                         encoder_window="fitted"))


@pytest.fixture(scope="module")
def full_whisper(prepared_model) -> Transcriber:  # type: ignore[no-untyped-def]
    return Transcriber(TranscriberConfig(str(prepared_model("whisper-base")),
                                         encoder_window="full"))


@pytest.mark.real_models
def test_fitted_window_transcripts_are_as_good_as_the_30_s_window_s(
    fitted_whisper: Transcriber, full_whisper: Transcriber,
) -> None:
    fitted, full = [], []
    for name in CLIPS:
        audio = _real(name)
        fitted.append(fitted_whisper.transcribe(audio, DETECT))
        full.append(full_whisper.transcribe(audio, DETECT))
    assert [t.language for t in fitted] == [t.language for t in full] == [
        name[:2] for name in CLIPS]
    references = [normalise_words(_reference(name)) for name in CLIPS]
    fitted_wer = jiwer.wer(references, [normalise_words(t.text) for t in fitted])
    full_wer = jiwer.wer(references, [normalise_words(t.text) for t in full])
    assert fitted_wer <= full_wer, ([t.text for t in fitted], [t.text for t in full])


@pytest.mark.real_models
@pytest.mark.parametrize("silence_s", [2.0, 10.0])
def test_speech_followed_by_silence_is_transcribed_once(fitted_whisper: Transcriber,
                                                        silence_s: float) -> None:
    speech = _real("nl_voxforge_01.wav")
    audio = np.concatenate([speech, np.zeros(int(silence_s * SAMPLE_RATE), np.float32)])
    transcript = fitted_whisper.transcribe(audio, DETECT)
    assert transcript.language == "nl"
    assert normalise_words(transcript.text) == normalise_words(_reference("nl_voxforge_01.wav"))


@pytest.mark.real_models
def test_a_decode_that_loops_in_a_too_short_window_is_redone_in_the_30_s_window(
    fitted_whisper: Transcriber, full_whisper: Transcriber, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # With 1 s of silence after it, whisper-base repeats this sentence until the token limit
    # (on the development CPU, greedy and beam search alike); the repeats are caught and the
    # utterance decoded again, so the client gets the 30 s window's transcript.
    monkeypatch.setattr(whisper, "fitted_window_frames",
                        functools.partial(fitted_window_frames, margin_s=1.0, min_window_s=0))
    audio = _real("en_voxforge_01.wav")
    transcript = fitted_whisper.transcribe(audio, DETECT)
    assert transcript.text == full_whisper.transcribe(audio, DETECT).text
    assert normalise_words(transcript.text).count("arthur") == 1, transcript.text


@pytest.mark.real_models
def test_a_batch_in_one_fitted_window_gives_each_utterance_its_transcript_alone(
    fitted_whisper: Transcriber,
) -> None:
    # These utterances (5.1 to 6 s) all get the same 10 s window, alone and together.
    names = ["de_voxforge_01.wav", "it_voxforge_01.wav", "nl_voxforge_04.wav", "pl_neon_01.wav"]
    audios = [_real(name) for name in names]
    assert len({fitted_window_frames(a.size // 160) for a in audios}) == 1
    batched = fitted_whisper.transcribe_batch([(audio, DETECT) for audio in audios])
    for name, audio, transcript in zip(names, audios, batched, strict=True):
        alone = fitted_whisper.transcribe(audio, DETECT)
        assert (transcript.text, transcript.language) == (alone.text, alone.language), name
        assert transcript.avg_log_probability == pytest.approx(alone.avg_log_probability,
                                                               abs=1e-3)
        assert transcript.language == name[:2]


@pytest.mark.parametrize(("cores", "threads"), [(1, 1), (2, 1), (4, 1), (7, 1), (8, 2),
                                                (16, 4), (64, 4)])
def test_a_cpu_decode_gets_a_quarter_of_the_cores_one_to_four(cores: int, threads: int) -> None:
    assert default_cpu_threads(cores) == threads


def test_the_transcriber_loads_whisper_with_the_default_threads_on_a_cpu(
        monkeypatch: pytest.MonkeyPatch) -> None:
    loaded: dict[str, object] = {}

    class Recorded:
        def __init__(self, path: str, **settings: object) -> None:
            loaded.update(settings)

    monkeypatch.setattr(whisper, "_whisper_model_class", lambda: Recorded)
    monkeypatch.setattr(whisper.os, "cpu_count", lambda: 2)
    Transcriber(TranscriberConfig("unused", device="cpu", compute_type="int8", num_workers=2))
    assert loaded["cpu_threads"] == 1 and loaded["num_workers"] == 2
    Transcriber(TranscriberConfig("unused", device="cpu", compute_type="int8", cpu_threads=3))
    assert loaded["cpu_threads"] == 3  # a configured count is kept
