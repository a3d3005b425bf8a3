"""Speech over a reply, with fake engines: backchannels, echo and noise do not cut it, the
user's words do, and a reply cut off by noise resumes from the word where it stopped."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from asr.transcript import TranscribeOptions
from tests.fakes import FakeChat, FakeTranscriber, silence, tone
from tests.test_session import Harness, run
from voice.interruptions import JUDGE_TOKENS
from voice.protocol import AudioCommit, SessionUpdate

STORY = " ".join(f"Sentence number {n} is here." for n in range(40))


async def replying(h: Harness, interruption: dict[str, Any] | None = None) -> None:
    """The user asks; the story's audio starts going out."""
    if interruption is not None:
        await h.session.handle(SessionUpdate("e1", {"type": "realtime",
                                                    "interruption": interruption}))
    await h.speak()
    await h.wait_for(lambda: len(h.of("response.output_audio.delta")) >= 3)


def speech_starts(h: Harness) -> int:
    return len(h.of("input_audio_buffer.speech_started"))


def test_a_backchannel_over_the_reply_neither_cuts_it_nor_starts_a_turn() -> None:
    async def scenario() -> None:
        h = Harness(FakeTranscriber([("Tell me a story", "en"), ("Mhm, genau.", "de")]),
                    FakeChat([STORY]))
        await replying(h)
        await h.speak(seconds=0.4)
        await h.wait_for(lambda: bool(h.of("input_audio_buffer.backchannel")))
        await h.wait_done()
        heard = h.of("input_audio_buffer.backchannel")[0].fields
        assert heard["transcript"] == "Mhm, genau." and heard["item_id"] is None
        assert heard["audio_end_ms"] > heard["audio_start_ms"]
        assert speech_starts(h) == 1  # only the question's
        assert [d.fields["response"]["status"] for d in h.of("response.done")] == ["completed"]
        assert [i.text for i in h.session.history if i.role == "user"] == ["Tell me a story"]
    run(scenario)


def test_a_backchannel_is_kept_in_the_history_when_the_client_asks() -> None:
    async def scenario() -> None:
        h = Harness(FakeTranscriber([("Tell me a story", "en"), ("Oui, d'accord.", "fr")]),
                    FakeChat([STORY]))
        await replying(h, {"backchannels": "keep"})
        await h.speak(seconds=0.4)
        await h.wait_done()
        kept = h.of("input_audio_buffer.backchannel")[0].fields["item_id"]
        users = [i for i in h.session.history if i.role == "user"]
        assert [(i.item_id, i.text) for i in users][1:] == [(kept, "Oui, d'accord.")]
        assert len(h.of("response.done")) == 1
    run(scenario)


def test_the_replys_own_echo_does_not_cut_it() -> None:
    async def scenario() -> None:
        h = Harness(FakeTranscriber([("Tell me a story", "en"),
                                     ("sentence number is here sentence number", "en")]),
                    FakeChat([STORY]))
        await replying(h)
        await h.speak(seconds=0.5)
        await h.wait_done()
        assert speech_starts(h) == 1
        assert h.of("response.done")[0].fields["response"]["status"] == "completed"
        assert not h.of("input_audio_buffer.backchannel")
    run(scenario)


def test_the_users_words_cut_the_reply_from_the_moment_they_began() -> None:
    async def scenario() -> None:
        h = Harness(FakeTranscriber([("Tell me a story", "en"), ("Stop, what about Rome?", "en")]),
                    FakeChat([STORY, "Rome is lovely."]))
        await replying(h)
        await h.speak(seconds=0.8)
        await h.wait_done(2)
        first, second = (d.fields["response"] for d in h.of("response.done"))
        assert first["status"] == "cancelled"
        assert first["status_details"]["reason"] == "turn_detected"
        assert second["status"] == "completed"
        started = h.of("input_audio_buffer.speech_started")
        assert len(started) == 2
        # The question took 0.6 s of speech and 0.7 s of silence: the interruption began
        # after that, whenever the judge confirmed it.
        assert started[1].fields["audio_start_ms"] >= 1000
        assert [i.text for i in h.session.history if i.role == "user"][-1] == \
            "Stop, what about Rome?"
    run(scenario)


