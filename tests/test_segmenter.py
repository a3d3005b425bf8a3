"""The segmenter as a pure function: tables of replies and the pieces they must become."""

from __future__ import annotations

import pytest

from tts.segmenter import Segmenter, SegmenterConfig

# The sentence rules alone: the first piece ends at a clause after 4 words, never mid-clause.
SENTENCES = {"first_piece_min_words": 4, "first_piece_max_words": 0}


def segment(text: str, language: str, step: int = 1, **config: int) -> list[str]:
    """Feed ``text`` in deltas of ``step`` characters, as a model streams it (by default with
    the sentence rules alone; pass the early-first-piece settings to test those)."""
    segmenter = Segmenter(SegmenterConfig(language=language, **(config or SENTENCES)))
    pieces: list[str] = []
    for start in range(0, len(text), step):
        pieces += segmenter.feed(text[start:start + step])
    return pieces + segmenter.flush()


CASES = [
    # (language, reply, expected pieces)
    ("en", "Sure. The capital of France is Paris, a city of museums. It has 2.1 million people.",
     ["Sure.", "The capital of France is Paris, a city of museums.",
      "It has 2.1 million people."]),
    ("en", "Dr. Smith said it costs $3.50, e.g. for one ticket. Mr. J. R. Tolkien agreed!",
     ["Dr. Smith said it costs $3.50,", "e.g. for one ticket.", "Mr. J. R. Tolkien agreed!"]),
    ("en", "I like fruit, vegetables, etc. and more. Then I sleep.",
     ["I like fruit, vegetables,", "etc. and more.", "Then I sleep."]),
    ("en", "It is version 3.5. Released in 2023. Good?",
     ["It is version 3.5.", "Released in 2023.", "Good?"]),
    ("de", "Das ist z. B. ein Test. Dr. Müller kommt am 3. Oktober um 14.30 Uhr.",
     ["Das ist z. B. ein Test.", "Dr. Müller kommt am 3. Oktober um 14.30 Uhr."]),
    ("de", "Berlin ist die Hauptstadt von Deutschland, mit ca. 3,7 Mio. Einwohnern. Schön!",
     ["Berlin ist die Hauptstadt von Deutschland,", "mit ca. 3,7 Mio. Einwohnern.", "Schön!"]),
    ("de", "Wir haben Äpfel, Birnen usw. gekauft. Danach gingen wir heim.",
     ["Wir haben Äpfel, Birnen usw. gekauft.", "Danach gingen wir heim."]),
    ("fr", "Bonjour, je suis M. Dupont. Il fait 3,5 degrés, c.-à-d. froid. Voilà !",
     ["Bonjour, je suis M. Dupont.", "Il fait 3,5 degrés, c.-à-d. froid.", "Voilà !"]),
    ("fr", "La capitale de la France est Paris, une très belle ville. Elle est grande.",
     ["La capitale de la France est Paris,", "une très belle ville.", "Elle est grande."]),
    ("es", "Hola, soy la Sra. García. Vivo en la Avda. de Mayo, núm. 5. ¿Y tú?",
     ["Hola, soy la Sra. García.", "Vivo en la Avda. de Mayo, núm. 5.", "¿Y tú?"]),
    ("es", "La capital de España es Madrid, p. ej. para turistas. Tiene 3,3 millones.",
     ["La capital de España es Madrid,", "p. ej. para turistas.", "Tiene 3,3 millones."]),
    ("it", "Il Sig. Rossi e il Dott. Bianchi arrivano alle 9.15. Benvenuti!",
     ["Il Sig. Rossi e il Dott. Bianchi arrivano alle 9.15.", "Benvenuti!"]),
    ("it", "Mi piacciono mele, pere, ecc. ma non le banane. Ciao.",
     ["Mi piacciono mele, pere,", "ecc. ma non le banane.", "Ciao."]),
    ("nl", "Ik heb bijv. appels gekocht. Dhr. Jansen komt om 3.30 uur. Tot ziens!",
     ["Ik heb bijv. appels gekocht.", "Dhr. Jansen komt om 3.30 uur.", "Tot ziens!"]),
    ("pt", "O Sr. Silva mora em Lisboa, p. ex. no centro. A Dra. Costa também.",
     ["O Sr. Silva mora em Lisboa,", "p. ex. no centro.", "A Dra. Costa também."]),
    ("pt", "Custa 2,5 euros. Obrigado!",
     ["Custa 2,5 euros.", "Obrigado!"]),
    ("pl", "Mam np. jabłka, gruszki itd. w domu. Spotkamy się 3. maja u dr. Nowaka.",
     ["Mam np. jabłka, gruszki itd. w domu.", "Spotkamy się 3. maja u dr. Nowaka."]),
    ("pl", "Warszawa to stolica Polski, ma ok. 1,8 mln mieszkańców. Dziękuję!",
     ["Warszawa to stolica Polski,", "ma ok. 1,8 mln mieszkańców.", "Dziękuję!"]),
]


