"""Turn-taking, sans I/O: who is speaking, when a user turn ends, when a reply starts or stops.

:class:`TurnTaker` knows no sockets, threads, tasks or clocks. Its time is **media time**: the
number of 16 kHz samples of the user's audio received so far (:meth:`TurnTaker.audio`), so a
test is a table of inputs and the effects they produce, and nothing depends on how fast a
machine runs it. What the user does (:class:`UserState`) and what the assistant does
(:class:`AgentState`) are separate axes. Inputs are method calls; each returns the effects the
driver (``voice/session.py``) must carry out, in order.

The effects are the dataclasses of ``voice/turn_effects.py`` (each documented there).

Barge-in is one transition: speech that starts while a reply is active cancels it. Under a
guard (:attr:`TurnPolicy.guard`) speech over an audible reply is first an *overlap*: it
becomes a barge-in (with the start it had) only once it is judged to be the user's words and
has lasted ``min_overlap_ms``, or once it has lasted ``max_overlap_ms`` with no judgement yet
(the judge is starved of processor time); echo, backchannels and noise change nothing.
"""

from __future__ import annotations

import dataclasses
import enum

from voice.turn_effects import (
    Backchannel,
    CancelReply,
    Effect,
    EndAfterSilence,
    OverlapEnded,
    OverlapPaused,
    OverlapStarted,
    ResumeReply,
    StartReply,
    UserPaused,
    UserResumed,
    UserTurnEnded,
    UserTurnStarted,
)


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
    # A pause the turn model did not judge complete, after words Whisper ends with a full
    # stop or a question mark, ends the turn after this much silence (None: the VAD's limit).
    sentence_ms: int | None = None
    # Speech over an audible reply interrupts only once judged to be the user's words.
    guard: bool = False
    min_overlap_ms: int = 250
    max_overlap_ms: int = 1500
    # A reply cut off by speech that transcribes to nothing resumes where it stopped.
    resume: bool = False


@dataclasses.dataclass(frozen=True)
class Eagerness:
    """How a semantic_vad eagerness waits: a pause whose completion probability reaches
    ``complete_at`` ends the turn after ``confirm_ms`` of silence, one whose transcript ends a
    sentence after ``sentence_ms``, any other after ``max_wait_ms``. Read speech pauses
    inside sentences for up to ~550 ms with phrase-final intonation that the turn model takes
    for an ending (docs/benchmarks.md, "Turn cuts"), so a judged-complete turn still needs
    some silence; the final transcript, the reply's first words and their audio are being
    prepared meanwhile, so the wait costs little."""

    complete_at: float
    confirm_ms: int
    max_wait_ms: int
    sentence_ms: int


# "auto" is "medium", as in the Realtime API.
EAGERNESS: dict[str, Eagerness] = {
    "low": Eagerness(0.7, 1000, 4000, 2000),
    "medium": Eagerness(0.5, 600, 2000, 1000),
    "auto": Eagerness(0.5, 600, 2000, 1000),
    "high": Eagerness(0.3, 300, 1000, 600),
}
PAUSE_MS = 200  # the silence that counts as a pause (Smart Turn is trained on 200 ms stops)


