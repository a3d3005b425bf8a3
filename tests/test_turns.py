"""Turn-taking as tables: inputs stamped with media time (16 kHz samples) -> effects and states.

No sleeps and no clocks: each row is one input to the TurnTaker, the effects it must produce,
and the user/agent states after it.
"""

from __future__ import annotations

from typing import Any

import pytest

from voice.turn_effects import (
    CancelReply,
    EndAfterSilence,
    StartReply,
    UserPaused,
    UserResumed,
    UserTurnEnded,
    UserTurnStarted,
)
from voice.turns import AgentState, TurnError, TurnPolicy, TurnTaker, UserState
from voice.user_turn import ends_sentence

S, L = UserState.SILENT, UserState.SPEAKING
IDLE, THINKING, SPEAKING = AgentState.IDLE, AgentState.THINKING, AgentState.SPEAKING

Row = tuple[str, tuple[Any, ...], list[object], UserState, AgentState]


def play(rows: list[Row], policy: TurnPolicy | None = None) -> None:
    turns = TurnTaker(policy)
    for index, (method, args, effects, user, agent) in enumerate(rows):
        got = getattr(turns, method)(*args)
        assert (got or []) == effects, f"row {index} {method}{args}"
        assert (turns.user, turns.agent) == (user, agent), f"row {index} {method}{args}"


def test_a_spoken_turn_ends_in_a_reply_that_becomes_audible_then_ends() -> None:
    play([
        ("audio", (16_000,), [], S, IDLE),
        ("speech_started", (4_000,), [UserTurnStarted(4_000)], L, IDLE),
        ("audio", (16_000,), [], L, IDLE),
        ("speech_stopped", (24_000,), [UserTurnEnded(24_000), StartReply("reply1")], S,
         THINKING),
        ("reply_audible", ("reply1",), [], S, SPEAKING),
        ("reply_ended", ("reply1",), [], S, IDLE),
    ])


def test_speech_over_a_reply_cancels_it_at_the_moment_the_user_cut_in() -> None:
    play([
        ("speech_started", (0,), [UserTurnStarted(0)], L, IDLE),
        ("speech_stopped", (8_000,), [UserTurnEnded(8_000), StartReply("reply1")], S,
         THINKING),
        ("reply_audible", ("reply1",), [], S, SPEAKING),
        ("audio", (32_000,), [], S, SPEAKING),
        ("speech_started", (30_000,),
         [CancelReply("reply1", "turn_detected", 30_000), UserTurnStarted(30_000)], L, IDLE),
        ("reply_ended", ("reply1",), [], L, IDLE),  # the cancelled reply winds down: no effect
        ("speech_stopped", (40_000,), [UserTurnEnded(40_000), StartReply("reply2")], S,
         THINKING),
    ])


def test_without_interrupt_response_speech_over_a_reply_waits_for_response_create() -> None:
    play([
        ("reply_requested", (), [StartReply("reply1")], S, THINKING),
        ("speech_started", (100,), [UserTurnStarted(100)], L, THINKING),
        ("speech_stopped", (9_000,), [UserTurnEnded(9_000)], S, THINKING),
        ("reply_ended", ("reply1",), [], S, IDLE),
        ("reply_requested", (), [StartReply("reply2")], S, THINKING),
    ], TurnPolicy(interrupt_response=False))


def test_without_create_response_a_turn_ends_but_nothing_answers() -> None:
    play([
        ("speech_started", (0,), [UserTurnStarted(0)], L, IDLE),
        ("speech_stopped", (5_000,), [UserTurnEnded(5_000)], S, IDLE),
    ], TurnPolicy(create_response=False))


def test_a_commit_ends_the_turn_at_the_current_media_time() -> None:
    play([
        ("audio", (12_345,), [], S, IDLE),
        ("commit", (), [UserTurnEnded(12_345), StartReply("reply1")], S, THINKING),
    ])
    play([  # manual turns: the client asks for the reply itself
        ("audio", (12_345,), [], S, IDLE),
        ("commit", (), [UserTurnEnded(12_345)], S, IDLE),
        ("reply_requested", (), [StartReply("reply1")], S, THINKING),
    ], TurnPolicy(automatic=False, create_response=False, interrupt_response=False))


def test_a_client_cancel_stops_the_reply_at_the_current_media_time() -> None:
    play([
        ("reply_requested", (), [StartReply("reply1")], S, THINKING),
        ("audio", (800,), [], S, THINKING),
        ("cancel_requested", (), [CancelReply("reply1", "client_cancelled", 800)], S, IDLE),
    ])


