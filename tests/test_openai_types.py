"""Every server event of a busy session validates against the official SDK's GA types.

One real server with fake engines; the client drives a spoken turn under server_vad (with a
partial transcript), a barge-in, a truncation, a text-only reply, a cancelled reply, a failed
reply, manual turns at 16/48 kHz, a function call and its answer, and a handful of errors.
Every event it receives is checked with :func:`tests.realtime_types.ga_problems`.
"""

from __future__ import annotations

import asyncio
import base64
import json
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pytest
from websockets.asyncio.client import ClientConnection, connect

from llm.chat import Message, SamplingOptions
from llm.paced import Pace
from llm.tools import Tool
from tests.fakes import FakeChat, FakeTranscriber, fake_engines, silence, tone
from tests.live import receive_until, running_server, url_of
from tests.realtime_types import ga_problems
from voice.config import ServiceConfig
from voice.protocol.duplex import BackchannelHeard, OutputAudioDuck
from voice.server import VoiceServer
from voice.session import SessionDefaults

LONG = " ".join(["word"] * 10_000)  # a reply that lasts until it is interrupted
SHORT = "Hi there. How are you today?"
CALL = ('One moment. <tool_call>\n{"name": "get_weather", "arguments": {"city": "Lyon"}}\n'
        '</tool_call>')
WEATHER = {"type": "function", "name": "get_weather", "description": "Weather in a city",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                          "required": ["city"]}}


class ScriptedChat(FakeChat):
    """FakeChat that fails when the user's last message is "fail"."""

    def stream(self, messages: Sequence[Message], options: SamplingOptions | None = None,
               cancel: threading.Event | None = None,
               tools: Sequence[Tool] = (), *, pace: Pace | None = None) -> Iterator[str]:
        if messages[-1].content == "fail":
            raise RuntimeError("scripted failure")
        return super().stream(messages, options, cancel, tools, pace=pace)


@pytest.fixture(scope="module")
def server() -> Iterator[VoiceServer]:
    # LLM calls in order: barged-in turn, spoken turn, text reply, cancelled reply, manual turn,
    # a sentence with a function call, the answer to the function's result.
    chat = ScriptedChat([LONG, SHORT, SHORT, LONG, SHORT, CALL, SHORT], delay_s=0.002)
    engines = fake_engines(FakeTranscriber([("Hello there", "en")] * 20, delay_s=0.002), chat)
    with running_server(ServiceConfig(port=0, shutdown_grace_s=1.0), engines,
                        SessionDefaults(partial_interval_s=0.3)) as server:
        yield server


def _append(samples: np.ndarray) -> str:
    audio = base64.b64encode(samples.astype("<i2").tobytes()).decode()
    return json.dumps({"type": "input_audio_buffer.append", "audio": audio})


async def _speak(ws: ClientConnection, seconds: float) -> None:
    for chunk in np.array_split(tone(seconds), int(seconds * 10)):
        await ws.send(_append(chunk))


async def _pause(ws: ClientConnection) -> None:
    await ws.send(_append(silence(0.7)))


