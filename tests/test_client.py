"""The client library (clients/client.py) receives the service's own events (voice.protocol)."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest
from websockets.asyncio.server import ServerConnection, serve

from clients.client import VoiceClient, VoiceClientError, response_id_of
from tests.fakes import FakeChat, FakeTranscriber, fake_engines
from tests.live import running_server, url_of
from voice.config import ServiceConfig
from voice.protocol import (
    AudioDelta,
    AudioTranscriptDelta,
    ResponseCreated,
    ResponseDone,
    ServerEvent,
    UnknownServerEvent,
)
from voice.session import SessionDefaults


async def _reply(url: str, output_rate: int) -> list[ServerEvent]:
    """Ask for a reply in a session with ``output_rate``; the events up to its end."""
    events: list[ServerEvent] = []
    async with await VoiceClient.connect(url) as client:
        await client.configure(output_rate=output_rate)
        await client.say("Hello")
        async with asyncio.timeout(30):
            async for event in client.events():
                events.append(event)
                if isinstance(event, ResponseDone):
                    break
    return events


def test_a_reply_arrives_as_protocol_events_with_audio_at_the_session_output_rate() -> None:
    engines = fake_engines(FakeTranscriber([]), FakeChat(["Okay, here it is."] * 2))
    with running_server(ServiceConfig(port=0), engines, SessionDefaults()) as server:
        low = asyncio.run(_reply(url_of(server), 16_000))
        high = asyncio.run(_reply(url_of(server), 48_000))
    for events in (low, high):
        done = events[-1]
        assert isinstance(done, ResponseDone)
        assert sum(isinstance(e, ResponseCreated) for e in events) == 1
        assert done.status == "completed" and done.text == "Okay, here it is."
        assert "".join(e.delta for e in events if isinstance(e, AudioTranscriptDelta)) \
            == "Okay, here it is."
        replies = {response_id_of(e) for e in events} - {None}
        assert replies == {response_id_of(done)}
    audio_low, audio_high = (np.concatenate([e.samples() for e in events
                                             if isinstance(e, AudioDelta)])
                             for events in (low, high))
    assert audio_low.dtype == np.int16 and audio_low.size > 0
    # The same reply at three times the rate: three times the samples, the same duration.
    assert audio_high.size / audio_low.size == pytest.approx(3.0, rel=0.01)


def test_a_malformed_server_event_is_a_client_error_and_an_unknown_one_is_kept_whole() -> None:
    async def scenario() -> list[ServerEvent]:
        async def handler(ws: ServerConnection) -> None:
            await ws.send(json.dumps({"type": "session.created", "session": {"id": "sess_1"}}))
            await ws.send(json.dumps({"type": "session.future_event", "detail": 1}))
            await ws.send(json.dumps({"type": "response.done"}))  # without its response
            await ws.wait_closed()

        received: list[ServerEvent] = []
        async with serve(handler, "127.0.0.1", 0) as server:
            port = next(iter(server.sockets)).getsockname()[1]
            async with await VoiceClient.connect(f"ws://127.0.0.1:{port}") as client:
                assert client.session_id == "sess_1"
                with pytest.raises(VoiceClientError, match=r"malformed response\.done"):
                    async for event in client.events():
                        received.append(event)
        return received

    received = asyncio.run(asyncio.wait_for(scenario(), 30))
    assert received == [UnknownServerEvent("session.future_event", {
        "type": "session.future_event", "detail": 1})]
