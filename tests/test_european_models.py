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
from llm.template import ChatTemplate
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


# A template that checks call ids the way Mistral's do (9 letters or digits, the result
# answering its call's id), in the [TOOL_CALLS] / [TOOL_RESULTS] layout of Mistral 7B v0.3.
MISTRAL_LIKE_TEMPLATE = (
    "{% for m in messages %}"
    "{% if m.role == 'user' %}[INST] {{ m.content }}[/INST]"
    "{% elif m.role == 'assistant' and m.tool_calls %}[TOOL_CALLS] ["
    "{% for c in m.tool_calls %}"
    "{% if c.id is not string or c.id|length != 9 or not c.id.isalnum() %}"
    "{{ raise_exception('Tool call IDs should be alphanumeric strings with length 9!') }}"
    "{% endif %}"
    '{"name": "{{ c.function.name }}", "arguments": {{ c.function.arguments|tojson }}, '
    '"id": "{{ c.id }}"}{% endfor %}]</s>'
    "{% elif m.role == 'tool' %}"
    "{% if m.tool_call_id|length != 9 %}{{ raise_exception('bad tool_call_id') }}{% endif %}"
    '[TOOL_RESULTS] {"content": {{ m.content|tojson }}, "call_id": "{{ m.tool_call_id }}"}'
    "[/TOOL_RESULTS]"
    "{% elif m.role == 'assistant' %} {{ m.content }}</s>{% endif %}{% endfor %}"
)


def test_a_conversation_with_calls_renders_through_a_template_that_checks_mistral_ids() -> None:
    from voice.conversation import Conversation, Item

    conversation = Conversation()
    conversation.add(Item("item_1", "user", "Is it warm in Paris?"))
    conversation.add(Item("item_2", "assistant", kind="function_call", name="get_weather",
                          call_id="call_Xy7-Q2pL4mN8", arguments='{"city": "Paris"}'))
    conversation.add(Item("item_3", "user", '{"temp": 21}', kind="function_call_output",
                          call_id="call_Xy7-Q2pL4mN8"))
    conversation.add(Item("item_4", "assistant", "Yes, 21 degrees."))
    messages = [m.template_json(True) for m in conversation.prompt("Be brief.")[1:]]

    # The service's own renderer: its raise_exception fails the test on a refused id.
    template = ChatTemplate(MISTRAL_LIKE_TEMPLATE, bos_token="<s>", eos_token="</s>")
    text = template.render(messages, add_generation_prompt=False)
    assert '"id": "Q2pL4mN8"' not in text  # 9 characters, not 8
    assert '"id": "7Q2pL4mN8"' in text and '"call_id": "7Q2pL4mN8"' in text


def test_a_template_that_writes_the_bos_token_gets_no_second_one(tmp_path: Path) -> None:
    from llm.gguf import convert_gguf

    processor = train_sentencepiece(["Hello there, how are you doing today?"], vocab_size=300)
    source = write_tiny_gguf(tmp_path / "tiny.gguf", "llama",
                             vocabulary=sentencepiece_vocabulary(processor),
                             template="{{ bos_token }}" + MISTRAL_LIKE_TEMPLATE)
    convert_gguf(source, tmp_path / "ct2", progress=False)
    model = ChatModel(ChatConfig(str(tmp_path / "ct2"), compute_type="int8"))
    prompts: list[list[str]] = []
    generate = model._generator.generate_tokens

    def spy(prompt: list[str], **options: object) -> object:
        prompts.append([*(options.get("static_prompt") or []), *prompt])  # type: ignore[misc]
        return generate(prompt, **options)

    model._generator = type("Spy", (), {"generate_tokens": staticmethod(spy)})()
    list(model.stream([Message("user", "Hello")], SamplingOptions(max_new_tokens=2)))
    assert prompts[0][:2] == ["<s>", "[INST]"]  # one BOS, then the template's text
