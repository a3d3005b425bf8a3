"""The European models of the catalog (Ministral 3, Mistral 7B, Mistral Small, EuroLLM): each
is a hub GGUF the converter handles, and ``voice models pull`` fetches and converts them from a
hub-compatible server (here a local one serving tiny files of the same architectures and
vocabularies under the real repository paths)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import tokenizers

from llm.chat import ChatConfig, ChatModel, Message, SamplingOptions
from llm.gguf import ChatFormat
from tests.artifacts import sentencepiece_vocabulary, train_sentencepiece
from tests.hub_fixture import serve_hub
from tests.reference import write_tiny_gguf
from voice.__main__ import main
from voice.models import ModelKind
from voice.models.catalog import lookup

EUROPEAN = ("ministral-3-3b-instruct", "ministral-3-8b-instruct", "mistral-7b-instruct-v0.3",
            "mistral-small-3.2-24b-instruct", "eurollm-9b-instruct")


@pytest.mark.parametrize("name", EUROPEAN)
def test_each_european_model_is_a_hub_gguf_with_its_license(name: str) -> None:
    spec = lookup(name)
    assert spec.kind is ModelKind.LLM and spec.gguf is not None
    assert spec.hub is not None and spec.hub.files[0].path.endswith(".gguf")
    assert spec.license == "Apache-2.0"


def test_models_pull_fetches_and_converts_ministral_3_and_mistral_7b(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ministral = write_tiny_gguf(tmp_path / "ministral.gguf", "mistral3", head_dim=24, yarn=True,
                                tied=True, pre="tekken")
    processor = train_sentencepiece(["Bonjour, comment ça va ? Guten Tag, wie geht's?",
                                     "Hello there, how are you doing today?"], vocab_size=300)
    mistral = write_tiny_gguf(tmp_path / "mistral.gguf", "llama",
                              vocabulary=sentencepiece_vocabulary(processor))
    files = {}
    for name, source in (("ministral-3-3b-instruct", ministral),
                         ("mistral-7b-instruct-v0.3", mistral)):
        hub = lookup(name).hub
        assert hub is not None
        files[f"{hub.repo_id}/{hub.files[0].path}"] = source.read_bytes()
    with serve_hub(files) as (endpoint, requests):
        monkeypatch.setenv("HF_ENDPOINT", endpoint)
        assert main(["--home", str(tmp_path / "home"), "models", "pull",
                     "ministral-3-3b-instruct", "mistral-7b-instruct-v0.3"]) == 0
    assert any("/mistralai/Ministral-3-3B-Instruct-2512-GGUF/resolve/main/" in r
               for r in requests)

    folder = tmp_path / "home" / "models" / "llm"
    ministral_format = ChatFormat.load(folder / "ministral-3-3b-instruct")
    assert ministral_format.architecture == "mistral3"
    assert ministral_format.context_length == 64  # capped where the query temperature starts
    byte_level = json.loads((folder / "ministral-3-3b-instruct" / "tokenizer.json").read_text())
    assert byte_level["pre_tokenizer"]["pretokenizers"][0]["type"] == "Split"  # tekken

    spm = tokenizers.Tokenizer.from_file(
        str(folder / "mistral-7b-instruct-v0.3" / "tokenizer.json"))
    text = "Guten Tag, comment ça va?"
    assert spm.encode(text, add_special_tokens=False).ids == processor.encode(text)

    # Both load, render their template and generate (random weights: any tokens).
    for name in ("ministral-3-3b-instruct", "mistral-7b-instruct-v0.3"):
        model = ChatModel(ChatConfig(str(folder / name), compute_type="int8"))
        assert "<|im_start|>user\nHello<|im_end|>" in model.render([Message("user", "Hello")])
        deltas = list(model.stream([Message("user", "Hello")], SamplingOptions(max_new_tokens=8)))
        assert len(deltas) <= 8
