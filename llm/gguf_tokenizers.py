"""``tokenizers`` documents rebuilt from a GGUF file's vocabulary.

A GGUF file carries its tokenizer as metadata (``tokenizer.ggml.*``); the ``tokenizers`` library
needs a ``tokenizer.json``. Two kinds of vocabulary exist among the models we convert:

* ``gpt2``: byte-level BPE with merges (Qwen2, SmolLM, Mistral's tekken in Ministral 3 and
  Mistral Small 3.x). The pre-tokenizer regex is named by ``tokenizer.ggml.pre``.
* ``llama``: SentencePiece BPE with byte fallback (Mistral 7B, EuroLLM). The GGUF holds pieces
  (``▁`` for a space), scores and token types but no merges: a merge exists wherever two
  pieces join into a third, ranked by that third piece's score (higher first), as the
  ``tokenizers`` library's own SentencePiece import does. Text gets a leading ``▁`` and spaces
  become ``▁``, as SentencePiece's ``add_dummy_prefix`` does; bytes outside the vocabulary
  become ``<0xNN>`` pieces.

``tests/test_gguf_tokenizers.py`` checks both against their references: SentencePiece itself
on a model trained for the test, and the tekken regex run by the ``regex`` module.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

logger = logging.getLogger(__name__)

# Pre-tokenizers of the byte-level BPE vocabularies we support, keyed by ``tokenizer.ggml.pre``.
_QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
# Mistral's tekken (tekken.json's "pattern"): words split before an upper-case run.
TEKKEN_SPLIT = (
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+"
    r"|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*"
    r"|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_BYTE_LEVEL = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False}


def _split_then_bytes(pattern: str) -> dict[str, Any]:
    return {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": pattern}, "behavior": "Isolated",
         "invert": False},
        {**_BYTE_LEVEL, "use_regex": False},
    ]}


PRE_TOKENIZERS: dict[str, dict[str, Any]] = {
    "qwen2": _split_then_bytes(_QWEN2_SPLIT),
    "tekken": _split_then_bytes(TEKKEN_SPLIT),
    "smollm": {"type": "Sequence", "pretokenizers": [
        {"type": "Digits", "individual_digits": True},
        {**_BYTE_LEVEL, "use_regex": True},
    ]},
    "gpt2": {**_BYTE_LEVEL, "use_regex": True},
    "default": {**_BYTE_LEVEL, "use_regex": True},
}

# GGUF token types (gguf.TokenType, the same numbers as SentencePiece's piece types).
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6
SPECIAL_TOKEN_TYPES = (CONTROL, USER_DEFINED)
SPACE = "\u2581"  # SentencePiece's "▁"


def _added(tokens: Sequence[str], ids: Sequence[int], *, special: bool = True) -> list[Any]:
    return [{"id": i, "content": tokens[i], "single_word": False, "lstrip": False,
             "rstrip": False, "normalized": False, "special": special} for i in ids]


def build_byte_level_tokenizer_json(
    tokens: list[str], merges: list[str], special_ids: list[int], pre: str
) -> dict[str, Any]:
    """A ``tokenizers`` JSON document for a GPT-2-style byte-level BPE vocabulary.

    ``tokens`` are the byte-level-encoded strings (``"Ġthe"``), ``merges`` are ``"a b"`` pairs,
    ``special_ids`` are the ids of control tokens matched before pre-tokenization.
    """
    pre_tokenizer = PRE_TOKENIZERS.get(pre)
    if pre_tokenizer is None:
        logger.warning("unknown pre-tokenizer %r, using GPT-2's regex", pre)
        pre_tokenizer = PRE_TOKENIZERS["default"]
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": _added(tokens, special_ids),
        "normalizer": {"type": "NFC"} if pre == "qwen2" else None,
        "pre_tokenizer": pre_tokenizer,
        "post_processor": None,
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True,
                    "use_regex": True},
        "model": {
            "type": "BPE", "dropout": None, "unk_token": None,
            "continuing_subword_prefix": None, "end_of_word_suffix": None,
            "fuse_unk": False, "byte_fallback": False, "ignore_merges": pre == "tekken",
            "vocab": {token: i for i, token in enumerate(tokens)},
            "merges": [merge.split(" ", 1) for merge in merges],
        },
    }


def sentencepiece_merges(tokens: Sequence[str], scores: Sequence[float]) -> list[list[str]]:
    """The BPE merges a SentencePiece vocabulary implies: every split of a piece into two
    pieces, the piece's score ranking it (then longer halves first)."""
    ids = {token: index for index, token in enumerate(tokens)}
    found: list[tuple[float, int, int, int, int, int, str, str]] = []
    for index, (token, score) in enumerate(zip(tokens, scores, strict=True)):
        for cut in range(1, len(token)):
            left, right = token[:cut], token[cut:]
            if left in ids and right in ids:
                # Descending score and lengths; among equals, vocabulary order.
                found.append((-score, -len(left), -len(right), index, ids[left], ids[right],
                              left, right))
    found.sort()
    return [[left, right] for *_, left, right in found]


def build_sentencepiece_tokenizer_json(
    tokens: list[str], scores: Sequence[float], token_types: Sequence[int], *,
    unknown_id: int | None = 0, add_space_prefix: bool = True,
) -> dict[str, Any]:
    """A ``tokenizers`` JSON document equivalent to a SentencePiece BPE model with byte
    fallback, from a GGUF ``llama`` vocabulary (pieces, scores, types)."""
    special = [i for i, kind in enumerate(token_types) if kind in (CONTROL, UNKNOWN)]
    user_defined = [i for i, kind in enumerate(token_types) if kind == USER_DEFINED]
    normalizers: list[dict[str, Any]] = [
        {"type": "Replace", "pattern": {"String": " "}, "content": SPACE}]
    decoders: list[dict[str, Any]] = [
        {"type": "Replace", "pattern": {"String": SPACE}, "content": " "},
        {"type": "ByteFallback"}, {"type": "Fuse"}]
    if add_space_prefix:
        normalizers.insert(0, {"type": "Prepend", "prepend": SPACE})
        decoders.append({"type": "Strip", "content": " ", "start": 1, "stop": 0})
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": _added(tokens, special) + _added(tokens, user_defined, special=False),
        "normalizer": {"type": "Sequence", "normalizers": normalizers},
        "pre_tokenizer": None,
        "post_processor": None,
        "decoder": {"type": "Sequence", "decoders": decoders},
        "model": {
            "type": "BPE", "dropout": None,
            "unk_token": tokens[unknown_id] if unknown_id is not None else None,
            "continuing_subword_prefix": None, "end_of_word_suffix": None,
            "fuse_unk": True, "byte_fallback": True, "ignore_merges": False,
            "vocab": {token: i for i, token in enumerate(tokens)},
            "merges": sentencepiece_merges(tokens, scores),
        },
    }
