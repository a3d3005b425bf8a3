"""How much of its own reply voice-mic's echo canceller takes out of the microphone, on a
simulated laptop.

    .venv/bin/python -m benchmarks.echo

The reply is Piper's English voice; the "room" plays it back into the microphone through
``sox reverb 40 50 60``, delayed by 40-200 ms and 6-20 dB quieter, with and without background
noise (-50 dBFS). Reported: the echo left after :class:`clients.mic.echo.EchoCanceller`, in dB
below the echo, over the last two thirds of the reply (the first third is for learning the
room), and with the user talking over the second half, the level of the user's voice after
cancelling relative to before.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile
import soxr

from clients.mic.echo import EchoCanceller
from tts.piper import PiperSynthesizer
from voice.models import ModelStore
from voice.models.catalog import lookup

RATE = 24_000
REPLY = ("This is the assistant answering through the laptop speakers, and it keeps talking "
         "for a while, about the weather, the time and the notes you asked for.")
USER = "Stop, please wait a moment."


def speech(voice: PiperSynthesizer, text: str) -> np.ndarray:
    chunks = list(voice.synthesize(text))
    audio = np.concatenate([c.samples for c in chunks]).astype(np.float32) / 32768
    return soxr.resample(audio, chunks[0].sample_rate, RATE).astype(np.float32)


def room(far: np.ndarray, delay_ms: int, gain_db: float) -> np.ndarray:
    with tempfile.TemporaryDirectory() as folder:
        dry, wet = Path(folder) / "dry.wav", Path(folder) / "wet.wav"
        soundfile.write(dry, far * 0.5, RATE)
        subprocess.run(["sox", "-q", str(dry), str(wet), "reverb", "40", "50", "60"],
                       check=True)
        echo, _ = soundfile.read(wet, dtype="float32")
    echo = echo.mean(axis=1) if echo.ndim > 1 else echo
    delay = RATE * delay_ms // 1000
    out = np.zeros(far.size, np.float32)
    out[delay:] = echo[:far.size - delay] * 2 * 10 ** (gain_db / 20)
    return out


def cancel(far: np.ndarray, mic: np.ndarray) -> np.ndarray:
    canceller = EchoCanceller(RATE)
    step, out = canceller.frame, []
    for start in range(0, far.size - step + 1, step):
        canceller.played((far[start:start + step] * 32767).astype(np.int16))
        out.append(canceller.captured((np.clip(mic[start:start + step], -1, 1) * 32767)
                                      .astype(np.int16)))
    return np.concatenate(out).astype(np.float32) / 32768


def db(x: np.ndarray) -> float:
    return float(10 * np.log10(np.mean(x.astype(np.float64) ** 2) + 1e-12))


def main() -> int:
    path = ModelStore(progress=False).path_of(lookup("en_US-joe-medium")) / \
        "en_US-joe-medium.onnx"
    voice = PiperSynthesizer(path, deterministic=True)
    far, user = speech(voice, REPLY), speech(voice, USER) * 0.7
    print("| delay (ms) | echo gain (dB) | noise | echo removed (dB) | user's voice kept (dB) |")
    print("|---:|---:|---|---:|---:|")
    for delay_ms, gain_db in ((40, -6), (120, -12), (200, -20)):
        for noise in (False, True):
            echo = room(far, delay_ms, gain_db)
            background = (np.random.default_rng(1).normal(0, 0.003, far.size)
                          .astype(np.float32) if noise else np.zeros_like(far))
            out = cancel(far, echo + background)
            settled = slice(far.size // 3, out.size)
            removed = db((echo + background)[settled]) - db(out[settled])
            start = far.size // 2
            mic = echo + background
            mic[start:start + user.size] += user[:far.size - start]
            spoken = cancel(far, mic)[start:start + user.size]
            kept = db(spoken) - db(user[:spoken.size])
            print(f"| {delay_ms} | {gain_db} | {'yes' if noise else 'no'} | {removed:.1f} | "
                  f"{kept:+.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