SAMPLE_RATE = 16_000  # media time is counted in samples of 16 kHz audio
ECHO_TAIL = SAMPLE_RATE * 300 // 1000  # a room's reverberation after the last reply audio played
# Speech over a reply that paused by this long after its last audio stopped with its echo
# (the VAD's speech end lags the sound by up to about as long again as the tail).
ECHO_SPEECH_END = 2 * ECHO_TAIL


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
        self.playing_until = 0  # media time the client will have played the reply audio sent
        self._playing: str | None = None  # the reply whose audio that is
        self.overlap: int | None = None  # start of unconfirmed speech over an audible reply
        self.overlap_paused_at: int | None = None  # where that speech paused, if it has
        self._overlap_judged = False  # a judgement of it arrived
        self._judging: tuple[int, int] | None = None  # an ended overlap awaiting its verdict
        self._cut: tuple[str, int] | None = None  # the reply this user turn cut off, and when
        self._resumable: tuple[str, str, int] | None = None  # (reply, the one it cut, at)

    def _new_reply(self) -> StartReply:
        self._replies += 1
        self.reply_id = f"reply{self._replies}"
        self.agent = AgentState.THINKING
        return StartReply(self.reply_id)

    def _audible(self, at: int) -> bool:
        """Whether the client is still playing reply audio (or its echo) at ``at``."""
        return self.agent is AgentState.SPEAKING or (
            self._playing is not None and at < self.playing_until + ECHO_TAIL)

    def _cancel(self, reason: str, at: int) -> list[Effect]:
        if self.reply_id is None:
            if reason == "turn_detected" and at < self.playing_until and self._playing:
                self._cut = (self._playing, at)  # written in full, still playing: it may resume
            return []
        if reason == "turn_detected" and self.agent is AgentState.SPEAKING:
            self._cut = (self.reply_id, at)
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
        self.overlap = None
        self._judging = None

    def audio(self, samples: int) -> list[Effect]:
        """``samples`` more of the user's audio arrived (the media clock advances). An
        overlap nobody could judge in ``max_overlap_ms`` becomes a barge-in."""
        self.now += samples
        if (self.overlap is not None and not self._overlap_judged
                and self.now - self.overlap >= self.policy.max_overlap_ms * 16):
            return self._confirm_overlap()
        return []

    def playing(self, reply_id: str, until: int) -> None:
        """The client will be playing ``reply_id``'s audio until media time ``until``."""
        self._playing = reply_id
        self.playing_until = until

    def speech_started(self, at: int) -> list[Effect]:
        self.paused_at = None
        self.user = UserState.SPEAKING
        if self.policy.interrupt_response and self.policy.guard and self._audible(at):
            self.overlap, self.overlap_paused_at = at, None
            self._overlap_judged = False
            return [OverlapStarted(at)]
        effects: list[Effect] = []
        if self.policy.interrupt_response:
            effects += self._cancel("turn_detected", at)
        return [*effects, UserTurnStarted(at)]

    def _confirm_overlap(self) -> list[Effect]:
        assert self.overlap is not None
        start, self.overlap = self.overlap, None
        return [*self._cancel("turn_detected", start), UserTurnStarted(start)]

    def overlap_speech_ms(self, upto: int) -> int:
        """How long the speech over the reply has lasted by media time ``upto`` (its silence
        since a pause not counted)."""
        if self.overlap is None:
            return 0
        end = upto if self.overlap_paused_at is None else min(upto, self.overlap_paused_at)
        return max(0, end - self.overlap) * 1000 // SAMPLE_RATE

    def overlap_heard(self, user: bool, heard_ms: int) -> list[Effect]:
        """A judgement of the overlap so far: ``user`` is whether its ``heard_ms`` of audio
        hold the user's own words (not echo, a backchannel or noise)."""
        if self.overlap is None:
            return []
        self._overlap_judged = True
        if user and heard_ms >= self.policy.min_overlap_ms and not self._echo_only(self.now):
            return self._confirm_overlap()
        return []

    def _echo_only(self, at: int) -> bool:
        """Whether the speech over the reply stopped with the reply's echo and the reply is
        no longer heard at ``at``: a look then hears the echo over again, in a window
        whisper garbles as it slides off it ("and the not ordained to people" for "and
        the Notre-Dame Cathedral"), with nothing left to cut. The whole is judged when the
        speech ends (``overlap_judged``); speech that goes on past the echo is judged as
        before."""
        paused = self.overlap_paused_at
        return (paused is not None and paused <= self.playing_until + ECHO_SPEECH_END
                and not self._audible(at))

    def overlap_judged(self, start: int, at: int, verdict: str) -> list[Effect]:
        """The verdict on the whole overlap that ended at ``at`` (``OverlapEnded``):
        ``user`` makes it a turn that cut the reply (ended at ``at``), ``backchannel`` an
        acknowledgement while the assistant still speaks, but a turn once its reply is over
        (a "ja" at the end of a question answers it); anything else (echo, nothing) changes
        nothing."""
        if self._judging != (start, at):
            return []  # stale: reconfigured since
        self._judging = None
        if verdict == "backchannel" and (self.reply_id is not None or at < self.playing_until):
            return [Backchannel(start, at)]
        if verdict == "backchannel":
            verdict = "user"
        if verdict != "user" or self.user is UserState.SPEAKING:
            return []
        effects = [*self._cancel("turn_detected", start), UserTurnStarted(start)]
        return [*effects, *self.speech_stopped(at)]

    def speech_paused(self, at: int, judge: bool = True) -> list[Effect]:
        """The user's speech stopped at ``at`` a short while ago; the turn may go on. The
        same pause reported again (a longer silence) is judged again unless it was judged
        complete already (``judge`` False: an early report, for the decode alone)."""
        if self.overlap is not None and self.overlap_paused_at is None:
            self.overlap_paused_at = at
            return [OverlapPaused(self.overlap, at)]
        if self.user is not UserState.SPEAKING or self.overlap is not None:
            return []
        semantic = self.policy.complete_at is not None
        if self.paused_at == at:
            return [UserPaused(at, score=True, again=True)] \
                if semantic and not self._judged_complete else []
        self.paused_at = at
        self._judged_complete = False
        return [UserPaused(at, score=semantic and judge)]

    def speech_resumed(self, at: int) -> list[Effect]:
        self.overlap_paused_at = None
        if self.paused_at is None or self.overlap is not None:
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

    def sentence_heard(self, at: int) -> list[Effect]:
        """The words before the pause at ``at`` end a sentence (by Whisper's punctuation).
        Where the turn model has not judged that pause complete (it scores some languages'
        endings low: Polish), the turn ends after ``sentence_ms`` instead of the longest wait;
        the readers' pauses inside sentences (under 600 ms) stay shorter than that."""
        if (self.policy.sentence_ms is None or self.paused_at != at or self.overlap is not None
                or self.user is not UserState.SPEAKING or self._judged_complete):
            return []
        return [EndAfterSilence(at, self.policy.sentence_ms)]

    def speech_stopped(self, at: int) -> list[Effect]:
        """The VAD heard the end of the user's speech at sample ``at``."""
        self.user = UserState.SILENT
        self.paused_at = None
        if self.overlap is not None:
            start, self.overlap = self.overlap, None
            self._judging = (start, at)
            return [OverlapEnded(start, at)]
        effects: list[Effect] = [UserTurnEnded(at)]
        cut, self._cut = self._cut, None
        if self.policy.create_response and self.reply_id is None:
            reply = self._new_reply()
            effects.append(reply)
            self._resumable = None if cut is None else (reply.reply_id, *cut)
        return effects

    def resumes_if_empty(self, reply_id: str) -> bool:
        """Whether ``reply_id`` answers a turn that cut a reply off which would resume if the
        turn said nothing (or only acknowledged it)."""
        return (self.policy.resume and self._resumable is not None
                and self._resumable[0] == reply_id)

    def nothing_heard(self, reply_id: str) -> list[Effect]:
        """The turn that ``reply_id`` answers transcribed to nothing (noise, a cough). If
        that turn cut a reply off, and the policy resumes, that reply goes on where it
        stopped (unless the user speaks again or another reply started meanwhile)."""
        resumable, self._resumable = self._resumable, None
        if (not self.policy.resume or resumable is None or resumable[0] != reply_id
                or self.reply_id is not None or self.user is UserState.SPEAKING):
            return []
        self._replies += 1
        self.reply_id = f"reply{self._replies}"
        self.agent = AgentState.THINKING
        return [ResumeReply(self.reply_id, resumable[1], resumable[2])]

    def commit(self) -> list[Effect]:
        """The client committed the input audio. Under automatic turns it ends the turn like
        the VAD would; under manual turns it only ends the turn (the client asks for a reply).
        Speech over a reply that the guard is still judging is the user's turn once the
        client commits it (a client commits only what it takes for the user's words), so the
        reply is cut where that speech began and every commit gets its user item."""
        if self.policy.automatic:
            confirmed = self._confirm_overlap() if self.overlap is not None else []
            return [*confirmed, *self.speech_stopped(self.now)]
        return [UserTurnEnded(self.now)]

    def clear(self) -> None:
        """The client dropped the audio of the turn in progress."""
        self.user = UserState.SILENT
        self.paused_at = None
        self.overlap = None
        self._judging = None

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
