"""LLM concurrency: CTranslate2 replicas against batched step decoding, on this machine.

Run after `voice models prepare` (or `make test`):

    .venv/bin/python benchmarks/llm_concurrency.py [--repeats 3] [--concurrency 1 2 4]
        [--stagger 0.5] [--reply-tokens 60] [--llm NAME] [--json out.json]
        [--replicas 1 2 [4]] [--no-batched]

Several replies are requested one after another, ``--stagger`` seconds apart (a reply often
arrives while others are being written), each with its own realistic chat prompt of about 200
tokens (the service's system prompt, a short history, a question) and exactly
``--reply-tokens`` new tokens (greedy, end of turn suppressed, so every variant does the same
work). Variants, all on the same prompts:

- ``replicas 1x2``: one CTranslate2 replica (``inter_threads=1``) on 2 threads; each reply is
  its own ``generate_tokens`` call, so replies queue for the replica.
- ``replicas 2x1``: two replicas sharing the weights (``inter_threads=2``), 1 thread each; two
  replies generate at once, more queue. ``--replicas 4`` adds ``replicas 4x1``: four on two
  cores, each reply slower but none waiting for another to finish.
- ``batched 1x2``: one replica on 2 threads and one generation loop; the replies waiting when
  the loop is free are decoded together by one ``generate_batch`` call whose per-step callback
  streams each reply's tokens. CTranslate2 cannot add a request to a running batch, so a reply
  that arrives meanwhile waits for the batch to end.

Per variant and number of concurrent replies: time to first token of each reply (from its
arrival, including any wait, to its first token; p50/p90 over the replies of all repeats), the
longest pause between two tokens of one reply (median over replies), and the aggregate decode
rate (all tokens / time from the first arrival to the last token; median over repeats). The
variants are interleaved within each repeat, so load from other processes hits all of them.
CPU heavy: the defaults take about 5 minutes on an idle 2-core machine, twice that under load.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import os
import queue
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from llm.chat import ChatConfig, ChatModel, Message
from llm.prompts import system_prompt
from voice.models import ModelKind, ModelStore, default_model_names

# Four conversations of a voice assistant, each ending with the user's new question.
CONVERSATIONS: list[list[tuple[str, str]]] = [
    [("user", "Hi, I am planning a weekend trip to Lisbon with my partner in early October. "
              "We like walking, old neighbourhoods and good food, but we do not like crowds."),
     ("assistant", "Lisbon is lovely in October: the summer crowds are gone and it is still "
                   "warm. Alfama and Graça are great for walking, and the food in Campo de "
                   "Ourique is excellent."),
     ("user", "Which day trip from the city would you suggest if we have only one free day, "
              "and how do we get there without a car?")],
    [("user", "My tomato plants on the balcony have yellow leaves at the bottom, and some of "
              "the small green tomatoes have dark spots at the end where the flower was."),
     ("assistant", "The dark spots sound like blossom end rot, which comes from uneven "
                   "watering rather than a disease. The yellow lower leaves are often normal "
                   "as the plant grows."),
     ("user", "How often should I water them in pots during a hot week, and should I remove "
              "the spotted tomatoes?")],
    [("user", "Can you explain, simply, why the sky is blue during the day but red and orange "
              "at sunset? My daughter asked me and I did not know what to say."),
     ("assistant", "Sunlight contains all colours. Air scatters blue light much more than red, "
                   "so blue reaches your eyes from every direction of the sky."),
     ("user", "And at sunset? Why does it change?"),
     ("assistant", "At sunset the light travels through much more air, so most of the blue is "
                   "scattered away before it reaches you, and mostly red and orange are left."),
     ("user", "Is that also why the moon looks orange when it is low?")],
    [("user", "I need to prepare a short talk for my team about how to run better meetings. "
              "We meet every Monday for an hour and people complain that it is too long."),
     ("assistant", "Start by sharing an agenda the day before, with a time for each item, and "
                   "end with decisions and owners rather than open discussion."),
     ("user", "Good. What are three other simple rules I could suggest, and how do I keep "
              "the talk itself under ten minutes?")],
]


@dataclasses.dataclass
class Reply:
    prompt: list[str]
    arrival: float = 0.0
    token_times: list[float] = dataclasses.field(default_factory=list)
    done: threading.Event = dataclasses.field(default_factory=threading.Event)

    @property
    def first_token_s(self) -> float:
        return self.token_times[0] - self.arrival

    @property
    def longest_pause_s(self) -> float:
        return float(np.diff(self.token_times).max()) if len(self.token_times) > 1 else 0.0


class Replicas:
    """One ``generate_tokens`` call per reply, each pulled in its own thread (as the service
    does: one LLM scheduler worker per concurrent reply)."""

    def __init__(self, generator: Any, options: dict[str, Any]) -> None:
        self._generator = generator
        self._options = options

    def submit(self, reply: Reply) -> None:
        threading.Thread(target=self._generate, args=(reply,), daemon=True).start()

    def _generate(self, reply: Reply) -> None:
        for _ in self._generator.generate_tokens(reply.prompt, **self._options):
            reply.token_times.append(time.perf_counter())
        reply.done.set()

    def close(self) -> None:
        pass


class Batched:
    """One generation loop: the replies waiting when it is free are decoded as one batch."""

    def __init__(self, generator: Any, options: dict[str, Any]) -> None:
        self._generator = generator
        self._options = options
        self._waiting: queue.SimpleQueue[Reply | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def submit(self, reply: Reply) -> None:
        self._waiting.put(reply)

    def _loop(self) -> None:
        while (first := self._waiting.get()) is not None:
            batch = [first]
            while not self._waiting.empty():
                reply = self._waiting.get()
                if reply is None:
                    self._waiting.put(None)
                    break
                batch.append(reply)

            def on_step(step: Any, batch: list[Reply] = batch) -> bool:
                batch[step.batch_id].token_times.append(time.perf_counter())
                return False

            self._generator.generate_batch(
                [reply.prompt for reply in batch], include_prompt_in_result=False,
                callback=on_step, **self._options)
            for reply in batch:
                reply.done.set()

    def close(self) -> None:
        self._waiting.put(None)
        self._thread.join()


def run_once(engine: Replicas | Batched, prompts: list[list[str]], stagger_s: float
             ) -> dict[str, Any]:
    replies = [Reply(prompt) for prompt in prompts]
    start = time.perf_counter()
    for index, reply in enumerate(replies):
        time.sleep(max(0.0, start + index * stagger_s - time.perf_counter()))
        reply.arrival = time.perf_counter()
        engine.submit(reply)
    for reply in replies:
        reply.done.wait()
    tokens = sum(len(r.token_times) for r in replies)
    elapsed = max(r.token_times[-1] for r in replies) - replies[0].arrival
    return {"first_token_s": [r.first_token_s for r in replies],
            "longest_pause_s": [r.longest_pause_s for r in replies],
            "tokens": tokens, "tokens_per_s": tokens / elapsed}


def summarize(runs: dict[tuple[str, int], list[dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Figures per variant and number of replies, ordered by the number of replies."""
    rows = {}
    for (variant, concurrency), results in sorted(runs.items(), key=lambda kv: kv[0][1]):
        first = [t for r in results for t in r["first_token_s"]]
        pauses = [t for r in results for t in r["longest_pause_s"]]
        rows[f"{variant} x{concurrency}"] = {
            "first_token_p50_s": float(np.percentile(first, 50)),
            "first_token_p90_s": float(np.percentile(first, 90)),
            "first_token_by_arrival_s": [statistics.median(r["first_token_s"][i]
                                                           for r in results)
                                         for i in range(concurrency)],
            "longest_pause_s": statistics.median(pauses),
            "tokens_per_s": statistics.median(r["tokens_per_s"] for r in results),
            "runs": results}
    return rows


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown CPU"
    fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
    return f"{fields.get('Model name', '?').strip()}, {fields.get('CPU(s)', '?').strip()} CPUs"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--stagger", type=float, default=0.5, help="seconds between arrivals")
    parser.add_argument("--reply-tokens", type=int, default=60)
    parser.add_argument("--llm", default=None, help="LLM name or path (default: the default)")
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    parser.add_argument("--replicas", type=int, nargs="+", default=[1, 2],
                        help="replica counts to compare (the cores shared among them, at "
                        "least one thread each: 4 on 2 cores oversubscribes them)")
    parser.add_argument("--no-batched", action="store_true", help="leave out batched 1xN")
    args = parser.parse_args()

    name = args.llm or default_model_names()[ModelKind.LLM]
    folder = str(ModelStore(progress=False).resolve(name, ModelKind.LLM))
    cores = len(os.sched_getaffinity(0))
    one = ChatModel(ChatConfig(folder, device="cpu", replicas=1, cpu_threads=cores))
    models = {count: one if count == 1 else
              ChatModel(ChatConfig(folder, device="cpu", replicas=count,
                                   cpu_threads=max(1, cores // count)))
              for count in args.replicas}
    prompts = []
    for turns in CONVERSATIONS:
        messages = [Message("system", system_prompt("en")),
                    *(Message(role, text) for role, text in turns)]  # type: ignore[arg-type]
        prompts.append(one._tokens([one.render(messages)])[0])
    print(f"prompt lengths: {[len(p) for p in prompts]} tokens", flush=True)
    options = {"max_length": args.reply_tokens, "min_length": args.reply_tokens,
               "end_token": list(one.format.stop_tokens)}
    variants: dict[str, tuple[type[Replicas | Batched], Any]] = {
        f"replicas {count}x{max(1, cores // count)}": (Replicas, model._generator)
        for count, model in models.items()}
    if not args.no_batched:
        variants[f"batched 1x{cores}"] = (Batched, one._generator)
    Replicas(one._generator, {**options, "max_length": 2, "min_length": 0}).submit(
        reply := Reply(prompts[0]))  # warm up
    reply.done.wait()

    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    runs: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for repeat in range(args.repeats):
        for concurrency in args.concurrency:
            chosen = [prompts[i % len(prompts)] for i in range(concurrency)]
            for variant, (engine_class, generator) in variants.items():
                engine = engine_class(generator, options)
                result = run_once(engine, chosen, args.stagger)
                engine.close()
                runs.setdefault((variant, concurrency), []).append(result)
                print(f"  repeat {repeat + 1} {variant:<14} x{concurrency}: first token "
                      + " ".join(f"{t:.2f}" for t in result["first_token_s"])
                      + f" s, {result['tokens_per_s']:.1f} tokens/s", flush=True)
    total_s = time.perf_counter() - started

    machine = (f"{cpu_model()}, {name} cpu/int8; load average "
               f"{load_before:.1f} before, {os.getloadavg()[0]:.1f} after; {total_s:.0f} s")
    print(f"\n{machine}\n")
    rows = summarize(runs)
    print("| variant | replies | first token p50 | p90 | by arrival (median) | longest pause "
          "| aggregate |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for key, row in rows.items():
        variant, concurrency = key.rsplit(" x", 1)
        print(f"| {variant} | {concurrency} | {row['first_token_p50_s']:.2f} s | "
              f"{row['first_token_p90_s']:.2f} s | "
              + " / ".join(f"{t:.1f}" for t in row["first_token_by_arrival_s"])
              + f" s | {row['longest_pause_s']:.2f} s | {row['tokens_per_s']:.1f} tokens/s |")
    if args.json:
        args.json.write_text(json.dumps({"machine": machine, "stagger_s": args.stagger,
                                         "prompt_tokens": [len(p) for p in prompts],
                                         "results": rows}, indent=2))
    del one, models, variants, generator, reply
    gc.collect()  # free the generators before the interpreter tears down their threads
    return 0


if __name__ == "__main__":
    sys.exit(main())
