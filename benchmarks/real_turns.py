"""Turn-taking figures on real speech, per language, measured at the client.

Plays each real recording of ``../shared/testdata/real/`` to a running service, in a fresh
session (no history), at real-time pace followed by silence, like a microphone. At the client
it stamps the end of the clip's speech (the last speech window by the Silero VAD, located in
the clip before sending), then the arrival of ``speech_stopped`` (end of turn), of the final
transcript and of the first reply audio (voice to voice), and counts the replies whose
playback would stall (audio that comes after the audio before it has played). It scores the
final transcript against the reference (word error rate after the normalisation the
recordings' README asks for), checks the detected language and counts clips split into more
than one turn.

In the same run, after the service's turns, faster-whisper as shipped
(``WhisperModel.transcribe``, beam 5, language detected) transcribes the same clips with the
service's Whisper model: the accuracy to match.

    .venv/bin/voice serve &   # the service under test, default models
    .venv/bin/python -m benchmarks.real_turns --url ws://127.0.0.1:8765/v1/realtime \\
        [--json out.json] [--languages de,fr]

Two services compared (``--url`` twice, e.g. two settings of one checkout on two ports): each
clip is played to both, one after the other, the order swapped every clip, so that a change in
the machine's speed over the run hits both alike; a table for each, then the differences clip
by clip (the second minus the first: median, quartiles, and in how many clips it was sooner).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import re
import statistics
import sys
import time
import unicodedata
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from clients.latency.runner import run_session
from clients.latency.speech import RATE, Utterance, load_wav

DEFAULT_CLIPS = Path(__file__).resolve().parents[2] / "shared" / "testdata" / "real"


def normalize(text: str) -> str:
    """Lowercase, no punctuation, no diacritics, no apostrophes (the README's scoring)."""
    text = unicodedata.normalize("NFKD", text.lower())
    text = "".join(c for c in text if not unicodedata.combining(c))
    text = text.replace("'", "").replace("’", "")
    return " ".join(re.sub(r"[^\w\s]", " ", text).split())


def word_error_rate(references: Sequence[str], hypotheses: Sequence[str]) -> float:
    """Corpus WER (errors over reference words) of normalised texts."""
    import jiwer

    refs = [normalize(r) for r in references]
    hyps = [normalize(h) or "<empty>" for h in hypotheses]
    return float(jiwer.wer(refs, hyps))


def speech_end_sample(samples: np.ndarray) -> int:
    """Where the clip's speech ends (int16 at RATE), by the Silero VAD, in RATE samples."""
    import soxr

    from asr.vad import SAMPLE_RATE, SileroVadModel
    from benchmarks.turn_cuts import speech_end

    audio = soxr.resample(samples.astype(np.float32) / 32768, RATE, SAMPLE_RATE)
    return speech_end(audio, SileroVadModel()) * RATE // SAMPLE_RATE


def load_clips(folder: Path, languages: Sequence[str] | None,
               per_language: int | None = None) -> list[Utterance]:
    refs = json.loads((folder / "refs.json").read_text())
    clips: list[Utterance] = []
    for name, ref in sorted(refs.items()):
        if languages and ref["lang"] not in languages:
            continue
        if per_language is not None and sum(c.language == ref["lang"]
                                            for c in clips) >= per_language:
            continue
        clip = load_wav(folder / name)
        clips.append(Utterance(name, clip.samples, ref["text"], ref["lang"],
                               speech_end_sample(clip.samples)))
    return clips


def faster_whisper_shipped(clips: Sequence[Utterance], model: str) -> dict[str, str]:
    """faster-whisper's own transcribe() with its defaults (beam 5), language detected."""
    import soxr
    from faster_whisper import WhisperModel

    from voice.models import ModelKind, ModelStore

    path = ModelStore(progress=False).resolve(model, ModelKind.ASR)
    whisper = WhisperModel(str(path), device="cpu", compute_type="int8")
    texts = {}
    for clip in clips:
        audio = soxr.resample(clip.samples.astype(np.float32) / 32768, RATE, 16_000)
        segments, _ = whisper.transcribe(audio, beam_size=5)
        texts[clip.name] = " ".join(s.text.strip() for s in segments)
    return texts


async def run_turns(urls: Sequence[str], key: str | None, clips: Sequence[Utterance],
                    timeout_s: float) -> list[list[dict[str, Any]]]:
    """Each clip in a fresh session of every service (the order rotated clip by clip); the
    rows of each service."""
    runs: list[list[dict[str, Any]]] = [[] for _ in urls]
    for index, clip in enumerate(clips):
        order = [(index + shift) % len(urls) for shift in range(len(urls))]
        for which in order:
            runs[which].append(await run_clip(urls[which], key, index, clip, timeout_s))
    return runs


async def run_clip(url: str, key: str | None, index: int, clip: Utterance,
                   timeout_s: float) -> dict[str, Any]:
    [turn] = await run_session(url, key, index, [clip], 1, timeout_s, False,
                               time.monotonic() + 3600)
    end = turn.speech_end

    def after(stamps: list[float], end: float | None = end) -> float | None:
        return None if end is None or not stamps else (stamps[0] - end) * 1000

    row = {
        "clip": clip.name, "language": clip.language, "reference": clip.text,
        "outcome": turn.outcome, "turns": len(turn.speech_stopped_at),
        "transcript": " ".join(t for t in turn.transcripts if t),
        "detected": turn.language, "end_of_turn_ms": after(turn.speech_stopped_at),
        "transcript_ms": after(turn.transcript_at[-1:]),
        "voice_to_voice_ms": turn.voice_to_voice_ms,
        "stalls": turn.stalls, "stall_ms": turn.stall_ms,
        "server": turn.server_latency}
    print(f"  {clip.name} ({url}): {row['outcome']}, v2v {row['voice_to_voice_ms']}",
          file=sys.stderr)
    return row


def print_paired(first: list[dict[str, Any]], second: list[dict[str, Any]]) -> None:
    """Clip by clip, the second service's figures minus the first's."""
    stages = {"voice to voice (client)": lambda r: r["voice_to_voice_ms"],
              "transcript (client)": lambda r: r["transcript_ms"],
              "first token (server)": lambda r: r["server"].get("llm_first_token_ms"),
              "first audio ready (server)": lambda r: r["server"].get("first_audio_ready_ms")}
    print("\n| second minus first, clip by clip | median | quartiles | sooner in |")
    print("|---|---:|---:|---:|")
    for name, value in stages.items():
        pairs = [(value(a), value(b)) for a, b in zip(first, second, strict=True)]
        differences = [b - a for a, b in pairs if a is not None and b is not None]
        if len(differences) < 2:
            continue
        low, _, high = statistics.quantiles(differences, n=4)
        print(f"| {name} | {statistics.median(differences):+.0f} ms | {low:+.0f} / {high:+.0f} "
              f"| {sum(d < 0 for d in differences)} of {len(differences)} |")


def _p(values: Sequence[float | None], q: float) -> str:
    present = [v for v in values if v is not None]
    return f"{float(np.percentile(present, q)):.0f}" if present else "-"


def print_table(rows: list[dict[str, Any]], shipped: dict[str, str | None]) -> None:
    """The per-language table (faster-whisper's WER "-" where it was not run)."""
    languages = sorted({r["language"] for r in rows})
    print("| language | clips | WER service | WER faster-whisper beam 5 | language right "
          "| split turns | end of turn p50 | transcript p50 | voice to voice p50 / p90 |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for language in [*languages, "all"]:
        chosen = [r for r in rows if language in ("all", r["language"])]
        refs = [r["reference"] for r in chosen]
        wer = word_error_rate(refs, [r["transcript"] for r in chosen])
        reference = [shipped[r["clip"]] for r in chosen]
        wer_fw = ("-" if None in reference
                  else f"{word_error_rate(refs, [t or '' for t in reference]):.3f}")
        right = sum(r["detected"] == r["language"] for r in chosen)
        split = sum(r["turns"] > 1 for r in chosen)
        v2v = [r["voice_to_voice_ms"] for r in chosen]
        print(f"| {language} | {len(chosen)} | {wer:.3f} | {wer_fw} | {right}/{len(chosen)} "
              f"| {split} | {_p([r['end_of_turn_ms'] for r in chosen], 50)} "
              f"| {_p([r['transcript_ms'] for r in chosen], 50)} "
              f"| {_p(v2v, 50)} / {_p(v2v, 90)} |")
    stalled = [r for r in rows if r.get("stalls")]
    checked = [r for r in rows if r.get("stalls") is not None]
    print(f"\nreplies whose playback would stall: {len(stalled)} of {len(checked)}"
          + (f" (stalled ms p50 {_p([r['stall_ms'] for r in stalled], 50)}, "
             f"max {max(r['stall_ms'] for r in stalled):.0f}: "
             f"{', '.join(r['clip'] for r in stalled)})" if stalled else ""))
    lost = [r["clip"] for r in rows if r["outcome"] != "completed"]
    print(f"\nturns without a completed reply: {len(lost)} {lost if lost else ''}")
    for stage in ("vad_ms", "transcript_ms", "llm_first_token_ms", "first_audio_ready_ms",
                  "first_audio_sent_ms"):
        values = [r["server"][stage] for r in rows if stage in r["server"]]
        if values:
            print(f"server {stage}: p50 {statistics.median(values):.0f}, "
                  f"p90 {float(np.percentile(values, 90)):.0f}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", action="append",
                        help="the service (default ws://127.0.0.1:8765/v1/realtime); twice: "
                             "two services compared, clip by clip")
    parser.add_argument("--key")
    parser.add_argument("--clips", type=Path, default=DEFAULT_CLIPS)
    parser.add_argument("--languages", help="comma-separated, e.g. de,fr (default: all)")
    parser.add_argument("--per-language", type=int,
                        help="only the first N clips (by name) of each language")
    parser.add_argument("--asr-model", default="whisper-base",
                        help="the service's Whisper model, for the faster-whisper reference")
    parser.add_argument("--no-reference", dest="reference", action="store_false",
                        help="skip faster-whisper's transcripts (e.g. a second run, same clips)")
    parser.add_argument("--timeout-s", type=float, default=60.0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    clips = load_clips(args.clips, args.languages.split(",") if args.languages else None,
                       args.per_language)
    if not clips:
        raise SystemExit(f"error: no clips in {args.clips}")
    urls = args.url or ["ws://127.0.0.1:8765/v1/realtime"]
    if len(urls) > 2:
        parser.error("at most two services (--url twice)")
    runs = asyncio.run(run_turns(urls, args.key, clips, args.timeout_s))
    shipped: dict[str, str | None] = {clip.name: None for clip in clips}
    if args.reference:
        print("faster-whisper as shipped, same clips...", file=sys.stderr)
        shipped = dict(faster_whisper_shipped(clips, args.asr_model))
    for url, rows in zip(urls, runs, strict=True):
        print(f"\n{url}: {len(clips)} real recordings, one fresh session each, "
              f"{platform.processor() or platform.machine()}\n")
        print_table(rows, shipped)
    if len(runs) == 2:
        print_paired(*runs)
    if args.json:
        args.json.write_text(json.dumps(
            {"rows": runs[0], "faster_whisper_beam5": shipped, "urls": urls,
             "runs": runs}, indent=1, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
