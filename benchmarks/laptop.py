"""A simulated laptop for the full-duplex benchmarks: the sounds a user makes over a reply
(real recordings, Piper, espeak-ng, noises) and the room that plays the reply back into the
microphone (``sox reverb``, a delay and a gain). Audio is float32 at :data:`RATE`."""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

import numpy as np
import soundfile
import soxr

RATE = 24_000
FRAME = RATE // 50  # 20 ms
REAL = Path(__file__).resolve().parents[2] / "shared" / "testdata" / "real"


# -- sounds -----------------------------------------------------------------------------------

def piper(text: str) -> np.ndarray:
    from tts.piper import PiperSynthesizer
    from voice.models import ModelKind, ModelStore, default_model_names
    name = default_model_names()[ModelKind.TTS]
    voice = PiperSynthesizer(ModelStore(progress=False).resolve(name, ModelKind.TTS)
                             / f"{name}.onnx", deterministic=True)  # the same audio every run
    chunks = list(voice.synthesize(text))
    audio = np.concatenate([c.samples for c in chunks]).astype(np.float32) / 32768
    return soxr.resample(audio, chunks[0].sample_rate, RATE).astype(np.float32)


def espeak(language: str, text: str) -> np.ndarray:
    wav = subprocess.run(["espeak-ng", "-v", language, "-s", "150", "--stdout", text],
                         check=True, capture_output=True).stdout
    with tempfile.NamedTemporaryFile(suffix=".wav") as file:
        Path(file.name).write_bytes(wav)
        audio, rate = soundfile.read(file.name, dtype="float32")
    return soxr.resample(audio, rate, RATE).astype(np.float32) * 0.8


def voice_onset(sound: np.ndarray) -> int | None:
    """Where a voice begins in ``sound`` (float32 at :data:`RATE`): the first window the
    Silero VAD takes for speech, alone on the clean sound; None where it hears no speech.
    (A level threshold is not enough: some recordings open with a click or a breath a second
    before the speaker starts.)"""
    from asr.vad import SAMPLE_RATE, SileroVadModel, StreamingVad, VadConfig, VadEventType

    audio = soxr.resample(sound, RATE, SAMPLE_RATE).astype(np.float32)
    vad = StreamingVad(SileroVadModel(), VadConfig(prefix_padding_ms=0))
    for event in vad.feed(np.concatenate([audio, np.zeros(SAMPLE_RATE // 2, np.float32)])):
        if event.type is VadEventType.SPEECH_STARTED:
            return event.start_sample * RATE // SAMPLE_RATE
    return None


def recording(name: str, seconds: float | None = None) -> np.ndarray:
    """A real recording, peak-normalized; with ``seconds``, that much of it from 0.1 s before
    the speaker's voice begins (:func:`voice_onset`)."""
    audio, rate = soundfile.read(REAL / name, dtype="float32")
    audio = audio.mean(axis=1) if audio.ndim > 1 else audio
    audio = soxr.resample(audio, rate, RATE).astype(np.float32)
    if seconds is not None:
        onset = voice_onset(audio)
        if onset is None:
            onset = int(np.argmax(np.abs(audio) > 0.05))
        audio = audio[max(0, onset - RATE // 10):onset + int(seconds * RATE)]
    peak = float(np.abs(audio).max()) or 1.0
    return audio * (0.5 / peak)


def spoken(language: str, text_or_file: str, seconds: float | None = None) -> np.ndarray:
    if text_or_file.endswith(".wav"):
        return recording(text_or_file, seconds)
    return piper(text_or_file) if language == "en" else espeak(language, text_or_file)


def grunt(seconds: float = 0.4, pitch_hz: float = 120.0) -> np.ndarray:
    """A voiced sound with no words ("uh"): a pulse train through three vowel formants. The
    VAD takes it for speech; whisper hears nothing in it."""
    t = np.arange(int(seconds * RATE)) / RATE
    sound = np.zeros(t.size)
    sound[::int(RATE / pitch_hz)] = 1.0
    for formant, bandwidth in ((700, 130), (1200, 150), (2600, 250)):
        radius = np.exp(-np.pi * bandwidth / RATE)
        a1, a2 = -2 * radius * np.cos(2 * np.pi * formant / RATE), radius * radius
        out, y1, y2 = np.zeros_like(sound), 0.0, 0.0
        for n, x in enumerate(sound):
            y = x - a1 * y1 - a2 * y2
            out[n], y2, y1 = y, y1, y
        sound = out
    envelope = np.minimum(1, np.minimum(t / 0.05, (seconds - t) / 0.08))
    return sound * envelope


def noises(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """A cough (a filtered noise burst with a sharp attack), a door knock (two low thumps),
    a plain noise burst, all about 0.3-0.5 s, and a wordless grunt (:func:`grunt`)."""
    t = np.arange(int(0.35 * RATE)) / RATE
    cough = rng.normal(0, 1, t.size) * np.exp(-t / 0.08)
    cough = np.convolve(cough, np.ones(8) / 8, mode="same")
    knock = np.zeros(int(0.5 * RATE))
    for start in (0, int(0.2 * RATE)):
        n = np.arange(int(0.08 * RATE))
        knock[start:start + n.size] += np.sin(2 * np.pi * 90 * n / RATE) * np.exp(-n / 600)
    burst = rng.normal(0, 1, int(0.3 * RATE))
    return {name: (0.4 * sound / np.abs(sound).max()).astype(np.float32)
            for name, sound in (("cough", cough), ("door", knock), ("burst", burst),
                                ("grunt", grunt()))}


# -- the room ---------------------------------------------------------------------------------

class Room:
    """The speaker-to-microphone path: ``sox reverb`` impulse response, a delay and a gain,
    applied to played audio frame by frame (FFT overlap-add)."""

    def __init__(self, delay_ms: int, gain_db: float, reverb: int) -> None:
        with tempfile.TemporaryDirectory() as folder:
            dry, wet = Path(folder) / "dry.wav", Path(folder) / "wet.wav"
            impulse = np.zeros(RATE // 2, np.float32)
            impulse[0] = 0.5
            soundfile.write(dry, impulse, RATE)
            subprocess.run(["sox", "-q", str(dry), str(wet), "reverb", str(reverb), "50", "60"],
                           check=True)
            response, _ = soundfile.read(wet, dtype="float32")
        response = response.mean(axis=1) if response.ndim > 1 else response
        response = response / 0.5 * 10 ** (gain_db / 20)
        delay = RATE * delay_ms // 1000
        self.response = np.concatenate([np.zeros(delay, np.float32), response])
        self.size = 1 << int(np.ceil(np.log2(self.response.size + FRAME)))
        self.spectrum = np.fft.rfft(self.response, self.size)
        self.tail = np.zeros(self.size, np.float32)

    def echo(self, played: np.ndarray) -> np.ndarray:
        out = np.fft.irfft(np.fft.rfft(played, self.size) * self.spectrum, self.size)
        self.tail = np.concatenate([self.tail[FRAME:], np.zeros(FRAME, np.float32)])
        self.tail += out.astype(np.float32)
        return self.tail[:FRAME].copy()
