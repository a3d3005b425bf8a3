"""Function calling: tool schemas into the chat template, tool calls out of the text stream."""

from __future__ import annotations

import itertools
import json
import math
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from llm.chat import ChatConfig, ChatModel, ChatModelError, Message, SamplingOptions
from llm.prompts import system_prompt
from llm.tools import (
    Output,
    Tool,
    ToolCall,
    ToolCallError,
    ToolCallParser,
    ToolError,
    template_tools,
)
from llm.torn import torn_opening
from tests.artifacts import CHATML_TEMPLATE

SET_LIGHT = Tool.from_json({
    "type": "function", "name": "set_light",
    "description": "Switch the light in a room on or off.",
    "parameters": {"type": "object", "properties": {
        "room": {"type": "string", "description": "The room, e.g. kitchen"},
        "on": {"type": "boolean", "description": "true to switch on, false to switch off"}},
        "required": ["room", "on"], "additionalProperties": False}})
GET_TIME = Tool.from_json({"type": "function", "name": "get_time",
                           "description": "The current time.",
                           "parameters": {"type": "object", "properties": {}}})
TOOLS = [SET_LIGHT, GET_TIME]
KITCHEN_ON = ToolCall("set_light", {"room": "kitchen", "on": True})
CALL_JSON = '{"name": "set_light", "arguments": {"room": "kitchen", "on": true}}'


def _every(size: int) -> Callable[[str], list[str]]:
    return lambda text: [text[i:i + size] for i in range(0, len(text), size)]


def _at_markers(text: str) -> list[str]:
    """Cut inside every marker and around every brace: the hardest places."""
    cuts = sorted({i for i, c in enumerate(text) if c in "<>{}/`_"} | {0, len(text)})
    return [text[a:b] for a, b in itertools.pairwise(cuts)]


SPLITS = {"whole": lambda text: [text], "characters": _every(1), "pairs": _every(2),
          "threes": _every(3), "sevens": _every(7), "at markers": _at_markers}


def parse(text: str, split: Callable[[str], list[str]]) -> tuple[list[Output], list[str]]:
    """Everything the parser returns for ``text`` fed in ``split`` pieces, with the text
    pieces merged; and every text piece as it came out."""
    parser = ToolCallParser(TOOLS)
    outputs: list[Output] = []
    for delta in split(text):
        outputs += parser.feed(delta)
    outputs += parser.finish()
    pieces = [o for o in outputs if isinstance(o, str)]
    merged: list[Output] = []
    for output in outputs:
        if isinstance(output, str) and merged and isinstance(merged[-1], str):
            merged[-1] += output
        else:
            merged.append(output)
    return merged, pieces


# (reply as the model writes it, what the parser makes of it)
REPLIES: list[tuple[str, list[Output]]] = [
    ("The light is on.", ["The light is on."]),
    (f"<tool_call>\n{CALL_JSON}\n</tool_call>", [KITCHEN_ON]),
    (f"Sure. <tool_call>\n{CALL_JSON}\n</tool_call> Done.", ["Sure. ", KITCHEN_ON, " Done."]),
    (f"<tool_call>\n{CALL_JSON}\n</tool_call>\n<tool_call>\n"
     '{"name": "get_time", "arguments": {}}\n</tool_call>',
     [KITCHEN_ON, ToolCall("get_time", {})]),
    (CALL_JSON, [KITCHEN_ON]),  # bare, as the 0.5B coder model writes calls
    (f"  {CALL_JSON}\nI switched it on.", [KITCHEN_ON, "\nI switched it on."]),
    (f"```json\n{CALL_JSON}\n```", [KITCHEN_ON]),
    ("```python\nprint(1)\n```", ["```python\nprint(1)\n```"]),
    ("I like <tools> and a < b, and <tool_call mentions.",
     ["I like <tools> and a < b, and <tool_call mentions."]),
    # As the 1.5B coder model writes calls: in the tags its prompt lists tools in, and with the
    # doubled braces of its packaged template's example.
    (f"<tools>\n{CALL_JSON}\n</tools>", [KITCHEN_ON]),
    (f"{{{CALL_JSON}}}", [KITCHEN_ON]),
    (f"<tool_call>\n{{{CALL_JSON}}}\n</tool_call> Done.", [KITCHEN_ON, " Done."]),
    ("<tools> are what I use.", ["<tools> are what I use."]),
    ("Say {this} later.", ["Say {this} later."]),  # braces inside text are text
    # After words, a bare object naming one of the tools is a call (as the 1.5B model wrote
    # "Hier ist das Wetter in Berlin:" and the call on the next lines); any other is text.
    ("Here you go:\n" + CALL_JSON.replace(", ", ",\n  ") + "\n",
     ["Here you go:\n", KITCHEN_ON, "\n"]),
    (f"Sure: {CALL_JSON} Done. {CALL_JSON}", ["Sure: ", KITCHEN_ON, " Done. ", KITCHEN_ON]),
    # (in a fence after words, the fence stays text: speakable() does not read it out)
    (f"Here:\n```json\n{CALL_JSON}\n```", ["Here:\n```json\n", KITCHEN_ON, "\n```"]),
    ('A record: {"name": "Ada", "age": 36}.', ['A record: {"name": "Ada", "age": 36}.']),
    ('Set {"room": "kitchen"} and {"name"= x}.', ['Set {"room": "kitchen"} and {"name"= x}.']),
    ('Cut off: {"name": "set_li', ['Cut off: {"name": "set_li']),
    ("Wait <tool_", ["Wait <tool_"]),  # a marker the reply never finished is text
]


