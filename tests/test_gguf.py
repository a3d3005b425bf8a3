"""GGUF -> CTranslate2 conversion: pure pieces, error cases, and the real converted models."""

from __future__ import annotations

import json
from pathlib import Path

import ctranslate2
import jinja2
import numpy as np
import pytest
import tokenizers

from llm.gguf import (
    ChatFormat,
    GGUFConversionError,
    _unpermute_llama,
    build_byte_level_tokenizer_json,
    convert_gguf,
)

ROUND_TRIP_TEXTS = {
    "en": "Hello world, how are you today? It's 3.5 degrees.",
    "de": "Grüße aus Köln – die Straße ist schön, oder?",
    "fr": "Ça va très bien, merci ! Où est l'hôtel ?",
    "es": "¿Dónde está la estación? ¡Mañana, señor!",
    "pl": "Zażółć gęślą jaźń. Dzień dobry, jak się masz?",
}


def _llama_cpp_permute(weight: np.ndarray, heads: int) -> np.ndarray:
    """The row permutation llama.cpp's converter applies to Llama Q and K weights."""
    return (
        weight.reshape(heads, 2, weight.shape[0] // heads // 2, *weight.shape[1:])
        .swapaxes(1, 2)
        .reshape(weight.shape)
    )


def test_unpermute_undoes_llama_cpp_permutation() -> None:
    for heads in (1, 3, 8):
        original = np.arange(heads * 16 * 3, dtype=np.float32).reshape(heads * 16, 3)
        assert np.array_equal(_unpermute_llama(_llama_cpp_permute(original, heads), heads),
                              original)


def test_byte_level_tokenizer_matches_special_tokens_before_merging() -> None:
    from tests.artifacts import byte_level_alphabet

    tokens = [*byte_level_alphabet(), "ab", "<|im_end|>"]
    document = build_byte_level_tokenizer_json(tokens, ["a b"], [257], "gpt2")
    tokenizer = tokenizers.Tokenizer.from_str(json.dumps(document))

    encoded = tokenizer.encode("ab<|im_end|>é", add_special_tokens=False)
    assert encoded.tokens == ["ab", "<|im_end|>", "Ã", "©"]
    assert tokenizer.decode(encoded.ids, skip_special_tokens=False) == "ab<|im_end|>é"


def test_a_file_that_is_not_gguf_is_rejected_clearly(tmp_path: Path) -> None:
    bogus = tmp_path / "model.gguf"
    bogus.write_bytes(b"this is not a gguf file at all" * 10)
    with pytest.raises(GGUFConversionError, match="not a readable GGUF file"):
        convert_gguf(bogus, tmp_path / "out", progress=False)


def test_an_unsupported_architecture_is_rejected_by_name(tmp_path: Path) -> None:
    import gguf

    path = tmp_path / "gpt2.gguf"
    writer = gguf.GGUFWriter(str(path), "gpt2")
    writer.add_block_count(1)
    writer.add_tensor("token_embd.weight", np.zeros((4, 4), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(GGUFConversionError, match="architecture 'gpt2' is not supported"):
        convert_gguf(path, tmp_path / "out", progress=False)


# -- the real converted models ---------------------------------------------------------------


def _greedy_reply(folder: Path, question: str, max_length: int = 48) -> str:
    chat = ChatFormat.load(folder)
    tokenizer = tokenizers.Tokenizer.from_file(str(folder / "tokenizer.json"))
    generator = ctranslate2.Generator(str(folder), device="cpu", compute_type="int8")
    prompt = jinja2.Environment().from_string(chat.chat_template).render(
        messages=[{"role": "user", "content": question}], add_generation_prompt=True)
    result = generator.generate_batch(
        [tokenizer.encode(prompt, add_special_tokens=False).tokens], max_length=max_length,
        sampling_topk=1, include_prompt_in_result=False, end_token=list(chat.stop_tokens))
    return tokenizer.decode(result[0].sequences_ids[0])


@pytest.mark.real_models
@pytest.mark.parametrize(("question", "expected"), [
    ("What is the capital of France?", "paris"),
    ("What color is the sky on a clear day?", "blue"),
    ("What is the opposite of hot?", "cold"),
    ("Which planet do we live on?", "earth"),
])
def test_converted_smollm2_answers_fixed_prompts_coherently(
    prepared_model, question: str, expected: str
) -> None:
    reply = _greedy_reply(prepared_model("smollm2-135m-instruct"), question)
    assert expected in reply.lower(), reply
    assert "<|" not in reply, "chat markers must not leak into the reply"


@pytest.mark.real_models
@pytest.mark.parametrize(("question", "expected"), [
    ("Wie heißt die Hauptstadt von Deutschland? Antworte auf Deutsch.", "die hauptstadt"),
    ("Quelle est la capitale de la France ? Réponds en français.", "la capitale"),
    ("¿Cuál es la capital de España? Responde en español.", "madrid"),
])
def test_converted_qwen_answers_in_the_language_asked(
    prepared_model, question: str, expected: str
) -> None:
    reply = _greedy_reply(prepared_model("qwen2.5-coder-0.5b-instruct"), question)
    assert expected in reply.lower(), reply


@pytest.mark.real_models
@pytest.mark.parametrize("model", ["smollm2-135m-instruct", "qwen2.5-coder-0.5b-instruct"])
@pytest.mark.parametrize("language", sorted(ROUND_TRIP_TEXTS))
def test_rebuilt_tokenizer_round_trips_text(prepared_model, model: str, language: str) -> None:
    tokenizer = tokenizers.Tokenizer.from_file(str(prepared_model(model) / "tokenizer.json"))
    text = ROUND_TRIP_TEXTS[language]
    encoded = tokenizer.encode(text, add_special_tokens=False)
    assert tokenizer.decode(encoded.ids) == text
    # BPE merges are in use: far fewer tokens than UTF-8 bytes.
    assert len(encoded.ids) < len(text.encode()) * 0.6


@pytest.mark.real_models
def test_qwen_tokenizer_gives_the_reference_ids(prepared_model) -> None:
    """Ids published with Qwen2's tokenizer: 'Hello world' and the ChatML header."""
    tokenizer = tokenizers.Tokenizer.from_file(
        str(prepared_model("qwen2.5-coder-0.5b-instruct") / "tokenizer.json"))
    assert tokenizer.encode("Hello world", add_special_tokens=False).ids == [9707, 1879]
    assert tokenizer.encode("<|im_start|>user\n", add_special_tokens=False).ids == [
        151644, 872, 198]


@pytest.mark.real_models
def test_converted_models_carry_their_chat_template_and_stop_tokens(prepared_model) -> None:
    for name, eos in (("smollm2-135m-instruct", "<|im_end|>"),
                      ("qwen2.5-coder-0.5b-instruct", "<|im_end|>")):
        chat = ChatFormat.load(prepared_model(name))
        assert "<|im_start|>" in chat.chat_template
        assert chat.eos_token == eos and eos in chat.stop_tokens
        assert chat.context_length >= 8192
