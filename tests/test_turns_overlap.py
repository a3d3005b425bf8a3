"""Speech over a reply under the interruption guard, and resuming after a false interruption,
as tables of TurnTaker inputs (media time in 16 kHz samples) -> effects and states."""

from __future__ import annotations

from tests.test_turns import IDLE, SPEAKING, THINKING, L, S, play
from voice.turn_effects import (
    Backchannel,
    CancelReply,
    OverlapEnded,
    OverlapPaused,
    OverlapStarted,
    ResumeReply,
    StartReply,
    UserTurnEnded,
    UserTurnStarted,
)
from voice.turns import TurnPolicy

GUARD = TurnPolicy(guard=True, min_overlap_ms=250, max_overlap_ms=1500, resume=True)
REPLYING = [  # a turn, then reply1 audible; 10 s of its audio sent
    ("speech_started", (0,), [UserTurnStarted(0)], L, IDLE),
    ("speech_stopped", (8_000,), [UserTurnEnded(8_000), StartReply("reply1")], S, THINKING),
    ("reply_audible", ("reply1",), [], S, SPEAKING),
    ("playing", ("reply1", 170_000), [], S, SPEAKING),
    ("audio", (16_000,), [], S, SPEAKING),
]


def test_the_users_words_over_the_reply_cut_it_where_they_began() -> None:
    play([*REPLYING,
          ("speech_started", (14_000,), [OverlapStarted(14_000)], L, SPEAKING),
          ("audio", (3_000,), [], L, SPEAKING),
          ("overlap_heard", (True, 200), [], L, SPEAKING),  # too short yet
          ("overlap_heard", (True, 300), [CancelReply("reply1", "turn_detected", 14_000),
                                          UserTurnStarted(14_000)], L, IDLE),
          ("speech_stopped", (30_000,), [UserTurnEnded(30_000), StartReply("reply2")], S,
           THINKING)], GUARD)


def test_echo_and_backchannels_over_the_reply_change_nothing() -> None:
    play([*REPLYING,
          ("speech_started", (14_000,), [OverlapStarted(14_000)], L, SPEAKING),
          ("overlap_heard", (False, 600), [], L, SPEAKING),
          # No early decode for an overlap; its pause is reported (a held reply plays on
          # at once if what was said so far is not the user's).
          ("speech_paused", (24_000,), [OverlapPaused(14_000, 24_000)], L, SPEAKING),
          ("speech_paused", (24_000,), [], L, SPEAKING),  # the same pause, longer: once
          ("speech_stopped", (24_000,), [OverlapEnded(14_000, 24_000)], S, SPEAKING),
          ("overlap_judged", (14_000, 24_000, "echo"), [], S, SPEAKING),
          ("speech_started", (40_000,), [OverlapStarted(40_000)], L, SPEAKING),
          ("speech_stopped", (46_000,), [OverlapEnded(40_000, 46_000)], S, SPEAKING),
          ("overlap_judged", (40_000, 46_000, "backchannel"), [Backchannel(40_000, 46_000)],
           S, SPEAKING),
          ("reply_ended", ("reply1",), [], S, IDLE)], GUARD)


def test_a_short_interruption_judged_once_it_ended_becomes_a_turn() -> None:
    play([*REPLYING,
          ("speech_started", (14_000,), [OverlapStarted(14_000)], L, SPEAKING),
          ("speech_stopped", (20_000,), [OverlapEnded(14_000, 20_000)], S, SPEAKING),
          ("overlap_judged", (14_000, 20_000, "user"),
           [CancelReply("reply1", "turn_detected", 14_000), UserTurnStarted(14_000),
            UserTurnEnded(20_000), StartReply("reply2")], S, THINKING)], GUARD)


def test_a_commit_of_speech_over_the_reply_cuts_it_and_ends_the_users_turn() -> None:
    play([*REPLYING,
          ("speech_started", (14_000,), [OverlapStarted(14_000)], L, SPEAKING),
          ("audio", (3_000,), [], L, SPEAKING),  # now 19 000, not judged yet
          ("commit", (), [CancelReply("reply1", "turn_detected", 14_000),
                          UserTurnStarted(14_000), UserTurnEnded(19_000), StartReply("reply2")],
           S, THINKING),
          # A verdict on it that comes late changes nothing.
          ("overlap_judged", (14_000, 19_000, "backchannel"), [], S, THINKING)], GUARD)


def test_an_overlap_nobody_could_judge_in_time_interrupts() -> None:
    play([*REPLYING,
          ("speech_started", (20_000,), [OverlapStarted(20_000)], L, SPEAKING),
          ("audio", (16_000,), [], L, SPEAKING),  # now 32 000: 12 000 after the start
          ("audio", (12_000,), [CancelReply("reply1", "turn_detected", 20_000),
                                UserTurnStarted(20_000)], L, IDLE)], GUARD)


def test_speech_after_the_reply_audio_and_its_echo_ended_is_a_plain_turn() -> None:
    play([*REPLYING,
          ("reply_ended", ("reply1",), [], S, IDLE),
          ("speech_started", (160_000,), [OverlapStarted(160_000)], L, IDLE),  # still plays
          ("speech_stopped", (170_000,), [OverlapEnded(160_000, 170_000)], S, IDLE),
          ("speech_started", (176_000,), [UserTurnStarted(176_000)], L, IDLE)], GUARD)