@pytest.mark.parametrize("split", SPLITS.values(), ids=SPLITS.keys())
@pytest.mark.parametrize(("reply", "expected"), REPLIES)
def test_calls_and_text_come_out_the_same_however_the_deltas_are_split(
        reply: str, expected: list[Output], split: Callable[[str], list[str]]) -> None:
    outputs, pieces = parse(reply, split)
    assert outputs == expected
    if any(not isinstance(o, str) for o in expected):
        assert not any(mark in piece for piece in pieces for mark in ("<tool", "name\"")), pieces


def test_text_that_may_begin_a_call_is_held_until_it_cannot() -> None:
    parser = ToolCallParser(TOOLS)
    assert parser.feed("OK <to") == ["OK "]
    assert parser.feed("ol") == []
    assert parser.feed("s are fun") == ["<tools are fun"]
    assert parser.feed("<") == []
    assert parser.finish() == ["<"]


def test_a_brace_after_words_is_held_only_while_it_may_open_a_call() -> None:
    parser = ToolCallParser(TOOLS)
    assert parser.feed("The weather: {") == ["The weather: "]
    assert parser.feed('\n "name": "set_') == []
    assert parser.feed('lamp", "x": 1} ok') == ['{\n "name": "set_lamp", "x": 1} ok']
    assert parser.feed('{"name": "get_time", "arguments": {}}') == [ToolCall("get_time", {})]
    assert parser.finish() == []


def test_a_reply_that_opens_with_a_brace_is_held_until_the_object_closes() -> None:
    parser = ToolCallParser(TOOLS)
    assert parser.feed('{"name": "set_light", "arguments": {"room": "kitchen",') == []
    assert parser.feed(' "on": true}} And') == [KITCHEN_ON, " And"]


@pytest.mark.parametrize(("body", "message"), [
    ('{"name": "set_light", "arguments": {"room": "kitchen", "on": tru',
     "the call is not valid JSON"),
    ('["set_light"]', 'not a JSON object with a "name"'),
    ('{"name": "open_door", "arguments": {}}',
     "there is no tool 'open_door' (tools: get_time, set_light)"),
    ('{"name": "set_light", "arguments": {"room": "kitchen", "on": "yes"}}',
     "the arguments of set_light do not fit its parameters at on: 'yes' is not of type "
     "'boolean'"),
    ('{"name": "set_light", "arguments": {"room": "kitchen"}}', "'on' is a required property"),
    ('{"name": "set_light", "arguments": {"room": "kitchen", "on": true, "dim": 3}}',
     "Additional properties are not allowed"),
    ('{"name": "set_light", "arguments": "{\\"room\\": 1"}',
     "the arguments of set_light are not valid JSON"),
    ('{"name": "set_light", "arguments": [1]}', "the arguments of set_light are not a JSON "
     "object"),
])
def test_a_call_that_cannot_be_made_is_an_error_never_a_call(body: str, message: str) -> None:
    outputs, _ = parse(f"<tool_call>\n{body}\n</tool_call>", _every(4))
    [error] = outputs
    assert isinstance(error, ToolCallError) and message in error.message, error
    assert error.text == body


