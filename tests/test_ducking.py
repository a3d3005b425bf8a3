"""When a sound over the reply ducks it: tables of microphone levels, no I/O."""

from __future__ import annotations

import numpy as np
import pytest

from voice.ducking import (
    QUIETEST_FLOOR,
    RATE,
    MicLevels,
    floor_level,
    near_voice,
    near_voice_span_ms,
    stands_out,
    voice_level,
    voice_span_ms,
)

MS = RATE // 1000


def levels_of(*parts: tuple[float, int]) -> MicLevels:
    """A microphone that heard ``(amplitude, milliseconds)`` of noise after one another."""
    rng = np.random.default_rng(3)
    levels = MicLevels()
    now = 0
    for amplitude, ms in parts:
        samples = (rng.normal(0, 1, ms * MS) * amplitude).astype(np.float32)
        for start in range(0, samples.size, 320):  # 20 ms frames, as clients send them
            chunk = samples[start:start + 320]
            now += chunk.size
            levels.add(chunk, now)
    return levels


def contour(values: list[float], ms_each: int) -> np.ndarray:
    return np.repeat(np.asarray(values, float), ms_each // 10)


SPEECHY = contour([-2, -4, -2.5, -5, -2, -4.5, -2.2, -5, -3, -4] * 4, 100)  # 4 s of reply


def echo_following_the_reply(db_below: float) -> tuple[MicLevels, int]:
    """A microphone whose level rises and falls with the reply's, ``db_below`` under it."""
    rng = np.random.default_rng(5)
    levels, now = MicLevels(), 0
    for value in SPEECHY[:200]:  # 2 s, one 10 ms frame at a time
        samples = (rng.normal(0, 1, 160) * 10 ** ((value - db_below / 10) / 2)).astype(np.float32)
        now += 160
        levels.add(samples, now)
    return levels, now


def test_speech_that_rises_well_above_a_quiet_microphone_stands_out() -> None:
    levels = levels_of((0.001, 2000), (0.1, 200))
    floor = floor_level(levels, 2000 * MS, SPEECHY, audible_at=0)
    assert floor is not None
    assert stands_out(levels, 2000 * MS, 2200 * MS, floor)


@pytest.mark.parametrize("ms", [0, 60, 100])
def test_a_click_shorter_than_the_stand_out_time_does_not(ms: int) -> None:
    levels = levels_of((0.001, 2000), (0.1, ms), (0.001, 300))
    floor = floor_level(levels, 2000 * MS, SPEECHY, audible_at=0)
    assert floor is not None
    assert not stands_out(levels, 2000 * MS, (2300 + ms) * MS, floor)


def test_speech_no_louder_than_the_microphone_was_during_the_reply_does_not_stand_out() -> None:
    levels = levels_of((0.05, 2000), (0.1, 400))  # +6 dB
    floor = floor_level(levels, 2000 * MS, SPEECHY, audible_at=0)
    assert floor is not None
    assert not stands_out(levels, 2000 * MS, 2400 * MS, floor)


def test_a_microphone_that_hears_the_reply_never_ducks_it() -> None:
    # The microphone's level rises and falls with the reply's (its echo, no cancelling).
    levels, now = echo_following_the_reply(10)
    assert floor_level(levels, now, SPEECHY, audible_at=0) is None


def test_no_floor_before_the_reply_was_heard_long_enough() -> None:
    levels = levels_of((0.001, 2000), (0.1, 200))
    # The reply became audible 1.4 s in: 0.3 s for its sound to reach the microphone leaves
    # 0.3 s of floor, too little to know what the microphone hears during the reply.
    assert floor_level(levels, 2000 * MS, SPEECHY, audible_at=1400 * MS) is None


def test_levels_are_kept_by_media_time_and_a_gap_starts_afresh() -> None:
    levels = MicLevels(keep_s=1.0)
    levels.add(np.ones(16_000 * 2, np.float32), 32_000)
    assert levels.end == 32_000
    assert levels.between(0, 32_000).size == 100  # the last second only
    assert levels.between(31_040, 32_000).size == 6  # whole frames from 31_040 on
    levels.add(np.zeros(1600, np.float32), 40_000)  # audio from 38_400 on: a gap
    assert levels.between(0, 40_000).size == 10


def test_a_voice_lasts_until_its_last_loud_moment_not_while_the_vad_still_hears_echo() -> None:
    # "genau" (0.4 s) over a quiet microphone, then 1.5 s of residual echo 6 dB over the floor.
    # The VAD's speech began 0.2 s before the voice (its padding).
    levels = levels_of((0.01, 2000), (0.2, 400), (0.02, 1500))
    floor = floor_level(levels, 1800 * MS, SPEECHY, audible_at=0)
    assert floor is not None
    assert voice_span_ms(levels, 1800 * MS, 3900 * MS, floor) == pytest.approx(400, abs=20)
    assert voice_span_ms(levels, 1800 * MS, 1900 * MS, floor) == 0


def test_a_quiet_microphone_during_a_silent_reply_says_nothing_of_its_echo() -> None:
    # The reply said nothing audible while the microphone was quiet (a pause, or only its
    # first breath): whether the microphone hears it is unknown, and nothing may duck.
    levels = levels_of((0.001, 2000), (0.1, 200))
    silent = np.full(400, -7.0)
    assert floor_level(levels, 2000 * MS, silent, audible_at=0) is None
    assert floor_level(levels, 2000 * MS, SPEECHY, audible_at=0) is not None


def test_over_a_silent_canceller_a_leak_of_the_replys_echo_is_no_voice() -> None:
    # The canceller's output was digital silence while the reply played; then 0.5 s of the
    # reply leaking through at -46 dBFS (it re-adapts), then a "sim" at -20 dBFS.
    levels = levels_of((0.00001, 2000), (0.005, 500), (0.1, 300), (0.00001, 500))
    floor = floor_level(levels, 2000 * MS, SPEECHY, audible_at=0)
    assert floor == QUIETEST_FLOOR
    assert not stands_out(levels, 2000 * MS, 2500 * MS, floor)
    assert stands_out(levels, 2000 * MS, 2800 * MS, floor)
    assert voice_span_ms(levels, 2000 * MS, 3300 * MS, floor) == pytest.approx(300, abs=20)


def test_a_faint_echo_that_follows_the_reply_still_leaves_a_floor() -> None:
    # What a canceller lets through (-50 to -80 dBFS) follows the reply, but never comes
    # near a voice's level: a voice over it can still be told from it.
    faint, now = echo_following_the_reply(30)
    floor = floor_level(faint, now, SPEECHY, audible_at=0)
    assert floor is not None
    # (The echo heard without cancelling, 20 dB louder, leaves none: the test above.)


def test_a_voice_is_as_loud_as_the_loud_part_of_a_turn_and_a_short_turn_tells_nothing() -> None:
    rng = np.random.default_rng(2)
    turn = np.concatenate([rng.normal(0, 0.001, 8000), rng.normal(0, 0.1, 16000),
                           rng.normal(0, 0.001, 8000)]).astype(np.float32)
    assert voice_level(turn) == pytest.approx(-2.0, abs=0.1)  # -20 dBFS, pauses aside
    assert voice_level(turn[:4000]) is None


@pytest.mark.parametrize(("amplitude", "near"), [
    (0.1, True),  # the voice itself
    (0.02, True),  # 14 dB below it
    (0.005, False),  # 26 dB below it: a canceller's leak of the reply
])
def test_a_sound_is_near_the_users_voice_within_fifteen_db_of_it(amplitude: float,
                                                                 near: bool) -> None:
    levels = levels_of((0.001, 500), (amplitude, 400))
    assert near_voice(levels, 0, 900 * MS, voice=-2.0) is near


def test_a_voice_near_the_users_lasts_from_its_first_to_its_last_loud_moment() -> None:
    # A "certo" (0.3 s, 6 dB under the user's voice) and the quiet leak around it.
    levels = levels_of((0.005, 500), (0.05, 300), (0.005, 900))
    assert near_voice_span_ms(levels, 0, 1700 * MS, voice=-2.0) == pytest.approx(300, abs=20)
