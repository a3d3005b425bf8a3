"""Soak test: N sessions talk to a running service for M minutes; is anything lost or leaking?

    .venv/bin/python -m benchmarks.soak --sessions 4 --minutes 20 --json soak.json
    .venv/bin/python -m benchmarks.soak --url ws://127.0.0.1:8765/v1/realtime --pid PID ...

(run from the repository root, as a module: it imports ``benchmarks.soak_accounting``;
its turns are played and accounted for by ``clients.latency.runner`` and ``.accounting``).

Without ``--url`` it starts ``voice serve --port 0`` itself (extra flags with ``--serve-args``),
waits for ``/healthz``, and stops it at the end; with ``--url`` and ``--pid`` it attaches to a
running service. Each session keeps one connection open and streams like a live microphone: PCM16
24 kHz ``input_audio_buffer.append`` frames at real-time pace, silence between turns. A turn is one
real recorded clip (``refs.json`` in ``--clips``, resampled with soxr), then silence so
``server_vad`` ends the turn; the session waits until the reply is done (or ``--turn-timeout-s``),
pauses ``--pause-s`` and speaks the next clip: while the reply still plays at the client (speech
over the reply, judged by the echo guard), or with ``--listen`` once it has played. With
``--turns-per-connection N`` every N turns start a new conversation on a new connection. After
``--minutes`` no new turn starts; turns under way finish (the drain), then the report: turns sent,
completed, cancelled (with the reasons from ``response.done``), failed, no reply, and lost (no
completed reply), voice-to-voice latency (end of speech to the first reply audio at the client),
and the server's RSS, threads and open file descriptors, sampled every ``--sample-s`` seconds with
psutil. RSS drift compares the median of the last quarter of the run with the median of the second
quarter (after warm-up). Goal: no lost turn and drift within 5 % (exit status 0; 1 otherwise).
Loopback addresses only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import re
import shlex
import sys
import tempfile
import time
import urllib.request
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psutil
from websockets.exceptions import ConnectionClosed

from benchmarks.soak_accounting import (
    ResourceSample,
    format_report,
    goal_met,
    summarize_resources,
)
from clients.client import VoiceClient, VoiceClientError
from clients.latency.accounting import SessionLedger, percentiles, summarize_turns, tally
from clients.latency.cli import is_loopback
from clients.latency.runner import hold_line, play_turn
from clients.latency.speech import RATE, Utterance, load_wav

DEFAULT_CLIPS = Path(__file__).resolve().parents[2] / "shared" / "testdata" / "real"
READY = re.compile(rb"ready on (ws://\S+)")


class ServerStartError(RuntimeError):
    pass


def load_clips(folder: Path, languages: Sequence[str] | None) -> list[Utterance]:
    """The clips refs.json lists (read in place, never copied), as int16 at 24 kHz."""
    try:
        refs = json.loads((folder / "refs.json").read_text())
    except OSError as error:
        raise SystemExit(f"error: no refs.json in {folder} (pass --clips): {error}") from error
    clips = [load_wav(folder / name) for name, ref in sorted(refs.items())
             if not languages or ref["lang"] in languages]
    if not clips:
        raise SystemExit(f"error: no clips in {folder} for languages {languages}")
    return clips


async def converse(client: VoiceClient, ledger: SessionLedger, clips: list[Utterance],
                   next_clip: Callable[[], int], stop_at: float,
                   args: argparse.Namespace, rng: random.Random) -> bool:
    """Turns on one connection until ``stop_at``, the connection closes, or (True) the
    conversation has its ``--turns-per-connection`` turns."""

    async def receive() -> None:
        async for event in client.events():
            ledger.observe(event, time.monotonic())

    receiver = asyncio.ensure_future(receive())
    turns = 0
    try:
        while time.monotonic() < stop_at and not receiver.done():
            if args.turns_per_connection and turns >= args.turns_per_connection:
                return True  # a new conversation on a new connection
            turns += 1
            clip = clips[next_clip()]
            turn = await play_turn(client, ledger, receiver, clip,
                                   timeout_s=args.turn_timeout_s, frame_ms=args.frame_ms,
                                   trailing_silence_s=args.trailing_silence_s)
            if receiver.done():
                break  # the connection closed; the turn was finished as lost
            # With --listen the user hears the reply out before the pause; otherwise the next
            # clip may start while it still plays (speech over the reply, every turn).
            played = turn.played_until() if args.listen else None
            listening = max(0.0, played - time.monotonic()) if played is not None else 0.0
            await hold_line(client, listening + rng.uniform(*args.pause_s), receiver.done,
                            args.frame_ms)
    except ConnectionClosed as error:
        if ledger.current is not None:
            ledger.finish(closed=f"connection closed while sending ({error})")
    finally:
        if ledger.current is not None:
            ledger.finish(closed="the run was stopped")
        receiver.cancel()
    return False


async def run_session(index: int, url: str, key: str | None, clips: list[Utterance],
                      ledger: SessionLedger, stop_at: float, args: argparse.Namespace) -> int:
    """One simulated user until ``stop_at``; reconnects if the server drops it (or after
    ``--turns-per-connection`` turns, a new conversation). Returns the number of
    reconnections that were not planned."""
    rng = random.Random(args.seed * 1000 + index)
    position: int = index * len(clips) // args.sessions  # sessions speak different clips at once

    def next_clip() -> int:
        nonlocal position
        position += 1
        return (position - 1) % len(clips)

    reconnects, planned = -1, False
    while time.monotonic() < stop_at:
        reconnects += 0 if planned else 1
        try:
            client = await VoiceClient.connect(url, api_key=key)
        except VoiceClientError as error:
            ledger.record_failure("-", time.monotonic(), f"cannot connect: {error}")
            await asyncio.sleep(max(args.pause_s))
            continue
        async with client:
            planned = await converse(client, ledger, clips, next_clip, stop_at, args, rng)
    return max(0, reconnects)


def sample(process: psutil.Process, t_s: float) -> ResourceSample:
    with process.oneshot():
        return ResourceSample(t_s, process.memory_info().rss, process.num_threads(),
                              process.num_fds())


async def monitor(process: psutil.Process, ledgers: Sequence[SessionLedger], began: float,
                  stop_at: float, samples: list[ResourceSample],
                  args: argparse.Namespace) -> None:
    """Sample the server every ``--sample-s`` until ``stop_at``; print a progress line every
    ``--progress-s``. Cancelled by the caller when the drain is over."""
    next_progress = began + args.progress_s
    while True:
        now = time.monotonic()
        if now <= stop_at:
            try:
                samples.append(await asyncio.to_thread(sample, process, now - began))
            except psutil.Error as error:
                print(f"soak: cannot sample the server any more: {error!r}", flush=True)
                return
        if now >= next_progress:
            next_progress += args.progress_s
            print(progress_line(ledgers, samples, now - began, stop_at - began), flush=True)
        await asyncio.sleep(args.sample_s)


def progress_line(ledgers: Sequence[SessionLedger], samples: Sequence[ResourceSample],
                  elapsed_s: float, total_s: float) -> str:
    turns = [t for ledger in ledgers for t in ledger.turns]
    counts = tally(turns)
    latency = percentiles([t.voice_to_voice_ms for t in turns if t.voice_to_voice_ms is not None])
    last = samples[-1] if samples else None
    return (f"[{elapsed_s / 60:5.1f}/{total_s / 60:.1f} min] turns {len(turns)}: "
            + ", ".join(f"{counts[k]} {k}" for k in counts)
            + (f" | v2v p50 {latency['p50']:.0f} ms" if latency else "")
            + (f" | RSS {last.rss_bytes / 2**20:.0f} MiB, {last.threads} threads, "
               f"{last.fds} fds" if last else ""))


@contextlib.asynccontextmanager
async def started_server(serve_args: Sequence[str], log_path: Path, start_timeout_s: float,
                         cwd: Path | None = None) -> AsyncIterator[tuple[str, int]]:
    """``voice serve --port 0`` as a child process (the code of checkout ``cwd``, default this
    one); yields its URL and PID once /healthz answers, stops it (SIGTERM, then SIGKILL) on the
    way out."""
    command = [sys.executable, "-m", "voice", "--no-progress", "serve", "--host", "127.0.0.1",
               "--port", "0", *serve_args]
    process = await asyncio.create_subprocess_exec(*command, stdout=asyncio.subprocess.PIPE,
                                                   stderr=asyncio.subprocess.STDOUT, cwd=cwd)
    ready: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    async def copy_log() -> None:
        assert process.stdout is not None
        with log_path.open("wb") as log:
            async for line in process.stdout:
                log.write(line)
                log.flush()
                match = READY.search(line)
                if match and not ready.done():
                    ready.set_result(match.group(1).decode())
        if not ready.done():
            ready.set_exception(ServerStartError(f"the server exited ({process.returncode}) "
                                                 f"before it was ready; see {log_path}"))

    copier = asyncio.ensure_future(copy_log())
    try:
        try:
            async with asyncio.timeout(start_timeout_s):
                url = await ready
                await wait_healthy(url)
        except TimeoutError as error:
            raise ServerStartError(f"the server was not ready within {start_timeout_s:.0f} s; "
                                   f"see {log_path}") from error
        yield url, process.pid
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                async with asyncio.timeout(30):
                    await process.wait()
            except TimeoutError:
                process.kill()
                await process.wait()
        await copier


async def wait_healthy(url: str) -> dict[str, Any]:
    parts = urlsplit(url)
    health = f"http://{parts.netloc}/healthz"
    while True:
        try:
            body = await asyncio.to_thread(lambda: urllib.request.urlopen(health, timeout=5)
                                           .read())
            return dict(json.loads(body))
        except OSError:
            await asyncio.sleep(0.5)


async def soak(url: str, pid: int, clips: list[Utterance],
               args: argparse.Namespace) -> dict[str, Any]:
    try:
        async with asyncio.timeout(30):
            health = await wait_healthy(url)
    except TimeoutError as error:
        raise ServerStartError(f"{url}: /healthz does not answer") from error
    print(f"soak: {args.sessions} session(s) x {args.minutes:g} min against {url} "
          f"(pid {pid}, models {health.get('models')}), {len(clips)} clips", flush=True)
    process = psutil.Process(pid)
    ledgers = [SessionLedger(i) for i in range(args.sessions)]
    samples: list[ResourceSample] = []
    began = time.monotonic()
    stop_at = began + args.minutes * 60
    monitor_task = asyncio.ensure_future(monitor(process, ledgers, began, stop_at, samples, args))
    sessions = [asyncio.ensure_future(run_session(i, url, args.key, clips, ledgers[i], stop_at,
                                                  args)) for i in range(args.sessions)]
    # The drain: every turn under way ends by itself within its clip + the turn timeout.
    longest_clip_s = max(c.samples.size for c in clips) / RATE
    drain_s = longest_clip_s + args.trailing_silence_s + args.turn_timeout_s + max(args.pause_s)
    _, pending = await asyncio.wait(sessions, timeout=args.minutes * 60 + drain_s + 30)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    ended = time.monotonic()
    monitor_task.cancel()
    await asyncio.gather(monitor_task, return_exceptions=True)
    await asyncio.sleep(args.idle_s)  # sessions closed: what does the server hold on to?
    try:
        after: dict[str, Any] | None = vars(await asyncio.to_thread(
            sample, process, time.monotonic() - began))
    except psutil.Error:
        after = None
    turns = summarize_turns([t for ledger in ledgers for t in ledger.turns])
    resources = summarize_resources(samples)
    return {
        "url": url, "pid": pid, "sessions": args.sessions, "minutes": args.minutes,
        "clips": len(clips), "models": health.get("models"), "elapsed_s": ended - began,
        "reconnects": sum(t.result() for t in sessions if not t.cancelled()),
        "stray_events": sum(ledger.stray_events for ledger in ledgers),
        "turns": turns, "resources": resources,
        "after_sessions_closed": after, "idle_s": args.idle_s,
        "max_drift_percent": args.max_drift_percent,
        "goal_met": goal_met(turns, resources, args.max_drift_percent),
        "samples": [vars(s) for s in samples],
        "turn_detail": [t.report() for ledger in ledgers for t in ledger.turns],
    }


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add = parser.add_argument
    add("--sessions", type=int, default=4, help="concurrent sessions")
    add("--minutes", type=float, default=20.0, help="how long new turns start")
    add("--url", help="a running service (needs --pid); default: start voice serve")
    add("--pid", type=int, help="the running service's process id, for RSS/threads/fds")
    add("--key", help="API key for --url")
    add("--serve-args", default="", help="extra flags for the started `voice serve`")
    add("--server-log", type=Path, help="where the started server logs (default: a temp file)")
    add("--start-timeout-s", type=float, default=600.0, help="model loading may take a while")
    add("--clips", type=Path, default=DEFAULT_CLIPS, help="folder with refs.json and its WAVs")
    add("--languages", help="only clips in these languages, comma-separated")
    add("--frame-ms", type=int, default=20, help="audio frame length (20-40 ms)")
    add("--trailing-silence-s", type=float, default=1.0,
        help="silence after each clip before waiting for the reply (silence continues)")
    add("--turn-timeout-s", type=float, default=90.0,
        help="a turn with no finished reply this long after its speech is lost")
    add("--pause-s", type=float, nargs=2, default=(1.0, 3.0), metavar=("MIN", "MAX"),
        help="random pause between a reply and the next clip")
    add("--listen", action="store_true",
        help="pause after the reply has played (by its audio's length), not after its end")
    add("--turns-per-connection", type=int, default=0,
        help="start a new conversation (connection) after this many turns; 0: one per session")
    add("--sample-s", type=float, default=5.0, help="seconds between resource samples")
    add("--idle-s", type=float, default=2.0,
        help="seconds after all sessions closed before the last sample (the service gives "
             "freed memory back while idle: see memory_trim_interval_s)")
    add("--progress-s", type=float, default=30.0, help="seconds between progress lines")
    add("--max-drift-percent", type=float, default=5.0)
    add("--seed", type=int, default=0)
    add("--json", type=Path, help="write the report and every sample and turn here")
    return parser


async def _main(args: argparse.Namespace, clips: list[Utterance]) -> int:
    if args.url:
        report = await soak(args.url, args.pid, clips, args)
    else:
        log = args.server_log or Path(tempfile.gettempdir()) / f"voice-soak-{time.time():.0f}.log"
        print(f"starting voice serve (log: {log})", flush=True)
        async with started_server(shlex.split(args.serve_args), log,
                                  args.start_timeout_s) as (url, pid):
            report = await soak(url, pid, clips, args)
    print(format_report(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=1, ensure_ascii=False))
        print(f"wrote {args.json}")
    return 0 if report["goal_met"] else 1


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.url and args.pid is None:
        print("error: --url needs --pid (the server process to sample)", file=sys.stderr)
        return 2
    if args.url and not is_loopback(args.url):
        print(f"error: {args.url} is not a loopback address", file=sys.stderr)
        return 2
    if args.sessions < 1 or args.minutes <= 0 or not 10 <= args.frame_ms <= 100:
        print("error: --sessions >= 1, --minutes > 0, --frame-ms 10..100", file=sys.stderr)
        return 2
    clips = load_clips(args.clips, args.languages.split(",") if args.languages else None)
    random.Random(args.seed).shuffle(clips)  # languages mixed even in a short run
    try:
        return asyncio.run(_main(args, clips))
    except ServerStartError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
