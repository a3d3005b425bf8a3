"""What glibc's mmap threshold does to the engines' memory and speed, in one sitting.

    .venv/bin/python -m benchmarks.malloc_threshold [--thresholds-kib 0 256 1024 4096]
        [--rounds 3] [--clips ../shared/testdata/real] [--json out.json]

glibc serves an allocation above its mmap threshold with its own ``mmap`` and gives it back to
the system on ``free``; below it, from its heaps, which keep what is freed. The threshold
starts at 128 KiB and *rises* to the size of every mmapped block freed (up to 32 MiB), so after
a long prompt's or a long audio window's buffers have come and gone once, the next ones of that
size stay in the heaps. Setting the threshold (``mallopt(M_MMAP_THRESHOLD)``, what
``memory_mmap_threshold_kib`` in the service's config does) fixes it and stops the rise.

Each setting (0 = glibc's default, dynamic) runs in a fresh process on the service's default
models (CPU): per round, whisper transcribes every other real recording of ``--clips``, the
language model answers a short, a ~1,000-token and a ~2,500-token prompt (48 new tokens each,
greedy) and Piper speaks a 40-word paragraph. Reported: resident memory after loading and
after each round, glibc's heap memory in use and free-but-kept at the end, and each engine's
time per call.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import gc
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import soxr

DEFAULT_CLIPS = Path(__file__).resolve().parents[2] / "shared" / "testdata" / "real"
PARAGRAPH = ("The museum opens at nine in the morning and closes at six in the evening. "
             "Tickets are cheaper for students, and on the first Sunday of every month the "
             "entrance is free for everyone, so it is often crowded on those days.")
FILLER = "The quick brown fox jumps over the lazy dog near the river bank. "
PROMPT_REPEATS = (0, 80, 200)  # ~13 tokens each: a short, a ~1,000 and a ~2,500-token prompt


class _Mallinfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]


def heap_mib() -> dict[str, float]:
    """glibc's heap memory in use (heaps and own mappings) and free but kept, MiB."""
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    libc.mallinfo2.restype = _Mallinfo2
    info = libc.mallinfo2()
    return {"in_use_mib": (info.uordblks + info.hblkhd) / 2**20,
            "free_kept_mib": info.fordblks / 2**20}


def _rss_mib() -> float:
    gc.collect()
    return float(psutil.Process().memory_info().rss / 2**20)


def child(threshold_kib: int, rounds: int, clips: Path) -> dict[str, Any]:
    """One setting, in this process: set the threshold, load, run the rounds."""
    from voice.memory import set_mmap_threshold

    if threshold_kib:
        set_mmap_threshold(threshold_kib * 1024)
    from asr.transcript import TranscribeOptions
    from asr.whisper import Transcriber, TranscriberConfig
    from llm.chat import ChatConfig, ChatModel, Message, SamplingOptions
    from tts.piper import PiperSynthesizer
    from voice.models import ModelKind, ModelStore, default_home, default_model_names

    store = ModelStore(default_home())
    names = default_model_names(gpu=False)
    transcriber = Transcriber(TranscriberConfig(
        str(store.resolve(names[ModelKind.ASR], ModelKind.ASR)), device="cpu", num_workers=2))
    chat = ChatModel(ChatConfig(str(store.resolve(names[ModelKind.LLM], ModelKind.LLM)),
                                device="cpu"))
    voice_path = store.resolve(names[ModelKind.TTS], ModelKind.TTS)
    onnx = sorted(voice_path.glob("*.onnx"))[0] if voice_path.is_dir() else voice_path
    piper = PiperSynthesizer(onnx)
    refs = json.loads((clips / "refs.json").read_text())
    audio = []
    for name in sorted(refs)[::2]:
        import soundfile

        samples, rate = soundfile.read(clips / name, dtype="float32", always_2d=True)
        audio.append(soxr.resample(samples.mean(axis=1), rate, 16_000).astype(np.float32))
    timings: dict[str, list[float]] = {"whisper_s": [], "llm_s": [], "piper_s": []}
    rss = [_rss_mib()]
    for _ in range(rounds):
        for samples in audio:
            started = time.perf_counter()
            transcriber.transcribe(samples, TranscribeOptions())
            timings["whisper_s"].append(time.perf_counter() - started)
        for repeats in PROMPT_REPEATS:
            messages = [Message("system", "You are a helpful assistant."),
                        Message("user", FILLER * repeats + "What is a fox? Answer briefly.")]
            started = time.perf_counter()
            for _ in chat.stream(messages, SamplingOptions(max_new_tokens=48)):
                pass
            timings["llm_s"].append(time.perf_counter() - started)
        started = time.perf_counter()
        for _ in piper.synthesize(PARAGRAPH):
            pass
        timings["piper_s"].append(time.perf_counter() - started)
        rss.append(_rss_mib())
    return {"threshold_kib": threshold_kib, "rss_mib": rss, **heap_mib(),
            **{name: [round(t, 4) for t in values] for name, values in timings.items()}}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--thresholds-kib", type=int, nargs="+", default=[0, 4096, 8192, 16384],
                        help="mmap thresholds to compare, KiB (0: glibc's dynamic default)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clips", type=Path, default=DEFAULT_CLIPS)
    parser.add_argument("--json", type=Path, help="write every measurement here")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if not (args.clips / "refs.json").is_file():
        parser.error(f"no refs.json in {args.clips} (pass --clips)")
    if args.child is not None:
        print(json.dumps(child(args.child, args.rounds, args.clips)))
        return 0
    results = []
    for threshold in args.thresholds_kib:
        print(f"threshold {threshold or 'default'} KiB ...", file=sys.stderr, flush=True)
        done = subprocess.run(
            [sys.executable, "-m", "benchmarks.malloc_threshold", "--child", str(threshold),
             "--rounds", str(args.rounds), "--clips", str(args.clips)],
            capture_output=True, text=True, check=True)
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
    print("| mmap threshold | RSS loaded | RSS after each round (MiB) | heap in use / free kept "
          "at the end (MiB) | whisper p50 (ms) | LLM call p50 / max (ms) | Piper p50 (ms) |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for row in results:
        label = f"{row['threshold_kib']} KiB" if row["threshold_kib"] else "glibc default"
        print(f"| {label} | {row['rss_mib'][0]:.0f} | "
              f"{' / '.join(f'{v:.0f}' for v in row['rss_mib'][1:])} | "
              f"{row['in_use_mib']:.0f} / {row['free_kept_mib']:.0f} | "
              f"{1000 * statistics.median(row['whisper_s']):.0f} | "
              f"{1000 * statistics.median(row['llm_s']):.0f} / {1000 * max(row['llm_s']):.0f} | "
              f"{1000 * statistics.median(row['piper_s']):.0f} |")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