@pytest.mark.parametrize(("language", "reply", "expected"), CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_replies_are_cut_into_speakable_pieces(language: str, reply: str,
                                               expected: list[str]) -> None:
    assert segment(reply, language) == expected


@pytest.mark.parametrize(("language", "reply", "expected"), CASES[:6],
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES[:6])])
@pytest.mark.parametrize("step", [3, 7, 1000])
def test_pieces_do_not_depend_on_how_the_text_was_streamed(language: str, reply: str,
                                                           expected: list[str],
                                                           step: int) -> None:
    assert segment(reply, language, step) == expected


def test_only_the_first_piece_may_end_at_a_comma() -> None:
    pieces = segment("Yes, of course I can, and I will do it now, gladly. "
                     "Later, I will call you, if you want.", "en")
    assert pieces == ["Yes, of course I can,", "and I will do it now, gladly.",
                      "Later, I will call you, if you want."]


def test_a_short_first_clause_waits_for_more_words() -> None:
    assert segment("Well, that depends on the weather. Ok.", "en") == [
        "Well, that depends on the weather.", "Ok."]


def test_a_piece_is_emitted_as_soon_as_its_boundary_is_certain() -> None:
    segmenter = Segmenter(SegmenterConfig(language="en", **SENTENCES))
    assert segmenter.feed("The answer is four") == []
    assert segmenter.feed(".") == []  # could still be "four.5" or an abbreviation
    assert segmenter.feed(" And") == ["The answer is four."]
    assert segmenter.flush() == ["And"]


def test_newlines_end_pieces_and_markup_only_pieces_are_dropped() -> None:
    assert segment("First line\n\n- second line\n", "en") == ["First line", "- second line"]
    assert segment("...", "en") == []


def test_a_run_on_text_is_cut_at_a_space() -> None:
    pieces = segment("word " * 120, "en")
    assert len(pieces) >= 2
    assert all(len(p) <= 250 for p in pieces)
    assert " ".join(pieces).split() == ["word"] * 120


@pytest.mark.parametrize(("piece", "spoken"), [
    ("1. **Choose a cup** that you like.", "1. Choose a cup that you like."),
    ("## Steps", "Steps"),
    ("- Use `hot` water", "Use hot water"),
    ("See [the guide](https://example.org) for more.", "See the guide for more."),
    ("Plain text stays, 3 * 4 = 12.", "Plain text stays, 3 4 = 12."),
    ("Here it is:\n```json\n", "Here it is:"),  # the fence around a call taken out
])
def test_markdown_is_not_read_aloud(piece: str, spoken: str) -> None:
    from tts.segmenter import speakable

    assert speakable(piece) == spoken


# (language, reply, expected pieces) that a boundary ends before any word limit
AT_BOUNDARIES = [
    ("en", "Of course, I can help you with that today. Bye.",
     ["Of course,", "I can help you with that today.", "Bye."]),
    ("en", "Yes. The answer is four.", ["Yes.", "The answer is four."]),
    ("de", "Das ist z. B. ein sehr guter Test. Gut.",
     ["Das ist z. B.", "ein sehr guter Test.", "Gut."]),
]