def test_arguments_written_as_a_json_string_are_read() -> None:
    body = json.dumps({"name": "set_light", "arguments": json.dumps({"room": "kitchen",
                                                                     "on": True})})
    assert parse(f"<tool_call>{body}</tool_call>", _every(5))[0] == [KITCHEN_ON]
    assert KITCHEN_ON.arguments_json == '{"room":"kitchen","on":true}'


@pytest.mark.parametrize(("reply", "message"), [
    (f"Sure <tool_call>\n{CALL_JSON}", "the call has no </tool_call>"),
    ('{"name": "set_light", "arguments": {"room": "kit', "the call is not valid JSON"),
])
def test_a_call_cut_off_by_the_end_of_the_reply_is_an_error(reply: str, message: str) -> None:
    outputs, _ = parse(reply, _every(3))
    assert isinstance(outputs[-1], ToolCallError) and message in outputs[-1].message


def test_a_realtime_tool_definition_is_read_and_written_back() -> None:
    entry = SET_LIGHT.to_json()
    assert Tool.from_json(entry) == SET_LIGHT and entry["type"] == "function"
    assert template_tools([GET_TIME]) == [{"type": "function", "function": {
        "name": "get_time", "description": "The current time.",
        "parameters": {"type": "object", "properties": {}}}}]


@pytest.mark.parametrize(("entry", "message"), [
    ({"type": "code_interpreter"}, '"type": "function"'),
    ({"type": "function", "description": "x"}, "a tool needs a name"),
    ({"type": "function", "name": "f", "parameters": {"type": "objekt"}},
     "the parameters of tool f are not a valid JSON Schema"),
    ({"type": "function", "name": "f", "parameters": []}, "must be a JSON Schema object"),
])
def test_unusable_tool_definitions_are_refused_with_the_reason(entry: object,
                                                               message: str) -> None:
    with pytest.raises(ToolError, match=message):
        Tool.from_json(entry)


def test_tools_reach_the_chat_template_as_plain_json(random_decoder_dir: Path,
                                                     tmp_path: Path) -> None:
    folder = tmp_path / "with-tools"
    shutil.copytree(random_decoder_dir, folder)
    chat = json.loads((folder / "chat.json").read_text())
    chat["chat_template"] = "{% for tool in tools %}{{ tool | tojson }}\n{% endfor %}" \
        + CHATML_TEMPLATE
    (folder / "chat.json").write_text(json.dumps(chat))
    model = ChatModel(ChatConfig(str(folder), device="cpu"))
    lamp = Tool("lamp", "Turns a <b>lamp</b> on & off, «vite».")
    prompt = model.render([Message("user", "hi")], [lamp])
    assert json.loads(prompt.splitlines()[0]) == template_tools([lamp])[0]
    assert "<b>lamp</b> on & off, «vite»" in prompt  # not HTML-escaped, not \\u-escaped


TOOLS_IN_SYSTEM_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] }}"
    "{% if loop.first and tools %}{% for tool in tools %}{{ '\\n' + (tool | tojson) }}"
    "{% endfor %}{% endif %}{{ '<|im_end|>\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")


def test_the_system_turn_with_its_tools_is_cached_and_changes_nothing_in_the_reply(
        random_decoder_dir: Path, tmp_path: Path) -> None:
    import ctranslate2

    folder = tmp_path / "tools-in-system"
    shutil.copytree(random_decoder_dir, folder)
    chat = json.loads((folder / "chat.json").read_text())
    chat["chat_template"] = TOOLS_IN_SYSTEM_TEMPLATE
    (folder / "chat.json").write_text(json.dumps(chat))
    model = ChatModel(ChatConfig(str(folder), device="cpu", cached_system_prompts=4))
    reference = ctranslate2.Generator(str(folder))
    messages = [Message("system", "Be brief."), Message("user", "Lights!")]
    prompt = model._tokens([model.render(messages, [GET_TIME])])[0]
    static = model._static_prefix(messages, prompt, [GET_TIME])
    assert static and "get_time" in "".join(static)  # the tools are in the cached part
    # The system turn rendered without them is not a start of the prompt.
    assert model._system_prefix(messages, prompt, ()) == []
    result = reference.generate_batch([prompt], max_length=12, include_prompt_in_result=False,
                                      end_token=["<|im_end|>"])
    expected = model._tokenizer.decode(result[0].sequences_ids[0],
                                       skip_special_tokens=False).rstrip("\ufffd")
    for _ in range(2):  # caching, then from the cache
        reply = "".join(model.stream(messages, SamplingOptions(max_new_tokens=12),
                                     tools=[GET_TIME]))
        assert reply == expected


