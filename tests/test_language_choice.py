"""Which language a turn is decoded in: detection within the allowed set, with hysteresis
towards the conversation's language so far (a table of detection scores -> choice)."""

from __future__ import annotations

import pytest

from asr.transcript import TranscribeOptions, pick_language
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

