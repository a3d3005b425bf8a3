"""Streaming chat replies: deltas, UTF-8, stopping, history trimming, reply language."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from llm.chat import ChatConfig, ChatModel, ChatModelError, Message, SamplingOptions
from llm.prompts import system_prompt
from llm.tools import Tool


@pytest.fixture(scope="module")
def tiny_chat(random_decoder_dir: Path) -> ChatModel:
    return ChatModel(ChatConfig(str(random_decoder_dir), device="cpu"))


@dataclasses.dataclass
class _Step:
    token_id: int
    token: str


class _CountingSteps:
    """Stands in for CTranslate2's token iterator and records how far it was pulled."""

    def __init__(self, steps: list[_Step]) -> None:
        self._steps = iter(steps)
        self.pulled = 0
        self.closed = False

    def __iter__(self) -> Iterator[_Step]:
        return self

    def __next__(self) -> _Step:
        step = next(self._steps)
        self.pulled += 1
        return step

    def close(self) -> None:
        self.closed = True


def _byte_steps(model: ChatModel, text: str) -> list[_Step]:
    """One token per UTF-8 byte (the random decoder's vocabulary is byte-level)."""
    tokenizer = model._tokenizer
    tokens = tokenizer.encode(text, add_special_tokens=False).tokens
    return [_Step(tokenizer.token_to_id(t), t) for t in tokens]


def test_multibyte_characters_split_across_tokens_arrive_whole(tiny_chat: ChatModel) -> None:
    text = "Grüße aus Łódź 👋 – ça va?"
    steps = _CountingSteps(_byte_steps(tiny_chat, text))
    deltas = list(tiny_chat._deltas(steps, None))

    assert "".join(deltas) == text
    assert all("\ufffd" not in delta for delta in deltas)
    assert "👋" in deltas  # four tokens, one delta
    assert steps.closed


def test_generation_stops_at_the_end_of_turn_token(tiny_chat: ChatModel) -> None:
    steps = _CountingSteps([*_byte_steps(tiny_chat, "Hi."), _Step(0, "<|im_end|>"),
                            *_byte_steps(tiny_chat, "never said")])
    assert "".join(tiny_chat._deltas(steps, None)) == "Hi."
    assert steps.pulled == 4


def test_cancel_stops_generation_within_one_token(tiny_chat: ChatModel) -> None:
    steps = _CountingSteps(_byte_steps(tiny_chat, "abcdefghijklmnop"))
    cancel = threading.Event()
    received = []
    for delta in tiny_chat._deltas(steps, cancel):
        received.append(delta)
        if len(received) == 3:
            cancel.set()
    assert "".join(received) == "abc"
    assert steps.pulled == 4 and steps.closed


def test_breaking_out_of_the_real_stream_closes_the_generator(tiny_chat: ChatModel) -> None:
    stream = tiny_chat.stream([Message("user", "hello")], SamplingOptions(max_new_tokens=50))
    first = next(stream)
    assert isinstance(first, str)
    stream.close()
    with pytest.raises(StopIteration):
        next(stream)


def _greedy_reference(model: ChatModel, folder: Path, messages: list[Message], length: int,
                      no_repeat_ngram_size: int = 0) -> str:
    import ctranslate2

    prompt = model._tokenizer.encode(model.render(messages), add_special_tokens=False).tokens
    reference = ctranslate2.Generator(str(folder)).generate_batch(
        [prompt], max_length=length, include_prompt_in_result=False, end_token=["<|im_end|>"],
        no_repeat_ngram_size=no_repeat_ngram_size)
    return str(model._tokenizer.decode(reference[0].sequences_ids[0])).rstrip("\ufffd")


def test_stream_yields_what_greedy_generation_produces(tiny_chat: ChatModel,
                                                       random_decoder_dir: Path) -> None:
    messages = [Message("system", "Be brief."), Message("user", "Say something.")]
    streamed = "".join(tiny_chat.stream(messages, SamplingOptions(max_new_tokens=20)))
    assert streamed == _greedy_reference(tiny_chat, random_decoder_dir, messages, 20)


