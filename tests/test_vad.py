"""Streaming Silero VAD: speech start/stop on real speech, frame-size independence, limits."""

from __future__ import annotations

import numpy as np
import pytest

from asr.vad import SAMPLE_RATE, WINDOW, StreamingVad, VadConfig, VadEventType
from tests.speech import espeak_audio


@pytest.fixture(scope="module")
def utterance() -> np.ndarray:
    """0.3 s silence, about 2 s of speech, 0.3 s silence, then 1.5 s more silence."""
    speech = espeak_audio("en", "Hello, this is a short test of the detector.", 160)
    return np.concatenate([speech, np.zeros(int(1.5 * SAMPLE_RATE), np.float32)])


def _speech_bounds(audio: np.ndarray) -> tuple[int, int]:
    loud = np.flatnonzero(np.abs(audio) > 0.01)
    return int(loud[0]), int(loud[-1])


def _feed_in_frames(vad: StreamingVad, audio: np.ndarray, frame: int) -> list:
    events = []
    for start in range(0, audio.size, frame):
        events.extend(vad.feed(audio[start:start + frame]))
    return events


def test_speech_start_and_stop_bracket_the_spoken_words(silero_vad_model, utterance) -> None:
    vad = StreamingVad(silero_vad_model, VadConfig())
    events = _feed_in_frames(vad, utterance, 480)  # 30 ms frames, as a microphone sends

    assert [e.type for e in events] == [VadEventType.SPEECH_STARTED, VadEventType.SPEECH_STOPPED]
    first, last = _speech_bounds(utterance)
    started, stopped = events
    # The utterance starts up to prefix_padding_ms (300 ms, rounded up to windows) early.
    assert first - int(0.35 * SAMPLE_RATE) <= started.start_sample <= first + int(0.1 * SAMPLE_RATE)
    assert stopped.reason == "silence"
    assert abs(stopped.end_sample - last) <= int(0.25 * SAMPLE_RATE)
    assert stopped.audio is not None
    # The utterance keeps tail_ms (200 ms) after the last speech window for word endings.
    assert stopped.audio.size == stopped.end_sample - stopped.start_sample + int(0.2 * SAMPLE_RATE)
    # speech_stopped is reported once silence_duration_ms of silence has been seen.
    assert vad.position >= stopped.end_sample + int(0.5 * SAMPLE_RATE)
    assert not vad.in_speech


@pytest.mark.parametrize("frame", [1, 333, 512, 4096, 16000])
def test_events_do_not_depend_on_the_frame_size(silero_vad_model, utterance, frame: int) -> None:
    reference = _feed_in_frames(StreamingVad(silero_vad_model), utterance, 480)
    events = _feed_in_frames(StreamingVad(silero_vad_model), utterance[: 3 * SAMPLE_RATE]
                             if frame == 1 else utterance, frame)
    if frame == 1:  # sample by sample is slow in Python; compare the start only
        assert events[0].start_sample == reference[0].start_sample
        return
    assert [(e.type, e.start_sample, e.end_sample) for e in events] == [
        (e.type, e.start_sample, e.end_sample) for e in reference]


def test_silence_and_quiet_noise_raise_no_events(silero_vad_model) -> None:
    vad = StreamingVad(silero_vad_model)
    rng = np.random.default_rng(0)
    assert vad.feed(np.zeros(3 * SAMPLE_RATE, np.float32)) == []
    assert vad.feed((rng.standard_normal(3 * SAMPLE_RATE) * 0.003).astype(np.float32)) == []


def test_an_utterance_is_cut_at_the_maximum_length(silero_vad_model) -> None:
    long_speech = np.concatenate([
        espeak_audio("en", "one two three four five six seven eight nine ten", 175)[:-2000]
        for _ in range(3)])
    vad = StreamingVad(silero_vad_model, VadConfig(max_utterance_s=2.0, silence_duration_ms=2000))
    events = _feed_in_frames(vad, long_speech, 1600)

    stops = [e for e in events if e.type is VadEventType.SPEECH_STOPPED]
    assert stops and stops[0].reason == "max_length"
    assert stops[0].audio is not None
    assert stops[0].audio.size <= 2 * SAMPLE_RATE + 512


