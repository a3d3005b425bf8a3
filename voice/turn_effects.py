"""The effects of turn-taking: what :class:`voice.turns.TurnTaker` asks its driver
(``voice/session.py``) to carry out, in order. Media times (``at``) count 16 kHz samples of the
user's audio.

- :class:`UserTurnStarted`: the user began to speak at a sample (open a user item, partials);
- :class:`UserPaused`: the user stopped speaking a moment ago and may go on: transcribe what
  was said so far at once (kept if the turn ends here), and under semantic turn detection ask
  the turn model whether the user is done (:meth:`voice.turns.TurnTaker.turn_end_scored`);
- :class:`UserResumed`: the user went on after a pause (what was started for it is void);
- :class:`EndAfterSilence`: the turn model judged the paused turn complete: end it once the
  silence lasts ``silence_ms`` (shorter than the wait for a turn judged unfinished); speech
  before then goes on with the same turn. The VAD then reports the stop as usual.
- :class:`UserTurnEnded`: the user's turn is over (commit its audio and transcribe it);
- :class:`StartReply`: answer now (the transcript of the last user turn, if any, comes first);
- :class:`CancelReply`: stop the reply; ``at`` is the media time the user cut in (barge-in) or
  the client asked, to estimate how much of it was heard.
- :class:`OverlapStarted`: speech began while the reply is audible, and the policy guards
  interruptions: judge what it is (:meth:`voice.turns.TurnTaker.overlap_heard`) before
  anything stops;
- :class:`OverlapPaused`: that speech paused (it may go on): a reply held for it may play on
  if what was said so far is not the user's;
- :class:`OverlapEnded`: that speech ended unconfirmed: judge all of it once
  (:meth:`voice.turns.TurnTaker.overlap_judged`);
- :class:`Backchannel`: it was only an acknowledgement ("mhm", "genau"): no turn, no cut;
- :class:`ResumeReply`: a reply the user cut off resumes where it stopped, because what cut
  it turned out to be nothing intelligible (:meth:`voice.turns.TurnTaker.nothing_heard`).
"""

from __future__ import annotations

import dataclasses


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


@dataclasses.dataclass(frozen=True)
class OverlapStarted:
    at: int


@dataclasses.dataclass(frozen=True)
class OverlapEnded:
    start: int
    at: int


@dataclasses.dataclass(frozen=True)
class OverlapPaused:
    start: int
    at: int  # where its speech stopped, a short while ago (it may go on)


@dataclasses.dataclass(frozen=True)
class Backchannel:
    start: int
    at: int


@dataclasses.dataclass(frozen=True)
class ResumeReply:
    reply_id: str  # the new reply, which speaks the rest
    resumes: str  # the reply that was cut off
    at: int  # media time it was cut off


Effect = (UserTurnStarted | UserPaused | UserResumed | EndAfterSilence | UserTurnEnded
          | StartReply | CancelReply | OverlapStarted | OverlapPaused | OverlapEnded
          | Backchannel | ResumeReply)
