"""ASR batching benchmark: final-transcript latency when N utterances arrive at once.

Run after `voice models prepare` (or `make test`):

    .venv/bin/python benchmarks/asr_batch.py [--sizes 1 2 4 8] [--repeats 2]
        [--clips ../shared/testdata/real] [--device auto|cpu|cuda] [--json out.json]

Each round hands N real recordings (different speakers and languages) to an ASR scheduler at
the same moment, as the final transcripts of N sessions arrive under load, and measures each
one's latency from submission to its transcript. The variants run interleaved, round by round
(in a rotating order), on one loaded model (the service's: ``num_workers=2``):

* ``one call each``: the service before batching: ``Scheduler("asr", 2)`` running
  ``Transcriber.transcribe`` (two CTranslate2 replicas decode two utterances in parallel).
* ``batched``: ``Scheduler("asr", 1, max_batch=8, batch_window_s=0.01)`` running
  ``Transcriber.transcribe_batch`` through ``run_batched``.
* ``batched, max 1``: ``Scheduler("asr", 2, max_batch=1)`` running ``transcribe_batch``
  through ``run_batched``: the batch entry point used one utterance at a time, as on a CPU.

Besides latency it reports the process's CPU seconds per utterance (all threads; CTranslate2's
idle threads spin for a while, so this grows when other processes compete for the cores).
``--components`` also times the three model stages for the largest size, one utterance per
call against one call for all: the encoder, language detection and greedy generation.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import platform
import sys
import time
import wave
from collections.abc import Awaitable, Callable
from pathlib import Path

import numpy as np
import soxr

from asr.transcript import TranscribeOptions, Transcript
from asr.whisper import Transcriber, TranscriberConfig
from voice.models import ModelKind, ModelStore, default_model_names
from voice.schedulers import Priority, Scheduler

CLIPS = ("de_voxforge_01.wav", "fr_voxforge_01.wav", "es_voxforge_03.wav", "en_voxforge_01.wav",
         "it_voxforge_01.wav", "nl_voxforge_01.wav", "pt_voxforge_01.wav", "pl_neon_01.wav")
LANGUAGES = ("en", "de", "fr", "es", "it", "nl", "pt", "pl")
OPTIONS = TranscribeOptions(allowed_languages=LANGUAGES)
DEFAULT_CLIPS = Path(__file__).resolve().parents[2] / "shared" / "testdata" / "real"

Submit = Callable[[str, np.ndarray], Awaitable[Transcript]]


@dataclasses.dataclass
class Variant:
    name: str
    scheduler: Scheduler
    submit: Submit
    latencies: dict[int, list[float]] = dataclasses.field(default_factory=dict)
    cpu_s: dict[int, list[float]] = dataclasses.field(default_factory=dict)  # per utterance
    texts: dict[int, str] = dataclasses.field(default_factory=dict)  # clip index -> text


def read_clip(path: Path) -> np.ndarray:
    """A 16-bit PCM WAV file as float32 mono 16 kHz."""
    with wave.open(str(path)) as reader:
        if reader.getsampwidth() != 2:
            raise ValueError(f"{path}: only 16-bit PCM WAV files are supported")
        rate, channels = reader.getframerate(), reader.getnchannels()
        samples = np.frombuffer(reader.readframes(reader.getnframes()), "<i2")
    audio = samples.reshape(-1, channels).mean(axis=1).astype(np.float32) / 32768
    return np.asarray(soxr.resample(audio, rate, 16_000) if rate != 16_000 else audio,
                      dtype=np.float32)


def make_variants(transcriber: Transcriber) -> list[Variant]:
    def one_call_each(scheduler: Scheduler) -> Submit:
        def submit(owner: str, audio: np.ndarray) -> Awaitable[Transcript]:
            return scheduler.run(owner, transcriber.transcribe, audio, OPTIONS,
                                 priority=Priority.URGENT)
        return submit

    def batched(scheduler: Scheduler) -> Submit:
        def submit(owner: str, audio: np.ndarray) -> Awaitable[Transcript]:
            return scheduler.run_batched(owner, transcriber.transcribe_batch, (audio, OPTIONS),
                                         priority=Priority.URGENT)
        return submit

    schedulers = [("one call each", Scheduler("asr-single", 2), one_call_each),
                  ("batched", Scheduler("asr-batched", 1, max_batch=8, batch_window_s=0.01),
                   batched),
                  ("batched, max 1", Scheduler("asr-max1", 2, max_batch=1), batched)]
    return [Variant(name, scheduler, make(scheduler)) for name, scheduler, make in schedulers]


async def run_round(variant: Variant, audios: list[np.ndarray]) -> None:
    started, cpu_started = time.perf_counter(), time.process_time()

    async def one(index: int, audio: np.ndarray) -> None:
        transcript = await variant.submit(f"session-{index}", audio)
        variant.latencies.setdefault(len(audios), []).append(time.perf_counter() - started)
        variant.texts.setdefault(index, transcript.text)

    await asyncio.gather(*(one(i, audio) for i, audio in enumerate(audios)))
    cpu = (time.process_time() - cpu_started) / len(audios)
    variant.cpu_s.setdefault(len(audios), []).append(cpu)


def bench_components(transcriber: Transcriber, audios: list[np.ndarray],
                     repeats: int) -> list[tuple[str, float, float]]:
    """Median seconds of each model stage: utterances one per call, and all in one call."""
    from faster_whisper import WhisperModel
    from faster_whisper.audio import pad_or_trim
    from faster_whisper.tokenizer import Tokenizer
    from faster_whisper.transcribe import get_suppressed_tokens

    model = transcriber._model  # the stages themselves, below Transcriber's API
    extractor = model.feature_extractor
    windows = [np.asarray(pad_or_trim(extractor(a)[:, : extractor.nb_max_frames]))
               for a in audios]
    tokenizer = Tokenizer(model.hf_tokenizer, True, task="transcribe", language="en")
    prompt = model.get_prompt(tokenizer, [], without_timestamps=True)
    options = {"beam_size": 1, "max_length": model.max_length, "return_scores": True,
               "return_no_speech_prob": True,
               "suppress_tokens": get_suppressed_tokens(tokenizer, [-1])}
    single = [WhisperModel.encode(model, w) for w in windows]
    batch = WhisperModel.encode(model, np.stack(windows))
    stages: dict[str, tuple[Callable[[], object], Callable[[], object]]] = {
        "encoder": (lambda: [WhisperModel.encode(model, w) for w in windows],
                    lambda: WhisperModel.encode(model, np.stack(windows))),
        "language detection": (lambda: [model.model.detect_language(e) for e in single],
                               lambda: model.model.detect_language(batch)),
        "generation (greedy)": (
            lambda: [model.model.generate(e, [prompt], **options) for e in single],
            lambda: model.model.generate(batch, [prompt] * len(windows), **options)),
    }
    times: dict[tuple[str, int], list[float]] = {}
    for _ in range(repeats):
        for stage, calls in stages.items():
            for variant, call in enumerate(calls):
                started = time.perf_counter()
                call()
                times.setdefault((stage, variant), []).append(time.perf_counter() - started)
    return [(stage, float(np.median(times[stage, 0])), float(np.median(times[stage, 1])))
            for stage in stages]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--clips", type=Path, default=DEFAULT_CLIPS)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--compute-type", default="auto")
    parser.add_argument("--components", action="store_true",
                        help="also time encoder, detection and generation, single vs batched")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON here")
    args = parser.parse_args()
    if max(args.sizes) > len(CLIPS):
        parser.error(f"at most {len(CLIPS)} simultaneous utterances")

    store = ModelStore(progress=False)
    name = default_model_names()[ModelKind.ASR]
    transcriber = Transcriber(TranscriberConfig(
        str(store.resolve(name, ModelKind.ASR)), device=args.device,
        compute_type=args.compute_type, num_workers=2))
    audios = [read_clip(args.clips / clip) for clip in CLIPS]
    transcriber.transcribe_batch([(audios[0], OPTIONS)] * 2)  # warm up both paths
    transcriber.transcribe(audios[0], OPTIONS)
    variants = make_variants(transcriber)

    async def measure() -> None:
        for repeat in range(args.repeats):
            for size in args.sizes:
                # Rotate the order, so that no variant always follows the same one.
                shift = (repeat + size) % len(variants)
                for variant in variants[shift:] + variants[:shift]:
                    await run_round(variant, audios[:size])

    started = time.perf_counter()
    asyncio.run(measure())
    for variant in variants:
        variant.scheduler.shutdown()
    machine = (f"{platform.node()} {platform.machine()}, {len(os.sched_getaffinity(0))} CPUs, "
               f"{name} {transcriber.device}/{transcriber.compute_type}, "
               f"load average {os.getloadavg()[0]:.1f}")
    print(f"\n{machine}; {time.perf_counter() - started:.0f} s, {args.repeats} rounds\n")
    print(f"{'utterances':>10}  {'variant':<15} {'median':>7} {'p90':>7} {'max':>7}  "
          f"{'CPU s/utt':>9}   (latency: seconds from arrival to transcript)")
    rows = []
    for size in args.sizes:
        for variant in variants:
            values = np.asarray(variant.latencies[size])
            row = {"utterances": size, "variant": variant.name,
                   "median_s": float(np.median(values)),
                   "p90_s": float(np.percentile(values, 90)), "max_s": float(values.max()),
                   "cpu_s_per_utterance": float(np.median(variant.cpu_s[size])),
                   "samples": values.tolist()}
            rows.append(row)
            print(f"{size:>10}  {variant.name:<15} {row['median_s']:>7.2f} {row['p90_s']:>7.2f} "
                  f"{row['max_s']:>7.2f}  {row['cpu_s_per_utterance']:>9.2f}")
    reference = variants[0].texts
    differing = [CLIPS[i] for v in variants[1:] for i, text in v.texts.items()
                 if text != reference[i]]
    print(f"\ntranscripts that differ from one call each: {differing or 'none'}")
    components = []
    if args.components:
        size = max(args.sizes)
        print(f"\n{'stage, ' + str(size) + ' utterances':<32} {'one per call':>12} "
              f"{'one call':>9}  (median seconds of {args.repeats} runs)")
        for stage, one_by_one, batched in bench_components(transcriber, audios[:size],
                                                           args.repeats):
            components.append({"stage": stage, "one_per_call_s": one_by_one,
                               "one_call_s": batched})
            print(f"{stage:<32} {one_by_one:>12.2f} {batched:>9.2f}")
    if args.json:
        args.json.write_text(json.dumps({"machine": machine, "rows": rows,
                                         "differing": differing, "components": components},
                                        indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
