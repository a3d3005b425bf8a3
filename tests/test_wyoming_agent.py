"""The Wyoming agent's choices of engine and prompt, with scripted engines (no sockets, no MCP
traffic: the servers' tool listing is given)."""

from __future__ import annotations

import asyncio

from tests.fakes import FakeChat, FakeTranscriber, fake_engines
from voice.protocol import ListedTool, McpTool
from voice.session_settings import SessionDefaults
from voice.wyoming_agent import WyomingAgent

HOME = McpTool("home", "http://127.0.0.1:9/mcp")
LIGHT = ListedTool(HOME, "set_light", "Switch a room's light.", {
    "type": "object", "properties": {"room": {"type": "string"}, "on": {"type": "boolean"}},
    "required": ["room", "on"]})


def answer(chat: FakeChat, tools_chat: FakeChat, text: str) -> tuple[str, list[str]]:
    agent = WyomingAgent(fake_engines(FakeTranscriber([]), chat, tools_chat=tools_chat),
                         SessionDefaults(), (HOME,))

    async def listed() -> list[ListedTool]:
        return [LIGHT]

    agent.tools = listed  # type: ignore[method-assign]
    emitted: list[str] = []

    async def emit(piece: str) -> None:
        emitted.append(piece)

    return asyncio.run(agent.answer("test", text, "en", emit)), emitted


def test_a_question_taken_for_a_call_that_cannot_be_made_is_answered_in_words() -> None:
    wrong = '<tool_call>\n{"name": "get_legs", "arguments": {}}\n</tool_call>'
    chat, tools_chat = FakeChat(["Spiders have eight legs."]), FakeChat([wrong])
    said, emitted = answer(chat, tools_chat, "How many legs does a spider have?")
    assert said == "Spiders have eight legs." and "".join(emitted) == said
    # The tools model was asked first, with the tools; the words come without them.
    assert [t.name for t in tools_chat.tools[0]] == ["set_light"]
    assert chat.tools == [[]] and chat.requests[0][-1].content.startswith("How many legs")


def test_a_plain_answer_from_the_tools_model_is_spoken_as_it_is() -> None:
    chat, tools_chat = FakeChat([]), FakeChat(["Paris is the capital of France."])
    said, _ = answer(chat, tools_chat, "What is the capital of France?")
    assert said == "Paris is the capital of France." and chat.requests == []
