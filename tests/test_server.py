"""The websocket server with fake engines: auth, limits, bad input, health, metrics, shutdown."""

from __future__ import annotations

import asyncio
import json
import re
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Iterator

import numpy as np
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.fakes import FakeChat, FakeTranscriber, fake_engines
from tests.live import open_session, receive_until, running_server, stream_audio, url_of
from voice.config import ConfigError, Limits, ServiceConfig
from voice.config_file import build_config
from voice.server import VoiceServer
from voice.session import SessionDefaults


def _server(**config: object) -> Iterator[VoiceServer]:
    limits = config.pop("limits", Limits())
    service = ServiceConfig(port=0, limits=limits, shutdown_grace_s=2.0, **config)  # type: ignore[arg-type]
    engines = fake_engines(FakeTranscriber([("Hello there", "en")] * 20, delay_s=0.01),
                           FakeChat(["Hi! " + "This is a fairly long answer. " * 30] * 20,
                                    delay_s=0.005))
    with running_server(service, engines, SessionDefaults(partial_interval_s=0)) as server:
        yield server


@pytest.fixture(scope="module")
def server() -> Iterator[VoiceServer]:
    yield from _server()


@pytest.fixture(scope="module")
def keyed_server() -> Iterator[VoiceServer]:
    yield from _server(api_keys=("s3cret",), limits=Limits(max_sessions=2,
                                                           max_message_bytes=4096))


def run(test: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(test(), 20))


