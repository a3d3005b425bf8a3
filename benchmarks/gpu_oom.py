"""Out of GPU memory for real: the session gets an error event and the service lives on.

Against a running ``voice serve`` whose models are on CUDA, on the same machine::

    python -m benchmarks.gpu_oom --url ws://127.0.0.1:8811/v1/realtime \
        --clip ../shared/testdata/real/en_voxforge_01.wav [--json oom.json]

1. A text turn and a spoken turn complete (the baseline).
2. This process takes the GPU's free memory with PyTorch (needs ``torch`` with CUDA).
3. Under that shortage, in the same session: a long text turn and a spoken turn. Whatever the
   engines hit is reported as the client saw it (error events, response status); the service
   must stay up (``/healthz``) and take a new session.
4. The memory is given back, and a text turn and a spoken turn complete again in the same
   session.

Exit status 0 when the shortage made at least one turn fail with the "ran out of memory" error
event and everything else held; 1 otherwise (the output says which step did not).

The engines alone, without the service (what CTranslate2 does during and after a shortage, with
the engines' retries on or off)::

    python -m benchmarks.gpu_oom --engines --whisper MODEL_DIR --llm MODEL_DIR --clip WAV \
        [--retries 0]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import urllib.request
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from clients.client import VoiceClient, stream_file_realtime
from clients.latency.speech import RATE, load_wav

LONG_TEXT = ("Here is a long story about the history of a small mountain town, its rivers, "
             "its bridges, its markets and the families who lived there for many centuries. ")


def healthy(url: str) -> bool:
    http = url.replace("ws://", "http://").split("/v1/")[0] + "/healthz"
    try:
        with urllib.request.urlopen(http, timeout=5) as answer:
            return bool(answer.status == 200)
    except OSError:
        return False


async def collect(client: VoiceClient, start: Callable[[], Awaitable[Any]],
                  timeout_s: float) -> dict[str, Any]:
    """Run ``start`` and gather what the client sees until the reply is done or the
    transcription failed (then no reply comes)."""
    seen: dict[str, Any] = {"errors": [], "transcript": None, "status": None, "events": 0}
    began = time.monotonic()

    async def read() -> None:
        events = client.events()
        failed_at: float | None = None  # a failed transcription: its error event comes next
        while True:
            wait = None if failed_at is None else max(0.0, failed_at + 2 - time.monotonic())
            try:
                event = await asyncio.wait_for(anext(events), wait)
            except (StopAsyncIteration, TimeoutError):
                return
            seen["events"] += 1
            fields = event.fields
            if event.type == "error":
                seen["errors"].append(fields["error"].get("message", ""))
                if failed_at is not None:
                    return
            elif event.type == "conversation.item.input_audio_transcription.completed":
                seen["transcript"] = fields.get("transcript")
            elif event.type == "conversation.item.input_audio_transcription.failed":
                seen["transcript"] = "(failed)"
                failed_at = time.monotonic()
            elif event.type == "response.done":
                seen["status"] = fields["response"]["status"]
                return

    reader = asyncio.ensure_future(read())
    await start()
    try:
        await asyncio.wait_for(reader, timeout_s)
    except TimeoutError:
        seen["status"] = seen["status"] or "timeout"
    seen["seconds"] = round(time.monotonic() - began, 2)
    return seen


def take_gpu_memory() -> tuple[list[Any], int]:
    import torch

    held: list[Any] = []
    for chunk_mib in (1024, 256, 64, 16, 4, 1):
        while True:
            try:
                held.append(torch.empty(chunk_mib * 2**20, dtype=torch.uint8, device="cuda"))
            except torch.OutOfMemoryError:
                break
    free, _ = torch.cuda.mem_get_info()
    return held, int(free)


def give_gpu_memory_back(held: list[Any]) -> None:
    import torch

    held.clear()
    torch.cuda.empty_cache()


async def run(url: str, clip: Path, timeout_s: float) -> dict[str, Any]:
    speech = load_wav(clip).samples  # int16 at the client's rate
    report: dict[str, Any] = {"clip": clip.name}
    client = await VoiceClient.connect(url)

    async def text(words: str) -> dict[str, Any]:
        return await collect(client, lambda: client.say(words), timeout_s)

    async def spoken() -> dict[str, Any]:
        return await collect(client, lambda: stream_file_realtime(client, speech, RATE),
                             timeout_s)

    def show(step: str, seen: dict[str, Any]) -> None:
        report[step] = seen
        print(f"{step:28} status={seen['status']} transcript={seen['transcript']!r} "
              f"errors={seen['errors']} ({seen['seconds']} s)", flush=True)

    show("baseline text", await text("What is the capital of France?"))
    show("baseline spoken", await spoken())
    held, free = take_gpu_memory()
    report["held_mib"] = sum(t.numel() for t in held) // 2**20
    report["free_after_taking_mib"] = free // 2**20
    print(f"took {report['held_mib']} MiB of GPU memory; {report['free_after_taking_mib']} MiB "
          "left free", flush=True)
    try:
        show("short of memory: long text", await text(LONG_TEXT * 30 + "Summarize it."))
        show("short of memory: spoken", await spoken())
        report["healthy_while_short"] = healthy(url)
        try:
            other = await VoiceClient.connect(url)
            await other.close()
            report["new_session_while_short"] = True
        except Exception as error:  # reported, not raised: this is what the check looks at
            report["new_session_while_short"] = f"{type(error).__name__}: {error}"
    finally:
        give_gpu_memory_back(held)
    print(f"memory given back; healthz {report['healthy_while_short']}, new session "
          f"{report['new_session_while_short']}", flush=True)
    show("after text", await text("And the capital of Italy?"))
    show("after spoken", await spoken())
    await client.close()
    report["healthy_after"] = healthy(url)
    return report


def verdict(report: dict[str, Any]) -> list[str]:
    """What did not hold (empty: the check passed)."""
    problems = []
    for step in ("baseline text", "baseline spoken", "after text", "after spoken"):
        if report[step]["status"] != "completed":
            problems.append(f"{step}: {report[step]['status']}")
    short = [report["short of memory: long text"], report["short of memory: spoken"]]
    if not any("ran out of memory" in message for seen in short for message in seen["errors"]):
        problems.append("no turn under the shortage got the out-of-memory error event")
    if report["healthy_while_short"] is not True or report["healthy_after"] is not True:
        problems.append("/healthz failed")
    if report["new_session_while_short"] is not True:
        problems.append("no new session while short of memory")
    return problems


def engines_check(whisper: Path, llm: Path, clip: Path, retries: int,
                  device: str = "cuda") -> dict[str, Any]:
    """Whisper and the batched LLM on CUDA as the service loads them (2 workers / 2 replicas):
    a few calls each before, during and after a shortage; every outcome as raised."""
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np
    import soxr

    from asr.whisper import Transcriber, TranscriberConfig
    from llm.chat import ChatConfig, ChatModel, Message, SamplingOptions

    transcriber = Transcriber(TranscriberConfig(str(whisper), device=device, num_workers=2,
                                                gpu_memory_retries=retries))
    chat = ChatModel(ChatConfig(str(llm), device=device, replicas=2,
                                max_batch=32,
                                gpu_memory_retries=retries))
    audio = soxr.resample(load_wav(clip).samples.astype(np.float32) / 32768, RATE, 16_000)
    question = [Message("user", LONG_TEXT * 30 + "Summarize it.")]

    def call(engine: str) -> str:
        try:
            if engine == "asr":
                transcriber.transcribe(audio)
            else:
                "".join(chat.stream(question, SamplingOptions(max_new_tokens=16)))
            return "ok"
        except RuntimeError as error:
            return str(error)[:70]

    def phase(name: str, calls: list[str], threads: int = 1) -> list[str]:
        with ThreadPoolExecutor(threads) as pool:
            outcomes = list(pool.map(call, calls))
        failed = [f"{engine}: {outcome}" for engine, outcome in zip(calls, outcomes,
                                                                     strict=True)
                  if outcome != "ok"]
        print(f"{name:26} {len(calls) - len(failed)}/{len(calls)} ok {failed}", flush=True)
        return outcomes

    report: dict[str, Any] = {"retries": retries}
    report["baseline"] = phase("baseline", ["asr", "llm"])
    held, free = take_gpu_memory()
    print(f"took {sum(t.numel() for t in held) // 2**20} MiB; {free // 2**20} MiB left free")
    report["short"] = phase("short of memory", ["asr", "llm"] * 3)
    give_gpu_memory_back(held)
    if device == "cuda":
        import torch

        print(f"given back: {torch.cuda.mem_get_info()[0] // 2**20} MiB free", flush=True)
    report["after, one at a time"] = phase("after, one at a time", ["asr", "llm"] * 6)
    report["after, 4 at once"] = phase("after, 4 at once", ["asr", "llm"] * 8, threads=4)
    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="ws://127.0.0.1:8811/v1/realtime")
    parser.add_argument("--clip", type=Path, required=True, help="a recording to speak")
    parser.add_argument("--timeout-s", type=float, default=60.0)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--engines", action="store_true",
                        help="the engines alone, without the service")
    parser.add_argument("--whisper", type=Path, help="--engines: whisper model folder")
    parser.add_argument("--llm", type=Path, help="--engines: language model folder")
    parser.add_argument("--retries", type=int, default=2,
                        help="--engines: the engines' retries after a GPU memory error")
    args = parser.parse_args(argv)
    if args.engines:
        if not (args.whisper and args.llm):
            parser.error("--engines needs --whisper and --llm")
        report = engines_check(args.whisper, args.llm, args.clip, args.retries)
        if args.json:
            args.json.write_text(json.dumps(report, indent=2))
        return 0
    report = asyncio.run(run(args.url, args.clip, args.timeout_s))
    problems = verdict(report)
    report["problems"] = problems
    print("PASS" if not problems else "FAIL: " + "; ".join(problems), flush=True)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, ensure_ascii=False))
    return 0 if not problems else 1


if __name__ == "__main__":
    sys.exit(main())
