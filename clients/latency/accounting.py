"""Turn accounting: what the server did with each clip a client spoke.

Used by ``voice-latency`` and by the soak benchmark (``benchmarks/soak.py``). Pure: no sockets,
no clock. Times are passed in (monotonic seconds) and events are the server events of
``voice.protocol`` (as ``VoiceClient.events()`` yields them), so a test can replay a scripted
event list.

One client turn (one clip spoken) can see more than one server response: a clip with a long
pause inside is heard as two user turns, the first reply is cancelled by the second part
(``turn_detected``) and the second one completes. The turn is over ("settled") when the whole
clip and its trailing silence were sent, the server's VAD has closed every speech segment it
opened, every segment has its transcript, every non-empty transcript has its response, and every
response has its ``response.done``. Its outcome is one of:

- ``completed``: some response of the turn completed;
- ``cancelled``: every response that ended was cancelled (the reasons, from ``response.done``
  ``status_details.reason``, are kept);
- ``failed``: a response ended ``failed`` and none completed, or the session could not start;
- ``no_reply``: no response ended at all: one still open (or none begun) when the turn timed
  out or the connection closed, or the speech was heard as nothing (an empty transcript, to
  which the server does not reply; but a second or more of speech it could not make out gets
  a reply asking to repeat it, so an empty transcript settles the turn only ``EMPTY_GRACE_S``
  after it arrived, when a clock is given).

A turn is **lost** when it got no completed reply: every outcome but ``completed``.

The completed reply's audio is also checked for **playback stalls**: a client that starts
playing at the first audio delta and plays every delta as soon as it has one stalls wherever
a delta arrives after the audio before it has finished playing (a gap the listener hears).
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from clients.client import response_id_of
from voice.protocol import (
    DEFAULT_AUDIO_RATE,
    LATENCY_STAGES,
    AudioDelta,
    Error,
    ResponseCreated,
    ResponseDone,
    ServerEvent,
    SpeechStarted,
    SpeechStopped,
    TranscriptCompleted,
)

OUTCOMES = ("completed", "cancelled", "failed", "no_reply")
STALL_MIN_MS = 20.0  # a gap shorter than one 20 ms audio frame is not counted as a stall
IN_PROGRESS = "in_progress"
# The server's answer to an empty transcript, if any, follows it at once (voice/ask_again.py).
EMPTY_GRACE_S = 0.3


@dataclasses.dataclass
class Turn:
    """One clip spoken by one session, and what the server did with it."""

    session: int
    index: int
    clip: str
    started_at: float
    speech_end: float | None = None  # when the last frame with sound was sent
    outcome: str | None = None  # one of OUTCOMES once finished
    reason: str | None = None  # why a turn was not completed
    voice_to_voice_ms: float | None = None
    responses: dict[str, str] = dataclasses.field(default_factory=dict)  # id -> status
    cancel_reasons: list[str] = dataclasses.field(default_factory=list)  # one per cancelled
    server_latency: dict[str, float] = dataclasses.field(default_factory=dict)
    transcripts: list[str] = dataclasses.field(default_factory=list)
    language: str | None = None  # of the last non-empty transcript
    reply_text: str = ""  # of the completed response
    reply_language: str | None = None
    reply_audio: np.ndarray | None = None  # the completed response's audio, if a caller kept it
    errors: list[str] = dataclasses.field(default_factory=list)
    first_audio: dict[str, float] = dataclasses.field(default_factory=dict)  # id -> time
    # id -> (arrival time, seconds of audio) of every audio delta of that response
    audio_arrivals: dict[str, list[tuple[float, float]]] = dataclasses.field(
        default_factory=dict)
    stalls: int | None = None  # playback stalls of the completed reply (see playback_stalls)
    stall_ms: float | None = None
    speech_stopped_at: list[float] = dataclasses.field(default_factory=list)  # client clock
    transcript_at: list[float] = dataclasses.field(default_factory=list)  # client clock
    open_speech: int = 0
    awaiting_transcripts: int = 0
    awaiting_replies: int = 0  # non-empty transcripts whose response has not begun

    @property
    def lost(self) -> bool:
        """Finished without a completed reply."""
        return self.outcome is not None and self.outcome != "completed"

    def played_until(self) -> float | None:
        """When a client that plays every audio delta as it comes (see ``playback_stalls``)
        has played the last of this turn's reply audio; None if none came."""
        ends = [played_until(arrivals) for arrivals in self.audio_arrivals.values() if arrivals]
        return max(ends) if ends else None

    @property
    def transcript(self) -> str:
        """Everything the server heard in the clip (several parts if it split it)."""
        return " ".join(text for text in self.transcripts if text)

    def report(self) -> dict[str, Any]:
        return {"session": self.session, "turn": self.index, "clip": self.clip,
                "outcome": self.outcome, "lost": self.lost, "reason": self.reason,
                "voice_to_voice_ms": self.voice_to_voice_ms, "responses": self.responses,
                "cancel_reasons": self.cancel_reasons, "transcripts": self.transcripts,
                "errors": self.errors, "server_latency": self.server_latency,
                "stalls": self.stalls, "stall_ms": self.stall_ms,
                # When the client heard speech_stopped, against the server's own vad_ms: the
                # difference is how far behind real time the server read this session's audio
                # (or the client its events).
                "speech_stopped_ms": (
                    round(1000 * (self.speech_stopped_at[0] - self.speech_end), 1)
                    if self.speech_stopped_at and self.speech_end is not None else None)}