def test_a_reply_cut_off_by_noise_resumes_once() -> None:
    play([*REPLYING,
          ("speech_started", (14_000,), [CancelReply("reply1", "turn_detected", 14_000),
                                         UserTurnStarted(14_000)], L, IDLE),
          ("speech_stopped", (18_000,), [UserTurnEnded(18_000), StartReply("reply2")], S,
           THINKING),
          ("reply_ended", ("reply2",), [], S, IDLE),
          ("nothing_heard", ("reply2",), [ResumeReply("reply3", "reply1", 14_000)], S,
           THINKING),
          ("reply_audible", ("reply3",), [], S, SPEAKING),
          ("speech_started", (40_000,), [CancelReply("reply3", "turn_detected", 40_000),
                                         UserTurnStarted(40_000)], L, IDLE),
          ("speech_stopped", (50_000,), [UserTurnEnded(50_000), StartReply("reply4")], S,
           THINKING),
          ("reply_audible", ("reply4",), [], S, SPEAKING),  # words: reply4 answers them
          ("reply_ended", ("reply4",), [], S, IDLE),
          ("nothing_heard", ("reply2",), [], S, IDLE)],  # a stale report resumes nothing
         TurnPolicy(resume=True))


def test_no_resume_when_the_user_speaks_again_or_the_policy_says_not_to() -> None:
    cut = [*REPLYING,
           ("speech_started", (14_000,), [CancelReply("reply1", "turn_detected", 14_000),
                                          UserTurnStarted(14_000)], L, IDLE),
           ("speech_stopped", (18_000,), [UserTurnEnded(18_000), StartReply("reply2")], S,
            THINKING),
           ("reply_ended", ("reply2",), [], S, IDLE)]
    play([*cut, ("speech_started", (20_000,), [UserTurnStarted(20_000)], L, IDLE),
          ("nothing_heard", ("reply2",), [], L, IDLE)], TurnPolicy(resume=True))
    play([*cut, ("nothing_heard", ("reply2",), [], S, IDLE)], TurnPolicy(resume=False))


# Speech over reply1's last words (it plays until 170 000); the looks so far heard echo.
OVER_THE_LAST_WORDS = [*REPLYING,
                       ("reply_ended", ("reply1",), [], S, IDLE),
                       ("speech_started", (150_000,), [OverlapStarted(150_000)], L, IDLE),
                       ("overlap_heard", (False, 600), [], L, IDLE)]


def test_a_look_at_speech_that_stopped_with_the_replys_echo_cuts_nothing() -> None:
    # reply1 plays until 170 000 (its echo 4 800 more); the speech over its last words
    # stopped with its echo. A look once it is over hears the echo again, garbled: no turn
    # from it; the whole is judged when the speech ends.
    play([*OVER_THE_LAST_WORDS,
          ("speech_paused", (172_000,), [OverlapPaused(150_000, 172_000)], L, IDLE),
          ("audio", (160_000,), [], L, IDLE),  # now 176 000
          ("overlap_heard", (True, 26_000), [], L, IDLE),
          ("speech_stopped", (172_000,), [OverlapEnded(150_000, 172_000)], S, IDLE),
          ("overlap_judged", (150_000, 172_000, "echo"), [], S, IDLE)], GUARD)


def test_a_look_at_speech_that_goes_on_after_the_replys_echo_makes_it_a_turn() -> None:
    play([*OVER_THE_LAST_WORDS,
          ("speech_paused", (190_000,), [OverlapPaused(150_000, 190_000)], L, IDLE),
          ("audio", (180_000,), [], L, IDLE),  # now 196 000
          ("overlap_heard", (True, 46_000), [UserTurnStarted(150_000)], L, IDLE)], GUARD)


def test_a_look_while_the_reply_is_heard_still_cuts_it() -> None:
    play([*REPLYING,  # now 16 000, reply1 audible
          ("speech_started", (14_000,), [OverlapStarted(14_000)], L, SPEAKING),
          ("speech_paused", (15_000,), [OverlapPaused(14_000, 15_000)], L, SPEAKING),
          ("overlap_heard", (True, 2_000), [CancelReply("reply1", "turn_detected", 14_000),
                                            UserTurnStarted(14_000)], L, IDLE)], GUARD)


def test_an_acknowledgement_after_the_reply_ended_answers_it() -> None:
    play([*REPLYING,
          ("reply_ended", ("reply1",), [], S, IDLE),
          ("speech_started", (168_000,), [OverlapStarted(168_000)], L, IDLE),  # last words
          ("speech_stopped", (176_000,), [OverlapEnded(168_000, 176_000)], S, IDLE),
          ("overlap_judged", (168_000, 176_000, "backchannel"),
           [UserTurnStarted(168_000), UserTurnEnded(176_000), StartReply("reply2")], S,
           THINKING)], GUARD)


def test_speech_over_the_reply_is_measured_up_to_where_it_paused() -> None:
    # What a weak judgement needs before it may cut the reply (voice.overlap.confirms): the
    # speech's own length, not the silence the VAD waits through before it ends the overlap.
    play([*REPLYING,
          ("speech_started", (14_000,), [OverlapStarted(14_000)], L, SPEAKING),
          ("overlap_speech_ms", (20_400,), 400, L, SPEAKING),
          ("speech_paused", (22_000,), [OverlapPaused(14_000, 22_000)], L, SPEAKING),
          ("overlap_speech_ms", (30_000,), 500, L, SPEAKING),  # its silence does not count
          ("speech_resumed", (32_000,), [], L, SPEAKING),
          ("overlap_speech_ms", (36_000,), 1375, L, SPEAKING),
          ("speech_stopped", (40_000,), [OverlapEnded(14_000, 40_000)], S, SPEAKING),
          ("overlap_speech_ms", (41_000,), [], S, SPEAKING)], GUARD)  # no overlap: 0
