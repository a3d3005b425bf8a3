"""Speech the service heard but could not make out gets "say it again" in the user's language;
short sounds, a session that turns it off, and a reply cut off by such speech (it resumes) get
no question."""

from __future__ import annotations

import asyncio

import pytest

from asr.transcript import Transcript
from tests.fakes import FakeChat, FakeTranscriber, silence
from tests.test_session import Harness, run
from tests.test_session_duplex import STORY, replying
from voice.ask_again import PHRASES, ask_again, unclear


def heard(text: str = "", rejected: str | None = "low_confidence", language: str = "pt",
          probability: float = 0.9) -> Transcript:
    return Transcript(text, language, probability, 0.4, -1.6, 1.0, 2.9, 0.3, rejected)


@pytest.mark.parametrize(("transcript", "speech_s", "min_speech_s", "asks"), [
    (heard(), 1.8, 1.0, True),
    (heard(rejected="no_speech"), 1.0, 1.0, True),
    (heard(rejected="repetitive"), 4.0, 1.0, True),
    (heard(), 0.6, 1.0, False),  # a cough, a door, a "hm"
    (heard(rejected="silence"), 3.0, 1.0, False),  # nothing loud enough to be speech
    (heard(rejected="transcription_failed"), 3.0, 1.0, False),  # an error event already
    (heard("que dia é o exame", None), 2.0, 1.0, False),  # made out: answered as usual
    (heard(), 5.0, 0.0, False),  # turned off
])
def test_only_long_speech_whisper_rejected_is_asked_about(
        transcript: Transcript, speech_s: float, min_speech_s: float, asks: bool) -> None:
    assert unclear(transcript, speech_s, min_speech_s) is asks


@pytest.mark.parametrize(("transcript", "language", "pinned", "expected"), [
    (heard(language="pt", probability=0.9), "it", False, "pt"),  # sure of what it heard
    (heard(language="en", probability=0.3), "it", False, "it"),  # unsure: the conversation's
    (heard(language="pt", probability=0.9), "de", True, "de"),  # the session's, pinned
    (heard(language="ja", probability=0.9), "fr", False, "fr"),  # no phrase for it
    (heard(language="ja", probability=0.9), "sv", False, "en"),
])
def test_the_question_is_in_the_users_language(
        transcript: Transcript, language: str, pinned: bool, expected: str) -> None:
    assert ask_again(transcript, language, pinned) == (PHRASES[expected], expected)


def test_every_supported_language_has_its_own_question() -> None:
    assert set(PHRASES) == {"en", "de", "fr", "es", "it", "nl", "pt", "pl"}
    assert len(set(PHRASES.values())) == len(PHRASES)


def spoken_reply(h: Harness) -> str:
    return "".join(e.fields["delta"] for e in h.of("response.output_audio_transcript.delta"))


def test_speech_not_made_out_is_answered_by_asking_to_say_it_again() -> None:
    async def scenario() -> None:
        h = Harness(FakeTranscriber([("", "de")]), FakeChat(["Never said."]))
        await h.speak(seconds=1.5)
        await h.wait_done()
        response = h.of("response.done")[0].fields["response"]
        assert response["status"] == "completed"
        assert spoken_reply(h) == PHRASES["de"]
        assert h.of("response.output_audio.delta")  # spoken, not only written
        assert not h.chat.requests  # the model is not asked to answer nothing
        assistant = [i for i in h.session.history if i.role == "assistant"]
        assert [i.text for i in assistant] == [PHRASES["de"]]
        assert h.turns and h.turns[0][1] == "completed"
    run(scenario)


@pytest.mark.parametrize(("seconds", "min_speech_s"), [
    (0.5, 1.0),  # a short sound: a cough, a door, a "hm"
    (1.5, 0.0),  # a service that turns asking off
])
def test_no_reply_to_a_short_sound_or_where_asking_is_off(seconds: float,
                                                          min_speech_s: float) -> None:
    async def scenario() -> None:
        h = Harness(FakeTranscriber([("", "de")]), FakeChat(["Never said."]),
                    ask_again_min_speech_s=min_speech_s)
        await h.speak(seconds=seconds)
        await h.wait_for(lambda: bool(
            h.of("conversation.item.input_audio_transcription.completed")))
        await asyncio.sleep(0.2)  # a reply asking to repeat would have begun by now
        assert "response.created" not in h.types()
    run(scenario)


def test_a_reply_cut_off_by_speech_not_made_out_resumes_instead_of_asking() -> None:
    async def scenario() -> None:
        h = Harness(FakeTranscriber([("Tell me a story", "en"), ("", "en")]),
                    FakeChat([STORY, STORY], delay_s=0.02))
        await replying(h, {"guard": False})
        await h.send_audio(silence(1.0))
        await h.speak(seconds=1.5)
        await h.wait_done(2)
        assert h.of("response.resumed")
        assistant = [i for i in h.session.history if i.role == "assistant"]
        assert " ".join(i.text for i in assistant).split() == STORY.split()
        assert PHRASES["en"] not in spoken_reply(h)
    run(scenario)