def test_no_repeat_ngram_size_reaches_the_generator(tiny_chat: ChatModel,
                                                    random_decoder_dir: Path) -> None:
    messages = [Message("user", "Say something.")]
    plain = "".join(tiny_chat.stream(messages, SamplingOptions(max_new_tokens=60)))
    guarded = "".join(tiny_chat.stream(
        messages, SamplingOptions(max_new_tokens=60, no_repeat_ngram_size=2)))
    assert guarded == _greedy_reference(tiny_chat, random_decoder_dir, messages, 60, 2)
    assert guarded != plain  # the random model repeats itself, so the option shows


def test_the_models_own_chat_template_is_applied(tiny_chat: ChatModel) -> None:
    prompt = tiny_chat.render([Message("system", "S"), Message("user", "U")])
    assert prompt == "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU<|im_end|>\n" \
                     "<|im_start|>assistant\n"


def test_old_turns_are_dropped_first_and_the_system_prompt_is_kept(
    random_decoder_dir: Path,
) -> None:
    model = ChatModel(ChatConfig(str(random_decoder_dir), context_tokens=300))
    history = [Message("system", "You are terse.")]
    for turn in range(10):
        history += [Message("user", f"question {turn} " + "x" * 20),
                    Message("assistant", f"answer {turn} " + "y" * 20)]
    history.append(Message("user", "last question"))

    kept = model.fit_to_context(history, reserve=100)

    assert kept[0] == history[0] and kept[-1] == history[-1]
    assert len(kept) < len(history)
    assert kept[1].role == "user"  # never starts with an orphaned assistant turn
    assert kept[1:] == history[len(history) - len(kept) + 1:]  # the newest turns survive
    assert model.count_tokens(model.render(kept)) <= 200


class _TokenizerSpy:
    """Wraps a ``tokenizers.Tokenizer``: how much text it was given, and by which call."""

    def __init__(self, tokenizer: object) -> None:
        self._tokenizer = tokenizer
        self.characters = 0
        self.gil_holding_calls = 0  # Tokenizer.encode keeps the GIL for the whole text

    def encode(self, text: str, **kwargs: object) -> object:
        self.characters += len(text)
        self.gil_holding_calls += 1
        return self._tokenizer.encode(text, **kwargs)  # type: ignore[attr-defined]

    def encode_batch(self, texts: list[str], **kwargs: object) -> object:
        self.characters += sum(len(t) for t in texts)
        return self._tokenizer.encode_batch(texts, **kwargs)  # type: ignore[attr-defined]

    def __getattr__(self, name: str) -> object:
        return getattr(self._tokenizer, name)


def test_trimming_a_long_history_tokenizes_each_message_once_without_holding_the_gil(
    random_decoder_dir: Path,
) -> None:
    model = ChatModel(ChatConfig(str(random_decoder_dir), context_tokens=300))
    history = [Message("system", "You are terse.")]
    for turn in range(100):
        history += [Message("user", f"question {turn} " + "x" * 200),
                    Message("assistant", f"answer {turn} " + "y" * 200)]
    history.append(Message("user", "last question"))
    spy = _TokenizerSpy(model._tokenizer)
    model._tokenizer = spy  # type: ignore[assignment]
    renders = 0
    render = model.render

    def counting_render(messages: list[Message], tools: Sequence[Tool] = ()) -> str:
        nonlocal renders
        renders += 1
        return render(messages, tools)

    model.render = counting_render  # type: ignore[method-assign]

    kept = model.fit_to_context(history, reserve=100)

    assert kept[0] == history[0] and kept[-1] == history[-1] and len(kept) < 10
    assert renders <= 3  # the kept prompt, checked once or twice: not once per dropped turn
    assert spy.characters <= 2 * sum(len(m.content) for m in history)
    assert spy.gil_holding_calls == 0
    assert render(kept) and model.count_tokens(render(kept)) <= 200


