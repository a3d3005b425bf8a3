"""Which language a turn is decoded in: detection within the allowed set, with hysteresis
towards the conversation's language so far (a table of detection scores -> choice)."""

from __future__ import annotations

import pytest

from asr.transcript import TranscribeOptions, Transcript, pick_language, runner_up, surer
from tests.fakes import FakeChat, FakeTranscriber
from tests.test_session import Harness, run

EUROPE = ("en", "de", "fr", "es", "it", "nl", "pt", "pl")


def scores(**probabilities: float) -> list[tuple[str, float]]:
    return [(f"<|{code}|>", p) for code, p in probabilities.items()]


@pytest.mark.parametrize(("detected", "previous", "expected"), [
    # A clear switch switches.
    (scores(en=0.85, de=0.10, ja=0.05), "de", "en"),
    # A close call keeps the conversation's language.
    (scores(en=0.45, de=0.35, ja=0.20), "de", "de"),
    # No previous language: the most probable one.
    (scores(en=0.45, de=0.35, ja=0.20), None, "en"),
    # A previous language outside the allowed set is not kept.
    (scores(en=0.45, ja=0.40, de=0.15), "ja", "en"),
    # Only allowed languages count: Japanese wins overall, German among the allowed.
    (scores(ja=0.60, de=0.25, en=0.15), "en", "de"),
])
def test_the_language_follows_the_speaker_with_hysteresis(
        detected: list[tuple[str, float]], previous: str | None, expected: str) -> None:
    options = TranscribeOptions(allowed_languages=EUROPE, previous_language=previous)
    language, probability = pick_language(detected, options)
    assert language == expected
    assert 0.0 < probability <= 1.0


def test_the_margin_is_a_setting() -> None:
    close = scores(fr=0.55, it=0.40)
    assert pick_language(close, TranscribeOptions(previous_language="it"))[0] == "it"
    assert pick_language(close, TranscribeOptions(previous_language="it",
                                                   switch_margin=0.1))[0] == "fr"


@pytest.mark.parametrize(("detected", "previous", "expected"), [
    # A close call on a first turn: decode again in the most probable other allowed language.
    (scores(it=0.36, pt=0.30, pl=0.20, es=0.14), None, "pt"),
    # Only allowed languages are runners-up (Japanese is not).
    (scores(ja=0.40, it=0.35, pt=0.25), None, "pt"),
    # A sure detection is decoded once.
    (scores(de=0.90, en=0.10), None, None),
    # Within a conversation its language's hysteresis decides, not a second decode.
    (scores(it=0.36, pt=0.30, pl=0.34), "pl", None),
])
def test_a_close_call_on_a_first_turn_names_a_second_language(
        detected: list[tuple[str, float]], previous: str | None, expected: str | None) -> None:
    options = TranscribeOptions(allowed_languages=EUROPE, previous_language=previous,
                                second_language_below=0.6)
    second = runner_up(detected, options, pick_language(detected, options))
    assert (second and second[0]) == expected
    if second is not None:
        assert 0.0 < second[1] < 0.6


def test_without_the_setting_a_close_call_is_decoded_once() -> None:
    close = scores(it=0.36, pt=0.30, pl=0.34)
    options = TranscribeOptions(allowed_languages=EUROPE)
    assert runner_up(close, options, pick_language(close, options)) is None


def test_a_single_allowed_language_has_no_runner_up() -> None:
    close = scores(de=0.40, en=0.35, fr=0.25)
    options = TranscribeOptions(allowed_languages=("de",), second_language_below=0.6)
    assert runner_up(close, options, ("de", 0.40)) is None


def transcript(text: str, language: str, log_probability: float) -> Transcript:
    return Transcript(text, language, 0.4, 0.0, log_probability, 1.0, 1.5, 0.3,
                      rejected=None if text else "low_confidence")


@pytest.mark.parametrize(("first", "second", "kept"), [
    # Whisper much surer in the runner-up language: it wins.
    (transcript("ed ieri di di pubblica", "it", -1.28),
     transcript("Ele está república.", "pt", -0.97), "pt"),
    # About as sure in both: the more probable language keeps it.
    (transcript("Apaga la luz.", "es", -0.93), transcript("Apaga la luce.", "it", -0.88), "es"),
    # Words over none, whichever the language.
    (transcript("", "pl", -1.6), transcript("Imposta un timer.", "it", -0.83), "it"),
    (transcript("Zet de timer.", "nl", -0.9), transcript("", "de", 0.0), "nl"),
])
def test_of_two_languages_the_surer_decode_is_kept(first: Transcript, second: Transcript,
                                                   kept: str) -> None:
    assert surer(first, second, margin=0.1).language == kept


def test_the_next_turn_is_transcribed_with_the_conversations_language_as_a_hint() -> None:
    async def scenario() -> None:
        transcriber = FakeTranscriber([("Hallo", "de"), ("Ja", "de")])
        h = Harness(transcriber, FakeChat(["Hallo!", "Gut."]))
        await h.speak()
        await h.wait_done()
        await h.speak()
        await h.wait_done(2)
        finals = [o for o in transcriber.calls if o.max_new_tokens is None]
        assert [o.previous_language for o in finals] == [None, "de"]
    run(scenario)


def test_finals_decode_a_close_call_twice_and_partials_do_not() -> None:
    async def scenario() -> None:
        transcriber = FakeTranscriber([("Hallo", "de")])
        h = Harness(transcriber, FakeChat(["Hallo!"]), second_language_below=0.6,
                    partial_interval_s=0.2)
        await h.speak(seconds=1.5)
        await h.wait_done()
        finals = [o for o in transcriber.calls if o.max_new_tokens is None]
        partials = [o for o in transcriber.calls if o.max_new_tokens is not None]
        assert finals and all(o.second_language_below == 0.6 for o in finals)
        assert partials and all(o.second_language_below is None for o in partials)
    run(scenario)

