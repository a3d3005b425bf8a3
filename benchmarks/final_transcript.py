"""Final-transcript benchmark: word error rate, language and decode time on real speech.

Run after `voice models prepare` (or `make test`):

    .venv/bin/python benchmarks/final_transcript.py [--clips ../shared/testdata/real]
        [--variants shipped fitted fitted-beam2 fitted-beam5 full full-beam5] [--repeats 1]
        [--device auto|cpu|cuda] [--compute-type auto] [--json out.json]

Each of the 34 recordings of ``shared/testdata/real`` (8 languages, read speech, 3-12 s) is
transcribed by every variant, clip by clip with the variants interleaved (so a change in the
machine's load hits all of them alike), on one loaded model:

* ``shipped``: faster-whisper as shipped: ``WhisperModel.transcribe(audio, beam_size=5)`` with
  its default settings, language detected among all of Whisper's languages (it encodes the
  30 s window once to detect, once per window to decode, with timestamps).
* ``fitted``: ``Transcriber.transcribe`` as the service calls it on a CPU: the encoder window
  fitted to the utterance, the service's default beam size, detection within the service's
  default languages.
* ``fitted-beamN``, ``full``, ``full-beamN``: the same with beam N, or with Whisper's 30 s
  encoder window (the service before the fitted window; on CUDA, still its default).

Both sides of the WER are normalised as ``shared/testdata/real/README.md`` says: lowercase, no
punctuation, no diacritics, no apostrophes. Decode time is the wall time of one call (audio
array in, text out); with ``--repeats N`` each clip is timed N times per variant. The
encoder table times the encoder alone on the fitted and the 30 s window of every clip, and
"second passes" counts the fitted decodes that looked wrong and were decoded again in the
30 s window.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import platform
import re
import sys
import time
import unicodedata
import wave
from collections.abc import Callable
from pathlib import Path

import jiwer
import numpy as np
import soxr

from asr.transcript import TranscribeOptions
from asr.whisper import Transcriber, TranscriberConfig
from asr.window import fitted_window_frames
from voice.config import DEFAULT_LANGUAGES, ServiceConfig
from voice.models import ModelKind, ModelStore, default_model_names

DEFAULT_CLIPS = Path(__file__).resolve().parents[2] / "shared" / "testdata" / "real"
VARIANTS = ("shipped", "fitted", "fitted-beam2", "fitted-beam5", "full", "full-beam5")
VARIANT = re.compile(r"shipped|(fitted|full)(-beam([1-9][0-9]?))?")


def variant_name(text: str) -> str:
    if not VARIANT.fullmatch(text):
        raise argparse.ArgumentTypeError(f"{text!r}: shipped, fitted, full, fitted-beamN or "
                                         f"full-beamN")
    return text


@dataclasses.dataclass
class Variant:
    name: str
    transcribe: Callable[[np.ndarray], tuple[str, str]]  # audio -> (text, language)
    texts: dict[str, str] = dataclasses.field(default_factory=dict)
    languages: dict[str, str] = dataclasses.field(default_factory=dict)
    seconds: list[float] = dataclasses.field(default_factory=list)


class LogCounter(logging.Handler):
    """Counts the log records whose message starts with ``prefix`` (asr.whisper says when it
    decodes again: "decode in a ..." for the 30 s window, "language a close call ...")."""

    def __init__(self, prefix: str) -> None:
        super().__init__(logging.INFO)
        self.prefix = prefix
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        if str(record.msg).startswith(self.prefix):
            self.count += 1


def read_clip(path: Path) -> np.ndarray:
    """A 16-bit PCM WAV file as float32 mono 16 kHz (resampled with soxr)."""
    with wave.open(str(path)) as reader:
        rate, channels = reader.getframerate(), reader.getnchannels()
        samples = np.frombuffer(reader.readframes(reader.getnframes()), "<i2")
    audio = samples.reshape(-1, channels).mean(axis=1).astype(np.float32) / 32768
    return np.asarray(soxr.resample(audio, rate, 16_000) if rate != 16_000 else audio,
                      dtype=np.float32)


def normalise(text: str) -> str:
    """Lowercase words without punctuation, diacritics or apostrophes."""
    text = unicodedata.normalize("NFKD", text.lower())
    text = "".join(c for c in text if not unicodedata.combining(c))
    text = re.sub(r"['’`ʼ]", "", text)
    return " ".join(re.sub(r"[^\w\s]|_", " ", text).split())


def make_variants(names: list[str], transcribers: dict[str, Transcriber],
                  model_path: str, device: str, compute_type: str,
                  beam_size: int) -> list[Variant]:
    from faster_whisper import WhisperModel

    shipped_model = WhisperModel(model_path, device=device, compute_type=compute_type)

    def shipped(audio: np.ndarray) -> tuple[str, str]:
        segments, info = shipped_model.transcribe(audio, beam_size=5)
        return " ".join(s.text.strip() for s in segments), info.language

    def ours(window: str, beam: int) -> Callable[[np.ndarray], tuple[str, str]]:
        options = TranscribeOptions(allowed_languages=DEFAULT_LANGUAGES, beam_size=beam)

        def call(audio: np.ndarray) -> tuple[str, str]:
            transcript = transcribers[window].transcribe(audio, options)
            return transcript.text, transcript.language
        return call

    variants = []
    for name in names:
        match = VARIANT.fullmatch(name)
        assert match is not None  # checked by variant_name
        if name == "shipped":
            variants.append(Variant("faster-whisper as shipped (beam 5)", shipped))
            continue
        window, beam = match[1], int(match[3] or beam_size)
        label = "fitted window" if window == "fitted" else "30 s window"
        variants.append(Variant(f"{label}, beam {beam}", ours(window, beam)))
    return variants


def encoder_times(transcriber: Transcriber, audio: np.ndarray) -> tuple[int, float, float]:
    """The fitted window's length (frames) and the encoder's seconds on it and on 30 s."""
    from faster_whisper import WhisperModel
    from faster_whisper.audio import pad_or_trim

    model = transcriber._model  # the encoder alone, below Transcriber's API
    features = model.feature_extractor(audio)[:, :-1]
    frames = fitted_window_frames(features.shape[-1])
    seconds = []
    for window in (frames, 3000):
        padded = pad_or_trim(features, window)
        started = time.perf_counter()
        WhisperModel.encode(model, padded)
        seconds.append(time.perf_counter() - started)
    return frames, seconds[0], seconds[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=Path, default=DEFAULT_CLIPS)
    parser.add_argument("--variants", nargs="+", type=variant_name, default=list(VARIANTS),
                        help="shipped, fitted, full, fitted-beamN or full-beamN")
    parser.add_argument("--repeats", type=int, default=1, help="timed calls per clip and variant")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--compute-type", default="auto")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON here")
    args = parser.parse_args()

    references = json.loads((args.clips / "refs.json").read_text())
    clips = {name: read_clip(args.clips / name) for name in sorted(references)}
    store = ModelStore(progress=False)
    model_name = default_model_names()[ModelKind.ASR]
    model_path = str(store.resolve(model_name, ModelKind.ASR))
    transcribers = {window: Transcriber(TranscriberConfig(
        model_path, device=args.device, compute_type=args.compute_type, encoder_window=window))
        for window in ("fitted", "full")}
    fitted = transcribers["fitted"]
    beam_size = ServiceConfig().beam_size
    variants = make_variants(args.variants, transcribers, model_path, fitted.device,
                             fitted.compute_type, beam_size)
    second_passes = LogCounter("decode in a")  # fitted decodes decoded again in 30 s
    logging.getLogger("asr.whisper").addHandler(second_passes)
    logging.getLogger("asr.whisper").setLevel(logging.INFO)
    passes: dict[str, int] = {}

    warm_up = next(iter(clips.values()))
    for variant in variants:
        variant.transcribe(warm_up)
    started = time.perf_counter()
    encoder: list[tuple[str, int, float, float]] = []
    for index, (name, audio) in enumerate(clips.items()):
        # Rotate the order, so that no variant always follows the same one.
        shift = index % len(variants)
        for variant in variants[shift:] + variants[:shift]:
            before = second_passes.count
            for _ in range(args.repeats):
                call_started = time.perf_counter()
                text, language = variant.transcribe(audio)
                variant.seconds.append(time.perf_counter() - call_started)
            passes[variant.name] = passes.get(variant.name, 0) + (
                second_passes.count - before) // args.repeats
            variant.texts[name], variant.languages[name] = text, language
        encoder.append((name, *encoder_times(fitted, audio)))
        print(f"{index + 1}/{len(clips)} {name}", file=sys.stderr, flush=True)

    machine = (f"{platform.node()} {platform.machine()}, {len(os.sched_getaffinity(0))} CPUs, "
               f"{model_name} {fitted.device}/{fitted.compute_type}, load average "
               f"{os.getloadavg()[0]:.1f}; {time.perf_counter() - started:.0f} s")
    languages = sorted({ref["lang"] for ref in references.values()})
    rows = []
    for variant in variants:
        row: dict[str, object] = {"variant": variant.name}
        for language in [None, *languages]:
            names = [n for n in clips if language in (None, references[n]["lang"])]
            row["wer" if language is None else f"wer_{language}"] = float(jiwer.wer(
                [normalise(references[n]["text"]) for n in names],
                [normalise(variant.texts[n]) or "-" for n in names]))
        row["language_correct"] = sum(variant.languages[n] == references[n]["lang"]
                                      for n in clips)
        row["p50_ms"] = float(np.percentile(variant.seconds, 50) * 1000)
        row["p90_ms"] = float(np.percentile(variant.seconds, 90) * 1000)
        row["second_passes"] = passes.get(variant.name, 0) if "fitted" in variant.name else None
        row["texts"] = variant.texts
        row["languages"] = variant.languages
        rows.append(row)

    print(f"\n{machine}\n")
    print("| variant | WER | language right | p50 ms | p90 ms | second passes |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        passes_cell = "" if row["second_passes"] is None else row["second_passes"]
        print(f"| {row['variant']} | {row['wer']:.3f} | {row['language_correct']}/{len(clips)} "
              f"| {row['p50_ms']:.0f} | {row['p90_ms']:.0f} | {passes_cell} |")
    print("\n| variant | " + " | ".join(languages) + " |")
    print("|---|" + "---|" * len(languages))
    for row in rows:
        print(f"| {row['variant']} | "
              + " | ".join(f"{row[f'wer_{lang}']:.3f}" for lang in languages) + " |")
    fitted_ms = [e[2] * 1000 for e in encoder]
    full_ms = [e[3] * 1000 for e in encoder]
    print("\n| encoder window | frames (median) | p50 ms | p90 ms |\n|---|---|---|---|")
    print(f"| fitted | {np.median([e[1] for e in encoder]):.0f} | "
          f"{np.percentile(fitted_ms, 50):.0f} | {np.percentile(fitted_ms, 90):.0f} |")
    print(f"| 30 s | 3000 | {np.percentile(full_ms, 50):.0f} | {np.percentile(full_ms, 90):.0f} |")
    if args.json:
        args.json.write_text(json.dumps({
            "machine": machine, "rows": rows,
            "encoder": [{"clip": n, "frames": f, "fitted_s": a, "full_s": b}
                        for n, f, a, b in encoder]}, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
