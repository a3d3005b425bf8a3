"""Tools end to end with the real default models and the official ``openai`` SDK.

A spoken request (Piper's English voice) asks for a light; the default tools model must call the
app's function with the right arguments; the app sends the result back and the assistant
answers aloud. The same request with an MCP server instead (the ``mcp`` SDK's own server on
loopback): the service calls it and speaks the outcome. Every event is also checked against
the SDK's GA types.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from tests.live import default_models_server, pcm16_b64
from tests.mcp_server import HomeServer, home_server
from tests.realtime_types import ga_problems
from tests.speech import to_16k, with_silence
from voice.server import VoiceServer

pytestmark = pytest.mark.real_models

LIGHT = {"type": "function", "name": "set_light",
         "description": "Switch the light of a room on or off.",
         "parameters": {"type": "object", "properties": {
             "room": {"type": "string", "description": "The room, e.g. kitchen"},
             "on": {"type": "boolean", "description": "true to switch on, false for off"}},
             "required": ["room", "on"]}}


async def spoken_reply(connection: Any, events: list[dict[str, Any]]
                       ) -> tuple[str, bytes, list[dict[str, Any]]]:
    """Read one response to its end: its spoken text, its audio, its output items."""
    reply, audio, items = "", b"", []
    async for event in connection:
        events.append(event.model_dump(mode="json", exclude_unset=True))
        if event.type == "response.output_item.done":
            items.append(event.item.model_dump())
        elif event.type == "response.output_audio_transcript.delta":
            reply += event.delta
        elif event.type == "response.output_audio.delta":
            audio += base64.b64decode(event.delta)
        elif event.type == "error":
            raise AssertionError(event.error)
        elif event.type == "response.done":
            assert event.response.status == "completed"
            break
    return reply, audio, items


@pytest.fixture(scope="module")
def tool_server(prepared_model) -> Iterator[VoiceServer]:  # type: ignore[no-untyped-def]
    with default_models_server(prepared_model, 80, mcp_hosts=("127.0.0.1",),
                               tools=True) as server:
        yield server


@pytest.fixture(scope="module")
def light_request(prepared_model) -> np.ndarray:  # type: ignore[no-untyped-def]
    from tts.piper import PiperSynthesizer

    voice = PiperSynthesizer(prepared_model("en_US-joe-medium") / "en_US-joe-medium.onnx",
                             deterministic=True)  # the same audio on every run
    chunks = list(voice.synthesize("Please turn on the light in the kitchen."))
    return with_silence(to_16k(np.concatenate([c.samples for c in chunks]),
                               chunks[0].sample_rate))


def test_the_openai_sdk_round_trip_speaks_calls_a_function_and_speaks_its_result(
        tool_server: VoiceServer, light_request: np.ndarray) -> None:
    from openai import AsyncOpenAI

    events: list[dict[str, Any]] = []

    async def scenario() -> tuple[dict[str, Any], str, bytes]:
        client = AsyncOpenAI(api_key="unused-locally",
                             websocket_base_url=f"ws://127.0.0.1:{tool_server.port}/v1")
        async with client.realtime.connect(model="local") as connection:
            await connection.session.update(session={
                "type": "realtime", "tools": [LIGHT], "tool_choice": "auto",  # type: ignore[list-item]
                "audio": {"input": {"turn_detection": {"type": "server_vad"}}}})
            silence = np.zeros(int(1.2 * 16000), np.float32)
            for chunk in pcm16_b64(np.concatenate([light_request, silence])):
                await connection.input_audio_buffer.append(audio=chunk)
                await asyncio.sleep(0.02)
            call: dict[str, Any] = {}
            async for event in connection:
                events.append(event.model_dump(mode="json", exclude_unset=True))
                if event.type == "response.function_call_arguments.done":
                    call = {"call_id": event.call_id, "name": event.name,
                            "arguments": json.loads(event.arguments)}
                elif event.type == "error":
                    raise AssertionError(event.error)
                elif event.type == "response.done":
                    break
            assert call, f"no function call; events: {[e['type'] for e in events]}"
            await connection.conversation.item.create(item={
                "type": "function_call_output", "call_id": call["call_id"],
                "output": json.dumps({"room": "kitchen", "light": "on"})})
            await connection.response.create()
            reply, audio, _ = await spoken_reply(connection, events)
            return call, reply, audio

    call, reply, audio = asyncio.run(asyncio.wait_for(scenario(), 240))
    assert call["name"] == "set_light"
    assert call["arguments"]["on"] is True
    assert "kitchen" in str(call["arguments"]["room"]).lower()
    assert reply.strip() and "<tool_call>" not in reply and "{" not in reply, reply
    assert len(audio) > 24_000 * 2 // 2  # at least half a second of speech
    problems = sorted({p for event in events for p in ga_problems(event)})
    assert not problems, "\n".join(problems)


@pytest.fixture(scope="module")
def home() -> Iterator[HomeServer]:
    with home_server() as server:
        yield server


def test_a_spoken_request_is_answered_through_a_real_mcp_server(
        tool_server: VoiceServer, light_request: np.ndarray, home: HomeServer) -> None:
    from openai import AsyncOpenAI

    events: list[dict[str, Any]] = []

    async def scenario() -> tuple[dict[str, Any], str, bytes]:
        client = AsyncOpenAI(api_key="unused-locally",
                             websocket_base_url=f"ws://127.0.0.1:{tool_server.port}/v1")
        async with client.realtime.connect(model="local") as connection:
            await connection.session.update(session={
                "type": "realtime",
                "tools": [{"type": "mcp", "server_label": "home", "server_url": home.url,
                           "allowed_tools": ["set_light", "get_weather"],
                           "require_approval": "never"}],
                "audio": {"input": {"turn_detection": {"type": "server_vad"}}}})
            async for event in connection:
                events.append(event.model_dump(mode="json", exclude_unset=True))
                if event.type in ("mcp_list_tools.completed", "mcp_list_tools.failed",
                                  "error"):
                    assert event.type == "mcp_list_tools.completed", events[-1]
                    break
            silence = np.zeros(int(1.2 * 16000), np.float32)
            for chunk in pcm16_b64(np.concatenate([light_request, silence])):
                await connection.input_audio_buffer.append(audio=chunk)
                await asyncio.sleep(0.02)
            reply, audio, items = await spoken_reply(connection, events)
            calls = [item for item in items if item["type"] == "mcp_call"]
            return (calls[0] if calls else {}), reply, audio

    before = len(home.calls)
    call, reply, audio = asyncio.run(asyncio.wait_for(scenario(), 240))
    assert call, f"no MCP call; events: {[e['type'] for e in events]}"
    assert home.calls[before:] == [("set_light", {"room": home.calls[-1][1]["room"],
                                                  "on": True})]
    assert "kitchen" in home.calls[-1][1]["room"].lower()
    assert call["output"] == f"The {home.calls[-1][1]['room']} light is now on."
    assert reply.strip() and "<tool_call>" not in reply and "{" not in reply, reply
    assert len(audio) > 24_000 * 2 // 2  # at least half a second of speech
    problems = sorted({p for event in events for p in ga_problems(event)})
    assert not problems, "\n".join(problems)
