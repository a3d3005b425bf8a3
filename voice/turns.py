"""Turn-taking, sans I/O: who is speaking, when a user turn ends, when a reply starts or stops.

:class:`TurnTaker` knows no sockets, threads, tasks or clocks. Its time is **media time**: the
number of 16 kHz samples of the user's audio received so far (:meth:`TurnTaker.audio`), so a
test is a table of inputs and the effects they produce, and nothing depends on how fast a
machine runs it. What the user does (:class:`UserState`) and what the assistant does
(:class:`AgentState`) are separate axes. Inputs are method calls; each returns the effects the
driver (``voice/session.py``) must carry out, in order:

- :class:`UserTurnStarted`: the user began to speak at a sample (open a user item, partials);
- :class:`UserPaused`: the user stopped speaking a moment ago and may go on: transcribe what
  was said so far at once (kept if the turn ends here), and under semantic turn detection ask
  the turn model whether the user is done (:meth:`TurnTaker.turn_end_scored`);
- :class:`UserResumed`: the user went on after a pause (what was started for it is void);
- :class:`EndAfterSilence`: the turn model judged the paused turn complete: end it once the
  silence lasts ``silence_ms`` (shorter than the wait for a turn judged unfinished); speech
  before then goes on with the same turn. The VAD then reports the stop as usual.
- :class:`UserTurnEnded`: the user's turn is over (commit its audio and transcribe it);
- :class:`StartReply`: answer now (the transcript of the last user turn, if any, comes first);
- :class:`CancelReply`: stop the reply; ``at`` is the media time the user cut in (barge-in) or
  the client asked, to estimate how much of it was heard.

Barge-in is one transition: speech that starts while a reply is active cancels it.
"""

from __future__ import annotations

import dataclasses
import enum


class UserState(enum.Enum):
    SILENT = "silent"
    SPEAKING = "speaking"


class AgentState(enum.Enum):
    IDLE = "idle"
    THINKING = "thinking"  # a reply is being prepared; nothing audible yet
    SPEAKING = "speaking"  # the reply's audio is going out


@dataclasses.dataclass(frozen=True)
class TurnPolicy:
    """How turns are taken (the session's ``turn_detection``; ``automatic`` False is manual
    turns: the client commits and asks for replies itself)."""

    automatic: bool = True
    create_response: bool = True
    interrupt_response: bool = True
    # Semantic turn detection: the turn model's completion probability that shortens the
    # wait at a pause to ``confirm_ms`` of silence. None: server_vad (silence alone).
    complete_at: float | None = None
    confirm_ms: int = 600


@dataclasses.dataclass(frozen=True)
class Eagerness:
    """How a semantic_vad eagerness waits: a pause whose completion probability reaches
    ``complete_at`` ends the turn after ``confirm_ms`` of silence, any other after
    ``max_wait_ms``. Read speech pauses inside sentences for up to ~550 ms with phrase-final
    intonation that the turn model takes for an ending (docs/benchmarks.md, "Turn cuts"), so
    a judged-complete turn still needs some silence; the final transcript, the reply's first
    words and their audio are being prepared meanwhile, so the wait costs little."""

    complete_at: float
    confirm_ms: int
    max_wait_ms: int


# "auto" is "medium", as in the Realtime API.
EAGERNESS: dict[str, Eagerness] = {
    "low": Eagerness(0.7, 1000, 4000),
    "medium": Eagerness(0.5, 600, 2000),
    "auto": Eagerness(0.5, 600, 2000),
    "high": Eagerness(0.3, 300, 1000),
}
PAUSE_MS = 200  # the silence that counts as a pause (Smart Turn is trained on 200 ms stops)


@dataclasses.dataclass(frozen=True)
class UserTurnStarted:
    at: int


@dataclasses.dataclass(frozen=True)
class UserTurnEnded:
    at: int


@dataclasses.dataclass(frozen=True)
class UserPaused:
    at: int  # where the speech stopped
    score: bool  # ask the turn model whether the turn is complete
    again: bool = False  # the same pause, longer: judge it again (the decode already runs)


@dataclasses.dataclass(frozen=True)
class UserResumed:
    at: int


@dataclasses.dataclass(frozen=True)
class EndAfterSilence:
    at: int  # the pause judged complete
    silence_ms: int


@dataclasses.dataclass(frozen=True)
class StartReply:
    reply_id: str


@dataclasses.dataclass(frozen=True)
class CancelReply:
    reply_id: str
    reason: str  # turn_detected | client_cancelled
    at: int


Effect = (UserTurnStarted | UserPaused | UserResumed | EndAfterSilence | UserTurnEnded
          | StartReply | CancelReply)