def test_a_client_commit_of_speech_over_the_reply_is_the_users_turn_whatever_its_words(
        ) -> None:
    async def scenario() -> None:
        # Words the guard alone would take for the reply's echo and ignore.
        h = Harness(FakeTranscriber([("Tell me a story", "en"),
                                     ("Sentence number two is here?", "en")]),
                    FakeChat([STORY, "It is."]))
        await replying(h, {"min_speech_ms": 3000, "max_wait_ms": 5000})  # no look yet
        await h.send_audio(tone(0.4))
        await h.wait_for(lambda: h.session.turns.overlap is not None)
        before = len(h.events)
        await h.session.handle(AudioCommit("e2"))
        # The commit's own answer: the speech became a turn, and was committed (the reply it
        # cut winds down meanwhile).
        assert h.types()[before:] == ["input_audio_buffer.speech_started",
                                      "input_audio_buffer.speech_stopped",
                                      "input_audio_buffer.committed", "conversation.item.added"]
        await h.wait_done(2)
        first, second = (d.fields["response"] for d in h.of("response.done"))
        assert (first["status"], first["status_details"]["reason"]) == \
            ("cancelled", "turn_detected")
        assert second["status"] == "completed"
        assert speech_starts(h) == 2 and len(h.of("input_audio_buffer.committed")) == 2
        assert not h.of("input_audio_buffer.backchannel") and not h.error_codes
        assert [i.text for i in h.session.history if i.role == "user"][-1] == \
            "Sentence number two is here?"
    run(scenario)


def test_noise_over_the_reply_does_not_cut_it() -> None:
    async def scenario() -> None:
        h = Harness(FakeTranscriber([("Tell me a story", "en"), ("", "en")]),
                    FakeChat([STORY]))
        await replying(h)
        await h.speak(seconds=0.3)
        await h.wait_done()
        assert speech_starts(h) == 1
        assert h.of("response.done")[0].fields["response"]["status"] == "completed"
    run(scenario)


def test_a_reply_cut_off_by_noise_resumes_from_the_word_where_it_stopped() -> None:
    async def scenario() -> None:
        # Without the guard any speech cuts the reply at once; the cough transcribes to
        # nothing, so the reply goes on as a new response (the model continues after what it
        # had written: FakeChat strips that prefix from the scripted reply).
        h = Harness(FakeTranscriber([("Tell me a story", "en"), ("", "en")]),
                    FakeChat([STORY, STORY], delay_s=0.02))
        await replying(h, {"guard": False})
        await h.send_audio(silence(1.0))  # a second of the story is heard
        await h.speak(seconds=0.3)
        await h.wait_done(2)
        first, second = (d.fields["response"] for d in h.of("response.done"))
        assert (first["status"], second["status"]) == ("cancelled", "completed")
        resumed = h.of("response.resumed")[0].fields
        assert resumed["resumed_response_id"] == first["id"]
        assert resumed["response_id"] == second["id"]
        assistant = [i for i in h.session.history if i.role == "assistant"]
        heard, rest = assistant[0].text.split(), assistant[1].text.split()
        assert resumed["word_index"] == len(heard) > 0
        assert heard + rest == STORY.split()  # nothing lost, nothing said twice
        assert speech_starts(h) == 2
    run(scenario)


def test_interruption_settings_are_checked_and_shown_once_changed() -> None:
    async def scenario() -> None:
        h = Harness(FakeTranscriber([]), FakeChat([]))
        await h.session.handle(SessionUpdate("e1", {"type": "realtime"}))
        assert "interruption" not in h.of("session.updated")[-1].fields["session"]
        await h.session.handle(SessionUpdate("e2", {"interruption": {"min_speech_ms": -1}}))
        await h.session.handle(SessionUpdate("e3", {"interruption": {"backchannels": "x"}}))
        await h.session.handle(SessionUpdate("e3b", {"interruption": {"echo_cancelled": 1}}))
        assert [e.fields["error"]["param"] for e in h.of("error")] == [
            "session.interruption.min_speech_ms", "session.interruption.backchannels",
            "session.interruption.echo_cancelled"]
        await h.session.handle(SessionUpdate("e4", {"interruption": {"guard": False}}))
        shown = h.of("session.updated")[-1].fields["session"]["interruption"]
        assert shown["guard"] is False and shown["resume"] is True
        assert shown["echo_cancelled"] is False
        assert h.session.turns.policy.guard is False
    run(scenario)


def test_a_short_unclear_word_over_the_reply_does_not_cut_it_but_a_stop_word_does() -> None:
    async def scenario() -> None:
        # 0.2 s of speech: over before the first look; the final transcript alone decides.
        h = Harness(FakeTranscriber([("Tell me a story", "en"), ("Rome please", "en"),
                                     ("Stop", "en")]),
                    FakeChat([STORY, "Okay."]))
        await replying(h)
        await h.speak(seconds=0.2)
        await h.wait_for(lambda: bool(h.of("input_audio_buffer.backchannel")))
        assert h.of("input_audio_buffer.backchannel")[0].fields["transcript"] == "Rome please"
        assert speech_starts(h) == 1 and not h.of("response.done")
        await h.speak(seconds=0.2)
        await h.wait_done(2)
        assert h.of("response.done")[0].fields["response"]["status"] == "cancelled"
        assert speech_starts(h) == 2
    run(scenario)