def test_the_utterance_in_progress_is_available_for_partials(silero_vad_model, utterance) -> None:
    vad = StreamingVad(silero_vad_model)
    first, _ = _speech_bounds(utterance)
    vad.feed(utterance[: first + SAMPLE_RATE])
    assert vad.in_speech
    assert SAMPLE_RATE * 0.9 <= vad.current_utterance().size <= SAMPLE_RATE * 1.4
    vad.reset()
    assert not vad.in_speech and vad.current_utterance().size == 0 and vad.position == 0


@pytest.mark.parametrize("kwargs", [{"threshold": 1.5}, {"silence_duration_ms": -1},
                                    {"max_utterance_s": 0}])
def test_invalid_settings_are_refused(kwargs) -> None:
    with pytest.raises(ValueError):
        VadConfig(**kwargs)


def test_will_score_says_when_a_frame_completes_a_window(silero_vad_model) -> None:
    vad = StreamingVad(silero_vad_model, VadConfig())
    assert not vad.will_score(320)  # 20 ms: less than one 512-sample window
    vad.feed(np.zeros(320, np.float32))
    assert vad.will_score(320) and not vad.will_score(191)


class _ScriptedModel:
    """Speech probabilities from a script, one per 512-sample window (32 ms)."""

    def __init__(self, probabilities: list[float]) -> None:
        self._left = list(probabilities)

    def score(self, windows: np.ndarray, state):
        probs = [self._left.pop(0) if self._left else 0.0 for _ in range(windows.shape[0])]
        return np.asarray(probs, np.float32), state


def _run(script: list[float], config: VadConfig) -> tuple[StreamingVad, list]:
    """Feed one window per scripted probability; events as (type, window index, end window)."""
    vad = StreamingVad(_ScriptedModel(script), config)  # type: ignore[arg-type]
    events = []
    for index in range(len(script)):
        for event in vad.feed(np.full(WINDOW, 0.1, np.float32)):
            end = None if event.end_sample is None else event.end_sample // WINDOW
            events.append((event.type.value, index, end, event))
    return vad, events


SPEECH, QUIET = 0.9, 0.05
PAUSING = VadConfig(prefix_padding_ms=0, silence_duration_ms=960, pause_ms=192, tail_ms=128)


def test_a_short_silence_is_reported_as_a_pause_with_the_audio_a_stop_would_have() -> None:
    # 10 windows of speech, then silence until the stop (960 ms = 30 windows).
    _, events = _run([SPEECH] * 10 + [QUIET] * 40, PAUSING)
    assert [(kind, at, end) for kind, at, end, _ in events] == [
        ("speech_started", 0, None), ("speech_paused", 15, 10), ("speech_stopped", 39, 10)]
    paused, stopped = events[1][3], events[2][3]
    # Both carry the speech plus a 128 ms (4 window) tail: a decode of the pause can be kept.
    assert paused.audio.size == stopped.audio.size == 14 * WINDOW
    np.testing.assert_array_equal(paused.audio, stopped.audio)


def test_speech_after_a_pause_resumes_the_turn_and_a_later_pause_is_reported_again() -> None:
    script = [SPEECH] * 10 + [QUIET] * 8 + [SPEECH] * 5 + [QUIET] * 40
    _, events = _run(script, PAUSING)
    assert [(kind, at, end) for kind, at, end, _ in events] == [
        ("speech_started", 0, None), ("speech_paused", 15, 10), ("speech_resumed", 18, 18),
        ("speech_paused", 28, 23), ("speech_stopped", 52, 23)]
    assert events[-1][3].audio.size == 27 * WINDOW  # the whole turn, both parts, one tail


def test_a_pause_shorter_than_pause_ms_is_not_reported() -> None:
    _, events = _run([SPEECH] * 10 + [QUIET] * 5 + [SPEECH] * 5 + [QUIET] * 3, PAUSING)
    assert [kind for kind, *_ in events] == ["speech_started"]


