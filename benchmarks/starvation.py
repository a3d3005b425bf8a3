"""Can one client starve the others? Two abusive clients against a real service.

    .venv/bin/python -m benchmarks.starvation [--before CHECKOUT] [--turns 4] [--json PATH]

(run from the repository root, as a module). For each variant of the server (this checkout,
and with ``--before`` another checkout, e.g. a git worktree of the previous commit, measured in
the same sitting) it starts ``voice serve`` on the default models and measures:

1. **Flood**: a victim session speaks ``--turns`` real recorded clips (``refs.json`` in
   ``--clips``) at real time, first alone, then while a flooder session appends real speech at
   ``--flood-speed`` times real time (clips back to back with pauses, so every clip is an
   utterance to transcribe and answer). Voice to voice of the victim (end of its speech to the
   first reply audio at the client), alone and flooded; then the flooder disconnects and the
   server's CPU seconds over the next ``--after-s`` seconds show whether it keeps working for
   a client that left.
2. **Long reply**: a short text question's time to first token, alone and while another
   session streams a long reply (``max_output_tokens: "inf"``).

Loopback only; every phase is bounded in time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from benchmarks.soak import DEFAULT_CLIPS, load_clips, started_server
from clients.client import VoiceClient
from clients.latency import RATE, Utterance, percentiles
from voice.protocol import AudioDelta, AudioTranscriptDelta, ResponseDone, TextDelta

FRAME_MS = 20


async def spoken_turn(client: VoiceClient, clip: Utterance, timeout_s: float) -> float | None:
    """One spoken turn on a fresh session; voice to voice in ms, None if no reply audio."""
    first_audio: list[float] = []

    async def receive() -> None:
        async for event in client.events():
            if isinstance(event, AudioDelta) and not first_audio:
                first_audio.append(time.monotonic())
            if isinstance(event, ResponseDone) and event.status == "completed":
                return

    receiver = asyncio.ensure_future(receive())
    frame = RATE * FRAME_MS // 1000
    audio = np.concatenate([clip.samples, np.zeros(RATE * 2, np.int16)])
    loud = np.flatnonzero(np.abs(clip.samples.astype(np.float32)) > 500)
    speech_end = 0.0
    started = time.monotonic()
    for index, start in enumerate(range(0, audio.size, frame)):
        await client.send_audio(audio[start:start + frame], RATE)
        if loud.size and start <= loud[-1] < start + frame:
            speech_end = time.monotonic()
        await asyncio.sleep(max(0.0, started + (index + 1) * FRAME_MS / 1000 - time.monotonic()))
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.shield(receiver), timeout_s)
    receiver.cancel()
    return (first_audio[0] - speech_end) * 1000 if first_audio else None


async def victim_turns(url: str, clips: list[Utterance], turns: int,
                       timeout_s: float) -> list[float | None]:
    results = []
    for index in range(turns):
        async with await VoiceClient.connect(url) as client:
            results.append(await spoken_turn(client, clips[index % len(clips)], timeout_s))
    return results


async def flood(url: str, clips: list[Utterance], speed: float, stop: asyncio.Event) -> int:
    """Append clips (with 0.8 s pauses) at ``speed`` x real time until ``stop``; returns the
    seconds of audio sent. Reads (and discards) whatever the server sends."""
    frame = RATE * FRAME_MS // 1000
    pause = np.zeros(int(RATE * 0.8), np.int16)
    sent = 0
    async with await VoiceClient.connect(url) as client:
        drain = asyncio.ensure_future(_discard(client))
        started = time.monotonic()
        frames = 0
        while not stop.is_set():
            for clip in clips:
                audio = np.concatenate([clip.samples, pause])
                for start in range(0, audio.size, frame):
                    if stop.is_set():
                        break
                    try:
                        await client.send_audio(audio[start:start + frame], RATE)
                    except Exception as error:
                        print(f"  flooder: connection ended: {error!r} "
                              f"({client.close_code} {client.close_reason})", flush=True)
                        stop.set()
                        break
                    frames += 1
                    sent += frame
                    await asyncio.sleep(max(0.0, started + frames * FRAME_MS / 1000 / speed
                                            - time.monotonic()))
        drain.cancel()
    return sent // RATE


async def _discard(client: VoiceClient) -> None:
    async for _ in client.events():
        pass


async def first_token_ms(url: str, question: str) -> float:
    async with await VoiceClient.connect(url) as client:
        await client.configure(output_modalities=["text"])
        sent = time.monotonic()
        await client.say(question)
        async for event in client.events():
            if isinstance(event, AudioTranscriptDelta | TextDelta):
                return (time.monotonic() - sent) * 1000
            if isinstance(event, ResponseDone):
                break
    return float("nan")


async def long_reply(url: str, started: asyncio.Event, stop: asyncio.Event) -> None:
    async with await VoiceClient.connect(url) as client:
        await client.send_event({"type": "session.update", "session": {
            "type": "realtime", "output_modalities": ["text"], "max_output_tokens": "inf"}})
        await client.say("Write a very long story about a dragon and a knight, with many "
                         "chapters. Do not stop before 2000 words.")
        async for event in client.events():
            if isinstance(event, AudioTranscriptDelta | TextDelta):
                started.set()
            if stop.is_set() or isinstance(event, ResponseDone):
                break


def _summary(values: Sequence[float | None]) -> dict[str, Any]:
    done = [v for v in values if v is not None and v == v]
    stats = percentiles(done) if done else {}
    return {"turns": len(values), "no_reply": len(values) - len(done),
            **{k: round(v) for k, v in stats.items()}}


async def measure(url: str, pid: int, clips: list[Utterance],
                  args: argparse.Namespace) -> dict[str, Any]:
    timeout = args.turn_timeout_s
    report: dict[str, Any] = {}
    print("  victim alone ...", flush=True)
    report["victim_alone_ms"] = _summary(await victim_turns(url, clips, args.turns, timeout))
    print("  victim while flooded ...", flush=True)
    stop = asyncio.Event()
    flooder = asyncio.ensure_future(flood(url, clips[::-1], args.flood_speed, stop))
    await asyncio.sleep(3)
    flooded = await victim_turns(url, clips, args.turns, timeout)
    stop.set()
    report["flood_audio_s"] = await flooder
    report["victim_flooded_ms"] = _summary(flooded)
    server = psutil.Process(pid)
    before = sum(server.cpu_times()[:2])
    await asyncio.sleep(args.after_s)
    report["cpu_s_after_flooder_left"] = round(sum(server.cpu_times()[:2]) - before, 1)
    report["after_s"] = args.after_s
    print("  short question alone / behind a long reply ...", flush=True)
    question = "Say hello in one short sentence."
    report["short_alone_ttft_ms"] = _summary(
        [await first_token_ms(url, question) for _ in range(args.turns)])
    behind = []
    for _ in range(args.turns):
        started, stop_long = asyncio.Event(), asyncio.Event()
        long_task = asyncio.ensure_future(long_reply(url, started, stop_long))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(started.wait(), timeout)
        behind.append(await first_token_ms(url, question))
        stop_long.set()
        long_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await long_task
        await asyncio.sleep(1)
    report["short_behind_long_ttft_ms"] = _summary(behind)
    return report


async def run_variant(name: str, checkout: Path, clips: list[Utterance],
                      args: argparse.Namespace, log_dir: Path) -> dict[str, Any]:
    print(f"{name}: {checkout}", flush=True)
    async with started_server(args.serve_args, log_dir / f"{name}.log", 300,
                              cwd=checkout) as (url, pid):
        return await measure(url, pid, clips, args)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", type=Path, help="another checkout to measure first")
    parser.add_argument("--clips", type=Path, default=DEFAULT_CLIPS)
    parser.add_argument("--languages", default="en,de", help="clips of these languages")
    parser.add_argument("--turns", type=int, default=4)
    parser.add_argument("--flood-speed", type=float, default=10.0)
    parser.add_argument("--after-s", type=float, default=15.0)
    parser.add_argument("--turn-timeout-s", type=float, default=60.0)
    parser.add_argument("--serve-args", nargs=argparse.REMAINDER, default=[])
    parser.add_argument("--json", type=Path)
    parser.add_argument("--logs", type=Path, help="keep the servers' logs in this folder")
    args = parser.parse_args(argv)
    clips = load_clips(args.clips, args.languages.split(","))
    variants = [("after", Path.cwd())]
    if args.before is not None:
        variants.insert(0, ("before", args.before.resolve()))
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as temporary:
        logs = args.logs or Path(temporary)
        logs.mkdir(parents=True, exist_ok=True)
        for name, checkout in variants:
            results[name] = asyncio.run(run_variant(name, checkout, clips, args, logs))
            print(json.dumps(results[name], indent=1), flush=True)
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
