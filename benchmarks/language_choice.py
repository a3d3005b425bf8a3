"""Which language a first turn is decoded in: one decode in the detected language, or a second
decode in the runner-up when the detection is a close call (``[asr] second_language_below``).

    .venv/bin/python -m benchmarks.language_choice [--clips ../shared/testdata/real]
        [--below 0.6] [--margin 0.1] [--mbrola] [--json out.json]

Utterances, each transcribed twice by the service's Whisper (``Transcriber.transcribe`` as a
session's first final: the service's languages allowed, no language so far), once with one
decode and once with the rule:

* ``real``: the 34 recordings of ``shared/testdata/real`` (3-12 s of read speech);
* ``real 1.0 s`` / ``1.5 s`` / ``2.5 s``: the same recordings cut to their first seconds, from
  0.1 s before the voice begins (where the Silero VAD hears it): short first sentences, where
  Whisper's detection is least sure;
* ``espeak-ng`` (and ``mbrola`` with ``--mbrola``): the 40 spoken commands of
  ``benchmarks.spoken_commands`` in espeak-ng's voices (MBROLA's with Debian's non-free
  ``mbrola-*`` voices); English is Piper's voice in both.

Per set: how often the language is right with one decode and with the rule, how many
utterances were close calls (decoded twice), how many of those changed language (right ->
wrong, wrong -> right), the word error rate where a reference exists (the full recordings
and the commands), and the decode time of the close calls with one decode and with two.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jiwer
import numpy as np
import soxr

from asr.transcript import TranscribeOptions
from asr.vad import SAMPLE_RATE, SileroVadModel, StreamingVad, VadConfig, VadEventType
from asr.whisper import Transcriber, TranscriberConfig
from benchmarks.final_transcript import DEFAULT_CLIPS, LogCounter, normalise, read_clip
from benchmarks.spoken_commands import COMMANDS
from voice.config import DEFAULT_LANGUAGES
from voice.models import ModelKind, ModelStore, default_model_names

CUTS_S = (1.0, 1.5, 2.5)


def voice_onset(audio: np.ndarray) -> int:
    """The first sample of the first window the Silero VAD takes for speech (0 if none)."""
    vad = StreamingVad(SileroVadModel(), VadConfig(prefix_padding_ms=0))
    for event in vad.feed(np.concatenate([audio, np.zeros(SAMPLE_RATE // 2, np.float32)])):
        if event.type is VadEventType.SPEECH_STARTED:
            return event.start_sample
    return 0


def utterances(clips: Path, mbrola: bool) -> list[tuple[str, str, str, np.ndarray, str | None]]:
    """(set, name, language, audio at 16 kHz, reference text or None)."""
    from clients.latency.speech import RATE, speak_texts

    items: list[tuple[str, str, str, np.ndarray, str | None]] = []
    references = json.loads((clips / "refs.json").read_text())
    for name, ref in sorted(references.items()):
        audio = read_clip(clips / name)
        items.append(("real", name, ref["lang"], audio, ref["text"]))
        start = max(0, voice_onset(audio) - SAMPLE_RATE // 10)
        for seconds in CUTS_S:
            items.append((f"real {seconds:.1f} s", name, ref["lang"],
                          audio[start:start + int(seconds * SAMPLE_RATE)], None))
    commands = [(f"{language}-{index + 1}", language, text)
                for language, texts in COMMANDS.items()
                for index, (text, _) in enumerate(texts)]
    for label, voices in [("espeak-ng", False), *([("mbrola", True)] if mbrola else [])]:
        for (name, language, text), spoken in zip(
                commands, speak_texts(commands, mbrola=voices), strict=True):
            audio = soxr.resample(spoken.samples.astype(np.float32) / 32768, RATE, SAMPLE_RATE)
            items.append((label, name, language, np.asarray(audio, np.float32), text))
    return items


def wer(reference: str, text: str) -> float:
    return float(jiwer.wer(normalise(reference), normalise(text) or "-"))


def summarise(rows: list[dict[str, Any]]) -> None:
    print("| set | utterances | language right: one decode | with the rule | close calls "
          "(decoded twice) | right -> wrong | wrong -> right | WER one / rule | close calls' "
          "decode p50 one / two (ms) |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |")
    for name in dict.fromkeys(row["set"] for row in rows):
        chosen = [row for row in rows if row["set"] == name]
        close = [row for row in chosen if row["close"]]
        one_right = sum(row["one"]["language"] == row["language"] for row in chosen)
        rule_right = sum(row["rule"]["language"] == row["language"] for row in chosen)
        lost = sum(row["one"]["language"] == row["language"] != row["rule"]["language"]
                   for row in chosen)
        won = sum(row["one"]["language"] != row["language"] == row["rule"]["language"]
                  for row in chosen)
        scored = [row for row in chosen if row["reference"] is not None]
        wers = (f"{statistics.mean(row['one']['wer'] for row in scored):.3f} / "
                f"{statistics.mean(row['rule']['wer'] for row in scored):.3f}"
                if scored else "-")
        times = (f"{statistics.median(row['one']['ms'] for row in close):.0f} / "
                 f"{statistics.median(row['rule']['ms'] for row in close):.0f}" if close else "-")
        print(f"| {name} | {len(chosen)} | {one_right} | {rule_right} | {len(close)} | {lost} "
              f"| {won} | {wers} | {times} |")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=Path, default=DEFAULT_CLIPS)
    parser.add_argument("--below", type=float, default=0.6,
                        help="a detection less probable than this is a close call")
    parser.add_argument("--margin", type=float, default=0.1)
    parser.add_argument("--mbrola", action="store_true",
                        help="also the commands in MBROLA's voices (Debian non-free)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    close_calls = LogCounter("language a close call")  # asr.whisper's second decodes
    logging.getLogger("asr.whisper").addHandler(close_calls)
    logging.getLogger("asr.whisper").setLevel(logging.INFO)
    logging.getLogger("asr.whisper").propagate = False

    store = ModelStore(progress=False)
    model_path = str(store.resolve(default_model_names()[ModelKind.ASR], ModelKind.ASR))
    transcriber = Transcriber(TranscriberConfig(model_path))
    one = TranscribeOptions(allowed_languages=DEFAULT_LANGUAGES)
    rule = TranscribeOptions(allowed_languages=DEFAULT_LANGUAGES,
                             second_language_below=args.below,
                             second_language_margin=args.margin)
    transcriber.transcribe(np.zeros(SAMPLE_RATE, np.float32) + 0.01, one)  # warm up
    rows = []
    for set_name, name, language, audio, reference in utterances(args.clips, args.mbrola):
        row: dict[str, Any] = {"set": set_name, "name": name, "language": language,
                               "reference": reference}
        for label, options in (("one", one), ("rule", rule)):
            before = close_calls.count
            started = time.perf_counter()
            transcript = transcriber.transcribe(audio, options)
            row[label] = {"language": transcript.language, "text": transcript.text,
                          "probability": transcript.language_probability,
                          "ms": (time.perf_counter() - started) * 1000,
                          "wer": wer(reference, transcript.text) if reference else None}
            if label == "rule":
                row["close"] = close_calls.count > before
        rows.append(row)
        changed = "" if row["one"]["language"] == row["rule"]["language"] else \
            f" -> {row['rule']['language']} {row['rule']['text']!r}"
        print(f"  {set_name} {name} ({language}): {row['one']['language']} "
              f"{row['one']['probability']:.2f} {row['one']['text']!r}{changed}", file=sys.stderr)
    print(f"\nwhisper-base, {transcriber.device}; close call: detection below {args.below}, "
          f"the second decode kept when surer by {args.margin}\n")
    summarise(rows)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