@pytest.mark.parametrize(("setup", "method", "code"), [
    ([], "cancel_requested", "response_cancel_not_active"),
    (["reply_requested"], "reply_requested", "conversation_already_has_active_response"),
])
def test_inputs_that_are_not_allowed_now_are_refused_with_a_code(
    setup: list[str], method: str, code: str
) -> None:
    turns = TurnTaker()
    for step in setup:
        getattr(turns, step)()
    with pytest.raises(TurnError) as refused:
        getattr(turns, method)()
    assert refused.value.code == code


def test_a_reply_that_ends_after_being_replaced_does_not_touch_the_new_one() -> None:
    play([
        ("reply_requested", (), [StartReply("reply1")], S, THINKING),
        ("cancel_requested", (), [CancelReply("reply1", "client_cancelled", 0)], S, IDLE),
        ("reply_requested", (), [StartReply("reply2")], S, THINKING),
        ("reply_ended", ("reply1",), [], S, THINKING),
        ("reply_audible", ("reply1",), [], S, THINKING),
        ("reply_audible", ("reply2",), [], S, SPEAKING),
    ])


def test_clearing_or_reconfiguring_abandons_the_users_turn() -> None:
    play([
        ("speech_started", (0,), [UserTurnStarted(0)], L, IDLE),
        ("clear", (), [], S, IDLE),
        ("speech_started", (100,), [UserTurnStarted(100)], L, IDLE),
        ("configure", (TurnPolicy(),), [], S, IDLE),
    ])


SEMANTIC = TurnPolicy(complete_at=0.5)


def test_semantic_a_pause_judged_complete_ends_the_turn_after_a_short_silence() -> None:
    play([
        ("speech_started", (0,), [UserTurnStarted(0)], L, IDLE),
        ("speech_paused", (20_000,), [UserPaused(20_000, score=True)], L, IDLE),
        ("turn_end_scored", (20_000, 0.93), [EndAfterSilence(20_000, 600)], L, IDLE),
        # The driver shortens the VAD's wait; its stop follows, for the speech that paused.
        ("speech_stopped", (20_000,), [UserTurnEnded(20_000), StartReply("reply1")], S,
         THINKING),
    ], SEMANTIC)


def test_semantic_a_pause_judged_incomplete_waits_and_the_user_goes_on() -> None:
    play([
        ("speech_started", (0,), [UserTurnStarted(0)], L, IDLE),
        ("speech_paused", (20_000,), [UserPaused(20_000, score=True)], L, IDLE),
        ("turn_end_scored", (20_000, 0.2), [], L, IDLE),
        ("speech_resumed", (25_000,), [UserResumed(25_000)], L, IDLE),
        ("speech_paused", (40_000,), [UserPaused(40_000, score=True)], L, IDLE),
        ("turn_end_scored", (40_000, 0.8), [EndAfterSilence(40_000, 600)], L, IDLE),
    ], SEMANTIC)


def test_semantic_a_pause_judged_unfinished_is_judged_again_when_it_lasts() -> None:
    play([
        ("speech_started", (0,), [UserTurnStarted(0)], L, IDLE),
        ("speech_paused", (20_000,), [UserPaused(20_000, score=True)], L, IDLE),
        ("turn_end_scored", (20_000, 0.2), [], L, IDLE),
        ("speech_paused", (20_000,), [UserPaused(20_000, score=True, again=True)], L, IDLE),
        ("turn_end_scored", (20_000, 0.9), [EndAfterSilence(20_000, 600)], L, IDLE),
    ], SEMANTIC)


def test_semantic_an_early_report_of_a_pause_decodes_and_the_full_pause_is_judged() -> None:
    play([
        ("speech_started", (0,), [UserTurnStarted(0)], L, IDLE),
        # At 100 ms of silence: decode (score False); at 200 ms: the first judgement.
        ("speech_paused", (20_000, False), [UserPaused(20_000, score=False)], L, IDLE),
        ("speech_paused", (20_000,), [UserPaused(20_000, score=True, again=True)], L, IDLE),
        ("turn_end_scored", (20_000, 0.9), [EndAfterSilence(20_000, 600)], L, IDLE),
        ("speech_stopped", (20_000,), [UserTurnEnded(20_000), StartReply("reply1")], S,
         THINKING),
    ], SEMANTIC)


def test_semantic_a_pause_judged_complete_is_not_judged_again() -> None:
    play([
        ("speech_started", (0,), [UserTurnStarted(0)], L, IDLE),
        ("speech_paused", (20_000,), [UserPaused(20_000, score=True)], L, IDLE),
        ("turn_end_scored", (20_000, 0.9), [EndAfterSilence(20_000, 600)], L, IDLE),
        ("speech_paused", (20_000,), [], L, IDLE),
        ("turn_end_scored", (20_000, 0.9), [], L, IDLE),
    ], SEMANTIC)