def _http(url: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.headers.get("Content-Type"), response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get("Content-Type"), error.read().decode()


@pytest.mark.parametrize(("message", "code"), [
    ("{not json", "invalid_json"),
    ('{"type": "input_audio_buffer.append", "audio": "!!!"}', "invalid_audio"),
    ('{"type": "input_audio_buffer.append", "audio": "AAAA"}', "invalid_audio"),  # 3 bytes
    ('{"type": "no.such.event", "event_id": "e7"}', "unknown_event_type"),
    ('{"type": "conversation.item.truncate", "item_id": "x", "content_index": 0, '
     '"audio_end_ms": 5}', "item_not_found"),
    ('{"type": "session.update", "session": {"type": "realtime", "audio": {"input": '
     '{"format": {"type": "audio/pcm", "rate": 8000}}}}}', "unsupported_sample_rate"),
    ('{"type": "response.cancel"}', "response_cancel_not_active"),
    ('{"type": "input_audio_buffer.commit"}', "input_audio_buffer_commit_empty"),
])
def test_bad_input_gets_an_error_event_and_the_session_lives_on(server: VoiceServer,
                                                                message: str, code: str) -> None:
    async def scenario() -> None:
        ws = await open_session(url_of(server))
        await ws.send(message)
        error = json.loads(await ws.recv())
        assert error["type"] == "error" and error["error"]["code"] == code, error
        if "e7" in message:
            assert error["error"]["event_id"] == "e7"
        await ws.send(json.dumps({"type": "session.update", "session": {"type": "realtime"}}))
        assert json.loads(await ws.recv())["type"] == "session.updated"
        await ws.close()
    run(scenario)


def test_odd_length_binary_audio_is_an_error(server: VoiceServer) -> None:
    async def scenario() -> None:
        ws = await open_session(url_of(server))
        await ws.send(b"\x00\x01\x02")
        assert json.loads(await ws.recv())["error"]["code"] == "invalid_audio"
        await ws.send(np.zeros(480, "<i2").tobytes())  # even: accepted silently
        await ws.send(json.dumps({"type": "input_audio_buffer.clear"}))
        assert json.loads(await ws.recv())["type"] == "input_audio_buffer.cleared"
        await ws.close()
    run(scenario)


def test_health_and_metrics_are_served_over_http(server: VoiceServer) -> None:
    status, kind, body = _http(f"http://127.0.0.1:{server.port}/healthz")
    health = json.loads(body)
    assert status == 200 and kind == "application/json"
    assert health["status"] == "ok" and "sessions_active" in health and health["models"]
    status, kind, body = _http(f"http://127.0.0.1:{server.port}/metrics")
    assert status == 200 and kind.startswith("text/plain")
    assert "voice_sessions_active" in body and "voice_turn_stage_latency_ms" in body
    assert _http(f"http://127.0.0.1:{server.port}/nowhere")[0] == 404


def test_a_turn_is_counted_in_the_metrics(server: VoiceServer) -> None:
    async def scenario() -> None:
        ws = await open_session(url_of(server))
        await ws.send(json.dumps({"type": "conversation.item.create", "item": {
            "type": "message", "role": "user",
            "content": [{"type": "input_text", "text": "hi"}]}}))
        await ws.send(json.dumps({"type": "response.create",
                                  "response": {"output_modalities": ["text"]}}))
        await receive_until(ws, "response.done", 30)
        await ws.close()
    run(scenario)
    body = _http(f"http://127.0.0.1:{server.port}/metrics")[2]
    assert 'voice_turns_total{status="completed"}' in body
    # Per-engine queue depth, calls running, and how long calls waited and ran.
    assert 'voice_engine_queue_depth{engine="fake-llm"} 0.0' in body
    assert 'voice_engine_running{engine="fake-asr"}' in body
    waits = re.search(r'voice_engine_wait_seconds_count\{engine="fake-llm"\} (\d+)', body)
    assert waits is not None and int(waits.group(1)) > 0, body


def test_keys_are_required_and_accepted_three_ways(keyed_server: VoiceServer) -> None:
    async def scenario() -> None:
        url = url_of(keyed_server)
        with pytest.raises(InvalidStatus) as refused:
            await connect(url)
        assert refused.value.response.status_code == 401
        with pytest.raises(InvalidStatus):
            await connect(url, additional_headers={"Authorization": "Bearer wrong"})
        for ws in [await open_session(url, additional_headers={"Authorization":
                                                               "Bearer s3cret"}),
                   await open_session(url, subprotocols=["realtime",
                                                         "openai-insecure-api-key.s3cret"])]:
            await ws.close()
        # A closed session frees its slot once the server has wound it down.
        while len(keyed_server._clients) >= keyed_server.config.limits.max_sessions:
            await asyncio.sleep(0.01)
        ws = await open_session(url + "?api_key=s3cret")
        await ws.close()
    run(scenario)


def test_the_session_limit_refuses_extra_connections(keyed_server: VoiceServer) -> None:
    async def scenario() -> None:
        url = url_of(keyed_server) + "?api_key=s3cret"
        first, second = await open_session(url), await open_session(url)
        with pytest.raises(InvalidStatus) as refused:
            await connect(url)
        assert refused.value.response.status_code == 503
        assert b"too_many_sessions" in refused.value.response.body
        await first.close()
        await second.close()
    run(scenario)


def test_an_oversized_message_gets_an_error_then_the_session_is_closed(
    keyed_server: VoiceServer,
) -> None:
    async def scenario() -> None:
        ws = await open_session(url_of(keyed_server) + "?api_key=s3cret")
        await ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": "A" * 8000}))
        error = json.loads(await ws.recv())
        assert error["error"]["code"] == "message_too_large"
        with pytest.raises(ConnectionClosed):
            await ws.recv()
        assert ws.close_code == 1009
    run(scenario)


def test_a_client_leaving_mid_reply_leaves_no_generation_running(server: VoiceServer) -> None:
    async def scenario() -> None:
        ws = await open_session(url_of(server))
        await ws.send(json.dumps({"type": "conversation.item.create", "item": {
            "type": "message", "role": "user",
            "content": [{"type": "input_text", "text": "talk"}]}}))
        await ws.send(json.dumps({"type": "response.create"}))
        await receive_until(ws, "response.output_audio.delta", 30)
        await ws.close()
        for _ in range(200):
            health = json.loads(_http(f"http://127.0.0.1:{server.port}/healthz")[2])
            if health["sessions_active"] == 0:
                break
            await asyncio.sleep(0.02)
        assert health["sessions_active"] == 0 and health["responses_active"] == 0
        chat = server.engines.chat
        assert chat.active == 0  # type: ignore[attr-defined]
    run(scenario)


def test_two_sessions_do_not_see_each_others_events(server: VoiceServer) -> None:
    async def scenario() -> None:
        a, b = await open_session(url_of(server)), await open_session(url_of(server))
        await a.send(json.dumps({"type": "session.update", "session": {
            "type": "realtime", "instructions": "A only"}}))
        updated = json.loads(await a.recv())
        assert updated["session"]["instructions"] == "A only"
        await b.send(json.dumps({"type": "input_audio_buffer.clear"}))
        assert json.loads(await b.recv())["type"] == "input_audio_buffer.cleared"
        await b.send(json.dumps({"type": "session.update", "session": {"type": "realtime"}}))
        b_session = json.loads(await b.recv())["session"]
        assert b_session["id"] != updated["session"]["id"]
        assert b_session["instructions"] == ""  # a's instructions did not leak into b
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.3):
                await a.recv()  # a got nothing of b's
        await a.close()
        await b.close()
    run(scenario)


