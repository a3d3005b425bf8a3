"""What voice-latency prints and draws: the summary of a run and its plot."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from clients.latency.accounting import STALL_MIN_MS, Turn, summarize_turns
from voice.protocol import LATENCY_STAGES

# How the plot names each stage of LATENCY_STAGES (one without a label keeps its own name).
_STAGE_LABELS = {"vad_ms": "VAD end of speech", "transcript_ms": "final transcript",
                 "llm_first_token_ms": "LLM first token",
                 "first_audio_ready_ms": "first audio ready",
                 "first_audio_sent_ms": "first audio sent"}


def summarize(turns: Sequence[Turn], elapsed_s: float) -> dict[str, Any]:
    """``summarize_turns`` plus the pace of the run."""
    summary = summarize_turns(turns)
    summary["turns_per_s"] = summary["turns_sent"] / elapsed_s if elapsed_s > 0 else 0.0
    summary["elapsed_s"] = elapsed_s
    return summary


def _by_reason(counts: dict[str, int]) -> str:
    return ", ".join(f"{reason} {count}" for reason, count in counts.items())


def print_summary(title: str, summary: dict[str, Any], out: Any = None) -> None:
    out = out or sys.stdout
    print(f"\n{title}", file=out)
    print(f"{'stage (ms)':<32}{'p50':>8}{'p90':>8}{'p99':>8}{'max':>8}{'n':>5}", file=out)
    for name, figures in summary["stages"].items():
        if figures:
            print(f"{name:<32}" + "".join(f"{figures[k]:8.0f}" for k in ("p50", "p90", "p99",
                                                                        "max"))
                  + f"{figures['n']:5.0f}", file=out)
    print(f"turns {summary['turns_sent']}, completed {summary['completed']}, "
          f"cancelled {summary['cancelled']}, failed {summary['failed']}, "
          f"no reply {summary['no_reply']}: lost {summary['lost']} (no completed reply); "
          f"{summary['turns_per_s']:.2f} turns/s over {summary['elapsed_s']:.0f} s, "
          f"errors {len(summary['errors'])}", file=out)
    if summary["replies_checked_for_stalls"]:
        print(f"  playback would stall in {summary['replies_stalled']} of "
              f"{summary['replies_checked_for_stalls']} completed replies (a gap of at least "
              f"{STALL_MIN_MS:.0f} ms between audio deltas played as they come)", file=out)
    if summary["cancelled_by_reason"]:
        print(f"  cancelled turns by reason: {_by_reason(summary['cancelled_by_reason'])}",
              file=out)
    if summary["responses_cancelled"]:
        print("  cancelled replies by reason (also in turns a later reply completed): "
              f"{_by_reason(summary['responses_cancelled'])}", file=out)
    for line in summary["errors"][:10]:
        print(f"  error: {line}", file=out)
    for row in summary["not_completed"]:
        print(f"  {row['outcome'].replace('_', ' ')}: session {row['session']} turn "
              f"{row['turn']} ({row['clip']}): {row['reason']}", file=out)


def plot(path: Path, turns: Sequence[Turn], levels: dict[int, dict[str, Any]]) -> None:
    """A PNG: the voice-to-voice histogram, and latency per load level (or, for one level,
    where the time of the median turn goes)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    values = sorted(t.voice_to_voice_ms for t in turns if t.voice_to_voice_ms is not None)
    if values:
        left.hist(values, bins=min(30, max(5, len(values) // 2)), color="#4C72B0",
                  alpha=0.85)
        for name, q, color in (("p50", 50, "#2ca02c"), ("p90", 90, "#ff7f0e"),
                               ("p99", 99, "#d62728")):
            x = float(np.percentile(values, q))
            left.axvline(x, color=color, linestyle="--", label=f"{name} {x:.0f} ms")
        left.legend()
    left.set_title(f"Voice-to-voice latency ({len(values)} turns)")
    left.set_xlabel("ms from end of speech to first reply audio")
    left.set_ylabel("turns")
    if len(levels) > 1:
        xs = sorted(levels)
        for key, label in (("p50", "p50"), ("p90", "p90")):
            right.plot(xs, [levels[x]["stages"]["voice_to_voice_ms"].get(key, np.nan)
                            for x in xs], marker="o", label=f"voice to voice {label}")
        right.set_xlabel("concurrent sessions")
        right.set_ylabel("ms")
        right.set_title("Latency under load")
        right.legend()
    else:
        previous = 0.0
        for stage in LATENCY_STAGES:
            median = np.median([t.server_latency[stage] for t in turns
                                if stage in t.server_latency] or [np.nan])
            label = _STAGE_LABELS.get(stage, stage)
            width = max(0.0, float(median) - previous) if not np.isnan(median) else 0.0
            right.barh(["median turn"], [width], left=[previous], label=label)
            previous += width
        right.set_xlabel("ms after the end of user speech (server report)")
        right.set_title("Where the time goes (median stages)")
        right.legend(loc="lower right", fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