class SessionLedger:
    """The turns of one session. Feed it every server event with the time it arrived."""

    def __init__(self, session: int, audio_rate: int = DEFAULT_AUDIO_RATE) -> None:
        self.session = session
        self.audio_rate = audio_rate  # of the reply audio (PCM16 mono)
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

    def observe(self, event: ServerEvent, now: float) -> None:
        response_id = response_id_of(event)
        turn = self._owner.get(response_id) if response_id else None
        turn = turn or self.current
        if turn is None:
            if not isinstance(event, Error):
                self.stray_events += 1
            return
        if isinstance(event, SpeechStarted):
            turn.open_speech += 1
        elif isinstance(event, SpeechStopped):
            turn.speech_stopped_at.append(now)
            turn.open_speech = max(0, turn.open_speech - 1)
            turn.awaiting_transcripts += 1
        elif isinstance(event, TranscriptCompleted):
            turn.transcript_at.append(now)
            turn.awaiting_transcripts = max(0, turn.awaiting_transcripts - 1)
            turn.transcripts.append(event.transcript)
            if event.transcript:
                turn.language = event.language
            turn.awaiting_replies += bool(event.transcript)  # each gets exactly one response
        elif isinstance(event, ResponseCreated):
            response_id = response_id or ""
            self._owner[response_id] = turn
            turn.responses[response_id] = IN_PROGRESS
            turn.awaiting_replies = max(0, turn.awaiting_replies - 1)
        elif isinstance(event, AudioDelta):
            turn.first_audio.setdefault(event.response_id, now)
            size = len(event.delta) * 3 // 4 - event.delta[-2:].count("=")  # base64 bytes
            turn.audio_arrivals.setdefault(event.response_id, []).append(
                (now, size / 2 / self.audio_rate))
        elif isinstance(event, ResponseDone):
            response_id = response_id or ""
            if response_id not in turn.responses:
                # Cancelled before it began: a response.done without response.created.
                self._owner[response_id] = turn
                turn.awaiting_replies = max(0, turn.awaiting_replies - 1)
            turn.responses[response_id] = event.status
            if event.status == "cancelled":
                turn.cancel_reasons.append(event.reason or "unknown")
            elif event.status == "completed":
                turn.server_latency = event.latency
                turn.reply_text = event.text
                turn.reply_language = event.language
        elif isinstance(event, Error):
            turn.errors.append(f"{event.code}: {event.message}")

    def settled(self, now: float | None = None) -> bool:
        """The current turn needs nothing more from the server (see the module docstring).
        With ``now``, a turn heard as nothing waits ``EMPTY_GRACE_S`` for a reply asking to
        repeat it."""
        turn = self.current
        if turn is None or turn.speech_end is None:
            return False
        if (now is not None and turn.transcripts and not turn.transcripts[-1]
                and not turn.responses and now - turn.transcript_at[-1] < EMPTY_GRACE_S):
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
            completed = [rid for rid, status in turn.responses.items() if status == "completed"]
            arrivals = turn.audio_arrivals.get(completed[-1])
            if arrivals:
                turn.stalls, turn.stall_ms = playback_stalls(arrivals)
        elif closed is not None:
            turn.outcome, turn.reason = "no_reply", closed
        elif timed_out_s is not None or IN_PROGRESS in statuses:
            turn.outcome = "no_reply"
            turn.reason = f"no response.done within {timed_out_s or 0:.0f} s"
        elif "failed" in statuses:
            turn.outcome, turn.reason = "failed", "; ".join(turn.errors) or "response failed"
        elif "cancelled" in statuses:
            turn.outcome, turn.reason = "cancelled", ", ".join(turn.cancel_reasons)
        else:
            turn.outcome = "no_reply"
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


