"""How much memory each engine holds once it has worked, engine by engine.

    .venv/bin/python -m benchmarks.engine_memory [--engines turn piper whisper llm]
        [--no-piper-arena] [--clips ../shared/testdata/real]

Each engine runs in a fresh process with the service's memory setting (the mmap threshold,
``voice/memory.py``), loads its default CPU model and then works on inputs of growing size,
as the service would feed it: Smart Turn on 2, 4 and 8 s of audio; Piper on pieces of 15 to
120 words (the service's pieces stop at ``SegmenterConfig.max_piece_chars``, ~45 words); whisper
on every real recording of ``--clips``, twice, from two threads; the language model on 16
replies of up to 64 tokens in 8 languages' system prompts, twice, from two threads over its
two replicas. After each step: resident memory, and glibc's heap memory in use and free but
kept. ``--no-piper-arena`` turns off onnxruntime's memory arena for Piper (the service keeps
it on) and prints each piece's synthesis time, to weigh memory against speed.
"""

from __future__ import annotations

import argparse
import gc
import json
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import psutil

from benchmarks.malloc_threshold import DEFAULT_CLIPS, heap_mib

ENGINES = ("turn", "piper", "whisper", "llm")
SENTENCE = "The museum opens at nine in the morning and closes at six in the evening, "


def _report(engine: str) -> Callable[[str], None]:
    def report(step: str) -> None:
        gc.collect()
        heap = heap_mib()
        print(f"| {engine} | {step} | {psutil.Process().memory_info().rss / 2**20:.0f} | "
              f"{heap['in_use_mib']:.0f} | {heap['free_kept_mib']:.0f} |", flush=True)
    return report


def child(engine: str, clips: Path, piper_arena: bool) -> None:
    from voice.config import ServiceConfig
    from voice.memory import set_mmap_threshold
    from voice.models import ModelKind, ModelStore, default_home, default_model_names

    set_mmap_threshold(ServiceConfig().memory_mmap_threshold_kib * 1024)
    store = ModelStore(default_home())
    names = default_model_names(gpu=False)
    report = _report(engine)
    report("started")
    if engine == "turn":
        from voice.__main__ import load_turn_model

        model = load_turn_model(store)
        report("loaded")
        noise = np.random.default_rng(7)
        for seconds in (2, 4, 8):
            for _ in range(5):
                model.probability(
                    (0.01 * noise.standard_normal(16_000 * seconds)).astype(np.float32))
            report(f"{seconds} s of audio x5")
    elif engine == "piper":
        import onnxruntime

        if not piper_arena:
            options_class = onnxruntime.SessionOptions

            def without_arena() -> onnxruntime.SessionOptions:
                options = options_class()
                options.enable_cpu_mem_arena = False
                return options
            onnxruntime.SessionOptions = without_arena
        from tts.piper import PiperSynthesizer

        folder = store.resolve(names[ModelKind.TTS], ModelKind.TTS)
        voice = PiperSynthesizer(sorted(folder.glob("*.onnx"))[0] if folder.is_dir() else folder)
        report("loaded")
        for repeats in (1, 2, 4, 8, 1):
            started = time.perf_counter()
            for _ in voice.synthesize((SENTENCE * repeats).rstrip(", ") + "."):
                pass
            report(f"{15 * repeats} words ({1000 * (time.perf_counter() - started):.0f} ms)")
    elif engine == "whisper":
        import soundfile
        import soxr

        from asr.transcript import TranscribeOptions
        from asr.whisper import Transcriber, TranscriberConfig

        transcriber = Transcriber(TranscriberConfig(
            str(store.resolve(names[ModelKind.ASR], ModelKind.ASR)), device="cpu",
            num_workers=2))
        report("loaded")
        audio = []
        for name in sorted(json.loads((clips / "refs.json").read_text())):
            samples, rate = soundfile.read(clips / name, dtype="float32", always_2d=True)
            audio.append(soxr.resample(samples.mean(axis=1), rate, 16_000).astype(np.float32))
        with ThreadPoolExecutor(2) as pool:
            for round_ in (1, 2):
                list(pool.map(lambda a: transcriber.transcribe(a, TranscribeOptions()), audio))
                report(f"{len(audio)} recordings, round {round_}")
    elif engine == "llm":
        from llm.chat import ChatConfig, ChatModel, Message, SamplingOptions
        from llm.prompts import system_prompt

        chat = ChatModel(ChatConfig(str(store.resolve(names[ModelKind.LLM], ModelKind.LLM)),
                                    device="cpu", replicas=ServiceConfig().llm_replicas))
        report("loaded")
        languages = ("en", "de", "fr", "es", "it", "nl", "pt", "pl")

        def ask(index: int) -> str:
            messages = [Message("system", system_prompt(languages[index % 8])),
                        Message("user", "Tell me about the history of Rome. " * (1 + index % 3))]
            return "".join(chat.stream(messages, SamplingOptions(max_new_tokens=64,
                                                                 no_repeat_ngram_size=6)))
        with ThreadPoolExecutor(2) as pool:
            for round_ in (1, 2):
                list(pool.map(ask, range(16)))
                report(f"16 replies, round {round_}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--engines", nargs="+", choices=ENGINES, default=list(ENGINES))
    parser.add_argument("--no-piper-arena", action="store_true")
    parser.add_argument("--clips", type=Path, default=DEFAULT_CLIPS)
    parser.add_argument("--child", choices=ENGINES, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if not (args.clips / "refs.json").is_file():
        parser.error(f"no refs.json in {args.clips} (pass --clips)")
    if args.child:
        child(args.child, args.clips, not args.no_piper_arena)
        return 0
    print("| engine | after | RSS (MiB) | heap in use (MiB) | heap free but kept (MiB) |")
    print("| --- | --- | --- | --- | --- |", flush=True)
    for engine in args.engines:
        command = [sys.executable, "-m", "benchmarks.engine_memory", "--child", engine,
                   "--clips", str(args.clips)]
        subprocess.run(command + (["--no-piper-arena"] if args.no_piper_arena else []),
                       check=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
