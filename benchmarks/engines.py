"""Engine benchmark: VAD, ASR, LLM and TTS costs on this machine, as medians and p90s.

Run after `voice models prepare` (or `make test`):

    .venv/bin/python benchmarks/engines.py [--repeats 5] [--device auto|cpu|cuda]
        [--compute-type auto|int8|float16|int8_float16] [--llm NAME] [--json out.json]

Every figure is measured in this process, one stage at a time, with the models loaded once.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import soxr

from asr.transcript import TranscribeOptions
from asr.vad import SAMPLE_RATE, SileroVadModel, StreamingVad
from asr.whisper import Transcriber, TranscriberConfig
from llm.chat import ChatConfig, ChatModel, Message, SamplingOptions
from tts.piper import PiperSynthesizer
from tts.voices import EspeakSynthesizer
from voice.models import ModelKind, ModelStore, default_model_names

SPEECH = ("The weather in Berlin will be sunny tomorrow, with a light wind from the west. "
          "In the afternoon it gets warmer, and in the evening there may be a little rain. "
          "Take an umbrella if you go out late, and enjoy the rest of your week.")
FILLER = ("Our team meets every Monday to plan the week, review open tickets, and agree on who "
          "takes which customer call. ")


@dataclasses.dataclass
class Figure:
    name: str
    unit: str
    samples: list[float]

    def row(self) -> str:
        values = np.asarray(self.samples)
        cells = [np.median(values), np.percentile(values, 90), values.min(), values.max()]
        digits = 3 if values.max() < 10 else 1
        return (f"{self.name:<50} " + " ".join(f"{c:>9.{digits}f}" for c in cells)
                + f"  {self.unit}  (n={values.size})")


def timed(function: Callable[[], object]) -> float:
    started = time.perf_counter()
    function()
    return (time.perf_counter() - started) * 1000


def speech_audio(voice: PiperSynthesizer) -> np.ndarray:
    chunks = list(voice.synthesize(SPEECH))
    audio = np.concatenate([c.samples for c in chunks]).astype(np.float32) / 32768
    return soxr.resample(audio, chunks[0].sample_rate, SAMPLE_RATE).astype(np.float32)


def bench_vad(audio: np.ndarray, repeats: int) -> list[Figure]:
    model = SileroVadModel()
    frame = SAMPLE_RATE * 20 // 1000  # 20 ms, as a microphone client sends
    costs = []
    for _ in range(repeats):
        vad = StreamingVad(model)
        started = time.process_time()
        for start in range(0, audio.size, frame):
            vad.feed(audio[start:start + frame])
        costs.append((time.process_time() - started) * 1000 / (audio.size / SAMPLE_RATE))
    return [Figure("VAD CPU time per second of audio", "ms CPU / s audio", costs)]


def bench_asr(transcriber: Transcriber, audio: np.ndarray, repeats: int) -> list[Figure]:
    figures = []
    options = TranscribeOptions(allowed_languages=("en", "de", "fr", "es", "it", "nl", "pt",
                                                   "pl"))
    for seconds in (2, 5, 10):
        clip = audio[: seconds * SAMPLE_RATE]
        transcriber.transcribe(clip, options)  # warm-up
        figures.append(Figure(f"ASR final, {seconds} s utterance (detect language)", "ms",
                              [timed(lambda c=clip: transcriber.transcribe(c, options))
                               for _ in range(repeats)]))
    clip = audio[: 5 * SAMPLE_RATE]
    pinned = TranscribeOptions(language="en")
    figures.append(Figure("ASR final, 5 s utterance (language pinned)", "ms",
                          [timed(lambda: transcriber.transcribe(clip, pinned))
                           for _ in range(repeats)]))
    # What the encoder memo saves: faster-whisper as shipped detects the language with one
    # encoder pass and decodes with another.
    from faster_whisper import WhisperModel

    plain = WhisperModel(transcriber.config.model_path, device=transcriber.device,
                         compute_type=transcriber.compute_type)

    def as_shipped() -> None:
        segments, _ = plain.transcribe(clip, beam_size=1, temperature=0.0,
                                       condition_on_previous_text=False,
                                       without_timestamps=True, vad_filter=False)
        list(segments)

    as_shipped()
    figures.append(Figure("ASR 5 s, faster-whisper as shipped (2 encodes)", "ms",
                          [timed(as_shipped) for _ in range(repeats)]))
    # A final decode while a partial decode is in flight on another thread.
    partial_clip = audio[: 4 * SAMPLE_RATE]
    busy = []
    for _ in range(repeats):
        worker = threading.Thread(target=transcriber.transcribe,
                                  args=(partial_clip, TranscribeOptions(language="en")))
        worker.start()
        time.sleep(0.05)
        busy.append(timed(lambda: transcriber.transcribe(clip, options)))
        worker.join()
    figures.append(Figure("ASR final 5 s while a partial decode runs", "ms", busy))
    return figures


def _prompt_of(chat: ChatModel, tokens: int) -> list[Message]:
    """A short system prompt and a question padded so the whole prompt has about ``tokens``."""
    question = "What does the team do on Mondays?"
    filler_ids = chat._tokenizer.encode(FILLER * (tokens // 10 + 1), add_special_tokens=False).ids

    def messages(count: int) -> list[Message]:
        text = chat._tokenizer.decode(filler_ids[:count]) + "\n" + question if count else question
        return [Message("system", "Answer briefly."), Message("user", text)]

    count = 0
    while chat.count_tokens(chat.render(messages(count + 1))) <= tokens:
        count += 1
    return messages(count)


def bench_llm(chat: ChatModel, repeats: int) -> list[Figure]:
    figures = []
    for prompt_tokens in (50, 500):
        messages = _prompt_of(chat, prompt_tokens)
        actual = chat.count_tokens(chat.render(messages))
        first_token, rates = [], []
        list(chat.stream(messages, SamplingOptions(max_new_tokens=8)))  # warm-up
        for _ in range(repeats):
            started = time.perf_counter()
            first = None
            pieces = []
            for delta in chat.stream(messages, SamplingOptions(max_new_tokens=64)):
                if first is None:
                    first = time.perf_counter()
                pieces.append(delta)
            ended = time.perf_counter()
            generated = chat.count_tokens("".join(pieces))
            assert first is not None
            first_token.append((first - started) * 1000)
            if generated > 1 and ended > first:
                rates.append((generated - 1) / (ended - first))
        figures.append(Figure(f"LLM time to first token, {actual}-token prompt", "ms",
                              first_token))
        figures.append(Figure(f"LLM decode speed, {actual}-token prompt", "tokens/s", rates))
    return figures


def bench_tts(voice: PiperSynthesizer, repeats: int) -> list[Figure]:
    piece = "The capital of France is Paris, a city of museums and cafes."
    first_chunk, factor = [], []
    list(voice.synthesize(piece))  # warm-up
    for _ in range(repeats):
        started = time.perf_counter()
        chunks = []
        for chunk in voice.synthesize(piece):
            if not chunks:
                first_chunk.append((time.perf_counter() - started) * 1000)
            chunks.append(chunk)
        elapsed = time.perf_counter() - started
        audio_s = sum(c.samples.size for c in chunks) / chunks[0].sample_rate
        factor.append(elapsed / audio_s)
    espeak = EspeakSynthesizer("de")
    espeak_first = [timed(lambda: next(iter(espeak.synthesize("Die Hauptstadt von Frankreich ist "
                                                              "Paris, eine Stadt der Museen."))))
                    for _ in range(repeats)]
    return [Figure("TTS Piper time to first chunk (one clause)", "ms", first_chunk),
            Figure("TTS Piper real-time factor", "s work / s audio", factor),
            Figure("TTS espeak-ng fallback, time to audio", "ms", espeak_first)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--compute-type", default="auto")
    parser.add_argument("--llm", default=None, help="LLM name or path (default: the default)")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON here")
    args = parser.parse_args()

    store = ModelStore(progress=False)
    names = default_model_names()
    transcriber = Transcriber(TranscriberConfig(
        str(store.resolve(names[ModelKind.ASR], ModelKind.ASR)), device=args.device,
        compute_type=args.compute_type, num_workers=2))
    chat = ChatModel(ChatConfig(str(store.resolve(args.llm or names[ModelKind.LLM],
                                                  ModelKind.LLM)),
                                device=args.device, compute_type=args.compute_type))
    voice = PiperSynthesizer(store.resolve(names[ModelKind.TTS], ModelKind.TTS)
                             / f"{names[ModelKind.TTS]}.onnx")
    audio = speech_audio(voice)
    if audio.size < 10 * SAMPLE_RATE:
        audio = np.concatenate([audio, audio])

    figures = [*bench_vad(audio, args.repeats), *bench_asr(transcriber, audio, args.repeats),
               *bench_llm(chat, args.repeats), *bench_tts(voice, args.repeats)]
    machine = (f"{platform.node()} {platform.machine()}, {len(os.sched_getaffinity(0))}"
               f" CPUs, ASR {transcriber.device}/{transcriber.compute_type}, "
               f"LLM {chat.device}/{chat.compute_type} ({args.llm or names[ModelKind.LLM]})")
    print(f"\n{machine}\n")
    print(f"{'figure':<50} {'median':>9} {'p90':>9} {'min':>9} {'max':>9}  unit")
    for figure in figures:
        print(figure.row())
    if args.json:
        args.json.write_text(json.dumps({
            "machine": machine,
            "figures": {f.name: {"unit": f.unit, "median": statistics.median(f.samples),
                                 "p90": float(np.percentile(f.samples, 90)),
                                 "samples": f.samples} for f in figures},
        }, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