class TurnError(Exception):
    """An input that is not allowed now (the driver reports it to the client)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class TurnTaker:
    """The turn state of one session. Call the input methods in the order things happen."""

    def __init__(self, policy: TurnPolicy | None = None) -> None:
        self.policy = policy or TurnPolicy()
        self.user = UserState.SILENT
        self.agent = AgentState.IDLE
        self.now = 0  # media time: 16 kHz samples of user audio received
        self.reply_id: str | None = None  # the active reply (not cancelled)
        self.paused_at: int | None = None  # the user paused here; the turn may go on
        self._judged_complete = False  # the turn model said so for this pause
        self._replies = 0

    def _new_reply(self) -> StartReply:
        self._replies += 1
        self.reply_id = f"reply{self._replies}"
        self.agent = AgentState.THINKING
        return StartReply(self.reply_id)

    def _cancel(self, reason: str, at: int) -> list[Effect]:
        if self.reply_id is None:
            return []
        cancel = CancelReply(self.reply_id, reason, at)
        self.reply_id = None
        self.agent = AgentState.IDLE
        return [cancel]

    # -- inputs ----------------------------------------------------------------------------

    def configure(self, policy: TurnPolicy) -> None:
        """New turn settings; a turn the user was in the middle of is abandoned."""
        self.policy = policy
        self.user = UserState.SILENT
        self.paused_at = None

    def audio(self, samples: int) -> None:
        """``samples`` more of the user's audio arrived (the media clock advances)."""
        self.now += samples

    def speech_started(self, at: int) -> list[Effect]:
        effects: list[Effect] = []
        if self.policy.interrupt_response:
            effects += self._cancel("turn_detected", at)
        self.user = UserState.SPEAKING
        self.paused_at = None
        return [*effects, UserTurnStarted(at)]

    def speech_paused(self, at: int) -> list[Effect]:
        """The user's speech stopped at ``at`` a short while ago; the turn may go on. The
        same pause reported again (a longer silence) is judged again unless it was judged
        complete already."""
        if self.user is not UserState.SPEAKING:
            return []
        semantic = self.policy.complete_at is not None
        if self.paused_at == at:
            return [UserPaused(at, score=True, again=True)] \
                if semantic and not self._judged_complete else []
        self.paused_at = at
        self._judged_complete = False
        return [UserPaused(at, score=semantic)]

    def speech_resumed(self, at: int) -> list[Effect]:
        if self.paused_at is None:
            return []
        self.paused_at = None
        return [UserResumed(at)]

    def turn_end_scored(self, at: int, probability: float) -> list[Effect]:
        """The turn model's probability that the turn which paused at ``at`` is complete.
        A score of a pause the user has spoken after since is stale and changes nothing."""
        threshold = self.policy.complete_at
        if (threshold is None or self.paused_at != at or self.user is not UserState.SPEAKING
                or self._judged_complete or probability < threshold):
            return []
        self._judged_complete = True
        return [EndAfterSilence(at, self.policy.confirm_ms)]

    def speech_stopped(self, at: int) -> list[Effect]:
        """The VAD heard the end of the user's speech at sample ``at``."""
        self.user = UserState.SILENT
        self.paused_at = None
        effects: list[Effect] = [UserTurnEnded(at)]
        if self.policy.create_response and self.reply_id is None:
            effects.append(self._new_reply())
        return effects

    def commit(self) -> list[Effect]:
        """The client committed the input audio. Under automatic turns it ends the turn like
        the VAD would; under manual turns it only ends the turn (the client asks for a reply)."""
        if self.policy.automatic:
            return self.speech_stopped(self.now)
        return [UserTurnEnded(self.now)]

    def clear(self) -> None:
        """The client dropped the audio of the turn in progress."""
        self.user = UserState.SILENT
        self.paused_at = None

    def reply_requested(self) -> list[Effect]:
        if self.reply_id is not None:
            raise TurnError("conversation_already_has_active_response",
                            f"response {self.reply_id} is still in progress")
        return [self._new_reply()]

    def cancel_requested(self) -> list[Effect]:
        if self.reply_id is None:
            raise TurnError("response_cancel_not_active", "there is no active response")
        return self._cancel("client_cancelled", self.now)

    def reply_audible(self, reply_id: str) -> None:
        """The first audio of the reply went out."""
        if reply_id == self.reply_id:
            self.agent = AgentState.SPEAKING

    def reply_ended(self, reply_id: str) -> None:
        """The reply finished on its own (completed, failed, or nothing to answer)."""
        if reply_id == self.reply_id:
            self.reply_id = None
            self.agent = AgentState.IDLE