EARLY = [*AT_BOUNDARIES,  # first pieces of up to four words (the default)
    # (language, reply, expected pieces) with 2 to 4 words first
    ("en", "The capital of France is Paris, a city of museums. It is big.",
     ["The capital of France", "is Paris, a city of museums.", "It is big."]),
    ("en", "I think that you would really like the new museum. Go!",
     ["I think that you", "would really like the new museum.", "Go!"]),
    ("it", "Il Sig. Rossi e il Dott. Bianchi arrivano alle 9.15. Benvenuti!",
     ["Il Sig. Rossi", "e il Dott. Bianchi arrivano alle 9.15.", "Benvenuti!"]),
    ("pl", "Mam 3,5 kilo jabłek i gruszek w domu.", ["Mam 3,5 kilo", "jabłek i gruszek w domu."]),
]

EARLY_SIX = [*AT_BOUNDARIES,  # [tts] first_piece_words = 6
    # (language, reply, expected pieces) with up to six words first
    ("en", "The capital of France is Paris, a city of museums. It is big.",
     ["The capital of France is Paris,", "a city of museums.", "It is big."]),
    ("en", "I think that you would really like the new museum. Go!",
     ["I think that you would really", "like the new museum.", "Go!"]),
    ("it", "Il Sig. Rossi e il Dott. Bianchi arrivano alle 9.15. Benvenuti!",
     ["Il Sig. Rossi e il Dott. Bianchi", "arrivano alle 9.15.", "Benvenuti!"]),
    ("pl", "Mam 3,5 kilo jabłek i gruszek w domu.", ["Mam 3,5 kilo jabłek", "i gruszek w domu."]),
]


@pytest.mark.parametrize(("words", "language", "reply", "expected"),
                         [(None, *c) for c in EARLY] + [(6, *c) for c in EARLY_SIX],
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(EARLY)]
                         + [f"six-{c[0]}-{i}" for i, c in enumerate(EARLY_SIX)])
@pytest.mark.parametrize("step", [1, 4, 1000])
def test_the_first_piece_goes_out_after_a_few_words_without_waiting_for_a_boundary(
        words: int | None, language: str, reply: str, expected: list[str], step: int) -> None:
    defaults = SegmenterConfig()
    assert segment(reply, language, step,
                   first_piece_min_words=defaults.first_piece_min_words,
                   first_piece_max_words=words or defaults.first_piece_max_words) == expected


LEADS_IN = [  # four words at most (the default)
    # (language, reply, first piece): a piece cut after a few words does not end on an
    # article, a preposition or a conjunction, which the synthesizer would say with a
    # phrase's final fall: it ends before them, or on the word after them
    ("en", "In the middle of the night, we left.", "In the middle"),
    ("nl", "De rochten van de gevel zijn 15 meter.", "De rochten"),
    ("fr", "Voici quelques suggestions pour vous aider.", "Voici quelques suggestions"),
    ("es", "Los camareros se agrupaban sobre una tarima.", "Los camareros se agrupaban"),
    ("de", "Die Antwort auf die Frage ist zweiundvierzig.", "Die Antwort"),
    ("en", "A cat and a dog are friends.", "A cat"),
    ("en", "And the cat of the house sat.", "And the cat"),
    ("pt", "A casa do meu amigo fica longe.", "A casa"),
]

LEADS_IN_SIX = [  # six words at most
    # (language, reply, first piece): a piece cut after a few words does not end on an
    # article, a preposition, a conjunction or "be"/"have", which the synthesizer would say
    # with a phrase's final fall: it ends before them
    ("en", "The capital of France is a city of museums.", "The capital of France"),
    ("en", "A cat and a dog are friends.", "A cat and a dog"),
    ("nl", "De hoogte van de gevel is vijftien meter.", "De hoogte van de gevel"),
    ("de", "Die Antwort auf die Frage ist zweiundvierzig.", "Die Antwort auf die Frage"),
    ("fr", "Le chat de ma voisine est très gentil.", "Le chat de ma voisine"),
    ("es", "La casa de mi amigo está en el centro.", "La casa de mi amigo"),
    ("pt", "O livro do meu irmão é muito bom.", "O livro do meu irmão"),
    ("en", "In the middle of the night, we left.", "In the middle of the night,"),
]


