"""Hostile or odd input over a real websocket (fake engines): one error event, and the
connection stays open and keeps serving."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from collections.abc import Awaitable, Callable, Iterator

import pytest
from websockets.asyncio.client import ClientConnection

from tests.fakes import FakeChat, FakeTranscriber, fake_engines
from tests.live import open_session, receive_until, running_server, url_of
from voice.config import ServiceConfig
from voice.server import VoiceServer
from voice.session import SessionDefaults


@pytest.fixture(scope="module")
def server() -> Iterator[VoiceServer]:
    engines = fake_engines(FakeTranscriber([("Hello there", "en")] * 10, delay_s=0.01),
                           FakeChat(["A short answer."] * 10, delay_s=0.001))
    with running_server(ServiceConfig(port=0, shutdown_grace_s=2.0), engines,
                        SessionDefaults(partial_interval_s=0)) as running:
        yield running


def run(test: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(test(), 30))


def _status(url: str) -> int:
    with urllib.request.urlopen(url, timeout=10) as response:
        return int(response.status)


async def _still_serving(ws: ClientConnection) -> None:
    await ws.send(json.dumps({"type": "session.update", "session": {"type": "realtime"}}))
    assert json.loads(await ws.recv())["type"] == "session.updated"


@pytest.mark.parametrize("message", [
    '{"type": "bogus", "event_id": "\\ud800"}',
    '{"type": "session.update", "event_id": "\\udfff", "session": {"instructions": "\\ud800"}}',
    '{"type": "conversation.item.create", "item": {"type": "message", "role": "user", '
    '"content": [{"type": "input_text", "text": "\\udc00"}]}}',
])
def test_a_lone_surrogate_gets_one_error_and_the_connection_stays_open(
        server: VoiceServer, message: str) -> None:
    async def scenario() -> None:
        ws = await open_session(url_of(server))
        await ws.send(message)
        error = json.loads(await ws.recv())
        assert error["type"] == "error", error
        assert error["error"]["code"] == "invalid_value"
        assert error["error"]["event_id"] is None  # never echoed: it cannot be encoded
        await _still_serving(ws)
        await ws.close()
    run(scenario)


@pytest.mark.parametrize("frame", [b"", '{"type": "input_audio_buffer.append", "audio": ""}'])
def test_an_empty_audio_append_gets_an_error_and_the_session_goes_on(
        server: VoiceServer, frame: bytes | str) -> None:
    async def scenario() -> None:
        ws = await open_session(url_of(server))
        await ws.send(frame)
        error = json.loads(await ws.recv())
        assert error["type"] == "error"
        assert error["error"]["code"] == "input_audio_buffer_append_empty"
        await _still_serving(ws)
        await ws.close()
    run(scenario)


def test_megabyte_items_are_refused_and_the_server_still_answers(server: VoiceServer) -> None:
    text = "word " * 200_000  # 1,000,000 characters: under the 1 MiB message limit

    async def scenario() -> None:
        ws = await open_session(url_of(server))
        for _ in range(20):
            await ws.send(json.dumps({"type": "conversation.item.create", "item": {
                "type": "message", "role": "user",
                "content": [{"type": "input_text", "text": text}]}}))
        await ws.send(json.dumps({"type": "conversation.item.create", "item": {
            "type": "message", "role": "user",
            "content": [{"type": "input_text", "text": "Short question?"}]}}))
        await ws.send(json.dumps({"type": "response.create",
                                  "response": {"output_modalities": ["text"]}}))
        events = await receive_until(ws, "response.done", 20)
        codes = [e["error"]["code"] for e in events if e["type"] == "error"]
        assert codes == ["item_too_large"] * 20
        assert events[-1]["response"]["status"] == "completed"
        assert await asyncio.to_thread(_status, f"http://127.0.0.1:{server.port}/healthz") \
            == 200
        await ws.close()
    run(scenario)