def test_a_prompt_that_cannot_fit_is_an_error(random_decoder_dir: Path) -> None:
    model = ChatModel(ChatConfig(str(random_decoder_dir), context_tokens=64))
    with pytest.raises(ChatModelError, match="does not fit"):
        model.fit_to_context([Message("system", "s"), Message("user", "z" * 500)], reserve=10)


def test_a_folder_without_a_model_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ChatModelError, match="not a CTranslate2 model folder"):
        ChatModel(ChatConfig(str(tmp_path)))


# -- the real default model ------------------------------------------------------------------

_STOPWORDS = {
    "de": {"der", "die", "das", "ist", "und", "nicht", "ein", "eine", "ich", "sie", "es", "in",
           "zu", "mit", "von", "den", "auf", "für", "wir", "hauptstadt"},
    "fr": {"le", "la", "les", "est", "et", "un", "une", "de", "des", "je", "vous", "il", "en",
           "pour", "que", "qui", "du", "au", "capitale"},
    "es": {"el", "la", "los", "las", "es", "y", "un", "una", "de", "que", "en", "por", "para",
           "con", "del", "se", "capital"},
    "en": {"the", "is", "and", "a", "an", "of", "to", "in", "it", "you", "for", "that"},
}


def _language_votes(text: str) -> dict[str, int]:
    words = [w.strip(".,!?¡¿«»\"'").lower() for w in text.split()]
    return {lang: sum(w in stop for w in words) for lang, stop in _STOPWORDS.items()}


@pytest.mark.real_models
@pytest.mark.parametrize(("language", "question"), [
    ("de", "Was ist die Hauptstadt von Frankreich?"),
    ("fr", "Quelle est la capitale de l'Allemagne ?"),
    ("es", "¿Cuál es la capital de Italia?"),
])
def test_qwen_streams_a_reply_in_the_language_asked(prepared_model, language: str,
                                                    question: str) -> None:
    model = ChatModel(ChatConfig(str(prepared_model("qwen2.5-coder-0.5b-instruct"))))
    deltas = list(model.stream(
        [Message("system", system_prompt(language)), Message("user", question)],
        SamplingOptions(max_new_tokens=60)))
    reply = "".join(deltas)
    assert len(deltas) > 3, "the reply arrives in pieces, not at once"
    votes = _language_votes(reply)
    assert votes[language] == max(votes.values()) and votes[language] >= 2, (reply, votes)
    # Whether the model writes markdown depends on its exact greedy output, which differs
    # between CPUs; that markdown is never read aloud is the segmenter's test.


def test_a_cached_system_prompt_changes_nothing_in_the_reply_and_the_cache_is_bounded(
        random_decoder_dir: Path) -> None:
    import ctranslate2

    chat = ChatModel(ChatConfig(str(random_decoder_dir), device="cpu", cached_system_prompts=1))
    reference = ctranslate2.Generator(str(random_decoder_dir))

    def expected(messages: list[Message]) -> str:
        prompt = chat._tokenizer.encode(chat.render(messages), add_special_tokens=False).tokens
        result = reference.generate_batch([prompt], max_length=12,
                                          include_prompt_in_result=False,
                                          end_token=["<|im_end|>"])
        return chat._tokenizer.decode(result[0].sequences_ids[0],
                                      skip_special_tokens=False).rstrip("\ufffd")

    first = [Message("system", "Be brief and kind."), Message("user", "Say something.")]
    other = [Message("system", "Answer in one word."), Message("user", "Say something.")]
    for messages in (first, first, other):  # cached, from the cache, over the bound
        assert "".join(chat.stream(messages, SamplingOptions(max_new_tokens=12))) \
            == expected(messages)
    assert chat._static_prefix(first, chat._tokens([chat.render(first)])[0])
    assert chat._static_prefix(other, chat._tokens([chat.render(other)])[0]) == []


