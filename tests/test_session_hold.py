"""A client that holds the reply (``session.interruption.hold``): it pauses playback while
speech over the reply is judged, and plays on from where it paused unless it was the user.
Fake engines for the session; the playback accounting with the real mixin."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from asr.transcript import TranscribeOptions, Transcript
from tests.fakes import FakeChat, FakeTranscriber, FakeVoices, silence, tone
from tests.test_session import Harness, run
from tests.test_session_duplex import (
    STORY,
    noise,
    replying,
    speaking_over_a_quiet_microphone,
    speech_starts,
)
from voice.ducking import MicLevels
from voice.overlap import LOUDNESS_HZ, SILENT, Judgement, Verdict
from voice.protocol import SessionUpdate
from voice.reply_audio import ReplyAudio
from voice.speech_over import Overlap
from voice.yielding import Yielding

RATE = 16_000  # media time: samples at 16 kHz


def buffer_events(h: Harness) -> list[str]:
    return [t for t in h.types() if t.startswith("output_audio_buffer")
            or t in ("input_audio_buffer.backchannel", "input_audio_buffer.speech_started")]


def played_on_at_the_pause(h: Harness) -> None:
    """Held; played on at its pause, once its words were not the user's; the whole of it
    judged a backchannel when it ended; the reply played to its end."""
    assert buffer_events(h) == ["input_audio_buffer.speech_started",
                                "output_audio_buffer.duck",
                                "output_audio_buffer.unduck",
                                "input_audio_buffer.backchannel"]
    assert h.of("response.done")[0].fields["response"]["status"] == "completed"


def test_a_held_reply_plays_on_as_soon_as_a_backchannel_pauses() -> None:
    async def scenario() -> None:
        h = Harness(FakeTranscriber([("Tell me a story", "en"), ("Mhm, genau.", "de")]),
                    FakeChat([STORY]))
        await replying(h, {"hold": True})
        await h.send_audio(silence(1.2))
        # In real time, so that the look at its pause is back before the speech ends.
        await h.send_audio(np.concatenate([tone(0.4), silence(0.8)]), pace_s=0.02)
        await h.wait_done()
        played_on_at_the_pause(h)
    run(scenario)


def test_a_held_reply_plays_on_only_once_the_backchannel_is_judged() -> None:
    async def scenario() -> None:
        h = Harness(FakeTranscriber([("Tell me a story", "en"), ("Mhm, genau.", "de")]),
                    FakeChat([STORY]))
        # All at once: the speech ended before its pause could be looked at.
        await speaking_over_a_quiet_microphone(h, 0.4, {"hold": True})
        await h.wait_done()
        # Paused, judged a backchannel, then played on (a duck is restored at the speech's
        # end instead, before the words are known).
        assert buffer_events(h) == ["input_audio_buffer.speech_started",
                                    "output_audio_buffer.duck",
                                    "input_audio_buffer.backchannel",
                                    "output_audio_buffer.unduck"]
        duck = h.of("output_audio_buffer.duck")[0].fields
        reply_id = h.of("response.created")[0].fields["response"]["id"]
        assert duck["hold"] is True and duck["response_id"] == reply_id
        assert h.of("output_audio_buffer.unduck")[0].fields["response_id"] == reply_id
        assert h.of("response.done")[0].fields["response"]["status"] == "completed"
        assert h.of("session.updated")[-1].fields["session"]["interruption"]["hold"] is True
    run(scenario)


def test_a_short_stop_over_a_held_reply_cuts_it_without_playing_on() -> None:
    async def scenario() -> None:
        h = Harness(FakeTranscriber([("Tell me a story", "en"), ("Stop.", "en")]),
                    FakeChat([STORY, "Okay."]))
        await speaking_over_a_quiet_microphone(h, 0.4, {"hold": True})
        await h.wait_done(2)
        assert buffer_events(h) == ["input_audio_buffer.speech_started",
                                    "output_audio_buffer.duck",
                                    "input_audio_buffer.speech_started"]
        assert h.of("response.done")[0].fields["response"]["status"] == "cancelled"
    run(scenario)


def test_the_users_words_over_a_held_reply_cut_it() -> None:
    async def scenario() -> None:
        h = Harness(FakeTranscriber([("Tell me a story", "en"), ("Stop, what about Rome?", "en")]),
                    FakeChat([STORY, "Rome is lovely."]))
        await speaking_over_a_quiet_microphone(h, 0.8, {"hold": True})
        await h.wait_done(2)
        assert "output_audio_buffer.unduck" not in h.types()
        assert h.of("output_audio_buffer.duck")[0].fields["hold"] is True
        assert h.of("response.done")[0].fields["response"]["status"] == "cancelled"
        assert h.of("response.done")[1].fields["response"]["status"] == "completed"
    run(scenario)


async def over_the_replys_first_moments(h: Harness, sound: np.ndarray,
                                        interruption: dict[str, object]) -> None:
    """The user asks (loud: their voice's level); as soon as the reply's first audio goes
    out, ``sound`` comes over it (no quiet level under the reply is known yet)."""
    await h.session.handle(SessionUpdate("e1", {"type": "realtime",
                                                "interruption": interruption}))
    await h.send_audio(np.concatenate([tone(0.6, amplitude=0.9), silence(0.7)]))
    await h.wait_for(lambda: len(h.of("response.output_audio.delta")) >= 3)
    await h.send_audio(np.concatenate([sound, silence(0.8)]))


@pytest.mark.parametrize("early", [False, True])
@pytest.mark.parametrize(("seconds", "cut"), [(0.4, False), (1.0, True)])
def test_a_short_sentence_heard_in_a_short_voice_over_a_held_reply_does_not_cut_it(
        early: bool, seconds: float, cut: bool) -> None:
    # Whisper makes short sentences of a "sim" and the reply's echo around it ("In the
    # end."; early in the reply, "Here we go." of a "certo" and the leak of its first words):
    # three words of a request take longer to say than the voice lasted. Early, no quiet
    # level is known: the voice near the user's own is measured (the client cancels echo).
    async def scenario() -> None:
        h = Harness(FakeTranscriber([("Tell me a story", "en"), ("In the end, Rome.", "en")]),
                    FakeChat([STORY, "Rome is lovely."]))
        if early:
            await over_the_replys_first_moments(h, noise(seconds, 0.3),
                                                {"hold": True, "echo_cancelled": True})
        else:
            await speaking_over_a_quiet_microphone(h, seconds, {"hold": True})
        await h.wait_done(2 if cut else 1)
        statuses = [e.fields["response"]["status"] for e in h.of("response.done")]
        if cut:
            assert statuses == ["cancelled", "completed"]
            assert not h.of("input_audio_buffer.backchannel")
        else:
            assert buffer_events(h) == ["input_audio_buffer.speech_started",
                                        "output_audio_buffer.duck",
                                        "input_audio_buffer.backchannel",
                                        "output_audio_buffer.unduck"]
            assert statuses == ["completed"]
    run(scenario)


def test_a_voice_too_soft_to_stand_out_still_interrupts_with_its_words() -> None:
    # The room was noisy while the reply played, and the user speaks barely above it: no
    # voice stands out (nothing is held), and the words decide, as where no level is known.
    async def scenario() -> None:
        h = Harness(FakeTranscriber([("Tell me a story", "en"), ("What about Rome then?", "en")]),
                    FakeChat([STORY, "Rome is lovely."]))
        await replying(h, {"hold": True})
        await h.send_audio(noise(1.2, rms=0.03))
        await h.send_audio(np.concatenate([noise(0.6, rms=0.07), silence(0.8)]), pace_s=0.02)
        await h.wait_done(2)
        assert "output_audio_buffer.duck" not in h.types()
        assert not h.of("input_audio_buffer.backchannel")
        assert [e.fields["response"]["status"] for e in h.of("response.done")] == [
            "cancelled", "completed"]
    run(scenario)


def reply_audio_between(h: Harness, first: str, then: str | None) -> int:
    """The first reply's audio deltas the client received after the first ``first`` event
    and before the next ``then`` event after it (None: to the end)."""
    reply_id = h.of("response.created")[0].fields["response"]["id"]
    types = h.types()
    start = types.index(first)
    end = types.index(then, start) if then is not None else len(types)
    return sum(1 for e in h.events[start:end] if e.type == "response.output_audio.delta"
               and e.fields["response_id"] == reply_id)


def test_no_more_of_a_held_reply_is_sent_and_none_once_the_user_cuts_it() -> None:
    async def scenario() -> None:
        # A slow voice: the story's pieces are still being synthesized when it is held.
        h = Harness(FakeTranscriber([("Tell me a story", "en"),
                                     ("Tell me about Rome instead.", "en")]),
                    FakeChat([STORY, "Rome is lovely."]), voices=FakeVoices(delay_s=0.05))
        await replying(h, {"hold": True})
        await h.send_audio(silence(1.2))
        # In real time: the pieces go on being synthesized while the words are judged.
        await h.send_audio(np.concatenate([tone(1.2), silence(0.8)]), pace_s=0.02)
        await h.wait_done(2)
        assert h.of("response.done")[0].fields["response"]["status"] == "cancelled"
        # The last of the reply the client got is what it had when it paused playback.
        assert reply_audio_between(h, "output_audio_buffer.duck", None) == 0
    run(scenario)


def test_a_held_reply_sends_the_rest_of_its_audio_once_it_plays_on() -> None:
    async def scenario() -> None:
        h = Harness(FakeTranscriber([("Tell me a story", "en"), ("Mhm, genau.", "de")]),
                    FakeChat([STORY]), voices=FakeVoices(delay_s=0.05))
        await replying(h, {"hold": True})
        await h.send_audio(silence(1.2))
        await h.send_audio(np.concatenate([tone(0.4), silence(0.8)]), pace_s=0.02)
        await h.wait_done()
        assert reply_audio_between(h, "output_audio_buffer.duck",
                                   "output_audio_buffer.unduck") == 0
        assert reply_audio_between(h, "output_audio_buffer.unduck", None) > 0
        # Nothing was dropped: the client got every piece of the story.
        assert h.of("response.done")[0].fields["response"]["status"] == "completed"
        assert h.session.history[-1].text == STORY
    run(scenario)


def test_a_reply_held_when_the_session_is_reconfigured_plays_on() -> None:
    async def scenario() -> None:
        h = Harness(FakeTranscriber([("Tell me a story", "en"), ("Mhm, genau.", "de")]),
                    FakeChat([STORY]))
        await speaking_over_a_quiet_microphone(h, 0.4, {"hold": True})
        await h.wait_for(lambda: bool(h.of("output_audio_buffer.duck")))
        await h.session.handle(SessionUpdate("e2", {"type": "realtime", "audio": {"input": {
            "turn_detection": {"type": "server_vad", "silence_duration_ms": 700}}}}))
        await h.wait_for(lambda: bool(h.of("output_audio_buffer.unduck")))
    run(scenario)


class HeardLonger(FakeTranscriber):
    """After the script: "Mhm." for under a second of audio, more words for longer (whisper
    making words of the reply's residual echo after the user's "mhm")."""

    def _decode(self, audio: np.ndarray, options: TranscribeOptions) -> Transcript:
        if self.script:
            return super()._decode(audio, options)
        text = "Mhm." if audio.size < RATE else "Mhm, I see him there."
        return Transcript(text, "en", 0.9, 0.01, -0.2, 1.2, audio.size / RATE, 0.0)


def test_residual_echo_after_a_held_backchannel_does_not_cut_the_reply() -> None:
    async def scenario() -> None:
        h = Harness(HeardLonger([("Tell me a story", "en")]), FakeChat([STORY]))
        await replying(h, {"hold": True})
        await h.send_audio(noise(1.2, rms=0.03))  # the room while the reply plays
        # "Mhm", a pause (the reply plays on), then what leaks through while the echo
        # canceller re-adapts: the VAD hears speech, whisper words, but no voice rises.
        await h.send_audio(np.concatenate([tone(0.4), noise(0.3, rms=0.03),
                                           noise(1.4, rms=0.07), silence(0.8)]), pace_s=0.02)
        await h.wait_done()
        played_on_at_the_pause(h)
    run(scenario)


def held_reply() -> ReplyAudio:
    """A reply whose audio became audible at media time 0: two pieces, 2 s of audio sent."""
    reply = ReplyAudio()  # the mixin's state only
    reply._start_audio()
    reply.item = SimpleNamespace(pieces=[("Berlin is a city", 1000.0),  # type: ignore[assignment]
                                         ("with many parks.", 1000.0)])
    reply.text = "Berlin is a city with many parks."
    reply.audible_at = 0
    reply.audio_sent_ms = reply.audio_written_ms = 2000.0
    reply.contours = [np.zeros(200)]  # 2 s of loudness 0 (loud)
    reply._media_now = lambda: 0  # type: ignore[method-assign]
    return reply


def test_the_time_a_reply_was_held_is_not_counted_as_heard() -> None:
    reply = held_reply()
    reply.hold(RATE // 2)  # paused after 0.5 s of playback ...
    assert reply.held and reply.heard_ms(RATE) == 500  # ... nothing more heard while held
    assert reply.playing_until(RATE) == 5 * RATE // 2  # the 2 s sent end as much later
    reply.release(3 * RATE // 2)  # ... for 1 s
    assert not reply.held
    assert reply.heard_ms(2 * RATE) == 1000  # 0.5 s before the hold, 0.5 s after it
    assert reply.playing_until(4 * RATE) == 3 * RATE
    # What played between 1.6 and 1.7 s of media time: the first piece's last words.
    assert reply.spoken_between(RATE * 16 // 10, RATE * 17 // 10) == "Berlin is a city"


def test_the_echo_of_a_held_reply_is_silence_while_it_was_held() -> None:
    reply = held_reply()
    reply.hold(RATE // 2)
    reply.release(RATE)
    contour = reply.contour()
    assert contour.size == 250  # 2 s sent plus 0.5 s held, one value per 10 ms
    held = slice(LOUDNESS_HZ // 2, LOUDNESS_HZ)
    assert np.all(contour[held] == SILENT) and np.all(np.delete(contour, np.r_[held]) == 0)


@pytest.mark.parametrize(("looks", "upto_s", "words_ms"), [
    # A leak of the reply's echo held it; the looks heard nothing until a "sim" (heard as
    # "Jing"): the word is as long as the time since the last look that heard nothing.
    ([(Verdict.NOTHING, 0.4), (Verdict.NOTHING, 0.6), (Verdict.USER, 0.9)], 0.9, 300),
    # ... and a look that hears nothing after the first words does not shorten them again.
    ([(Verdict.NOTHING, 0.4), (Verdict.USER, 0.6), (Verdict.NOTHING, 0.8)], 1.0, 600),
    # Words from the first look on (or echo heard first): the speech's own length counts.
    ([(Verdict.USER, 0.4), (Verdict.USER, 0.6)], 0.6, None),
    ([(Verdict.ECHO, 0.4), (Verdict.NOTHING, 0.6), (Verdict.USER, 0.8)], 0.8, None),
    ([], 0.5, None),
])
def test_the_words_over_a_reply_count_from_the_last_look_that_heard_nothing(
        looks: list[tuple[Verdict, float]], upto_s: float, words_ms: int | None) -> None:
    overlap = Overlap(start=0)
    for verdict, at_s in looks:
        overlap.heard(Judgement(verdict, sure=False), int(at_s * RATE))
    assert overlap.words_ms(int(upto_s * RATE)) == words_ms


def test_only_one_or_two_words_count_from_the_last_look_that_heard_nothing() -> None:
    # A sentence's first looks often hear nothing too; its words, once three or more, are
    # as long as the speech (the VAD's here: no quiet level was measured).
    overlap = Overlap(start=0)
    overlap.heard(Judgement(Verdict.NOTHING), int(0.8 * RATE))
    overlap.heard(Judgement(Verdict.USER, sure=True), RATE)
    levels, vad_ms = MicLevels(), 1000
    assert overlap.speech_ms(levels, RATE, vad_ms, Judgement(Verdict.USER, sure=True)) == 1000
    assert overlap.speech_ms(levels, RATE, vad_ms, Judgement(Verdict.USER, sure=False)) == 200
    assert overlap.speech_ms(levels, RATE, vad_ms) == 200  # the whole speech's, before its words


@pytest.mark.parametrize(("rms", "echo_cancelled", "held"), [
    (0.3, True, True),  # the user's voice, in a microphone that does not hear the reply
    (0.3, False, False),  # ... that may: on laptop speakers the reply's echo comes as near
    (0.06, True, False),  # 25 dB below the question's voice: a canceller's leak of the reply
])
def test_in_the_replys_first_moments_a_voice_near_the_users_holds_it_where_echo_is_cancelled(
        rms: float, echo_cancelled: bool, held: bool) -> None:
    # No quiet level is known in the reply's first 0.8 s: the user's own voice, heard in
    # their question, says what a voice of its own is.
    async def scenario() -> None:
        h = Harness(FakeTranscriber([("Tell me a story", "en"),
                                     ("That's what we're doing.", "en"), ("", "en")]),
                    FakeChat([STORY, "We are talking."]))
        await over_the_replys_first_moments(h, noise(1.0, rms),
                                            {"hold": True, "echo_cancelled": echo_cancelled})
        cut = rms > 0.1
        await h.wait_done(2 if cut else 1)
        assert speech_starts(h) == (2 if cut else 1)
        if held:  # held at once, then cut by the words
            assert buffer_events(h) == ["input_audio_buffer.speech_started",
                                        "output_audio_buffer.duck",
                                        "input_audio_buffer.speech_started"]
            assert h.of("output_audio_buffer.duck")[0].fields["hold"] is True
        else:
            assert "output_audio_buffer.duck" not in h.types()
    run(scenario)


@pytest.mark.parametrize(("after_release", "voiced"), [
    (0.005, False),  # 26 dB under the user's voice: the leak of the reply playing on
    (0.1, True),  # the user's voice again
])
def test_after_a_held_reply_plays_on_in_its_first_moments_only_the_users_voice_again_counts(
        after_release: float, voiced: bool) -> None:
    # No floor known: a "sim" near the user's voice held the reply, which played on at its
    # pause; what the canceller lets through of it after that is not more of the user.
    rng = np.random.default_rng(4)
    levels = MicLevels()
    sound = np.concatenate([rng.normal(0, 0.1, 6400), rng.normal(0, after_release, 9600)])
    for end in range(320, sound.size + 1, 320):
        levels.add(sound[end - 320:end].astype(np.float32), end)
    yielding = Yielding()
    yielding._mic_levels = levels
    overlap = Overlap(start=0, voice=-2.0, released_at=6400)  # -20 dBFS, released at 0.4 s
    assert yielding._voiced_since_release(overlap, sound.size) is voiced