def test_a_template_without_tools_refuses_them(random_decoder_dir: Path) -> None:
    model = ChatModel(ChatConfig(str(random_decoder_dir), device="cpu"))
    with pytest.raises(ChatModelError, match="does not support tools"):
        model.render([Message("user", "hi")], [GET_TIME])


@pytest.mark.real_models
@pytest.mark.parametrize("system", [None, "en"])
def test_qwen_calls_set_light_for_the_kitchen(prepared_model, system: str | None) -> None:
    model = ChatModel(ChatConfig(str(prepared_model("qwen2.5-coder-0.5b-instruct"))))
    messages = [Message("system", system_prompt(system))] if system else []
    messages.append(Message("user", "Turn on the light in the kitchen."))
    parser = ToolCallParser(TOOLS)
    outputs = [o for delta in model.stream(messages, SamplingOptions(max_new_tokens=80),
                                           tools=TOOLS) for o in parser.feed(delta)]
    outputs += parser.finish()
    calls = [o for o in outputs if not isinstance(o, str)]
    assert calls == [KITCHEN_ON], outputs


@pytest.mark.real_models
def test_a_call_opened_for_qwen_is_completed_even_where_it_would_answer_in_words(
        prepared_model) -> None:  # type: ignore[no-untyped-def]
    # Asked for the weather, the 0.5B model invents it instead of calling (docs/benchmarks.md,
    # "Spoken commands"); with the call opened for it (tool_choice "required") it calls.
    from voice.reply_settings import call_opening

    weather = Tool("get_weather", "Look up the current weather in a city.",
                   {"type": "object", "properties": {"city": {"type": "string"}},
                    "required": ["city"]})
    tools = [SET_LIGHT, weather]
    model = ChatModel(ChatConfig(str(prepared_model("qwen2.5-coder-0.5b-instruct"))))
    messages = [Message("system", system_prompt("en")),
                Message("user", "What is the weather like in Madrid?")]
    opening = call_opening("required")
    parser = ToolCallParser(tools)
    outputs = parser.feed(opening)
    for delta in model.stream(messages, SamplingOptions(max_new_tokens=60, prefix=opening),
                              tools=tools):
        outputs += parser.feed(delta)
    outputs += parser.finish()
    calls = [o for o in outputs if not isinstance(o, str)]
    # The function and the city; how the 0.5B model spells the city ("Madrid", "Madrid,
    # Spain") may follow the CPU's kernels.
    assert [c.name for c in calls] == ["get_weather"], outputs
    assert isinstance(calls[0], ToolCall) and "madrid" in str(calls[0].arguments["city"]).lower()


# -- Mistral's call formats ------------------------------------------------------------------

ROOMS_JSON = '{"room": "kitchen", "on": true}'


@pytest.mark.parametrize("split", SPLITS.values(), ids=SPLITS.keys())
@pytest.mark.parametrize("reply", [
    # Mistral 7B v0.3 (SentencePiece: a space after the token) and Small 3.1: a JSON list.
    '[TOOL_CALLS] [{"name": "set_light", "arguments": ' + ROOMS_JSON + ', "id": "abc123XYZ"}]',
    '[TOOL_CALLS][{"name": "set_light", "arguments": ' + ROOMS_JSON + "}]",
    # Ministral 3: name[ARGS]{...}; Small 3.2: name[CALL_ID]id[ARGS]{...}.
    "[TOOL_CALLS]set_light[ARGS]" + ROOMS_JSON,
    "[TOOL_CALLS]set_light[CALL_ID]abc123XYZ[ARGS]" + ROOMS_JSON,
], ids=["v3-list", "v7-list", "v13-args", "v11-call-id"])
def test_mistral_calls_are_read_in_each_format(reply: str,
                                               split: Callable[[str], list[str]]) -> None:
    outputs, pieces = parse(reply, split)
    assert outputs == [KITCHEN_ON]
    assert not any("[" in piece for piece in pieces)  # no markup is ever spoken


