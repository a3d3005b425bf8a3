"""Incremental detokenization: the streamed text equals the full decode, work per token is
bounded, and no character arrives broken."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import tokenizers
from tokenizers.decoders import Decoder

from llm.chat import ChatConfig, ChatModel
from llm.detokenizer import TextDeltas

MULTILINGUAL = ("Grüße aus Łódź 👋 – ça va? Zażółć gęślą jaźń, Straße und Übermut. "
                "Flagge 🇵🇱🇩🇪, Familie 👨‍👩‍👧, ¿qué tal? Ελληνικά, русский, 日本語のテキスト。")


def _deltas(tokenizer: tokenizers.Tokenizer, ids: list[int]) -> list[str]:
    detokenizer = TextDeltas(tokenizer)
    return [detokenizer.push(token_id) for token_id in ids]


def _assert_streams_like_the_full_decode(tokenizer: tokenizers.Tokenizer, text: str) -> None:
    ids = tokenizer.encode(text, add_special_tokens=False).ids
    deltas = _deltas(tokenizer, ids)
    assert "".join(deltas) == tokenizer.decode(ids) == text
    assert all("\ufffd" not in delta for delta in deltas)
    # The sample does exercise characters split across tokens: some token alone is not text.
    assert any("\ufffd" in tokenizer.decode([token_id]) for token_id in ids)
    assert "" in deltas  # ... and those tokens yield nothing until the character is whole


def test_deltas_of_a_byte_level_tokenizer_concatenate_to_the_full_decode(
    random_decoder_dir: Path,
) -> None:
    tokenizer = tokenizers.Tokenizer.from_file(str(random_decoder_dir / "tokenizer.json"))
    _assert_streams_like_the_full_decode(tokenizer, MULTILINGUAL)


def test_an_incomplete_character_at_the_end_of_a_reply_is_held_back(
    random_decoder_dir: Path,
) -> None:
    tokenizer = tokenizers.Tokenizer.from_file(str(random_decoder_dir / "tokenizer.json"))
    ids = tokenizer.encode("ok 👋", add_special_tokens=False).ids
    assert "".join(_deltas(tokenizer, ids[:-1])) == "ok "


@dataclasses.dataclass
class _Step:
    token_id: int
    token: str


class _CountingDecoder:
    """A custom ``tokenizers`` decoder that delegates to the real one and records how many
    tokens each decode is given."""

    def __init__(self, real: Decoder) -> None:
        self._real = real
        self.lengths: list[int] = []

    def decode_chain(self, tokens: list[str]) -> list[str]:
        self.lengths.append(len(tokens))
        return [self._real.decode(tokens)]


def test_each_new_token_decodes_a_bounded_window_not_the_whole_reply(
    random_decoder_dir: Path,
) -> None:
    model = ChatModel(ChatConfig(str(random_decoder_dir), device="cpu"))
    tokenizer = model._tokenizer
    counter = _CountingDecoder(tokenizer.decoder)
    reply = MULTILINGUAL * 8  # ~1700 byte tokens
    ids = tokenizer.encode(reply, add_special_tokens=False).ids
    steps = [_Step(token_id, tokenizer.id_to_token(token_id)) for token_id in ids]
    tokenizer.decoder = Decoder.custom(counter)

    streamed = "".join(model._deltas(iter(steps), None))

    assert streamed == reply
    assert max(counter.lengths) <= 8  # the longest character is 4 bytes: a few tokens each
    assert sum(counter.lengths) <= 6 * len(ids)  # linear in the reply, not quadratic


@pytest.mark.real_models
def test_qwen_deltas_concatenate_to_the_full_decode(prepared_model) -> None:  # type: ignore[no-untyped-def]
    folder = prepared_model("qwen2.5-coder-0.5b-instruct")
    tokenizer = tokenizers.Tokenizer.from_file(str(folder / "tokenizer.json"))
    _assert_streams_like_the_full_decode(tokenizer, MULTILINGUAL)
