"""Tokenizers rebuilt from GGUF vocabularies, against their references: SentencePiece itself
(a BPE model with byte fallback trained here on multilingual text, set up like Mistral's and
EuroLLM's) and Mistral's tekken pre-tokenizer regex run by the ``regex`` module."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import regex
import tokenizers

from llm.gguf import convert_gguf
from llm.gguf_tokenizers import TEKKEN_SPLIT, build_sentencepiece_tokenizer_json
from tests.artifacts import sentencepiece_vocabulary, train_sentencepiece

CORPUS = [
    "Hello world, how are you today? It's 3.5 degrees in Berlin.",
    "Grüße aus Köln – die Straße ist schön, oder? Wie spät ist es?",
    "Ça va très bien, merci ! Où est l'hôtel ? Il fait beau aujourd'hui.",
    "¿Dónde está la estación? ¡Mañana, señor! Hace mucho frío.",
    "Zażółć gęślą jaźń. Dzień dobry, jak się masz? Dziękuję bardzo.",
    "Het weer is vandaag mooi in Amsterdam. Dank je wel!",
    "Buongiorno, come stai? La città è bellissima.",
    "Bom dia, tudo bem? A cidade é muito bonita.",
]
TEXTS = [
    *CORPUS,
    "  two leading spaces and trailing  ",
    "tabs\tand\nnew lines\n\nand   runs of    spaces",
    "東京は晴れ 🌞 emoji, русский текст, Ελληνικά",  # mostly outside the vocabulary: bytes
    "[INST] What is 2+2? [/INST] Four.",
    "x" * 40,
    "a\u00a0b",
]


@pytest.fixture(scope="module")
def sentencepiece_model() -> object:
    return train_sentencepiece(CORPUS)


def test_sentencepiece_vocabulary_rebuilt_gives_sentencepieces_ids_and_text(
        sentencepiece_model) -> None:  # type: ignore[no-untyped-def]
    pieces, scores, types = sentencepiece_vocabulary(sentencepiece_model)
    document = build_sentencepiece_tokenizer_json(pieces, scores, types)
    tokenizer = tokenizers.Tokenizer.from_str(json.dumps(document))
    for text in TEXTS:
        if "[INST]" in text:
            continue  # SentencePiece does not match control symbols in text; see below
        expected = sentencepiece_model.encode(text)
        got = tokenizer.encode(text, add_special_tokens=False).ids
        assert got == expected, text
        assert tokenizer.decode(got) == sentencepiece_model.decode(expected) == text


def test_random_strings_give_sentencepieces_ids(sentencepiece_model) -> None:  # type: ignore[no-untyped-def]
    import random

    pieces, scores, types = sentencepiece_vocabulary(sentencepiece_model)
    tokenizer = tokenizers.Tokenizer.from_str(
        json.dumps(build_sentencepiece_tokenizer_json(pieces, scores, types)))
    alphabet = "abcdeéèfghijklmnñoöpqrsßtuüvwxyzżźABCDÉFKLZ0123456789 .,;:!?'-()\n\t€中🙂"
    rng = random.Random(7)
    for _ in range(300):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 40)))
        expected = sentencepiece_model.encode(text)
        assert tokenizer.encode(text, add_special_tokens=False).ids == expected, repr(text)
        assert tokenizer.decode(expected) == sentencepiece_model.decode(expected)


def test_control_tokens_in_a_prompt_stay_whole_and_the_text_around_them_is_encoded_apart(
        sentencepiece_model) -> None:  # type: ignore[no-untyped-def]
    pieces, scores, types = sentencepiece_vocabulary(sentencepiece_model)
    tokenizer = tokenizers.Tokenizer.from_str(
        json.dumps(build_sentencepiece_tokenizer_json(pieces, scores, types)))
    inst, end = (sentencepiece_model.piece_to_id(p) for p in ("[INST]", "[/INST]"))
    ids = tokenizer.encode("[INST]Wie spät ist es?[/INST]", add_special_tokens=False).ids
    # As Mistral's own tokenizer: each text chunk encoded on its own, with its leading "▁".
    assert ids == [inst, *sentencepiece_model.encode("Wie spät ist es?"), end]


def test_a_sentencepiece_gguf_converts_with_its_tokenizer(
        tmp_path: Path, sentencepiece_model) -> None:  # type: ignore[no-untyped-def]
    import gguf

    from tests.reference import write_tiny_gguf

    pieces, scores, types = sentencepiece_vocabulary(sentencepiece_model)
    source = write_tiny_gguf(tmp_path / "tiny.gguf", "llama", vocabulary=(pieces, scores, types))
    convert_gguf(source, tmp_path / "ct2", quantization="float32", progress=False)
    tokenizer = tokenizers.Tokenizer.from_file(str(tmp_path / "ct2" / "tokenizer.json"))
    text = "Dzień dobry, wie geht's? 🌞"
    assert tokenizer.encode(text, add_special_tokens=False).ids == sentencepiece_model.encode(text)
    assert gguf.GGUFReader(source).fields["tokenizer.ggml.model"].contents() == "llama"


@pytest.mark.parametrize("text", [
    "Hello World, HTTPServer and iPhone 16 Pro!", "Grüße aus KÖLN – Straße 12/3",
    "  indent\n\n\tnext line  ", "naïve café ÉCOLE Ça", "Zażółć GĘŚLĄ jaźń",
    "x = a/b + c_d; // comment\r\n", "東京タワー 🗼 and ΑΘΗΝΑ",
])
def test_the_tekken_pre_tokenizer_splits_text_as_mistrals_regex_does(text: str) -> None:
    from llm.gguf_tokenizers import PRE_TOKENIZERS

    split = PRE_TOKENIZERS["tekken"]["pretokenizers"][0]
    document = {"version": "1.0", "truncation": None, "padding": None, "added_tokens": [],
                "normalizer": None, "pre_tokenizer": split, "post_processor": None,
                "decoder": None, "model": {"type": "WordLevel", "vocab": {"[UNK]": 0},
                                           "unk_token": "[UNK]"}}
    tokenizer = tokenizers.Tokenizer.from_str(json.dumps(document))
    pieces = [piece for piece, _ in tokenizer.pre_tokenizer.pre_tokenize_str(text)]
    assert pieces == regex.findall(TEKKEN_SPLIT, text)
    assert "".join(pieces) == text
