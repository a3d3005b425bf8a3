"""Resource figures and the printed report of the soak benchmark (``benchmarks/soak.py``).

Pure: no sockets, no clock, no processes. The turn accounting (what the server did with each
clip, and which turns were lost) is shared with ``voice-latency``: ``clients.latency.accounting``.
"""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Sequence
from typing import Any


@dataclasses.dataclass(frozen=True)
class ResourceSample:
    """The server process at one moment: ``t_s`` seconds after the run began."""

    t_s: float
    rss_bytes: int
    threads: int
    fds: int


def rss_drift_percent(rss: Sequence[float]) -> float | None:
    """Median of the last quarter against the median of the second quarter (the first quarter
    is warm-up), in percent; None with fewer than four samples."""
    count = len(rss)
    if count < 4:
        return None
    second = rss[count // 4:count // 2]
    last = rss[3 * count // 4:]
    base = statistics.median(second)
    return (statistics.median(last) - base) / base * 100 if base else None


def summarize_resources(samples: Sequence[ResourceSample]) -> dict[str, Any]:
    if not samples:
        return {"samples": 0, "rss_drift_percent": None}
    mib = [s.rss_bytes / 2**20 for s in samples]
    count = len(mib)
    return {
        "samples": count,
        "rss_mib_first": mib[0], "rss_mib_max": max(mib), "rss_mib_last": mib[-1],
        "rss_mib_warm_median": statistics.median(mib[count // 4:count // 2])
        if count >= 4 else None,
        "rss_mib_last_quarter_median": statistics.median(mib[3 * count // 4:])
        if count >= 4 else None,
        "rss_drift_percent": rss_drift_percent(mib),
        "threads_first": samples[0].threads, "threads_max": max(s.threads for s in samples),
        "threads_last": samples[-1].threads,
        "fds_first": samples[0].fds, "fds_max": max(s.fds for s in samples),
        "fds_last": samples[-1].fds,
    }


def goal_met(turns: dict[str, Any], resources: dict[str, Any],
             max_drift_percent: float = 5.0) -> bool:
    """The soak goal: no lost turn (every turn got a completed reply), and RSS after warm-up
    within ``max_drift_percent``."""
    drift = resources.get("rss_drift_percent")
    return turns["lost"] == 0 and drift is not None and abs(drift) <= max_drift_percent


def format_report(report: dict[str, Any]) -> str:
    """The report as a person reads it at the end of a run (``report`` as ``soak`` made it)."""
    turns, res, after = report["turns"], report["resources"], report["after_sessions_closed"]
    lines = [
        f"\nsoak: {report['sessions']} session(s) x {report['minutes']:g} min, "
        f"{report['elapsed_s'] / 60:.1f} min with the drain, {report['clips']} clips",
        f"turns sent {turns['turns_sent']}: completed {turns['completed']}, cancelled "
        f"{turns['cancelled']}, failed {turns['failed']}, no reply {turns['no_reply']}; "
        f"lost {turns['lost']} (no completed reply); reconnects {report['reconnects']}"]
    for key, label in (("cancelled_by_reason", "cancelled turns by reason"),
                       ("responses_cancelled", "cancelled replies by reason")):
        if turns[key]:
            lines.append(f"{label}: " + ", ".join(
                f"{reason} {count}" for reason, count in turns[key].items()))
    lines += [f"  {row['outcome'].replace('_', ' ')}: session {row['session']} turn {row['turn']} "
              f"({row['clip']}): {row['reason']}" for row in turns["not_completed"][:20]]
    lines += [f"  error: {error}" for error in turns["errors"][:10]]
    lines += [f"  heard as nothing, asked to repeat: session {row['session']} turn {row['turn']} "
              f"({row['clip']}): {row['reply']!r}" for row in turns.get("asked_to_repeat", [])]
    lines.append(f"{'latency (ms)':<32}{'p50':>8}{'p90':>8}{'p99':>8}{'max':>8}{'n':>5}")
    for name, figures in turns["stages"].items():
        if figures:
            lines.append(f"{name:<32}" + "".join(f"{figures[k]:8.0f}"
                                                 for k in ("p50", "p90", "p99", "max"))
                         + f"{figures['n']:5.0f}")
    if res["samples"]:
        lines.append(f"server RSS {res['rss_mib_first']:.0f} MiB at start, max "
                     f"{res['rss_mib_max']:.0f}, last {res['rss_mib_last']:.0f}; threads "
                     f"{res['threads_first']} -> max {res['threads_max']}; fds "
                     f"{res['fds_first']} -> max {res['fds_max']} ({res['samples']} samples)")
    drift = res["rss_drift_percent"]
    lines.append("RSS after warm-up: " + (
        "not enough samples" if drift is None else
        f"{res['rss_mib_warm_median']:.0f} MiB (2nd quarter median) -> "
        f"{res['rss_mib_last_quarter_median']:.0f} MiB (last quarter), drift {drift:+.1f} %"))
    lines.append(f"{report.get('idle_s', 2):.0f} s after all sessions closed: " + (
        "the server process is gone" if after is None else
        f"RSS {after['rss_bytes'] / 2**20:.0f} MiB, {after['threads']} threads, "
        f"{after['fds']} fds"))
    lines.append(f"goal (0 lost turns, RSS drift within {report['max_drift_percent']:g} %): "
                 f"{'met' if report['goal_met'] else 'NOT met'}")
    return "\n".join(lines)