def test_system_prompts_prefilled_at_start_up_are_the_ones_replies_reuse(
        random_decoder_dir: Path) -> None:
    chat = ChatModel(ChatConfig(str(random_decoder_dir), device="cpu"))
    statics: list[object] = []
    generator = chat._generator

    def spying(name: str) -> Any:
        def spy(prompt: Any, **options: object) -> object:
            statics.append(options.get("static_prompt"))
            return getattr(generator, name)(prompt, **options)
        return staticmethod(spy)

    chat._generator = type("Spy", (), {"generate_tokens": spying("generate_tokens"),
                                       "generate_batch": spying("generate_batch")})()
    chat.cache_system_prompts(["Be brief and kind.", "Answer in one word."])
    reply = [Message("system", "Answer in one word."), Message("user", "Say something.")]
    list(chat.stream(reply, SamplingOptions(max_new_tokens=4)))
    assert statics[0] and statics[1] and statics[0] != statics[1]
    assert statics[2] == statics[1]  # the reply's system turn is the one prefilled


def test_a_packaged_template_with_a_doubled_brace_call_example_shows_single_braces() -> None:
    from llm.template import repair_template

    doubled = ('{{- "<tool_call>\\n{{\\"name\\": <function-name>, \\"arguments\\": '
               '<args-json-object>}}\\n</tool_call>" }}')
    repaired = repair_template(doubled)
    assert '\\n{\\"name\\": <function-name>, \\"arguments\\": <args-json-object>}\\n' in repaired
    assert "{{\\\"name" not in repaired
    assert repair_template("{{ messages }}") == "{{ messages }}"


def test_a_template_renders_json_as_hugging_face_does_and_its_refusals_are_errors() -> None:
    from llm.template import ChatTemplate, ChatTemplateError

    template = ChatTemplate(
        "{{ bos_token }}{% for m in messages %}{% if m.role == 'tool' %}"
        "{{ raise_exception('no tool turns here') }}{% endif %}"
        "[{{ m.role }}] {{ m | tojson }}{% endfor %}{% if tools %}{{ tools | tojson }}{% endif %}"
        "{% if add_generation_prompt %}[assistant]{% endif %}",
        bos_token="<s>", eos_token="</s>")
    text = template.render([{"role": "user", "content": "a < b, café"}],
                           add_generation_prompt=True)
    # Plain json.dumps, as the model saw in training: no \u003c, no \u00e9.
    assert text == '<s>[user] {"role": "user", "content": "a < b, café"}[assistant]'
    assert template.render([], add_generation_prompt=False, tools=[{"name": "f"}]) \
        == '<s>[{"name": "f"}]'
    with pytest.raises(ChatTemplateError, match="no tool turns here"):
        template.render([{"role": "tool", "content": "{}"}], add_generation_prompt=True)


def _spy_static_prompts(chat: ChatModel) -> list[list[str]]:
    """The static prompt of every generate call from now on ([] for none)."""
    statics: list[list[str]] = []
    generator = chat._generator

    def spying(name: str) -> Any:
        def spy(prompt: Any, **options: object) -> object:
            statics.append(list(options.get("static_prompt") or []))  # type: ignore[call-overload]
            return getattr(generator, name)(prompt, **options)
        return staticmethod(spy)

    chat._generator = type("Spy", (), {"generate_tokens": spying("generate_tokens"),
                                       "generate_batch": spying("generate_batch")})()
    return statics


def _conversation(topic: str) -> list[Message]:
    return [Message("system", "Be brief and kind."),
            Message("user", f"Tell me about {topic}, please, in a few words."),
            Message("assistant", f"{topic} is a fine thing to talk about, and there is a lot to "
                                 "say about it, more than fits in one short answer.")]