def test_a_spoken_turn_over_the_wire(server: VoiceServer) -> None:
    async def scenario() -> None:
        ws = await open_session(url_of(server))
        tone = (np.sin(np.arange(16000) * 0.1) * 0.5).astype(np.float32)
        await stream_audio(ws, tone, realtime=False, trailing_silence_s=0.8)
        events = await receive_until(ws, "response.done", 30)
        types = [e["type"] for e in events]
        assert "input_audio_buffer.speech_started" in types
        assert types[-1] == "response.done"
        assert events[-1]["response"]["status"] == "completed"
        await ws.close()
    run(scenario)


def test_beta_clients_get_the_beta_event_names(server: VoiceServer) -> None:
    async def scenario() -> None:
        ws = await open_session(url_of(server), additional_headers={"OpenAI-Beta":
                                                                    "realtime=v1"})
        await ws.send(json.dumps({"type": "conversation.item.create", "item": {
            "type": "message", "role": "user",
            "content": [{"type": "input_text", "text": "hi"}]}}))
        await ws.send(json.dumps({"type": "response.create"}))
        events = await receive_until(ws, "response.done", 30)
        types = {e["type"] for e in events}
        assert "response.audio.delta" in types and "response.audio_transcript.delta" in types
        assert "response.output_audio.delta" not in types
        await ws.close()
    run(scenario)


def test_shutdown_closes_sessions_with_going_away() -> None:
    async def scenario(server: VoiceServer) -> None:
        ws = await open_session(url_of(server))
        await server.shutdown()
        with pytest.raises(ConnectionClosed):
            await ws.recv()
        assert ws.close_code == 1001

    service = ServiceConfig(port=0, shutdown_grace_s=0.5)
    engines = fake_engines(FakeTranscriber([]), FakeChat([]))
    server = VoiceServer(service, engines, SessionDefaults(), {})

    async def main() -> None:
        await server.start()
        await scenario(server)
    asyncio.run(asyncio.wait_for(main(), 30))


def test_listening_beyond_loopback_needs_keys_or_insecure() -> None:
    with pytest.raises(ConfigError, match="without API keys"):
        build_config({}, {"host": "0.0.0.0"})
    assert build_config({}, {"host": "0.0.0.0", "api_keys": ("k",)}).host == "0.0.0.0"
    assert build_config({}, {"host": "0.0.0.0", "insecure": True}).insecure
    assert build_config({}, {}).host == "127.0.0.1"


def test_the_browser_page_is_served_and_nothing_outside_it(server: VoiceServer) -> None:
    status, kind, body = _http(f"http://127.0.0.1:{server.port}/")
    assert status == 200 and kind.startswith("text/html") and "<" in body
    for path in ("/web/../../voice/server.py", "/web/%2e%2e/%2e%2e/README.md", "/web/",
                 "/etc/passwd"):
        assert _http(f"http://127.0.0.1:{server.port}{path}")[0] == 404, path


def test_the_event_loop_lag_metric_shows_a_blocked_loop() -> None:
    from voice.metrics import Metrics

    metrics = Metrics()

    async def scenario() -> None:
        watch = asyncio.ensure_future(metrics.watch_loop_lag(0.05))
        await asyncio.sleep(0.12)
        time.sleep(0.3)  # what a model call on the loop would do to every session
        await asyncio.sleep(0.12)
        watch.cancel()
    asyncio.run(scenario())
    value = metrics.registry.get_sample_value
    assert value("voice_event_loop_lag_seconds_sum") >= 0.25
    assert value("voice_event_loop_lag_seconds_count") >= 3
    assert value("voice_event_loop_lag_seconds_bucket", {"le": "0.1"}) < value(
        "voice_event_loop_lag_seconds_count")  # the one late timer, not the others


def test_the_server_reports_its_event_loop_lag(server: VoiceServer) -> None:
    time.sleep(0.6)  # a few of the watch's 0.25 s timers
    body = _http(f"http://127.0.0.1:{server.port}/metrics")[2]
    count = re.search(r"voice_event_loop_lag_seconds_count (\S+)", body)
    assert count is not None and float(count.group(1)) >= 1, body


@pytest.mark.parametrize("enabled", [True, False])
def test_websocket_compression_is_agreed_unless_turned_off(enabled: bool) -> None:
    servers = _server(websocket_compression=enabled)
    server = next(servers)
    try:
        async def scenario() -> str | None:
            async with connect(url_of(server)) as ws:  # offers permessage-deflate
                assert json.loads(await ws.recv())["type"] == "session.created"
                return ws.response.headers.get("Sec-WebSocket-Extensions")
        agreed = asyncio.run(scenario())
    finally:
        servers.close()
    assert (agreed is not None and "permessage-deflate" in agreed) is enabled