def playback_stalls(arrivals: Sequence[tuple[float, float]],
                    min_ms: float = STALL_MIN_MS) -> tuple[int, float]:
    """How often, and for how many milliseconds in all, playback would stop: ``arrivals`` are
    (arrival time, seconds of audio) of one reply's deltas in order. Playback starts at the
    first arrival; each delta plays after the one before, or when it arrives if that is later.
    Gaps under ``min_ms`` are neither counted nor added."""
    count, total_ms = 0, 0.0
    playing_until: float | None = None
    for arrived, seconds in arrivals:
        if playing_until is None or arrived <= playing_until:
            playing_until = (arrived if playing_until is None else playing_until) + seconds
            continue
        gap_ms = (arrived - playing_until) * 1000
        if gap_ms >= min_ms:
            count, total_ms = count + 1, total_ms + gap_ms
        playing_until = arrived + seconds
    return count, round(total_ms, 1)


def played_until(arrivals: Sequence[tuple[float, float]]) -> float:
    """When the last of ``arrivals`` (as for ``playback_stalls``, at least one) has played."""
    until: float | None = None
    for arrived, seconds in arrivals:
        until = (arrived if until is None else max(until, arrived)) + seconds
    assert until is not None
    return until


def percentiles(values: Sequence[float]) -> dict[str, float]:
    """p50, p90, p99, max and n of ``values``; empty when there are none."""
    array = np.asarray(values, dtype=float)
    if array.size == 0:
        return {}
    return {"p50": float(np.percentile(array, 50)), "p90": float(np.percentile(array, 90)),
            "p99": float(np.percentile(array, 99)), "max": float(array.max()),
            "n": float(array.size)}


def tally(turns: Iterable[Turn]) -> dict[str, int]:
    """Finished turns by outcome (every outcome present, zero or not), and ``lost``: those
    without a completed reply."""
    counts = Counter(t.outcome for t in turns if t.outcome is not None)
    figures = {outcome: counts.get(outcome, 0) for outcome in OUTCOMES}
    figures["lost"] = sum(figures.values()) - figures["completed"]
    return figures


def summarize_turns(turns: Sequence[Turn]) -> dict[str, Any]:
    """Counts by outcome, lost turns, cancellation reasons, the turns not completed, errors and
    latency percentiles (voice to voice, and the server's stages of completed replies)."""
    finished = [t for t in turns if t.outcome is not None]
    stages = {"voice_to_voice_ms": percentiles(
        [t.voice_to_voice_ms for t in finished if t.voice_to_voice_ms is not None]),
              # Per completed reply: the milliseconds its playback would stand still.
              "playback_stall_ms": percentiles(
        [t.stall_ms for t in finished if t.stall_ms is not None])}
    for stage in LATENCY_STAGES:
        stages[f"server_{stage}"] = percentiles(
            [t.server_latency[stage] for t in finished if stage in t.server_latency])
    return {
        "turns_sent": len(finished),
        **tally(finished),
        # Why each cancelled turn ended without a reply: its last reply's cancel reason.
        "cancelled_by_reason": dict(Counter(t.cancel_reasons[-1] for t in finished
                                            if t.outcome == "cancelled" and t.cancel_reasons)),
        # Every cancelled reply, also those of turns whose next reply completed.
        "responses_cancelled": dict(Counter(r for t in finished for r in t.cancel_reasons)),
        "not_completed": [{"session": t.session, "turn": t.index, "clip": t.clip,
                           "outcome": t.outcome, "reason": t.reason}
                          for t in finished if t.lost],
        "errors": [e for t in finished for e in t.errors],
        # Completed turns whose speech was heard as nothing: the reply asked to repeat it.
        "asked_to_repeat": [{"session": t.session, "turn": t.index, "clip": t.clip,
                             "reply": t.reply_text}
                            for t in finished if t.outcome == "completed" and not t.transcript],
        # Completed replies whose playback would stop at least once, and how many were checked.
        "replies_stalled": sum(bool(t.stalls) for t in finished),
        "replies_checked_for_stalls": sum(t.stalls is not None for t in finished),
        "stages": stages,
    }
