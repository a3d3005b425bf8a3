"""How soon a spoken reply's first piece is written, in process (no server, no speech): the
language model's speed per copy at one and two threads, and how many tokens the first piece
waits for with first pieces of 3 to 6 words.

    .venv/bin/python -m benchmarks.first_words [--replicas 4] [--threads 1 2] \
        [--concurrency 1 2 4] [--rounds 3] [--json out.json]

1. Speed: the default language model loaded with ``--replicas`` copies of each ``--threads``
   value (one load per value), then for each ``--concurrency`` that many replies at once to
   the German, French, Spanish and Italian questions below, each after the system prompt its
   language gets (llm.prompts), greedy, 60 tokens at most; ``--rounds`` rounds, the first not
   counted (warm-up). Reported: time to the first token and milliseconds per token after it,
   medians over the replies.
2. First piece: the greedy reply (40 tokens) to each of the 34 real recordings' reference
   transcripts (``../shared/testdata/real/refs.json``) in its language, cut as the service
   cuts it (tts.segmenter) with ``first_piece_max_words`` 3 to 6: the tokens written until
   the first piece is complete (the first token of the word after it included, which shows
   the last word is whole), and the pieces themselves.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from llm.chat import ChatConfig, ChatModel, Message, SamplingOptions
from llm.prompts import system_prompt
from tts.segmenter import Segmenter, SegmenterConfig

QUESTIONS = {
    "de": "Wie kann die Teilbarkeit von ganzen Zahlen untersucht werden?",
    "fr": "Quelle est la capitale de la France et pourquoi est-elle célèbre ?",
    "es": "¿Qué tiempo hace hoy en Madrid por la mañana?",
    "it": "Come si prepara una buona pizza napoletana a casa?",
}
REPO = Path(__file__).resolve().parent.parent
CLIPS = REPO.parent / "shared" / "testdata" / "real"


def speed(folder: Path, replicas: int, threads: int, concurrency: Sequence[int],
          rounds: int) -> list[dict[str, Any]]:
    model = ChatModel(ChatConfig(str(folder), replicas=replicas, cpu_threads=threads))
    model.warm_up()
    languages = list(QUESTIONS)
    rows = []
    for count in concurrency:
        replies: list[tuple[float, float]] = []

        def one(index: int, counted: bool, replies: list[tuple[float, float]]) -> None:
            language = languages[index % len(languages)]
            messages = [Message("system", system_prompt(language)),
                        Message("user", QUESTIONS[language])]
            started = time.monotonic()
            first: float | None = None
            tokens = 0
            for _ in model.stream(messages, SamplingOptions(max_new_tokens=60)):
                tokens += 1
                if first is None:
                    first = time.monotonic() - started
            if counted and first is not None and tokens > 1:
                replies.append((first, (time.monotonic() - started - first) / (tokens - 1)))

        for round_ in range(rounds):
            workers = [threading.Thread(target=one, args=(i, round_ > 0, replies))
                       for i in range(count)]
            for worker in workers:
                worker.start()
            for worker in workers:
                worker.join()
        row = {"replicas": replicas, "threads": threads, "concurrency": count,
               "first_token_ms": 1000 * statistics.median(r[0] for r in replies),
               "ms_per_token": 1000 * statistics.median(r[1] for r in replies),
               "replies": len(replies)}
        print(f"{replicas} copies x {threads} thread(s), {count} at once: first token "
              f"{row['first_token_ms']:.0f} ms, {row['ms_per_token']:.1f} ms a token "
              f"({len(replies)} replies)", flush=True)
        rows.append(row)
    model.close()
    return rows


def first_pieces(folder: Path, clips: Path) -> dict[str, Any]:
    model = ChatModel(ChatConfig(str(folder), replicas=1))
    refs = json.loads((clips / "refs.json").read_text())
    replies = []
    for name, entry in sorted(refs.items()):
        language, text = entry["lang"], entry["text"]
        messages = [Message("system", system_prompt(language)), Message("user", text)]
        deltas = list(model.stream(messages, SamplingOptions(max_new_tokens=40)))
        replies.append((name, language, deltas))
    result: dict[str, Any] = {}
    for words in (3, 4, 5, 6):
        counts, pieces = [], []
        for _, language, deltas in replies:
            segmenter = Segmenter(SegmenterConfig(language=language,
                                                  first_piece_max_words=words))
            for index, delta in enumerate(deltas, start=1):
                found = segmenter.feed(delta)
                if found:
                    counts.append(index)
                    pieces.append(found[0])
                    break
            else:
                counts.append(len(deltas))
                pieces.append("".join(segmenter.flush()))
        result[str(words)] = {"tokens_p50": statistics.median(counts),
                              "tokens_mean": statistics.mean(counts), "pieces": pieces}
        print(f"first piece of up to {words} words: {statistics.median(counts)} tokens "
              f"(mean {statistics.mean(counts):.1f}); e.g. " + " | ".join(pieces[:34:4]),
              flush=True)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="qwen2.5-coder-0.5b-instruct",
                        help="catalog name (prepared) or model folder")
    parser.add_argument("--home", type=Path, default=Path.home() / ".cache/voice-assistant")
    parser.add_argument("--replicas", type=int, default=4)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clips", type=Path, default=CLIPS)
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    if args.rounds < 2:
        parser.error("--rounds must be at least 2 (the first is not counted)")
    folder = Path(args.model)
    if not folder.is_dir():
        folder = args.home / "models" / "llm" / args.model
    if not (args.clips / "refs.json").is_file():
        print(f"no refs.json in {args.clips}", file=sys.stderr)
        return 2
    report: dict[str, Any] = {"model": str(folder), "speed": []}
    if not args.skip_speed:
        for threads in args.threads:
            report["speed"] += speed(folder, args.replicas, threads, args.concurrency,
                                     args.rounds)
    report["first_piece"] = first_pieces(folder, args.clips)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