async def _text_turn(ws: ClientConnection, text: str, **response: Any) -> None:
    await ws.send(json.dumps({"type": "conversation.item.create", "item": {
        "type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}}))
    await ws.send(json.dumps({"type": "response.create", "response": response}))


async def _error(ws: ClientConnection, message: str, events: list[dict[str, Any]]) -> str:
    await ws.send(message)
    return str((await receive_until(ws, "error", 10, events))[-1]["error"]["code"])


async def _drive(ws: ClientConnection, events: list[dict[str, Any]]) -> None:
    async def until(kind: str) -> dict[str, Any]:
        return (await receive_until(ws, kind, 30, events))[-1]

    await until("session.created")
    # Without the interruption guard speech over a reply cuts it at once; with it, a 0.5 s
    # tone is cut only once judged the user's, which may need more audio than this client
    # streams (the guard's own events are covered in tests/test_session_duplex.py).
    await ws.send(json.dumps({"type": "session.update", "session": {
        "type": "realtime", "interruption": {"guard": False}}}))
    await until("session.updated")
    # A spoken turn with a partial transcript, barged in on while its reply is spoken.
    await _speak(ws, 1.2)
    await until("conversation.item.input_audio_transcription.delta")
    await _pause(ws)
    await until("response.output_audio.delta")
    await _speak(ws, 0.5)
    barged = await until("response.done")
    assert barged["response"]["status_details"]["reason"] == "turn_detected", barged
    # ... and the new turn is answered in full, then cut by the client.
    await _pause(ws)
    done = await until("response.done")
    assert done["response"]["status"] == "completed", done
    await ws.send(json.dumps({"type": "conversation.item.truncate", "content_index": 0,
                              "item_id": done["response"]["output"][0]["id"],
                              "audio_end_ms": 100}))
    await until("conversation.item.truncated")
    # A text-only reply.
    await _text_turn(ws, "Write, do not speak.", output_modalities=["text"])
    assert (await until("response.done"))["response"]["status"] == "completed"
    # A reply cancelled by the client.
    await _text_turn(ws, "Talk at length.")
    await until("response.output_audio.delta")
    await ws.send(json.dumps({"type": "response.cancel"}))
    cancelled = await until("response.done")
    assert cancelled["response"]["status_details"]["reason"] == "client_cancelled"
    # A reply the engine fails.
    await _text_turn(ws, "fail")
    assert (await until("response.done"))["response"]["status"] == "failed"
    # Manual turns at the extension rates, then clearing the buffer.
    await ws.send(json.dumps({"type": "session.update", "session": {
        "type": "realtime", "audio": {
            "input": {"format": {"type": "audio/pcm", "rate": 16000}, "turn_detection": None,
                      "transcription": {"language": "en", "languages": ["en", "de"],
                                        "prompt": "Küche, Wohnzimmer"}},
            "output": {"format": {"type": "audio/pcm", "rate": 48000}}}}}))
    await until("session.updated")
    await ws.send(_append(tone(0.5, rate=16_000)))
    await ws.send(json.dumps({"type": "input_audio_buffer.commit"}))
    await until("conversation.item.done")
    await ws.send(json.dumps({"type": "response.create"}))
    await until("response.done")
    await ws.send(_append(tone(0.2, rate=16_000)))
    await ws.send(json.dumps({"type": "input_audio_buffer.clear"}))
    await until("input_audio_buffer.cleared")
    # Function calling: tools in the session, a reply that speaks and calls, the result, the
    # spoken answer.
    await ws.send(json.dumps({"type": "session.update", "session": {
        "type": "realtime", "tools": [WEATHER], "tool_choice": "auto"}}))
    updated = await until("session.updated")
    assert updated["session"]["tools"][0]["name"] == "get_weather"
    await _text_turn(ws, "Weather in Lyon?")
    called = await until("response.done")
    assert [o["type"] for o in called["response"]["output"]] == ["message", "function_call"]
    call = called["response"]["output"][1]
    await ws.send(json.dumps({"type": "conversation.item.create", "item": {
        "type": "function_call_output", "call_id": call["call_id"],
        "output": '{"temperature_c": 18}'}}))
    await until("conversation.item.done")
    await ws.send(json.dumps({"type": "response.create"}))
    assert (await until("response.done"))["response"]["status"] == "completed"
    # Errors.
    codes = [await _error(ws, message, events) for message in (
        "{not json", '{"type": "no.such.event", "event_id": "evt_7"}',
        '{"type": "response.cancel"}', '{"type": "input_audio_buffer.commit"}',
        '{"type": "conversation.item.truncate", "item_id": "nope", "audio_end_ms": 5}',
        '{"type": "session.update", "session": {"audio": {"output": {"format": '
        '{"type": "audio/pcm", "rate": 8000}}}}}')]
    assert codes == ["invalid_json", "unknown_event_type", "response_cancel_not_active",
                     "input_audio_buffer_commit_empty", "item_not_found",
                     "unsupported_sample_rate"]


def test_every_server_event_validates_against_the_openai_sdk_types(
        server: VoiceServer) -> None:
    events: list[dict[str, Any]] = []

    async def scenario() -> None:
        async with connect(url_of(server), max_size=None) as ws:
            await _drive(ws, events)

    asyncio.run(asyncio.wait_for(scenario(), 180))
    kinds = {event["type"] for event in events}
    assert {"session.created", "session.updated", "input_audio_buffer.speech_started",
            "input_audio_buffer.speech_stopped", "input_audio_buffer.committed",
            "input_audio_buffer.cleared", "conversation.item.added", "conversation.item.done",
            "conversation.item.truncated",
            "conversation.item.input_audio_transcription.delta",
            "conversation.item.input_audio_transcription.completed", "response.created",
            "response.output_item.added", "response.output_item.done",
            "response.content_part.added", "response.content_part.done",
            "response.output_audio.delta", "response.output_audio.done",
            "response.output_audio_transcript.delta", "response.output_audio_transcript.done",
            "response.output_text.delta", "response.output_text.done", "response.done",
            "response.function_call_arguments.delta", "response.function_call_arguments.done",
            "error"} <= kinds
    problems = sorted({problem for event in events for problem in ga_problems(event)})
    assert not problems, "\n".join(problems)


def test_our_extension_events_pass_with_their_declared_fields_and_nothing_else() -> None:
    heard = json.loads(BackchannelHeard(100, 500, "mhm", "en").to_json())
    ducked = json.loads(OutputAudioDuck("resp_1", -18.0, 100).to_json())
    assert ga_problems(heard) == ga_problems(ducked) == []
    assert ga_problems({**heard, "speaker": "user"}) == [
        "input_audio_buffer.backchannel: key speaker is not declared"]
    assert ga_problems({"type": "input_audio_buffer.shrug", "event_id": "e"}) == [
        "'input_audio_buffer.shrug' is not a GA server event type"]
