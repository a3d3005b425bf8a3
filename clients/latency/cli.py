"""voice-latency: latency, load and language tests of a running voice service.

    voice-latency --url URL [--key KEY] [--sessions N] [--turns M] [--suite languages]
                  [--pause-s S | --talk-over] [--json PATH] [--plot PATH] [WAV ...]

Replays speech at real-time pace over N concurrent sessions, M turns each, and measures at the
client the **voice-to-voice** latency of every turn: from the end of the user's speech (the last
frame with sound in it) to the first byte of a completed reply's audio. It also collects the
server's own per-stage report (``response.done`` -> ``latency``). It prints p50/p90/p99/max per
stage, turns per second and errors, and accounts for every turn: completed, cancelled (with the
reasons from ``response.done`` ``status_details``), failed, or no reply. A clip the server hears
as two turns (a pause inside it) is one turn, completed if any of its replies completed. A turn
without a completed reply is **lost**, and any lost turn makes the exit status 1. ``--json``
writes every figure and ``--plot`` a PNG of the latency distribution and the stage breakdown.

Each session hears a reply out before it speaks again: its next clip starts ``--pause-s``
(0.5 s) after the reply's audio has played at real-time pace, as it would for a person. With
``--talk-over`` it starts as soon as the reply is written, over the rest of its playback (the
server's echo guard then judges every clip as speech over a reply and truncates the reply).

Speech comes from the WAV files given (PCM16, any rate), or else from a generated set of
spoken questions (Piper for English, espeak-ng for the other languages).

``--suite languages`` plays at least five generated questions in each of en, de, fr, es, it,
nl, pt and pl, and reports per language: the ASR word error rate, whether the language was
detected correctly, whether the reply was in the same language (by its text, and by the
language the service's own Whisper hears in the reply audio), and latency.

``--load`` ramps sessions up (1, 2, 4, ... up to ``--sessions``) and reports where the p90
voice-to-voice latency crosses ``--p90-limit-ms``, and how many turns were lost.

Each level also reports how busy the server was, read from its ``/metrics`` before and after:
the cores its process kept busy on average and each engine's calls running on average
(``clients.latency.server_load``; nothing where the metrics cannot be read).

Runs are bounded (``--max-minutes``) and, unless ``--allow-remote`` is given, only loopback
addresses are targeted.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from clients.latency.accounting import Turn
from clients.latency.languages import language_table, print_language_table, transcribe_back
from clients.latency.report import plot, print_summary, summarize
from clients.latency.runner import PAUSE_S, run_level, run_session
from clients.latency.server_load import busy, describe, read
from clients.latency.speech import QUESTIONS, generate_utterances, load_wav


def is_loopback(url: str) -> bool:
    # Same rule as voice.config.is_loopback; clients may not import the service's config.
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="voice-latency", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="ws://127.0.0.1:8765/v1/realtime")
    parser.add_argument("--key", default=os.environ.get("VOICE_API_KEY"))
    parser.add_argument("--sessions", type=int, default=1, help="concurrent sessions")
    parser.add_argument("--turns", type=int, default=5, help="turns per session")
    parser.add_argument("--suite", choices=["languages"], help="built-in test suite")
    parser.add_argument("--per-language", type=int, default=5,
                        help="questions per language in the language suite (at most 5)")
    parser.add_argument("--load", action="store_true",
                        help="ramp sessions 1, 2, 4, ... up to --sessions")
    parser.add_argument("--p90-limit-ms", type=float, default=5000.0,
                        help="in --load mode: the p90 voice-to-voice latency to find")
    parser.add_argument("--json", type=Path, help="write all figures as JSON here")
    parser.add_argument("--plot", type=Path, help="write a PNG plot here")
    parser.add_argument("--timeout-s", type=float, default=90.0,
                        help="a turn still waiting for the server this long after its "
                             "clip was sent is lost")
    parser.add_argument("--max-minutes", type=float, default=20.0,
                        help="stop starting new turns after this long")
    parser.add_argument("--pause-s", type=float, default=PAUSE_S,
                        help="a session speaks its next clip this long after the reply's "
                             "audio has played at its pace (default %(default)s)")
    parser.add_argument("--talk-over", action="store_true",
                        help="speak the next clip as soon as the reply is written, over its "
                             "playback (every clip is then speech over a reply, judged by the "
                             "server's echo guard; load runs before 2026-11-29 did this)")
    parser.add_argument("--piper-voice", help="Piper .onnx voice for generated English speech")
    parser.add_argument("--allow-remote", action="store_true",
                        help="allow a non-loopback URL (only for your own servers)")
    parser.add_argument("wavs", nargs="*", type=Path, metavar="WAV")
    return parser


async def _main(args: argparse.Namespace) -> int:
    deadline = time.monotonic() + args.max_minutes * 60
    # Synthesis and file reading block: keep them off the event loop.
    if args.suite == "languages":
        utterances = await asyncio.to_thread(generate_utterances, list(QUESTIONS),
                                             min(5, args.per_language), args.piper_voice)
        turns, sessions = 1, 1
    elif args.wavs:
        utterances = await asyncio.to_thread(lambda: [load_wav(path) for path in args.wavs])
        turns, sessions = args.turns, args.sessions
    else:
        utterances = await asyncio.to_thread(generate_utterances, ["en"], 5, args.piper_voice)
        turns, sessions = args.turns, args.sessions
    pause_s = None if args.talk_over else args.pause_s
    report: dict[str, Any] = {"url": args.url, "sessions": sessions, "turns": turns,
                              "pause_s": pause_s}
    levels: dict[int, dict[str, Any]] = {}
    all_turns: list[Turn] = []
    ramp = ([n for n in (1, 2, 4, 8, 16, 32, 64, 128) if n < sessions] + [sessions]
            if args.load else [sessions])
    cores_here = os.cpu_count() if is_loopback(args.url) else None
    for level in ramp:
        before = await asyncio.to_thread(read, args.url)
        if args.suite == "languages":
            # Each question in a fresh session, so no turn carries another's history (a long
            # history slows the first token) or another language's conversation.
            started = time.monotonic()
            results: list[Turn] = []
            for index, utterance in enumerate(utterances):
                results += await run_session(args.url, args.key, index, [utterance], 1,
                                             args.timeout_s, True, deadline)
            elapsed = time.monotonic() - started
        else:
            results, elapsed = await run_level(args.url, args.key, level, turns, utterances,
                                               args.timeout_s, False, deadline,
                                               pause_s=pause_s)
        summary = summarize(results, elapsed)
        summary["server"] = busy(before, await asyncio.to_thread(read, args.url), elapsed)
        levels[level] = summary
        all_turns += results
        print_summary(f"{len(utterances)} questions, one session each"
                      if args.suite == "languages"
                      else f"{level} session(s) x {turns} turn(s)", summary)
        if summary["server"]:
            print(f"  {describe(summary['server'], cores_here)}")
        if time.monotonic() > deadline:
            print("stopping: --max-minutes reached")
            break
    report["levels"] = {str(k): v for k, v in levels.items()}
    report["turn_records"] = [turn.report() for turn in all_turns]
    lost = sum(turn.lost for turn in all_turns)
    report["turns_lost"] = lost
    if args.load:
        crossing = next((n for n in sorted(levels)
                         if levels[n]["stages"]["voice_to_voice_ms"].get("p90", 0)
                         > args.p90_limit_ms), None)
        report["p90_crosses_limit_at_sessions"] = crossing
        print(f"\np90 voice-to-voice crosses {args.p90_limit_ms:.0f} ms at "
              f"{crossing if crossing else 'none of the levels run'}"
              f"{' sessions' if crossing else ''}; turns lost (no completed reply): {lost} "
              f"of {len(all_turns)}")
    if args.suite == "languages":
        by_name = {u.name: u for u in utterances}
        heard_back = {}
        for turn in all_turns:
            if turn.reply_audio is not None and turn.reply_audio.size:
                heard_back[(turn.session, turn.index)] = await transcribe_back(
                    args.url, args.key, turn.reply_audio)
        rows = language_table(all_turns, by_name, heard_back)
        print_language_table(rows)
        report["languages"] = rows
        report["turns_detail"] = [{
            "utterance": t.clip, "reference": by_name[t.clip].text,
            "transcript": t.transcript, "language": t.language, "reply": t.reply_text,
            "reply_heard_back": heard_back.get((t.session, t.index), ("", None))[0],
            "outcome": t.outcome, "reason": t.reason,
            "voice_to_voice_ms": t.voice_to_voice_ms} for t in all_turns
            if t.clip in by_name]
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, ensure_ascii=False))
        print(f"wrote {args.json}")
    if args.plot:
        plot(args.plot, all_turns, levels)
        print(f"wrote {args.plot}")
    return 1 if lost else 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if not is_loopback(args.url) and not args.allow_remote:
        print(f"error: {args.url} is not a loopback address; pass --allow-remote to test "
              "your own remote server", file=sys.stderr)
        return 2
    if args.sessions < 1 or args.turns < 1:
        print("error: --sessions and --turns must be at least 1", file=sys.stderr)
        return 2
    try:
        return asyncio.run(_main(args))
    except KeyboardInterrupt:
        return 130