def test_without_the_guard_a_reply_cut_by_a_backchannel_resumes_instead_of_an_answer() -> None:
    async def scenario() -> None:
        h = Harness(FakeTranscriber([("Tell me a story", "en"), ("Mhm.", "en")]),
                    FakeChat([STORY, STORY], delay_s=0.02))
        await replying(h, {"guard": False})
        await h.send_audio(silence(1.0))
        await h.speak(seconds=0.3)
        await h.wait_done(2)
        assert h.of("response.resumed")
        assert len(h.chat.requests) == 2  # the story, then its continuation: no answer to "Mhm"
        assistant = [i.text for i in h.session.history if i.role == "assistant"]
        assert " ".join(assistant).split() == STORY.split()
    run(scenario)


def test_a_quick_look_over_a_reply_hears_any_language_leaning_to_the_replys() -> None:
    # Pinned to the reply's language, whisper makes a user speaking another language into
    # words of the reply's, which can pass for its echo (benchmarks/overlap_languages.py).
    async def scenario() -> None:
        transcriber = FakeTranscriber([("Tell me a story", "en"), ("Stop, wie spät ist es?", "de")])
        h = Harness(transcriber, FakeChat([STORY, "Es ist spät."]))
        await replying(h)
        await h.speak(seconds=0.8)
        await h.wait_done(2)
        looks = [o for o in transcriber.calls if o.max_new_tokens == JUDGE_TOKENS]
        assert looks and all(o.language is None and o.previous_language == "en"
                             and o.switch_margin == TranscribeOptions().switch_margin
                             for o in looks)
    run(scenario)


def test_a_quick_look_keeps_the_language_the_session_pins() -> None:
    async def scenario() -> None:
        transcriber = FakeTranscriber([("Erzähl mir etwas", "de"), ("Stopp, warte.", "de")])
        h = Harness(transcriber, FakeChat([STORY, "Gut."]))
        await h.session.handle(SessionUpdate("e0", {"type": "realtime", "audio": {"input": {
            "transcription": {"language": "de"}}}}))
        await replying(h)
        await h.speak(seconds=0.8)
        await h.wait_done(2)
        looks = [o for o in transcriber.calls if o.max_new_tokens == JUDGE_TOKENS]
        assert looks and all(o.language == "de" for o in looks)
    run(scenario)


def test_the_transcription_prompt_steers_the_users_turns_but_not_the_quick_looks() -> None:
    async def scenario() -> None:
        transcriber = FakeTranscriber([("Erzähl mir etwas", "de"), ("Stopp, warte.", "de")])
        h = Harness(transcriber, FakeChat([STORY, "Gut."]))
        await h.session.handle(SessionUpdate("e0", {"type": "realtime", "audio": {"input": {
            "transcription": {"prompt": "Küche, Wohnzimmer"}}}}))
        await replying(h)
        await h.speak(seconds=0.8)
        await h.wait_done(2)
        looks = [o for o in transcriber.calls if o.max_new_tokens == JUDGE_TOKENS]
        turns = [o for o in transcriber.calls if o.max_new_tokens is None]
        assert looks and all(o.prompt is None for o in looks)
        assert turns and all(o.prompt == "Küche, Wohnzimmer" for o in turns)
    run(scenario)


def test_a_short_word_misheard_twice_over_the_reply_is_a_backchannel_not_a_cut() -> None:
    # whisper-base heard espeak-ng's "tak" as "Czart": one word of the user's own, twice.
    async def scenario() -> None:
        h = Harness(FakeTranscriber([("Tell me a story", "en"), ("Czart.", "pl")]),
                    FakeChat([STORY]))
        await replying(h)
        await h.speak(seconds=0.4)
        await h.wait_for(lambda: bool(h.of("input_audio_buffer.backchannel")))
        await h.wait_done()
        assert speech_starts(h) == 1
        assert [d.fields["response"]["status"] for d in h.of("response.done")] == ["completed"]
    run(scenario)


async def speaking_over_a_quiet_microphone(h: Harness, seconds: float,
                                           interruption: dict[str, Any] | None = None) -> None:
    """The reply plays for a while over a silent microphone (echo cancelled), then the user
    makes a sound over it."""
    await replying(h, interruption)
    await h.send_audio(silence(1.2))
    await h.speak(seconds=seconds)