def test_end_after_shortens_the_wait_for_the_current_silence_only() -> None:
    script = [SPEECH] * 10 + [QUIET] * 8 + [SPEECH] * 5 + [QUIET] * 40
    vad = StreamingVad(_ScriptedModel(script), PAUSING)  # type: ignore[arg-type]
    events = []
    for index in range(len(script)):
        for event in vad.feed(np.full(WINDOW, 0.1, np.float32)):
            events.append((event.type.value, index))
            if event.type is VadEventType.SPEECH_PAUSED:
                vad.end_after(320)  # 10 windows instead of 30
    # The first pause would have ended at window 20, but speech came back at 18 and restored
    # the 960 ms limit; the second pause (from window 23) gets its own 320 ms wait.
    assert events == [("speech_started", 0), ("speech_paused", 15), ("speech_resumed", 18),
                      ("speech_paused", 28), ("speech_stopped", 32)]


def test_end_after_a_silence_already_long_enough_stops_at_the_next_window() -> None:
    vad, events = _run([SPEECH] * 10 + [QUIET] * 8, PAUSING)
    vad.end_after(0)
    stopped = vad.feed(np.full(WINDOW, 0.1, np.float32))
    assert [e.type for e in stopped] == [VadEventType.SPEECH_STOPPED]
    np.testing.assert_array_equal(stopped[0].audio, events[-1][3].audio)  # the paused audio


def test_a_long_pause_is_reported_again_at_recheck_ms() -> None:
    config = VadConfig(prefix_padding_ms=0, silence_duration_ms=960, pause_ms=192,
                       recheck_ms=576, tail_ms=128)
    script = [SPEECH] * 10 + [QUIET] * 8 + [SPEECH] * 5 + [QUIET] * 40
    _, events = _run(script, config)
    assert [(kind, at, end) for kind, at, end, _ in events] == [
        ("speech_started", 0, None), ("speech_paused", 15, 10), ("speech_resumed", 18, 18),
        ("speech_paused", 28, 23), ("speech_paused", 40, 23), ("speech_stopped", 52, 23)]
    assert [e.reason for *_, e in events[3:5]] == ["pause", "recheck"]


def test_an_early_pause_comes_first_with_the_silence_heard_so_far_as_its_tail() -> None:
    config = VadConfig(prefix_padding_ms=0, silence_duration_ms=960, pause_ms=192,
                       early_pause_ms=96, tail_ms=128)
    _, events = _run([SPEECH] * 10 + [QUIET] * 40, config)
    assert [(kind, at, end) for kind, at, end, _ in events] == [
        ("speech_started", 0, None), ("speech_paused", 12, 10), ("speech_paused", 15, 10),
        ("speech_stopped", 39, 10)]
    early, paused, stopped = (e for *_, e in events[1:])
    assert [early.reason, paused.reason] == ["early", "pause"]
    assert early.audio.size == 13 * WINDOW  # the speech and the 3 silent windows heard
    np.testing.assert_array_equal(early.audio, stopped.audio[:13 * WINDOW])


def test_speech_after_an_early_pause_resumes_the_turn() -> None:
    config = VadConfig(prefix_padding_ms=0, silence_duration_ms=960, pause_ms=192,
                       early_pause_ms=96, tail_ms=128)
    _, events = _run([SPEECH] * 10 + [QUIET] * 4 + [SPEECH] * 5 + [QUIET] * 8, config)
    assert [(kind, at, end) for kind, at, end, _ in events] == [
        ("speech_started", 0, None), ("speech_paused", 12, 10), ("speech_resumed", 14, 14),
        ("speech_paused", 21, 19), ("speech_paused", 24, 19)]
    assert [e.reason for *_, e in events[3:]] == ["early", "pause"]


def test_an_early_pause_needs_a_later_pause() -> None:
    for early, pause in ((96, None), (192, 192), (-1, 192)):
        with pytest.raises(ValueError, match="early_pause_ms"):
            VadConfig(pause_ms=pause, early_pause_ms=early)


def test_without_pause_ms_no_pause_is_reported() -> None:
    config = VadConfig(prefix_padding_ms=0, silence_duration_ms=960, tail_ms=128)
    _, events = _run([SPEECH] * 10 + [QUIET] * 40, config)
    assert [kind for kind, *_ in events] == ["speech_started", "speech_stopped"]
