"""Turn accounting and resource figures for the soak benchmark (``benchmarks/soak.py``).

Pure: no sockets, no clock, no processes. Times are passed in (monotonic seconds), events are
the typed events of ``clients.client``, so a test can replay a scripted event list.

One client turn (one clip spoken) can see more than one server response: a clip with a long
pause inside is heard as two user turns, the first reply is cancelled by the second part
(``turn_detected``) and the second one completes. The turn is over ("settled") when the whole
clip and its trailing silence were sent, the server's VAD has closed every speech segment it
opened, every segment has its transcript, every non-empty transcript has its response, and every
response has its ``response.done``. Its outcome:

- ``completed``: some response of the turn completed;
- ``lost``: no completed response and a response still open, or nothing at all, when the turn
  timed out or the connection closed; also a turn whose speech was heard as nothing (empty
  transcript, so the server stays silent);
- ``failed``: a response ended ``failed`` (and none completed);
- ``cancelled``: every response ended ``cancelled`` (reasons from ``status_details``).
"""

from __future__ import annotations

import dataclasses
import statistics
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

from clients.client import (
    Event,
    ReplyAudio,
    ResponseDone,
    ResponseStarted,
    ServerError,
    SpeechStarted,
    SpeechStopped,
    Transcript,
)
from clients.latency import STAGES, percentiles

OUTCOMES = ("completed", "cancelled", "failed", "lost")
IN_PROGRESS = "in_progress"


@dataclasses.dataclass
class Turn:
    """One clip spoken by one session, and what the server did with it."""

    session: int
    index: int
    clip: str
    started_at: float
    speech_end: float | None = None  # when the last frame with sound was sent
    outcome: str | None = None  # one of OUTCOMES once finished
    reason: str | None = None  # why a turn was lost, failed or cancelled
    voice_to_voice_ms: float | None = None
    responses: dict[str, str] = dataclasses.field(default_factory=dict)  # id -> status
    cancel_reasons: list[str] = dataclasses.field(default_factory=list)
    server_latency: dict[str, float] = dataclasses.field(default_factory=dict)
    transcripts: list[str] = dataclasses.field(default_factory=list)
    errors: list[str] = dataclasses.field(default_factory=list)
    first_audio: dict[str, float] = dataclasses.field(default_factory=dict)  # id -> time
    open_speech: int = 0
    awaiting_transcripts: int = 0
    awaiting_replies: int = 0  # non-empty transcripts whose response has not begun

    def report(self) -> dict[str, Any]:
        return {"session": self.session, "turn": self.index, "clip": self.clip,
                "outcome": self.outcome, "reason": self.reason,
                "voice_to_voice_ms": self.voice_to_voice_ms, "responses": self.responses,
                "cancel_reasons": self.cancel_reasons, "transcripts": self.transcripts,
                "errors": self.errors, "server_latency": self.server_latency}


class SessionLedger:
    """The turns of one session. Feed it every server event with the time it arrived."""

    def __init__(self, session: int) -> None:
        self.session = session
        self.turns: list[Turn] = []
        self.stray_events = 0  # turn-related events while no turn was open
        self._owner: dict[str, Turn] = {}  # response id -> the turn it answers

    @property
    def current(self) -> Turn | None:
        return self.turns[-1] if self.turns and self.turns[-1].outcome is None else None

    def begin(self, clip: str, now: float) -> Turn:
        if self.current is not None:
            raise RuntimeError("the previous turn is not finished")
        turn = Turn(self.session, len(self.turns), clip, now)
        self.turns.append(turn)
        return turn

    def record_failure(self, clip: str, now: float, reason: str) -> Turn:
        """A turn that could not even start (e.g. the connection was refused)."""
        turn = self.begin(clip, now)
        turn.outcome, turn.reason = "failed", reason
        return turn

    def speech_sent(self, speech_end: float) -> None:
        """The whole clip (and its trailing silence) was sent; speech ended at ``speech_end``."""
        if self.current is not None:
            self.current.speech_end = speech_end

    def observe(self, event: Event, now: float) -> None:
        response_id = getattr(event, "response_id", None)
        turn = self._owner.get(response_id) if response_id else None
        turn = turn or self.current
        if turn is None:
            if not isinstance(event, ServerError):
                self.stray_events += 1
            return
        if isinstance(event, SpeechStarted):
            turn.open_speech += 1
        elif isinstance(event, SpeechStopped):
            turn.open_speech = max(0, turn.open_speech - 1)
            turn.awaiting_transcripts += 1
        elif isinstance(event, Transcript):
            turn.awaiting_transcripts = max(0, turn.awaiting_transcripts - 1)
            turn.transcripts.append(event.text)
            turn.awaiting_replies += bool(event.text)  # each gets exactly one response
        elif isinstance(event, ResponseStarted):
            self._owner[event.response_id] = turn
            turn.responses[event.response_id] = IN_PROGRESS
            turn.awaiting_replies = max(0, turn.awaiting_replies - 1)
        elif isinstance(event, ReplyAudio):
            turn.first_audio.setdefault(event.response_id, now)
        elif isinstance(event, ResponseDone):
            if event.response_id not in turn.responses:
                # Cancelled before it began: a response.done without response.created.
                self._owner[event.response_id] = turn
                turn.awaiting_replies = max(0, turn.awaiting_replies - 1)
            turn.responses[event.response_id] = event.status
            if event.status == "cancelled":
                turn.cancel_reasons.append(event.reason or "unknown")
            elif event.status == "completed":
                turn.server_latency = dict(event.latency)
        elif isinstance(event, ServerError):
            turn.errors.append(f"{event.code}: {event.message}")

    def settled(self) -> bool:
        """The current turn needs nothing more from the server (see the module docstring)."""
        turn = self.current
        if turn is None or turn.speech_end is None:
            return False
        heard_something = bool(turn.transcripts) or bool(turn.responses)
        return (heard_something and turn.open_speech == 0 and turn.awaiting_transcripts == 0
                and not turn.awaiting_replies and IN_PROGRESS not in turn.responses.values())

    def finish(self, *, timed_out_s: float | None = None, closed: str | None = None) -> Turn:
        """Decide the current turn's outcome: settled, timed out after ``timed_out_s`` or cut
        off (``closed`` says why)."""
        turn = self.current
        if turn is None:
            raise RuntimeError("no turn to finish")
        statuses = set(turn.responses.values())
        if "completed" in statuses:
            turn.outcome = "completed"
            turn.voice_to_voice_ms = _voice_to_voice_ms(turn)
        elif closed is not None:
            turn.outcome, turn.reason = "lost", closed
        elif timed_out_s is not None or IN_PROGRESS in statuses:
            turn.outcome = "lost"
            turn.reason = f"no response.done within {timed_out_s or 0:.0f} s"
        elif "failed" in statuses:
            turn.outcome, turn.reason = "failed", "; ".join(turn.errors) or "response failed"
        elif "cancelled" in statuses:
            turn.outcome, turn.reason = "cancelled", ", ".join(turn.cancel_reasons)
        else:
            turn.outcome = "lost"
            turn.reason = ("nothing heard (empty transcript)" if turn.transcripts
                           else "no reply")
        return turn


