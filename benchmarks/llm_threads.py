"""Threads a copy of the language model: one reply's first token and pace on this CPU, for
several settings of threads and replicas (CTranslate2 ``intra_threads`` / ``inter_threads``),
through the service's own ``ChatModel.stream``.

    .venv/bin/python -m benchmarks.llm_threads [--settings 1x4 2x4] [--passes 2] \\
        [--model ~/.cache/voice-assistant/models/llm/qwen2.5-coder-0.5b-instruct] \\
        [--backend default|mkl|onednn] [--json out.json]

Each setting runs in a fresh process (CTranslate2 reads ``CT2_USE_MKL`` once, at load), one
after the other, and the whole round of settings ``--passes`` times, so a change in the
machine's speed hits every setting. In a process: the system turns of six languages kept (as
the service keeps them), then the six questions below answered greedily, 24 tokens each, three
rounds, the first not counted (warm-up). Reported per run: time from ``stream()`` to the first
text delta and milliseconds a delta after it, medians.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

DEFAULT_MODEL = Path.home() / ".cache/voice-assistant/models/llm/qwen2.5-coder-0.5b-instruct"
QUESTIONS = {
    "de": "Wie kann die Teilbarkeit von ganzen Zahlen untersucht werden?",
    "fr": "Quelle est la capitale de la France et pourquoi est-elle célèbre ?",
    "it": "Come si prepara una buona pizza napoletana a casa?",
    "es": "¿Qué tiempo hace hoy en Madrid por la mañana?",
    "pl": "Ile przewodów widzisz podłączonych do terminala?",
    "nl": "De akoestiek van het amfitheater was overweldigend.",
}
BACKENDS = {"default": None, "mkl": "1", "onednn": "0"}


def measure(model: Path, threads: int, replicas: int, rounds: int = 3,
            tokens: int = 24) -> dict[str, float]:
    """One setting, in this process: first delta and ms a delta, medians (first round not
    counted)."""
    from llm.chat import ChatConfig, ChatModel, Message, SamplingOptions
    from llm.prompts import system_prompt

    chat = ChatModel(ChatConfig(str(model), replicas=replicas, cpu_threads=threads))
    chat.cache_system_prompts([system_prompt(language) for language in QUESTIONS])
    first: list[float] = []
    pace: list[float] = []
    for round_ in range(rounds):
        for language, question in QUESTIONS.items():
            messages = [Message("system", system_prompt(language)), Message("user", question)]
            started = time.perf_counter()
            deltas, first_at = 0, started
            for _ in chat.stream(messages, SamplingOptions(max_new_tokens=tokens)):
                deltas += 1
                if deltas == 1:
                    first_at = time.perf_counter()
            ended = time.perf_counter()
            if round_ > 0 and deltas:
                first.append((first_at - started) * 1000)
                pace.append((ended - first_at) * 1000 / max(1, deltas - 1))
    return {"first_ms": statistics.median(first), "ms_a_delta": statistics.median(pace),
            "replies": len(first)}


def run_setting(model: Path, setting: str, backend: str) -> dict[str, Any]:
    threads, replicas = (int(part) for part in setting.split("x"))
    env = dict(os.environ)
    if BACKENDS[backend] is not None:
        env["CT2_USE_MKL"] = BACKENDS[backend]
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.llm_threads", "--child", setting,
         "--model", str(model)], env=env, capture_output=True, text=True, check=True)
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return {"setting": setting, "threads": threads, "replicas": replicas,
            "backend": backend, **result}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--settings", nargs="+", default=["1x4", "2x4"],
                        help="THREADSxREPLICAS, each run in turn")
    parser.add_argument("--passes", type=int, default=2)
    parser.add_argument("--backend", choices=sorted(BACKENDS), default="default",
                        help="CTranslate2's CPU backend: its own choice, or forced")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        threads, replicas = (int(part) for part in args.child.split("x"))
        print(json.dumps(measure(args.model, threads, replicas)), flush=True)
        return 0
    from llm.chat import ctranslate2_uses_mkl

    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
          f"CTranslate2 on {'MKL' if ctranslate2_uses_mkl() else 'oneDNN'} by default; "
          f"{args.model.name}")
    print("| pass | threads x replicas | backend | first delta p50 (ms) | ms a delta p50 |")
    print("| --- | --- | --- | ---: | ---: |")
    rows = []
    for pass_ in range(1, args.passes + 1):
        for setting in args.settings:
            row = {"pass": pass_, **run_setting(args.model, setting, args.backend)}
            rows.append(row)
            print(f"| {pass_} | {setting} | {args.backend} | {row['first_ms']:.0f} | "
                  f"{row['ms_a_delta']:.1f} |", flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