def test_semantic_a_score_that_arrives_after_the_user_went_on_is_ignored() -> None:
    play([
        ("speech_started", (0,), [UserTurnStarted(0)], L, IDLE),
        ("speech_paused", (20_000,), [UserPaused(20_000, score=True)], L, IDLE),
        ("speech_resumed", (23_000,), [UserResumed(23_000)], L, IDLE),
        ("turn_end_scored", (20_000, 0.99), [], L, IDLE),
    ], SEMANTIC)


SENTENCES = TurnPolicy(complete_at=0.5, sentence_ms=1000)


def test_semantic_a_sentence_the_turn_model_doubts_ends_after_a_second_not_the_longest_wait(
        ) -> None:
    play([
        ("speech_started", (0,), [UserTurnStarted(0)], L, IDLE),
        ("speech_paused", (20_000, False), [UserPaused(20_000, score=False)], L, IDLE),
        ("speech_paused", (20_000,), [UserPaused(20_000, score=True, again=True)], L, IDLE),
        ("turn_end_scored", (20_000, 0.12), [], L, IDLE),  # Smart Turn on a Polish ending
        ("sentence_heard", (20_000,), [EndAfterSilence(20_000, 1000)], L, IDLE),
        # Judged complete on the longer silence after all: the shorter wait wins.
        ("turn_end_scored", (20_000, 0.9), [EndAfterSilence(20_000, 600)], L, IDLE),
        ("speech_stopped", (20_000,), [UserTurnEnded(20_000), StartReply("reply1")], S,
         THINKING),
    ], SENTENCES)


def test_semantic_a_sentence_changes_nothing_once_judged_complete_or_after_more_speech(
        ) -> None:
    play([
        ("speech_started", (0,), [UserTurnStarted(0)], L, IDLE),
        ("speech_paused", (20_000,), [UserPaused(20_000, score=True)], L, IDLE),
        ("turn_end_scored", (20_000, 0.9), [EndAfterSilence(20_000, 600)], L, IDLE),
        ("sentence_heard", (20_000,), [], L, IDLE),  # never a longer wait than judged
        ("speech_resumed", (25_000,), [UserResumed(25_000)], L, IDLE),
        ("sentence_heard", (20_000,), [], L, IDLE),  # the user went on: stale
    ], SENTENCES)
    play([
        ("speech_started", (0,), [UserTurnStarted(0)], L, IDLE),
        ("speech_paused", (20_000,), [UserPaused(20_000, score=True)], L, IDLE),
        ("sentence_heard", (20_000,), [], L, IDLE),  # server_vad-like policy: no such rule
    ], SEMANTIC)


@pytest.mark.parametrize(("text", "ends"), [
    ("Jaka jest średnica wewnętrzna pierwszej rury?", True),
    ("Wie ist das Wetter in Berlin.", True),
    ("¡Qué bien!", True),
    ('He said "stop."', True),
    ("and then I went to the", False),
    ("Je voudrais...", False),
    ("Ik weet het niet…", False),
    ("", False),
])
def test_a_transcript_ends_a_sentence_by_its_closing_punctuation(text: str, ends: bool) -> None:
    assert ends_sentence(text) is ends


def test_semantic_without_a_score_the_silence_limit_still_ends_the_turn() -> None:
    play([
        ("speech_started", (0,), [UserTurnStarted(0)], L, IDLE),
        ("speech_paused", (20_000,), [UserPaused(20_000, score=True)], L, IDLE),
        ("speech_stopped", (20_000,), [UserTurnEnded(20_000), StartReply("reply1")], S,
         THINKING),
        ("turn_end_scored", (20_000, 0.99), [], S, THINKING),  # too late: already ended
    ], SEMANTIC)


def test_server_vad_pauses_are_reported_for_early_decoding_but_not_scored() -> None:
    play([
        ("speech_started", (0,), [UserTurnStarted(0)], L, IDLE),
        ("speech_paused", (20_000,), [UserPaused(20_000, score=False)], L, IDLE),
        ("turn_end_scored", (20_000, 0.99), [], L, IDLE),
        ("speech_stopped", (20_000,), [UserTurnEnded(20_000), StartReply("reply1")], S,
         THINKING),
    ])


def test_a_resume_without_a_pause_and_a_pause_while_silent_change_nothing() -> None:
    play([
        ("speech_resumed", (100,), [], S, IDLE),
        ("speech_paused", (100,), [], S, IDLE),
    ], SEMANTIC)