def _voice_to_voice_ms(turn: Turn) -> float | None:
    """From the end of the clip's speech to the first audio of a completed reply after it."""
    if turn.speech_end is None:
        return None
    starts = [turn.first_audio[rid] for rid, status in turn.responses.items()
              if status == "completed" and rid in turn.first_audio
              and turn.first_audio[rid] >= turn.speech_end]
    return (min(starts) - turn.speech_end) * 1000 if starts else None


def tally(turns: Iterable[Turn]) -> dict[str, int]:
    """Finished turns by outcome (every outcome present, zero or not)."""
    counts = Counter(t.outcome for t in turns if t.outcome is not None)
    return {outcome: counts.get(outcome, 0) for outcome in OUTCOMES}


def summarize_turns(turns: Sequence[Turn]) -> dict[str, Any]:
    finished = [t for t in turns if t.outcome is not None]
    stages = {"voice_to_voice_ms": percentiles(
        [t.voice_to_voice_ms for t in finished if t.voice_to_voice_ms is not None])}
    for stage in STAGES:
        stages[f"server_{stage}"] = percentiles(
            [t.server_latency[stage] for t in finished if stage in t.server_latency])
    return {
        "turns_sent": len(finished),
        **tally(finished),
        "responses_cancelled": dict(Counter(r for t in finished for r in t.cancel_reasons)),
        "not_completed": [{"session": t.session, "turn": t.index, "clip": t.clip,
                           "outcome": t.outcome, "reason": t.reason}
                          for t in finished if t.outcome != "completed"],
        "errors": [e for t in finished for e in t.errors],
        "stages": stages,
    }


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
    """The soak goal: no lost turn, and RSS after warm-up within ``max_drift_percent``."""
    drift = resources.get("rss_drift_percent")
    return turns["lost"] == 0 and drift is not None and abs(drift) <= max_drift_percent


def format_report(report: dict[str, Any]) -> str:
    """The report as a person reads it at the end of a run (``report`` as ``soak`` made it)."""
    turns, res, after = report["turns"], report["resources"], report["after_sessions_closed"]
    lines = [
        f"\nsoak: {report['sessions']} session(s) x {report['minutes']:g} min, "
        f"{report['elapsed_s'] / 60:.1f} min with the drain, {report['clips']} clips",
        f"turns sent {turns['turns_sent']}: completed {turns['completed']}, cancelled "
        f"{turns['cancelled']}, failed {turns['failed']}, lost {turns['lost']}; "
        f"reconnects {report['reconnects']}"]
    if turns["responses_cancelled"]:
        lines.append("responses cancelled: " + ", ".join(
            f"{reason} {count}" for reason, count in turns["responses_cancelled"].items()))
    lines += [f"  {row['outcome']}: session {row['session']} turn {row['turn']} "
              f"({row['clip']}): {row['reason']}" for row in turns["not_completed"][:20]]
    lines += [f"  error: {error}" for error in turns["errors"][:10]]
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
    lines.append("after all sessions closed: " + (
        "the server process is gone" if after is None else
        f"RSS {after['rss_bytes'] / 2**20:.0f} MiB, {after['threads']} threads, "
        f"{after['fds']} fds"))
    lines.append(f"goal (0 lost turns, RSS drift within {report['max_drift_percent']:g} %): "
                 f"{'met' if report['goal_met'] else 'NOT met'}")
    return "\n".join(lines)
