"""Piper synthesis, the language -> voice book with espeak-ng fallback, and round trips."""

from __future__ import annotations

import logging
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from asr.transcript import TranscribeOptions
from tests.speech import ALLOWED_LANGUAGES, ESPEAK_SENTENCES, to_16k, word_error_rate
from tts.piper import PiperSynthesizer
from tts.voices import EspeakSynthesizer, VoiceBook


def test_piper_yields_int16_chunks_with_their_sample_rate(tiny_voice_path: Path) -> None:
    voice = PiperSynthesizer(tiny_voice_path)
    chunks = list(voice.synthesize("One sentence. And another one!"))
    assert len(chunks) == 2
    for samples, rate in chunks:
        assert samples.dtype == np.int16 and samples.ndim == 1 and samples.size > 0
        assert rate == 16000 == voice.sample_rate
    assert voice.language == "xx"


def test_two_pieces_can_be_synthesized_at_the_same_time(tiny_voice_path: Path) -> None:
    voice = PiperSynthesizer(tiny_voice_path)
    texts = [f"This is piece number {n}." for n in range(8)]
    sequential = [np.concatenate([c.samples for c in voice.synthesize(t)]) for t in texts]
    with ThreadPoolExecutor(4) as pool:
        parallel = list(pool.map(
            lambda t: np.concatenate([c.samples for c in voice.synthesize(t)]), texts))
    assert all(np.array_equal(a, b) for a, b in zip(sequential, parallel, strict=True))


def test_a_missing_voice_file_is_reported_by_name(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"nowhere\.onnx"):
        PiperSynthesizer(tmp_path / "nowhere.onnx")


def test_voice_book_loads_each_voice_once(tiny_voice_path: Path) -> None:
    book = VoiceBook({"xx": tiny_voice_path})
    with ThreadPoolExecutor(4) as pool:
        voices = list(pool.map(book.for_language, ["xx", "xx_XX", "XX", "xx-YY"] * 3))
    assert all(v is voices[0] for v in voices)
    assert voices[0].kind == "piper"


def test_languages_without_piper_fall_back_to_espeak_once_logged(
    tiny_voice_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    book = VoiceBook({"en": tiny_voice_path})
    with caplog.at_level(logging.WARNING, logger="tts.voices"):
        german = book.for_language("de")
        assert book.for_language("de_AT") is german
    assert german.kind == "espeak" and german.language == "de"
    assert sum("falling back to espeak-ng" in r.message for r in caplog.records) == 1
    samples, rate = next(iter(german.synthesize("Guten Tag.")))
    assert samples.dtype == np.int16 and samples.size > rate // 4
    kinds = book.languages()
    assert kinds["en"] == "piper"
    assert all(kinds[lang] == "espeak" for lang in ("de", "fr", "es", "it", "nl", "pt", "pl"))


def test_an_unknown_language_is_spoken_with_the_default_voice(tiny_voice_path: Path) -> None:
    book = VoiceBook({"en": tiny_voice_path})
    assert book.for_language("zz") is book.for_language("en")


def test_espeak_handles_text_that_looks_like_options() -> None:
    samples, _ = next(iter(EspeakSynthesizer("en").synthesize("-v --help")))
    assert samples.size > 0


@pytest.mark.real_models
def test_joe_voice_round_trips_through_whisper(joe_voice, whisper_base) -> None:
    text = "The quick brown fox jumps over the lazy dog near the river."
    chunks = list(joe_voice.synthesize(text))
    assert chunks[0].sample_rate == 22050
    audio = to_16k(np.concatenate([c.samples for c in chunks]), chunks[0].sample_rate)
    transcript = whisper_base.transcribe(audio)
    assert transcript.language == "en"
    # Piper samples noise on every call (noise_scale 0.667), so the audio differs run to run:
    # 8 runs gave 0 or 1 wrong words of 12, one CI run 2 ("quit-brown", "jumped").
    assert word_error_rate(text, transcript.text) <= 0.2, transcript.text


@pytest.mark.real_models
def test_espeak_fallback_speaks_german_that_whisper_understands(whisper_base) -> None:
    sentence = ESPEAK_SENTENCES[0]
    assert sentence.language == "de"
    voice = EspeakSynthesizer("de", speed_wpm=sentence.espeak_speed)
    samples, rate = next(iter(voice.synthesize(sentence.text)))
    transcript = whisper_base.transcribe(
        to_16k(samples, rate), TranscribeOptions(allowed_languages=ALLOWED_LANGUAGES))
    assert transcript.language == "de"
    assert word_error_rate(sentence.text, transcript.text) <= 0.3, transcript.text


_LONG_PIECE_GROWTH = """
import ctypes
import ctypes.util
import sys
from pathlib import Path

import psutil

from tts.piper import PiperSynthesizer
from voice.config import ServiceConfig
from voice.memory import set_mmap_threshold

set_mmap_threshold(ServiceConfig().memory_mmap_threshold_kib * 1024)  # as the service runs
voice = PiperSynthesizer(Path(sys.argv[1]))
process = psutil.Process()
loaded = process.memory_info().rss
text = ("The weather tomorrow in the mountains will be sunny with a light breeze, and the "
        "evening should stay warm enough for a long walk along the river before the rain "
        "returns on Sunday.")
held = []
for _ in range(4):
    for _ in voice.synthesize(text):
        pass
    # What the service's idle trimmer does (voice/memory.py): freed heap memory goes back, so
    # what is left is what is still held (glibc may keep freed blocks below the threshold).
    ctypes.CDLL(ctypes.util.find_library("c")).malloc_trim(0)
    held.append(process.memory_info().rss - loaded)
# Now and then (~1 run in 15) ~160 MiB stay held after one run and are gone after a later one:
# a passing hold, not a growth. Buffers kept for good (the arena bug) show after every run.
print(held)
print(min(held))
"""


@pytest.mark.real_models
def test_a_long_piece_leaves_no_synthesis_memory_behind(prepared_model) -> None:  # type: ignore[no-untyped-def]
    # onnxruntime's arena used to keep the buffers of the longest piece so far: +160 MiB after
    # this 33-word piece (and more with two pieces at once), the soak's creeping memory.
    voice = prepared_model("en_US-joe-medium") / "en_US-joe-medium.onnx"
    done = subprocess.run([sys.executable, "-c", _LONG_PIECE_GROWTH, str(voice)],
                          capture_output=True, text=True, check=True, cwd=Path(__file__).parents[1])
    assert int(done.stdout.strip().splitlines()[-1]) < 60 * 2**20
