"""What is said over a reply: echo, backchannel, the user's words or nothing (voice/overlap.py)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from voice.audio import ASR_RATE
from voice.overlap import (
    ECHO_FOLLOWS,
    Judgement,
    Verdict,
    confirms,
    fold,
    follows,
    follows_recent,
    is_backchannel,
    judge,
    loudness,
    settled,
)
from voice.reply_audio import ReplyAudio

REPLY = ("Berlin is the capital of Germany. It has about three point seven million people "
         "and many museums on its island in the river Spree.")


@pytest.mark.parametrize(("language", "said"), [
    ("en", "Mhm."), ("en", "Yeah, yeah."), ("en", "Okay."), ("en", "Uh-huh."),
    ("de", "Ja."), ("de", "Genau."), ("de", "Ach so."), ("fr", "Oui."), ("fr", "D'accord !"),
    ("fr", "Ouais, bien sûr."), ("es", "Sí."), ("es", "Vale, vale."), ("es", "Claro."),
    ("it", "Certo."), ("it", "Sì, va bene."), ("nl", "Ja hoor."), ("nl", "Precies."),
    ("pt", "Sim."), ("pt", "Tá bom."), ("pl", "Tak."), ("pl", "No tak."), ("pl", "Właśnie."),
])
def test_acknowledgements_in_eight_languages_are_backchannels(language: str, said: str) -> None:
    assert judge(said, REPLY, (language,)).verdict is Verdict.BACKCHANNEL


def test_a_backchannel_has_a_length_limit() -> None:
    assert not is_backchannel(fold("yeah yeah yeah okay right"), ("en",))
    assert judge("Yeah, right, but what about Hamburg?", REPLY, ("en",)).verdict is Verdict.USER


def test_a_word_that_acknowledges_in_one_language_only_counts_in_that_language() -> None:
    assert judge("No.", REPLY, ("pl",)).verdict is Verdict.BACKCHANNEL  # Polish "no": yes, well
    assert judge("No.", REPLY, ("en",)).verdict is Verdict.USER


def test_the_replys_own_words_are_echo_even_when_recognised_slightly_wrong() -> None:
    assert judge("the capital of Germany", REPLY, ("en",)).verdict is Verdict.ECHO
    assert judge("three point seven millions people", REPLY, ("en",)).verdict is Verdict.ECHO
    assert judge("museum on it's island in the river spray", REPLY, ("en",)).verdict is Verdict.ECHO


def test_the_replys_phrase_is_echo_though_several_of_its_words_are_misheard() -> None:
    # Seen in a test run: the tail of a reverberant echo, three words of eight misheard.
    spoken = ("Berlin is also known for its beautiful architecture, with its iconic landmarks "
              "such as the Eiffel Tower and the Louvre Museum.")
    assert judge("the eye foot tower and the Lune Museum.", spoken, ("en",)).verdict \
        is Verdict.ECHO
    assert judge("Sorry, can you repeat the landmarks?", spoken, ("en",)).verdict \
        is Verdict.USER
    # An acknowledgement heard with that echo is still an acknowledgement.
    assert judge("Yeah, right. The Eiffel Tower and the Louvre Museum.", spoken,
                 ("en",)).verdict is Verdict.BACKCHANNEL


def test_a_hyphenated_word_of_the_reply_is_echo_written_in_parts_or_joined() -> None:
    # Seen in a test run: the end of a reply's echo, "and" misheard as "in".
    spoken = ("The city is home to many famous landmarks, including the Eiffel Tower, the "
              "Louvre Museum, and the Notre-Dame Cathedral.")
    for said in ("in the Notre Dame Cathedral.", "in the Notre-Dame Cathedral."):
        assert judge(said, spoken, ("en",)).verdict is Verdict.ECHO
    assert judge("Is Notre-Dame open on Sundays?", spoken, ("en",)).verdict is Verdict.USER


@pytest.mark.parametrize(("said", "spoken", "language"), [
    # Seen in a run: the reply wrote "1.5 billion", whisper wrote its echo as words.
    ("one five billion people this is", "with a population of over 1.5 billion people.", "en"),
    ("Over 5 billion people.", "with a population of over 1.5 billion people.", "en"),
    ("It had fifteen districts in 2024.", "In twenty twenty-four it had 15 districts.", "en"),
    ("drei Komma fünf Millionen Einwohner", "Es hat 3,5 Millionen Einwohner.", "de"),
    ("Il a 20 arrondissements.", "Paris a vingt arrondissements.", "fr"),
])
def test_the_replys_numbers_are_echo_whether_written_in_digits_or_words(
        said: str, spoken: str, language: str) -> None:
    assert judge(said, spoken, (language,)).verdict is Verdict.ECHO


def test_a_number_the_reply_did_not_say_is_the_users() -> None:
    said = "What about twenty twenty-five and 16 districts?"
    assert judge(said, "In twenty twenty-four it had 15 districts.", ("en",)).verdict \
        is Verdict.USER


def test_words_of_the_users_own_interrupt() -> None:
    assert judge("What about Munich instead?", REPLY, ("en",)).verdict is Verdict.USER
    assert judge("Kannst du mir das Wetter sagen?", REPLY, ("de", "en")).verdict is Verdict.USER


@pytest.mark.parametrize("said", ["Stop.", "Wait, wait.", "Warte mal.", "Arrête !", "Basta.",
                                  "Aspetta.", "Wacht even.", "Czekaj."])
def test_a_stop_word_interrupts_even_inside_echo(said: str) -> None:
    assert judge(said, REPLY, ("en",)).verdict is Verdict.USER
    assert judge(f"capital of Germany {said}", REPLY, ("en",)).verdict is Verdict.USER


def test_in_the_replys_echo_only_a_stop_word_of_a_language_in_play_counts() -> None:
    # Seen in a benchmark run without echo cancelling: the echo of "the Eiffel Tower" heard
    # as "Halt Tower" (a German stop word) over an English reply, its sound following the
    # reply's closely.
    spoken = ("The city is home to many famous landmarks, including the Eiffel Tower, the "
              "Louvre Museum, and the Notre-Dame Cathedral.")
    echo = "Halt Tower, the Lou Museum, and the Notre Dame"
    assert judge(echo, spoken, ("en",), follows_reply=0.84).verdict is Verdict.ECHO
    assert judge("Halt!", spoken, ("de", "en"), follows_reply=0.84).stop
    assert judge("Stop!", spoken, ("de",), follows_reply=0.84).stop  # English: always
    # A voice of its own (it does not follow the reply): a stop word in any language.
    assert judge(echo, spoken, ("en",), follows_reply=0.3).stop


def test_hold_on_asks_to_stop_and_a_lone_hold_does_not() -> None:
    # whisper hears the Dutch backchannel "ja hoor" over a reply as "Yeah hold."
    assert judge("Yeah hold.", REPLY, ("nl", "en")) == Judgement(Verdict.USER, sure=False)
    assert judge("Hold on.", REPLY, ("en",)) == Judgement(Verdict.USER, sure=True, stop=True)
    assert judge("capital of Germany hang on", REPLY, ("en",)).verdict is Verdict.USER
    reply = "Hold on to your ticket until the end of the trip."
    assert judge("hold on to your ticket", reply, ("en",)).verdict is Verdict.ECHO


def test_no_words_is_nothing() -> None:
    assert judge("", REPLY, ("en",)).verdict is Verdict.NOTHING
    assert judge(" ... ", REPLY, ("en",)).verdict is Verdict.NOTHING


def test_folding_drops_case_diacritics_apostrophes_and_punctuation() -> None:
    assert fold("D'accord, Sí! Właśnie — Genau.") == ["daccord", "si", "wlasnie", "genau"]


def test_one_or_two_words_of_the_users_own_need_a_second_look_and_a_stop_word_does_not() -> None:
    assert judge("For London.", REPLY, ("en",)) == Judgement(Verdict.USER, sure=False)
    assert judge("What about Munich or Hamburg?", REPLY, ("en",)) == Judgement(Verdict.USER)
    assert judge("Stop.", REPLY, ("en",)) == Judgement(Verdict.USER, sure=True, stop=True)


def test_a_stop_word_the_reply_itself_says_is_its_echo() -> None:
    reply = "Wait, let me think about that for a moment."
    assert judge("wait let me think", reply, ("en",)).verdict is Verdict.ECHO


def speech_like(rng: np.random.Generator, seconds: float) -> np.ndarray:
    """Noise with a syllable-like loudness contour: bursts of random length and strength."""
    size = int(seconds * 16_000)
    lengths = rng.integers(800, 4800, size // 800)  # 50-300 ms
    strengths = np.repeat(rng.uniform(0.02, 1.0, lengths.size), lengths)[:size]
    return (rng.normal(0, 0.2, size) * np.pad(strengths, (0, size - strengths.size))
            ).astype(np.float32)


def test_an_echo_follows_the_replys_loudness_and_a_voice_of_its_own_does_not() -> None:
    rng = np.random.default_rng(3)
    reply = speech_like(rng, 6.0)
    room = np.exp(-np.arange(1600) / 400.0)  # 100 ms of decaying reverberation
    echo = np.convolve(reply, room)[:reply.size] * 0.02
    delay = 16_000 * 120 // 1000
    heard_echo = np.concatenate([np.zeros(delay, np.float32), echo])[:reply.size]
    voice = speech_like(np.random.default_rng(4), 6.0)
    reply_contour = loudness(reply, 16_000)
    start = 200  # frames: 2 s into the reply
    window = slice(start * 160, (start + 100) * 160)
    assert follows(loudness(heard_echo[window], 16_000), reply_contour, start) > ECHO_FOLLOWS
    over = voice[window] + heard_echo[window] * 0.1
    assert follows(loudness(over, 16_000), reply_contour, start) < ECHO_FOLLOWS
    assert follows(loudness(np.zeros(1600, np.float32), 16_000), reply_contour, start) == 0.0


def test_sound_that_follows_the_reply_is_echo_whatever_whisper_made_of_it() -> None:
    assert judge("For one is a city.", REPLY, ("en",), follows_reply=0.8).verdict \
        is Verdict.ECHO
    assert judge("Stop!", REPLY, ("en",), follows_reply=0.8).verdict is Verdict.USER
    # One or two words of its own, in a sound that half follows the reply: a misheard echo.
    assert judge("I'm two.", REPLY, ("en",), follows_reply=0.5).verdict is Verdict.ECHO
    assert judge("What about Munich or Hamburg?", REPLY, ("en",), follows_reply=0.5) \
        == Judgement(Verdict.USER)


def test_an_echo_of_the_replys_first_words_follows_it_from_silence() -> None:
    rng = np.random.default_rng(5)
    reply = speech_like(rng, 3.0)
    delay = 16_000 * 80 // 1000
    heard = np.concatenate([np.full(4_800 + delay, 1e-4, np.float32), reply * 0.05])
    # The decode's padding reaches 300 ms (30 frames) before the reply became audible.
    assert follows(loudness(heard[:24_000], 16_000), loudness(reply, 16_000), -30) \
        > ECHO_FOLLOWS


@pytest.mark.parametrize("said", ["R, R, R, R, R, R,", "1, 2, 3, 4, 5, 6,", "e e e e e e"])
def test_what_whisper_makes_of_noise_is_nothing(said: str) -> None:
    assert judge(said, REPLY, ("en",)).verdict is Verdict.NOTHING


@pytest.mark.parametrize(("said", "language"), [
    # Seen in a benchmark run: the leak of a reply's first words through an echo canceller
    # that had not converged yet, looked at again and again.
    ("So, three, four, five, six, seven,", "en"), ("3, 2, 3, 4, 5, 6,", "en"),
    ("Eins, zwei, drei, vier.", "de"), ("Un, deux, trois, quatre, cinq.", "fr"),
])
def test_a_count_is_what_whisper_makes_of_noise(said: str, language: str) -> None:
    assert judge(said, REPLY, (language,)).verdict is Verdict.NOTHING


def test_numbers_in_a_request_do_not_make_it_noise() -> None:
    assert judge("Set a timer for five minutes instead.", REPLY, ("en",)) \
        == Judgement(Verdict.USER)
    assert judge("Stell einen Timer auf zehn Minuten.", REPLY, ("de",)) \
        == Judgement(Verdict.USER)


def test_a_word_said_again_and_again_counts_once() -> None:
    assert judge("Munich Munich Munich", REPLY, ("en",)) == Judgement(Verdict.USER, sure=False)


@pytest.mark.parametrize(("look", "previous", "heard_ms", "confirmed"), [
    (Judgement(Verdict.USER, sure=True), None, 250, True),  # a stop word, 3+ own words
    (Judgement(Verdict.USER, sure=False), None, 1200, False),  # one weak look: wait
    (Judgement(Verdict.USER, sure=False), Judgement(Verdict.USER, sure=False), 900, True),
    (Judgement(Verdict.USER, sure=False), Judgement(Verdict.USER, sure=False), 600, False),
    (Judgement(Verdict.USER, sure=False), Judgement(Verdict.ECHO), 1500, False),
    (Judgement(Verdict.ECHO), Judgement(Verdict.USER, sure=True), 1500, False),
    (Judgement(Verdict.BACKCHANNEL), None, 400, False),
])
def test_a_look_confirms_the_user_when_sure_or_agreeing_once_the_speech_is_not_short(
        look: Judgement, previous: Judgement | None, heard_ms: int, confirmed: bool) -> None:
    assert confirms(look, previous, heard_ms) is confirmed


@pytest.mark.parametrize(("look", "previous", "voice_ms", "confirmed"), [
    (Judgement(Verdict.USER, sure=False), None, 900, True),  # a voice this long: one look
    (Judgement(Verdict.USER, sure=False), None, 600, False),  # a "genau" misheard: wait
    (Judgement(Verdict.USER, sure=False), Judgement(Verdict.USER, sure=False), 600, False),
    (Judgement(Verdict.USER, sure=True), None, 600, False),  # "You are the whole." (ja hoor)
    (Judgement(Verdict.USER, stop=True), None, 300, True),  # "stop"
    (Judgement(Verdict.USER, sure=True), None, 800, True),
    (Judgement(Verdict.NOTHING), None, 1500, False),
    (Judgement(Verdict.BACKCHANNEL), None, 1500, False),
])
def test_where_the_voice_is_known_one_look_confirms_it_once_it_lasted(
        look: Judgement, previous: Judgement | None, voice_ms: int, confirmed: bool) -> None:
    assert confirms(look, previous, voice_ms, voiced=True) is confirmed


@pytest.mark.parametrize(("look", "speech_ms", "verdict"), [
    (Judgement(Verdict.USER, sure=False), 500, Verdict.BACKCHANNEL),  # "Todd" for "tak"
    (Judgement(Verdict.USER, sure=False), 900, Verdict.USER),
    (Judgement(Verdict.USER, sure=True), 300, Verdict.USER),  # "Stop." / 3+ words of its own
    (Judgement(Verdict.ECHO), 300, Verdict.ECHO),
    (Judgement(Verdict.NOTHING), 2000, Verdict.NOTHING),
])
def test_a_short_unsure_word_of_the_users_settles_as_a_backchannel(
        look: Judgement, speech_ms: int, verdict: Verdict) -> None:
    assert settled(look, speech_ms) is verdict


@pytest.mark.parametrize(("look", "voice_ms", "verdict"), [
    # "In the end." made of a "sim" and the echo around it: a voice of 0.4 s
    (Judgement(Verdict.USER, sure=True), 400, Verdict.BACKCHANNEL),
    (Judgement(Verdict.USER, sure=True), 900, Verdict.USER),  # a sentence takes longer
    (Judgement(Verdict.USER, stop=True), 300, Verdict.USER),  # "Stop."
    (Judgement(Verdict.USER, sure=False), 500, Verdict.BACKCHANNEL),
    (Judgement(Verdict.ECHO), 300, Verdict.ECHO),
])
def test_where_the_voice_is_known_any_words_in_a_voice_that_short_settle_as_a_backchannel(
        look: Judgement, voice_ms: int, verdict: Verdict) -> None:
    assert settled(look, voice_ms, voiced=True) is verdict


def _enveloped_noise(envelope_db: np.ndarray, rate: int, seed: int) -> np.ndarray:
    """Noise whose loudness follows ``envelope_db`` (one value per 10 ms)."""
    gain = np.repeat(10 ** (envelope_db / 20), rate // 100)
    return (np.random.default_rng(seed).standard_normal(gain.size) * gain).astype(np.float32)


def test_a_voice_that_follows_the_reply_only_briefly_is_not_taken_for_its_echo() -> None:
    rate, rng = 16_000, np.random.default_rng(3)
    envelope = rng.uniform(-50, -10, 600)  # the reply: 6 s of syllable-like loudness
    reply = _enveloped_noise(envelope, rate, 1)
    contour = loudness(reply, rate)
    # Speech over the reply from 2.0 s to 3.5 s (media time = reply time here). Its last
    # 0.6 s happens to rise and fall with the reply; the 0.9 s before do not.
    voice = np.concatenate([_enveloped_noise(rng.uniform(-50, -10, 90), rate, 2),
                            _enveloped_noise(envelope[290:350], rate, 4)])
    end = int(3.5 * rate)
    assert follows(loudness(voice[-int(0.6 * rate):], rate), contour, 290) > 0.9
    assert follows_recent(voice, end, contour, 0, rate, (0.6, 1.5)) < 0.45
    # The reply's own echo, 100 ms late and 15 dB down, follows it over both stretches.
    echo = 0.18 * np.concatenate([np.zeros(rate // 10, np.float32), reply])[int(2.0 * rate):end]
    assert follows_recent(echo, end, contour, 0, rate, (0.6, 1.5)) > 0.8


def test_an_echo_heard_while_the_next_piece_is_late_may_run_on_into_its_words() -> None:
    # The first piece has played (1.2 s); the rest of the sentence is written but not yet
    # synthesized. Whisper hears the echo of "Berlin is a city" as "for one is a city and":
    # the next words written count as the reply's own, so this is echo, not the user.
    reply = ReplyAudio()  # the mixin's state only
    reply.item = SimpleNamespace(pieces=[("Berlin is a city", 1200.0)])  # type: ignore[assignment]
    reply.audible_at, reply.holds = 0, []
    reply.text = "Berlin is a city and the capital of Germany, with many parks."
    spoken_between = reply.spoken_between
    assert spoken_between(0, ASR_RATE) == "Berlin is a city"  # within the audio made
    late = spoken_between(0, 2 * ASR_RATE)
    assert late == "Berlin is a city and the capital of Germany, with"
    assert judge("for one is a city and", late, ["en"]).verdict is Verdict.ECHO
    assert judge("for one is a city and", "Berlin is a city", ["en"]).verdict is Verdict.USER