def test_a_kept_conversation_is_the_next_replys_static_prompt_and_changes_nothing(
        random_decoder_dir: Path) -> None:
    import ctranslate2

    chat = ChatModel(ChatConfig(str(random_decoder_dir), device="cpu"))
    reference = ctranslate2.Generator(str(random_decoder_dir))
    history = _conversation("Paris")
    statics = _spy_static_prompts(chat)
    assert chat.prefill(history)
    kept = statics[-1]
    assert not chat.prefill(history)  # held already: nothing to read again
    turn = [*history, Message("user", "And Rome?")]
    reply = "".join(chat.stream(turn, SamplingOptions(max_new_tokens=12)))
    assert statics[-1] == kept  # the reply read only the new question
    prompt = chat._tokenizer.encode(chat.render(turn), add_special_tokens=False).tokens
    assert prompt[:len(kept)] == kept
    expected = reference.generate_batch([prompt], max_length=12, include_prompt_in_result=False,
                                        end_token=["<|im_end|>"])
    assert reply == chat._tokenizer.decode(expected[0].sequences_ids[0],
                                           skip_special_tokens=False).rstrip("\ufffd")


def test_kept_states_past_their_budget_reload_the_model_and_start_over(
        random_decoder_dir: Path) -> None:
    probe = ChatModel(ChatConfig(str(random_decoder_dir), device="cpu"))
    size = len(probe._tokens([probe._template.render(
        [m.template_json(False) for m in _conversation("Paris")],
        add_generation_prompt=False)])[0])
    chat = ChatModel(ChatConfig(str(random_decoder_dir), device="cpu",
                                prompt_cache_tokens=2 * size + 8))
    first = chat._generator
    assert chat.prefill(_conversation("Paris"))
    assert chat._generator is first
    assert chat.prefill(_conversation("Rome"))  # the budget holds two
    assert chat._generator is first
    # A guess (reload=False) does not reload for itself: nothing kept, same model.
    assert not chat.prefill(_conversation("Oslo"), reload=False)
    assert chat._generator is first and len(chat._prefixes) == 2
    assert chat.prefill(_conversation("Oslo"))  # a third: a new model, with only this one
    assert chat._generator is not first
    assert len(chat._prefixes) == 1 and chat._prefixes.tokens <= 2 * size + 8
    turn = [*_conversation("Oslo"), Message("user", "And Rome?")]
    assert chat._static_prefix(turn, chat._tokens([chat.render(turn)])[0])
    assert "".join(chat.stream(turn, SamplingOptions(max_new_tokens=4)))


def test_a_system_turn_kept_ahead_is_the_next_replys_static_prompt_and_makes_room(
        random_decoder_dir: Path) -> None:
    probe = ChatModel(ChatConfig(str(random_decoder_dir), device="cpu"))
    size = len(probe._system_turn("Be brief and kind.", ()))
    chat = ChatModel(ChatConfig(str(random_decoder_dir), device="cpu",
                                prompt_cache_tokens=size + 4))
    statics = _spy_static_prompts(chat)
    assert chat.cache_system_turn("Be brief and kind.")
    kept = statics[-1]
    assert len(kept) == size
    assert not chat.cache_system_turn("Be brief and kind.")  # held already
    turn = [Message("system", "Be brief and kind."), Message("user", "And Rome?")]
    assert "".join(chat.stream(turn, SamplingOptions(max_new_tokens=4)))
    assert statics[-1] == kept  # the reply read only the question
    # Another turn does not fit beside it: without a reload nothing is kept ...
    first = chat._generator
    assert not chat.cache_system_turn("Be short and warm.", reload=False)
    assert chat._generator is first
    # ... with one, the model is reloaded and keeps only the new turn.
    assert chat.cache_system_turn("Be short and warm.")
    assert chat._generator is not first and len(chat._prefixes) == 1
    other = [Message("system", "Be short and warm."), Message("user", "And Rome?")]
    assert chat._static_prefix(other, chat._tokens([chat.render(other)])[0])
    assert not chat._static_prefix(turn, chat._tokens([chat.render(turn)])[0])
