"""Does the echo guard's loudness test tell a voice over the reply from the reply's echo?

    .venv/bin/python -m benchmarks.echo_follows

Offline, no service: the 34 real recordings of ``shared/testdata/real`` are played "over" three
espeak-ng replies (de, en, fr) at a random point, with no echo at all, and a simulated room
echo of the same stretch of the reply (20-200 ms late, 6-20 dB down, a decaying reverb tail)
is scored the same way. Every look the guard would take (0.6, 1.0, 1.5, 2.0 s into the speech,
after 0.3 s of the VAD's padding) is scored with :func:`voice.overlap.follows` over the latest
0.6 s and 1.5 s. Printed: how often the better and the weaker stretch reach the thresholds
(echo at 0.6, and at 0.45 for one or two words): a voice should rarely, an echo nearly always.
"""

from __future__ import annotations

import argparse
import random
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile
import soxr

from voice.overlap import follows, loudness

RATE = 16_000
REAL = Path(__file__).resolve().parents[2] / "shared" / "testdata" / "real"
REPLIES = {
    "de": "Räumliche Beziehungen beschreiben, wie Objekte zueinander stehen. Zum Beispiel "
          "liegt ein Buch auf dem Tisch, und die Lampe steht daneben.",
    "en": "Berlin is the capital of Germany. It is known for its history, its museums and its "
          "vibrant culture. Many people visit it every year.",
    "fr": "Paris est la capitale de la France. Elle est connue pour ses musées, sa cuisine et "
          "son histoire. Beaucoup de gens la visitent chaque année.",
}
WINDOWS_S = (0.6, 1.5)  # voice.interruptions.ECHO_WINDOWS_S
LOOKS_S = (0.6, 1.0, 1.5, 2.0)
PAD_S = 0.3


def load(path: Path) -> np.ndarray:
    audio, rate = soundfile.read(path, dtype="float32")
    audio = audio.mean(axis=1) if audio.ndim > 1 else audio
    return soxr.resample(audio, rate, RATE).astype(np.float32)


def espeak(language: str, text: str) -> np.ndarray:
    wav = subprocess.run(["espeak-ng", "-v", language, "-s", "150", "--stdout", text],
                         capture_output=True, check=True).stdout
    with tempfile.NamedTemporaryFile(suffix=".wav") as file:
        Path(file.name).write_bytes(wav)
        return load(Path(file.name))


def room(audio: np.ndarray, rng: random.Random, noise: np.random.Generator) -> np.ndarray:
    delay = rng.randint(20, 200) * RATE // 1000
    gain = 10 ** (rng.uniform(-20, -6) / 20)
    t = np.arange(int(rng.uniform(0.05, 0.3) * RATE))
    response = noise.standard_normal(t.size) * np.exp(-t / (0.05 * RATE))
    response[0] = 3.0
    response /= np.sqrt(np.square(response).sum())
    wet = np.convolve(audio, response)[:audio.size]
    return (np.concatenate([np.zeros(delay, np.float32), wet])[:audio.size] * gain).astype(
        np.float32)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clips", type=Path, default=REAL)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng, noise = random.Random(args.seed), np.random.default_rng(args.seed)
    replies = {language: espeak(language, text) for language, text in REPLIES.items()}
    scores: dict[str, list[tuple[float, float]]] = {"voice, no echo": [], "room echo": []}
    for clip in sorted(args.clips.glob("*.wav")):
        user = np.concatenate([np.zeros(int(PAD_S * RATE), np.float32), load(clip)])
        for reply in replies.values():
            contour = loudness(reply, RATE)
            start = rng.randrange(50, contour.size - 400)  # 10 ms frames; speech begins here
            begin = start * RATE // 100 - int(PAD_S * RATE)
            echo = room(reply[begin:], rng, noise)
            size = min(user.size, echo.size)
            floor = (noise.standard_normal(size) * 1e-3).astype(np.float32)  # -60 dBFS
            for name, heard in (("voice, no echo", user[:size] + floor),
                                ("room echo", echo[:size] + floor)):
                for look_s in LOOKS_S:
                    end = int((PAD_S + look_s) * RATE)
                    if end > size:
                        break
                    looks = []
                    for window_s in WINDOWS_S:
                        n = min(end, int(window_s * RATE))
                        frame = start - int(PAD_S * 100) + (end - n) * 100 // RATE
                        looks.append(follows(loudness(heard[end - n:end], RATE), contour, frame))
                    scores[name].append((max(looks), min(looks)))
    print("| heard | looks | stretch | >= 0.45 | >= 0.6 | p50 |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, values in scores.items():
        table = np.array(values)
        for column, stretch in enumerate(("better", "weaker")):
            v = table[:, column]
            print(f"| {name} | {len(v)} | {stretch} | {100 * np.mean(v >= 0.45):.0f} % "
                  f"| {100 * np.mean(v >= 0.6):.0f} % | {np.median(v):.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
