"""The websocket server under attack: foreign origins, rebound host names, bad keys, idle and
non-reading clients, shutdown while replies run. A real server on port 0 with fake engines."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from llm.chat import Message, SamplingOptions
from tests.fakes import FakeChat, FakeTranscriber, fake_engines
from tests.live import open_session, receive_until, running_server, url_of
from tests.test_server import _http, run
from voice.__main__ import main
from voice.config import ConfigError, Limits, ServiceConfig
from voice.config_file import build_config, load_toml
from voice.gate import Handshake, handshake_refusal, host_allowed
from voice.server import VoiceServer
from voice.session import SessionDefaults

LONG_REPLY = "Hi! " + "This is a fairly long answer that goes on. " * 40


class EndlessChat(FakeChat):
    """Asked to "talk forever", it does, until the reply is cancelled."""

    def stream(self, messages: Sequence[Message], options: SamplingOptions | None = None,
               cancel: threading.Event | None = None, *, pace: object = None) -> Iterator[str]:
        if messages[-1].content != "talk forever":
            return super().stream(messages, options, cancel)
        sentence = "This answer goes on and on and on, and there is no end in sight at all."
        return self._endless(sentence.split(" "), cancel)

    @staticmethod
    def _endless(words: list[str], cancel: threading.Event | None) -> Iterator[str]:
        for _ in range(10_000):
            for word in words:
                time.sleep(0.0005)
                if cancel is not None and cancel.is_set():
                    return
                yield " " + word


def _serve(**config: Any) -> Iterator[VoiceServer]:
    service = ServiceConfig(port=0, shutdown_grace_s=2.0, **config)
    engines = fake_engines(FakeTranscriber([("Hello there", "en")] * 20, delay_s=0.01),
                           EndlessChat([LONG_REPLY] * 20, delay_s=0.002))
    with running_server(service, engines, SessionDefaults(partial_interval_s=0)) as server:
        yield server


serving = contextlib.contextmanager(_serve)


@pytest.fixture(scope="module")
def server() -> Iterator[VoiceServer]:
    """Keyless on loopback, as `voice serve` starts by default; short idle timeout, small
    outbox."""
    yield from _serve(limits=Limits(idle_timeout_s=0.5, max_outbox_bytes=64 * 1024))


@pytest.fixture(scope="module")
def keyed_server() -> Iterator[VoiceServer]:
    yield from _serve(api_keys=("s3cret",), allowed_origins=("https://app.example",),
                      allowed_hosts=("voice.internal",), limits=Limits(max_sessions=2))


def _request(port: int, path: str = "/v1/realtime", *, host: str | None = None,
             headers: Sequence[bytes] = (), websocket: bool = True) -> tuple[int, Any]:
    """One raw HTTP request with exactly these headers -> (status, JSON body or None)."""
    lines = [f"GET {path} HTTP/1.1".encode(),
             f"Host: {host or f'127.0.0.1:{port}'}".encode(), *headers]
    if websocket:
        lines += [b"Upgrade: websocket", b"Connection: Upgrade", b"Sec-WebSocket-Version: 13",
                  b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=="]
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"\r\n".join(lines) + b"\r\n\r\n")
        data = b""
        while b"\r\n\r\n" not in data:
            data += sock.recv(65536)
        head, _, body = data.partition(b"\r\n\r\n")
        status = int(head.split()[1])
        found = re.search(rb"content-length: *(\d+)", head, re.IGNORECASE)
        while found and len(body) < int(found[1]):
            body += sock.recv(65536)
    return status, json.loads(body) if body.startswith(b"{") else None


def _metric(server: VoiceServer, sample: str) -> float:
    text = _http(f"http://127.0.0.1:{server.port}/metrics")[2]
    found = re.search(re.escape(sample) + r" (\S+)", text)
    return float(found[1]) if found else 0.0


@pytest.mark.parametrize("origin", ["http://evil.example", "null", "file://",
                                    "http://127.0.0.1:1", "http://localhost.evil.example"])
def test_web_pages_of_other_origins_cannot_open_a_session(server: VoiceServer,
                                                          origin: str) -> None:
    status, body = _request(server.port, headers=[f"Origin: {origin}".encode()])
    assert status == 403 and body["error"]["code"] == "origin_not_allowed"


def test_the_servers_own_page_and_allowed_origins_can_open_a_session(
    server: VoiceServer, keyed_server: VoiceServer,
) -> None:
    for host in (f"127.0.0.1:{server.port}", f"localhost:{server.port}", f"[::1]:{server.port}"):
        assert _request(server.port, host=host,
                        headers=[f"Origin: http://{host}".encode()])[0] == 101, host
    assert _request(keyed_server.port, headers=[b"Origin: https://app.example",
                                                b"Authorization: Bearer s3cret"])[0] == 101


def test_a_rebound_host_name_is_refused_by_a_loopback_server(
    server: VoiceServer, keyed_server: VoiceServer,
) -> None:
    evil = f"evil.example:{server.port}"
    status, body = _request(server.port, host=evil, headers=[f"Origin: http://{evil}".encode()])
    assert status == 403 and body["error"]["code"] == "host_not_allowed"
    assert _request(server.port, "/healthz", host=evil, websocket=False)[0] == 403
    assert _request(keyed_server.port, "/healthz", host="voice.internal:80",
                    websocket=False)[0] == 200  # allowed_hosts
    assert host_allowed("any.example", loopback_bound=False)  # there, keys guard the service


@pytest.mark.parametrize("key", ["", "   "])
def test_an_empty_api_key_is_refused_at_start_up(key: str, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ConfigError, match="API key is empty"):
        build_config({}, {"host": "0.0.0.0", "api_keys": (key,)})
    assert main(["--home", str(tmp_path), "serve", "--host", "0.0.0.0", "--api-key", key]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "KEY unset" in error


def test_api_keys_in_a_config_file_must_be_a_list(tmp_path: Path) -> None:
    path = tmp_path / "voice.toml"
    path.write_text('api_keys = "secret"\n')  # would otherwise accept "s", "e", ...
    with pytest.raises(ConfigError, match="api_keys must be a list"):
        build_config(load_toml(path), {})


def test_origins_hosts_and_the_new_limits_are_read_and_checked(tmp_path: Path) -> None:
    path = tmp_path / "voice.toml"
    path.write_text('allowed_origins = ["https://App.example/"]\nallowed_hosts = ["voice.lan"]\n'
                    "[limits]\nidle_timeout_s = 60\nmax_outbox_bytes = 65536\n")
    config = build_config(load_toml(path), {"idle_timeout_s": 30})
    assert config.allowed_origins == ("https://App.example/",)
    assert config.allowed_hosts == ("voice.lan",)
    assert config.limits.idle_timeout_s == 30 and config.limits.max_outbox_bytes == 65536
    with pytest.raises(ConfigError, match="allowed origin 'null'"):
        build_config({}, {"allowed_origins": ("null",)})
    with pytest.raises(ConfigError, match="without a port"):
        build_config({}, {"allowed_hosts": ("voice.lan:8765",)})


def test_an_empty_bearer_key_never_authorizes() -> None:
    # Even with a configuration that slipped past validation.
    with serving(api_keys=("",)) as server:
        for offered in (b"Authorization: Bearer ",
                        b"Sec-WebSocket-Protocol: realtime, openai-insecure-api-key."):
            assert _request(server.port, headers=[offered])[0] == 401, offered
        assert _request(server.port, "/v1/realtime?api_key=")[0] == 401


_OK = Handshake(origin=None, host="localhost:8765", offered_keys=("k",), stopping=False,
                sessions=0)


@pytest.mark.parametrize(("handshake", "reason", "status"), [
    (_OK, None, None),
    (Handshake("https://evil.example", "localhost:8765", ("x",), True, 9), "origin", 403),
    (Handshake("http://localhost:8765", "localhost:8765", ("x",), True, 9), "shutting_down",
     503),
    (Handshake(None, "localhost:8765", ("x", ""), False, 9), "unauthorized", 401),
    (Handshake(None, "localhost:8765", ("k",), False, 2), "capacity", 503),
])
def test_a_handshake_is_refused_for_its_first_problem_in_a_fixed_order(
        handshake: Handshake, reason: str | None, status: int | None) -> None:
    refusal = handshake_refusal(handshake, allowed_origins=(), api_keys=("k",), max_sessions=2)
    assert (refusal and refusal.reason, refusal and refusal.status) == (reason, status)
    if refusal is not None:
        assert refusal.body()["error"]["message"]  # type: ignore[index]


def test_bad_keys_and_paths_get_client_errors_not_500(keyed_server: VoiceServer) -> None:
    port = keyed_server.port
    assert _request(port, headers=["Authorization: Bearer ké".encode()])[0] == 401
    assert _request(port, headers=[b"Authorization: Bearer a", b"Authorization: Bearer b"],
                    )[0] == 401
    assert _request(port, "/" + "a" * 5000, websocket=False)[0] == 404
    assert _request(port, "/web/a%00b", websocket=False)[0] == 404


def test_a_key_offered_only_as_a_subprotocol_is_answered_with_a_subprotocol(
    keyed_server: VoiceServer,
) -> None:
    async def scenario() -> None:
        key = "openai-insecure-api-key.s3cret"
        for offered, chosen in (([key], key), (["openai-beta.realtime-v1", key],
                                               "openai-beta.realtime-v1"),
                                (["realtime", key], "realtime")):
            ws = await open_session(url_of(keyed_server), subprotocols=offered)
            assert ws.subprotocol == chosen
            await ws.close()
    run(scenario)


def test_readiness_says_whether_a_session_would_be_accepted(keyed_server: VoiceServer) -> None:
    ready = f"http://127.0.0.1:{keyed_server.port}/readyz"
    assert _http(ready)[0] == 200 and json.loads(_http(ready)[2])["status"] == "ready"

    async def scenario() -> None:
        url = url_of(keyed_server) + "?api_key=s3cret"
        sessions = [await open_session(url), await open_session(url)]
        status, _, body = await asyncio.to_thread(_http, ready)
        assert status == 503 and json.loads(body)["status"] == "full"
        for ws in sessions:
            await ws.close()
    run(scenario)


def test_an_idle_session_gets_an_error_and_is_closed(server: VoiceServer) -> None:
    async def scenario() -> None:
        ws = await open_session(url_of(server))
        error = json.loads(await ws.recv())
        assert error["type"] == "error" and error["error"]["code"] == "session_idle_timeout"
        with pytest.raises(ConnectionClosed):
            await ws.recv()
        assert ws.close_code == 1008
    run(scenario)


def test_a_client_listening_to_a_long_reply_is_not_idle(server: VoiceServer) -> None:
    async def scenario() -> None:
        ws = await open_session(url_of(server))
        await _ask(ws, "text")
        events = await receive_until(ws, "response.done", 30)
        assert events[-1]["response"]["status"] == "completed"
        assert "error" not in {e["type"] for e in events}
        await ws.close()
    run(scenario)


async def _ask(ws: Any, modality: str = "audio", text: str = "hi") -> None:
    await ws.send(json.dumps({"type": "conversation.item.create", "item": {
        "type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}}))
    await ws.send(json.dumps({"type": "response.create",
                              "response": {"output_modalities": [modality]}}))


@pytest.mark.parametrize(("code", "limits"), [
    ("message_too_large", Limits(max_message_bytes=4096)),
    ("session_expired", Limits(max_session_s=0.3)),
])
def test_each_error_is_counted_once(code: str, limits: Limits) -> None:
    with serving(limits=limits) as server:
        async def scenario() -> None:
            ws = await open_session(url_of(server))
            if code == "message_too_large":
                await ws.send(json.dumps({"type": "input_audio_buffer.append",
                                          "audio": "A" * 8000}))
            assert json.loads(await ws.recv())["error"]["code"] == code
            with pytest.raises(ConnectionClosed):
                await ws.recv()
        run(scenario)
        assert _metric(server, f'voice_errors_total{{code="{code}"}}') == 1.0


def test_a_client_that_does_not_read_is_closed_and_others_go_on(server: VoiceServer) -> None:
    async def scenario() -> None:
        # A small receive buffer and a one-message queue: the client stops reading at once.
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", server.port))
        stuck = await connect(url_of(server), sock=sock, max_size=None, max_queue=1)
        await _ask(stuck, "audio", "talk forever")
        closed = 'voice_sessions_closed_total{reason="outbox_full"}'
        while await asyncio.to_thread(_metric, server, closed) < 1:
            await asyncio.sleep(0.05)
        assert (await asyncio.to_thread(_http, f"http://127.0.0.1:{server.port}/healthz"))[0] \
            == 200
        other = await open_session(url_of(server))
        await _ask(other, "text")
        assert (await receive_until(other, "response.done", 30))[-1]["response"]["status"] \
            == "completed"
        await other.close()
        with pytest.raises(ConnectionClosed):
            while True:  # what was already on its way, then the close frame
                await stuck.recv()
        assert stuck.close_code == 1008 and "not reading" in (stuck.close_reason or "")
    run(scenario)


class HeldChat:
    """Says one word, then holds the reply until released."""

    def __init__(self) -> None:
        self.release = threading.Event()

    def stream(self, messages: Sequence[Message], options: SamplingOptions | None = None,
               cancel: threading.Event | None = None, *, pace: object = None) -> Iterator[str]:
        yield "Hello"
        self.release.wait(20)
        yield " there."


def test_shutdown_drains_running_replies_then_closes_with_going_away(
    caplog: pytest.LogCaptureFixture,
) -> None:
    chat = HeldChat()
    server = VoiceServer(ServiceConfig(port=0, shutdown_grace_s=20),
                         fake_engines(FakeTranscriber([]), chat), SessionDefaults(), {})

    async def scenario() -> None:
        await server.start()
        base = f"http://127.0.0.1:{server.port}"
        ws = await open_session(url_of(server))
        ids.update(session.id for session in server.sessions.values())
        await _ask(ws, "text")
        await receive_until(ws, "response.output_text.delta", 10)
        stopping = asyncio.ensure_future(server.shutdown())
        while json.loads((await asyncio.to_thread(_http, base + "/healthz"))[2])["status"] \
                != "stopping":
            await asyncio.sleep(0.02)
        status, _, body = await asyncio.to_thread(_http, base + "/readyz")
        assert status == 503 and json.loads(body)["status"] == "stopping"
        with pytest.raises(InvalidStatus) as refused:
            await connect(url_of(server))
        assert refused.value.response.status_code == 503
        assert b"server_shutting_down" in refused.value.response.body
        chat.release.set()
        done = await receive_until(ws, "response.done", 10)
        assert done[-1]["response"]["status"] == "completed"
        with pytest.raises(ConnectionClosed):
            await ws.recv()
        assert ws.close_code == 1001
        await stopping
    ids: set[str] = set()
    asyncio.run(asyncio.wait_for(scenario(), 30))
    # Only this server's session: an earlier test's server may log its last close late.
    closed = [r.getMessage() for r in caplog.records
              if " closed (" in r.getMessage() and any(i in r.getMessage() for i in ids)]
    assert closed and all("(1001 server shutting down)" in line for line in closed), closed