def test_a_backchannel_ducks_the_reply_while_it_is_judged_and_then_restores_it() -> None:
    async def scenario() -> None:
        h = Harness(FakeTranscriber([("Tell me a story", "en"), ("Mhm, genau.", "de")]),
                    FakeChat([STORY]))
        await speaking_over_a_quiet_microphone(h, 0.4)
        await h.wait_done()
        types = [t for t in h.types() if t.startswith("output_audio_buffer")
                 or t == "input_audio_buffer.backchannel"]
        # Restored as soon as the speech ends, before its transcript is known.
        assert types == ["output_audio_buffer.duck", "output_audio_buffer.unduck",
                         "input_audio_buffer.backchannel"]
        duck = h.of("output_audio_buffer.duck")[0].fields
        reply_id = h.of("response.created")[0].fields["response"]["id"]
        assert duck["response_id"] == reply_id and duck["gain_db"] == -18
        assert h.of("output_audio_buffer.unduck")[0].fields["response_id"] == reply_id
        assert h.of("response.done")[0].fields["response"]["status"] == "completed"
    run(scenario)


def test_the_users_words_duck_the_reply_before_they_cut_it() -> None:
    async def scenario() -> None:
        h = Harness(FakeTranscriber([("Tell me a story", "en"), ("Stop, what about Rome?", "en")]),
                    FakeChat([STORY, "Rome is lovely."]))
        await speaking_over_a_quiet_microphone(h, 0.8)
        await h.wait_done(2)
        types = h.types()
        assert types.count("output_audio_buffer.duck") == 1
        assert "output_audio_buffer.unduck" not in types
        cut = [i for i, t in enumerate(types) if t == "input_audio_buffer.speech_started"][1]
        assert types.index("output_audio_buffer.duck") < cut
        assert h.of("response.done")[0].fields["response"]["status"] == "cancelled"
    run(scenario)


def test_a_client_can_turn_ducking_off() -> None:
    async def scenario() -> None:
        h = Harness(FakeTranscriber([("Tell me a story", "en"), ("Mhm, genau.", "de")]),
                    FakeChat([STORY]))
        await speaking_over_a_quiet_microphone(h, 0.4, {"duck_db": 0})
        await h.wait_done()
        assert not [t for t in h.types() if t.startswith("output_audio_buffer")]
        assert h.session.config.interruption.duck_db == 0
    run(scenario)


def noise(seconds: float, rms: float) -> np.ndarray:
    rng = np.random.default_rng(11)
    return (rng.normal(0, rms * 32767, int(seconds * 24_000))).astype(np.int16)


def test_a_backchannel_whose_echo_keeps_the_vad_going_is_still_a_backchannel() -> None:
    async def scenario() -> None:
        # The room's noise while the reply plays; then "yeah", and after it 1.6 s of residual
        # echo that the VAD takes for speech but that is barely above the room's level. The
        # looks hear "Yeah, hold" again and again: two looks with a word of the user's own
        # would cut the reply once the speech lasted 0.8 s, but the voice lasted 0.4 s.
        h = Harness(FakeTranscriber([("Tell me a story", "en"), ("Yeah, hold.", "en")]),
                    FakeChat([STORY]))
        await replying(h)
        await h.send_audio(noise(1.2, rms=0.03))
        await h.send_audio(np.concatenate([tone(0.4), noise(1.6, rms=0.07), silence(0.8)]),
                           pace_s=0.02)  # in real time: the looks keep up
        await h.wait_done()
        assert speech_starts(h) == 1
        assert h.of("input_audio_buffer.backchannel")
        assert h.of("response.done")[0].fields["response"]["status"] == "completed"
    run(scenario)


@pytest.mark.parametrize(("rms", "cut"), [
    (0.06, False),  # 25 dB below the question's voice: the reply's own leak
    (0.3, True),  # the user's voice
])
def test_in_the_replys_first_moments_only_a_sound_near_the_users_voice_cuts_it(
        rms: float, cut: bool) -> None:
    """No quiet level is known yet while the reply starts (nor where the microphone hears
    it): whisper made "That's what we're doing." of what a canceller still converging let
    through of the reply, 20-28 dB below the question's voice."""
    async def scenario() -> None:
        h = Harness(FakeTranscriber([("Tell me a story", "en"),
                                     ("That's what we're doing.", "en"), ("", "en")]),
                    FakeChat([STORY, "We are talking."]))
        await h.send_audio(np.concatenate([tone(0.6, amplitude=0.9), silence(0.7)]))
        await h.wait_for(lambda: len(h.of("response.output_audio.delta")) >= 3)
        await h.send_audio(np.concatenate([noise(1.0, rms), silence(0.8)]))
        await h.wait_done(2 if cut else 1)
        statuses = [d.fields["response"]["status"] for d in h.of("response.done")]
        assert statuses[0] == ("cancelled" if cut else "completed")
        assert speech_starts(h) == (2 if cut else 1)
        users = [i.text for i in h.session.history if i.role == "user"]
        assert users[-1] == ("That's what we're doing." if cut else "Tell me a story")
    run(scenario)
