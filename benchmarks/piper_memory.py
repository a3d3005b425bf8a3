"""Piper's memory and speed with onnxruntime's arena kept, shrunk after every run, or off.

    .venv/bin/python -m benchmarks.piper_memory [--pieces 120] [--variants keep shrink off]

Each variant runs in a fresh process with the service's mmap threshold: the default voice
synthesizes pieces of 3 to 45 words (the service cuts pieces at 250 characters), two at a time
as the service's two TTS workers do, and the process's RSS is printed every 20 pieces, then the
median time per piece length. "shrink" is what ``tts/piper.py`` does (each run gives the arena's
unused memory back, ``memory.enable_memory_arena_shrinkage``); "keep" is onnxruntime's default;
"off" turns the arena off.
"""

from __future__ import annotations

import argparse
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

WORDS = ("the quick brown fox jumps over a lazy dog while seven happy children sing songs about "
         "rivers mountains cities and the weather of tomorrow in many beautiful places").split()
VARIANTS = ("keep", "shrink", "off")


def child(variant: str, pieces: int) -> None:
    import onnxruntime
    import psutil

    from tts.piper import PiperSynthesizer
    from voice.config import ServiceConfig
    from voice.memory import set_mmap_threshold
    from voice.models import ModelKind, ModelStore, default_home, default_model_names

    set_mmap_threshold(ServiceConfig().memory_mmap_threshold_kib * 1024)
    folder = ModelStore(default_home()).resolve(default_model_names(gpu=False)[ModelKind.TTS],
                                                ModelKind.TTS)
    path = sorted(folder.glob("*.onnx"))[0] if folder.is_dir() else folder
    voice = PiperSynthesizer(path)
    piper = voice._voice  # the piper-tts voice whose session is swapped for the variant
    if variant == "keep":
        piper.session = piper.session._session  # unwrap: runs without the shrink option
    elif variant == "off":
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        options.enable_cpu_mem_arena = False
        piper.session = onnxruntime.InferenceSession(str(path), sess_options=options,
                                                     providers=["CPUExecutionProvider"])
    rng = random.Random(5)
    texts = [" ".join(rng.choice(WORDS) for _ in range(rng.choice([3, 6, 10, 15, 20, 30, 45])))
             + "." for _ in range(pieces)]
    times: dict[int, list[float]] = {}

    def synthesize(text: str) -> None:
        started = time.perf_counter()
        for _ in voice.synthesize(text):
            pass
        times.setdefault(len(text.split()), []).append(time.perf_counter() - started)

    process = psutil.Process()
    print(f"{variant}: loaded, RSS {process.memory_info().rss / 2**20:.0f} MiB", flush=True)
    started = time.perf_counter()
    with ThreadPoolExecutor(2) as pool:
        for first in range(0, len(texts), 20):
            list(pool.map(synthesize, texts[first:first + 20]))
            print(f"{variant}: after {first + 20} pieces, RSS "
                  f"{process.memory_info().rss / 2**20:.0f} MiB", flush=True)
    medians = " ".join(f"{words} words {1000 * statistics.median(spent):.0f} ms"
                       for words, spent in sorted(times.items()))
    print(f"{variant}: {time.perf_counter() - started:.1f} s in all; median per piece: "
          f"{medians}", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pieces", type=int, default=120)
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument("--child", choices=VARIANTS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child, args.pieces)
        return 0
    for variant in args.variants:
        subprocess.run([sys.executable, "-m", "benchmarks.piper_memory", "--child", variant,
                        "--pieces", str(args.pieces)], check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