@pytest.mark.parametrize(("words", "language", "reply", "first"),
                         [(None, *c) for c in LEADS_IN] + [(6, *c) for c in LEADS_IN_SIX],
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(LEADS_IN)]
                         + [f"six-{c[0]}-{i}" for i, c in enumerate(LEADS_IN_SIX)])
@pytest.mark.parametrize("step", [1, 3, 1000])
def test_a_first_piece_cut_after_a_few_words_does_not_end_on_a_word_that_leads_into_the_next(
        words: int | None, language: str, reply: str, first: str, step: int) -> None:
    defaults = SegmenterConfig()
    pieces = segment(reply, language, step, first_piece_min_words=defaults.first_piece_min_words,
                     first_piece_max_words=words or defaults.first_piece_max_words)
    assert pieces[0] == first
    assert " ".join(pieces) == reply


SECOND = [
    # (first piece's words at most, language, reply, expected pieces): the second piece ends
    # at a clause boundary once it has as many words as the first may have, or after twice
    # that many, so that it is ready before a short first piece has been played
    (4, "en", "The capital of France is Paris, which is a city of museums and parks. It is big.",
     ["The capital of France", "is Paris, which is a city of museums", "and parks.",
      "It is big."]),
    (4, "fr", "Paris est la capitale de la France, une ville de musées et de parcs célèbres.",
     ["Paris est la capitale", "de la France, une ville de musées",
      "et de parcs célèbres."]),
    (4, "en", "Yes. The Eiffel Tower is a wrought iron lattice tower in Paris.",
     ["Yes.", "The Eiffel Tower is a wrought iron lattice", "tower in Paris."]),
    (6, "es", "La capital de España es Madrid, una ciudad muy grande con muchos museos, parques y "
     "restaurantes famosos.",
     ["La capital de España es Madrid,", "una ciudad muy grande con muchos museos,",
      "parques y restaurantes famosos."]),
]


@pytest.mark.parametrize(("words", "language", "reply", "expected"), SECOND,
                         ids=[f"{c[0]}-{c[1]}-{i}" for i, c in enumerate(SECOND)])
@pytest.mark.parametrize("step", [1, 5, 1000])
def test_the_second_piece_is_short_enough_to_be_ready_before_the_first_has_played(
        words: int, language: str, reply: str, expected: list[str], step: int) -> None:
    assert segment(reply, language, step, first_piece_min_words=2,
                   first_piece_max_words=words) == expected


def test_the_second_piece_can_wait_for_the_sentence_like_the_later_ones() -> None:
    reply = "The capital of France is Paris, which is a city of museums and parks."
    assert segment(reply, "en", first_piece_min_words=2, first_piece_max_words=4,
                   second_piece_max_words=0) == [
        "The capital of France", "is Paris, which is a city of museums and parks."]


@pytest.mark.parametrize(("written", "piece", "left"), [
    # At the last clause boundary where there is one, else after the last whole word.
    ("Berlin has many museums, and the Pergamon", "Berlin has many museums,", "and the Pergamon"),
    ("Berlin has many museums and the Perga", "Berlin has many museums and the", "Perga"),
    # Too few whole words yet: nothing (the last word may still grow).
    ("Berlin has", "", "Berlin has"),
    ("Berlin has many", "", "Berlin has many"),
])
def test_a_sentence_still_being_written_can_be_cut_early(written: str, piece: str,
                                                        left: str) -> None:
    segmenter = Segmenter()
    # Past the short first pieces: later pieces wait for a sentence's end.
    assert segmenter.feed("Of course. I know the city well. ") == ["Of course."]
    assert segmenter.feed(written) == ["I know the city well."]
    assert segmenter.cut_early(min_words=3) == ([piece] if piece else [])
    assert segmenter.flush() == [left]