@pytest.mark.parametrize("split", SPLITS.values(), ids=SPLITS.keys())
def test_several_mistral_calls_and_the_text_before_them(
        split: Callable[[str], list[str]]) -> None:
    reply = ("One moment.[TOOL_CALLS]set_light[ARGS]" + ROOMS_JSON
             + "[TOOL_CALLS]get_time[ARGS]{}")
    outputs, _ = parse(reply, split)
    assert outputs == ["One moment.", KITCHEN_ON, ToolCall("get_time", {})]
    listed = ('[TOOL_CALLS] [{"name": "set_light", "arguments": ' + ROOMS_JSON + '}, '
              '{"name": "get_time", "arguments": {}}]')
    assert parse(listed, split)[0] == [KITCHEN_ON, ToolCall("get_time", {})]


def test_an_unfinished_or_wrong_mistral_call_is_an_error_not_speech() -> None:
    outputs, pieces = parse('[TOOL_CALLS]set_light[ARGS]{"room": "kit', SPLITS["threes"])
    assert len(outputs) == 1 and isinstance(outputs[0], ToolCallError)
    assert "unfinished" in outputs[0].message and not pieces
    outputs, _ = parse('[TOOL_CALLS]open_door[ARGS]{"door": "front"}', SPLITS["whole"])
    assert isinstance(outputs[0], ToolCallError) and "no tool 'open_door'" in outputs[0].message


def test_text_that_only_looks_like_the_start_of_a_mistral_marker_is_spoken() -> None:
    outputs, _ = parse("See [TOOL] and [1].", SPLITS["characters"])
    assert outputs == ["See [TOOL] and [1]."]


def _logits(shares: dict[int, float], size: int = 8) -> list[float]:
    """Logits over a vocabulary of ``size`` whose softmax gives ``shares`` (the rest even)."""
    rest = (1 - sum(shares.values())) / (size - len(shares))
    return [math.log(shares.get(index, rest)) for index in range(size)]


@pytest.mark.parametrize(("token", "shares", "expected"), [
    ("The", {1: 0.15, 2: 0.10}, ('{"', 0.25)),  # words first, a call 25 % likely: the call
    ("The", {1: 0.05, 2: 0.10}, None),  # 15 %: words
    ('{"', {1: 0.60}, None),  # the model opened the call itself
])
def test_a_first_token_torn_between_words_and_a_call_opens_the_likeliest_opening(
        token: str, shares: dict[int, float], expected: tuple[str, float] | None) -> None:
    openings = {'{"': 1, "<tool_call>": 2}
    torn = torn_opening(token, _logits(shares), openings, 0.2)
    if expected is None:
        assert torn is None
    else:
        assert torn is not None and torn[0] == expected[0]
        assert torn[1] == pytest.approx(expected[1])
    assert torn_opening(token, _logits(shares), openings, 0.0) is None  # 0: off


@pytest.mark.real_models
def test_a_reply_torn_between_words_and_a_call_is_written_as_the_call(prepared_model) -> None:  # type: ignore[no-untyped-def]
    # The 0.5B model, without the rule to call, answers the weather in words although its
    # first token gives a call's openings ~0.23 (docs/benchmarks.md, "A reply torn between
    # words and a call"); a joke gets ~0.01. 0.1 leaves room for other CPUs' kernels.
    weather = Tool("get_weather", "Look up the current weather in a city.",
                   {"type": "object", "properties": {"city": {"type": "string"}},
                    "required": ["city"]})
    tools = [SET_LIGHT, weather]
    model = ChatModel(ChatConfig(str(prepared_model("qwen2.5-coder-0.5b-instruct"))))

    def reply(question: str, torn: float) -> list[Output]:
        messages = [Message("system", system_prompt("en")), Message("user", question)]
        parser = ToolCallParser(tools)
        options = SamplingOptions(max_new_tokens=40, call_when_torn=torn)
        outputs = [o for delta in model.stream(messages, options, tools=tools)
                   for o in parser.feed(delta)]
        return outputs + parser.finish()

    words = reply("What is the weather like in Madrid?", 0.0)
    assert all(isinstance(o, str) for o in words), words
    called = reply("What is the weather like in Madrid?", 0.1)
    assert [o.name for o in called if isinstance(o, ToolCall)] == ["get_weather"], called
    # Written from the call's opening: the call comes first, nothing is said before it (what
    # the model may add after a call is its own, and may follow the CPU's kernels).
    assert isinstance(next(o for o in called if not isinstance(o, str) or o.strip()),
                      ToolCall), called
    joke = reply("Tell me a joke.", 0.1)
    assert all(isinstance(o, str) for o in joke) and "".join(map(str, joke)).strip(), joke
