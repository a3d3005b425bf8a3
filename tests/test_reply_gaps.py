"""Silences mid-reply: the client played all of a reply's audio before its next piece came.

The server counts them by the media clock (the client's microphone audio, streamed in real
time here) and says what the late piece was waiting for: the model's words or their
synthesis (``voice.reply_audio.Gap``, the ``voice_reply_audio_gap_seconds`` metric).
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from tests.fakes import FakeChat, FakeTranscriber, FakeVoices, silence, tone
from tests.test_session import Harness, run
from voice.overlap import SILENT
from voice.reply_audio import ReplyAudio
from voice.reply_settings import TurnTimes

RATE = 16_000  # media time: samples at 16 kHz

FIRST_THEN_MORE = "Sure. " + " ".join(["and then"] * 6) + " the rest of it comes."


async def talk_and_listen(h: Harness, listen_s: float) -> None:
    """Speak, then keep the microphone streaming (at real-time pace) while the reply plays."""
    await h.send_audio(np.concatenate([tone(0.6), silence(listen_s)]), pace_s=0.02)
    await h.wait_done()


@pytest.mark.parametrize(("words_apart_s", "synthesis_s", "waiting_for"), [
    # "Sure." is 50 ms of audio; the words after it come 0.2 s apart, much slower than the
    # voice speaks them (10 ms a character).
    (0.2, 0.01, "text"),
    # Written at once; each piece takes 0.6 s to synthesize.
    (0.001, 0.6, "speech"),
])
def test_a_reply_whose_next_piece_comes_late_reports_a_gap_and_what_it_waited_for(
        words_apart_s: float, synthesis_s: float, waiting_for: str) -> None:
    async def scenario() -> None:
        h = Harness(FakeTranscriber([("Can you help?", "en")]),
                    FakeChat([FIRST_THEN_MORE], delay_s=words_apart_s),
                    voices=FakeVoices(delay_s=synthesis_s))
        await talk_and_listen(h, 4.0)
        assert h.turns[0][1] == "completed"
        # (How long is the machine's business: the media clock is this test's sending.)
        assert h.gaps and {gap.waiting_for for gap in h.gaps} == {waiting_for}
    run(scenario)


def test_a_reply_that_keeps_ahead_of_playback_reports_no_gap() -> None:
    async def scenario() -> None:
        h = Harness(FakeTranscriber([("Can you help?", "en")]),
                    # Long words: its first piece of a few words plays ~0.5 s.
                    FakeChat(["Absolutely, certainly, wonderfully, magnificently, I can help "
                              "you with that right away. Here it is."]))
        await talk_and_listen(h, 2.0)
        assert h.turns[0][1] == "completed" and h.gaps == []
    run(scenario)


def test_after_a_gap_the_client_is_counted_as_playing_later_by_as_much() -> None:
    reply = ReplyAudio()  # the mixin's state only, on a media clock set by hand
    reply._start_audio()
    reply._owner = "sess_test"
    reply.times = TurnTimes(speech_end=0.0)
    reply.item = SimpleNamespace(pieces=[])  # type: ignore[assignment]
    now = [0]
    reply._media_now = lambda: now[0]
    assert reply.audio_written(1000.0) == RATE  # 1 s of audio, audible from media time 0
    reply.contours = [np.zeros(100)]
    now[0] = 3 * RATE // 2  # the next piece comes 0.5 s after the client ran out
    assert reply.audio_written(1000.0) == 5 * RATE // 2
    reply.contours.append(np.zeros(100))
    reply.audio_sent_ms = 2000.0
    assert [round(gap.ms) for gap in reply.gaps] == [500]
    assert reply.heard_ms(2 * RATE) == 1500  # not 2000: nothing played in the gap
    contour = reply.contour()
    assert contour.size == 250 and np.all(contour[100:150] == SILENT)
    assert np.all(np.delete(contour, np.r_[100:150]) == 0)
    now[0] = 5 * RATE // 2 + RATE // 20  # 50 ms late: too short to count
    reply.audio_written(200.0)
    assert len(reply.gaps) == 1


def test_gaps_are_counted_in_the_metrics_by_what_the_piece_waited_for() -> None:
    from voice.metrics import Metrics
    from voice.reply_audio import Gap

    metrics = Metrics()
    metrics.observe_turn({"vad_ms": 600.0}, "completed", [Gap(800.0, "text"),
                                                         Gap(300.0, "speech")])
    metrics.observe_turn({"vad_ms": 600.0}, "completed")
    value = metrics.registry.get_sample_value
    assert value("voice_reply_audio_gap_seconds_count", {"waiting_for": "text"}) == 1
    assert value("voice_reply_audio_gap_seconds_sum", {"waiting_for": "speech"}) == 0.3
    assert value("voice_turns_total", {"status": "completed"}) == 2


LONG_SENTENCE = ("the old town has narrow streets with small shops and cafes where people "
                 "sit outside in the sun all afternoon.")


@pytest.mark.parametrize(("words_apart_s", "parts"), [(0.25, "several"), (0.002, "one")])
def test_a_long_sentence_is_spoken_in_parts_only_while_the_client_would_run_dry(
        words_apart_s: float, parts: str) -> None:
    async def scenario() -> None:
        h = Harness(FakeTranscriber([("Tell me about the town.", "en")]),
                    FakeChat([f"Sure. Well. {LONG_SENTENCE}"], delay_s=words_apart_s))
        await talk_and_listen(h, 7.0)
        spoken = h.voices.voices["en"].spoken
        assert spoken[:2] == ["Sure.", "Well."]
        # Nothing dropped or doubled, however it was cut.
        assert " ".join(spoken[2:]) == LONG_SENTENCE
        assert (len(spoken) > 3) == (parts == "several")
        done = h.of("response.output_audio_transcript.done")[0].fields["transcript"]
        assert done == f"Sure. Well. {LONG_SENTENCE}"
    run(scenario)
