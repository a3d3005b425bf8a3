"""voice-mic's echo cancellation on a simulated laptop: the reply (Piper speech) comes back into
the microphone with a delay of 40-200 ms, 6-20 dB quieter, through room reverberation
(``sox reverb``), with and without background noise. The canceller must take most of it out,
and let the user's own voice through when both talk at once."""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile
import soxr

from clients.mic.echo import EchoCanceller, self_test
from tests.speech import normalise_words, to_16k, with_silence

RATE = 24_000
pytestmark = pytest.mark.real_models
REPLY = ("This is the assistant answering through the laptop speakers, and it keeps talking "
         "for a while, about the weather, the time and the notes you asked for.")
USER = "Stop, please wait a moment."


def piper(prepared_model: Any, text: str) -> np.ndarray:
    from tts.piper import PiperSynthesizer

    voice = PiperSynthesizer(prepared_model("en_US-joe-medium") / "en_US-joe-medium.onnx",
                             deterministic=True)
    chunks = list(voice.synthesize(text))
    audio = np.concatenate([c.samples for c in chunks]).astype(np.float32) / 32768
    return soxr.resample(audio, chunks[0].sample_rate, RATE).astype(np.float32)


def room(far: np.ndarray, delay_ms: int, gain_db: float) -> np.ndarray:
    """What the microphone hears of ``far``: reverberated, delayed, quieter."""
    with tempfile.TemporaryDirectory() as folder:
        dry, wet = Path(folder) / "dry.wav", Path(folder) / "wet.wav"
        soundfile.write(dry, far * 0.5, RATE)
        subprocess.run(["sox", "-q", str(dry), str(wet), "reverb", "40", "50", "60"],
                       check=True)
        echo, _ = soundfile.read(wet, dtype="float32")
    if echo.ndim > 1:
        echo = echo.mean(axis=1)
    delay = RATE * delay_ms // 1000
    out = np.zeros(far.size, np.float32)
    out[delay:] = echo[:far.size - delay] * 2 * 10 ** (gain_db / 20)
    return out


def cancel(far: np.ndarray, mic: np.ndarray) -> np.ndarray:
    canceller = EchoCanceller(RATE)
    out = []
    step = canceller.frame
    for start in range(0, far.size - step + 1, step):
        canceller.played((far[start:start + step] * 32767).astype(np.int16))
        out.append(canceller.captured((np.clip(mic[start:start + step], -1, 1) * 32767)
                                      .astype(np.int16)))
    return np.concatenate(out).astype(np.float32) / 32768


def db(x: np.ndarray) -> float:
    return float(10 * np.log10(np.mean(x.astype(np.float64) ** 2) + 1e-12))


@pytest.mark.parametrize("noise", [False, True], ids=["quiet", "noisy"])
@pytest.mark.parametrize(("delay_ms", "gain_db"), [(40, -6), (120, -12), (200, -20)])
def test_the_reply_heard_through_a_laptop_room_is_taken_out_of_the_microphone(
        prepared_model: Any, delay_ms: int, gain_db: float, noise: bool) -> None:
    far = piper(prepared_model, REPLY)
    echo = room(far, delay_ms, gain_db)
    background = (np.random.default_rng(1).normal(0, 0.003, far.size).astype(np.float32)
                  if noise else np.zeros_like(far))
    out = cancel(far, echo + background)
    settled = slice(far.size // 3, out.size)  # after the canceller has learnt the room
    removed = db((echo + background)[settled]) - db(out[settled])
    assert removed >= 15, f"only {removed:.1f} dB of echo removed"


def test_the_users_voice_passes_while_the_reply_plays(prepared_model: Any,
                                                      whisper_base: Any) -> None:
    far = piper(prepared_model, REPLY)
    user = piper(prepared_model, USER) * 0.7
    start = far.size // 2  # the user talks over the second half of the reply
    mic = room(far, 120, -12)
    mic[start:start + user.size] += user[:far.size - start]
    out = cancel(far, mic)
    spoken = out[start:start + user.size]
    heard = whisper_base.transcribe(with_silence(to_16k(spoken, RATE))).text
    # The words that make it an interruption survive. (Its last words vary a little with the
    # canceller's numerics, e.g. "wait a moment" / "wait in the moon" in one fresh install.)
    words = set(normalise_words(heard).split())
    assert {"stop", "wait"} <= words, heard
    # Most of the user's voice is still there (the canceller takes the echo, not the talker).
    assert db(spoken) >= db(user[:spoken.size]) - 8


def test_the_start_up_check_finds_the_canceller_working() -> None:
    assert self_test(RATE) >= 20
