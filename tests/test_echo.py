"""voice-mic's echo cancellation on a simulated laptop: the reply (Piper speech) comes back into
the microphone with a delay of 40-200 ms, 6-20 dB quieter, through room reverberation
(``sox reverb``), with and without background noise. The canceller must take most of it out,
and let the user's own voice through when both talk at once."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from benchmarks.echo import RATE, REPLY, USER, cancel, db, room, speech
from clients.mic.echo import self_test
from tests.speech import normalise_words, to_16k, with_silence

pytestmark = pytest.mark.real_models


def piper(prepared_model: Any, text: str) -> np.ndarray:
    from tts.piper import PiperSynthesizer

    voice = PiperSynthesizer(prepared_model("en_US-joe-medium") / "en_US-joe-medium.onnx",
                             deterministic=True)
    return speech(voice, text)


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
    # The word that makes it an interruption survives, and most of the sentence. (The rest
    # varies with the canceller's numerics from one process to the next: "wait a moment",
    # "wait in the moon", "wave a moment" were all seen.)
    words = set(normalise_words(heard).split())
    assert "stop" in words and len(words) >= 3, heard
    # Most of the user's voice is still there (the canceller takes the echo, not the talker).
    assert db(spoken) >= db(user[:spoken.size]) - 8


def test_the_start_up_check_finds_the_canceller_working() -> None:
    assert self_test(RATE) >= 20
