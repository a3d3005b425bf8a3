"""The websocket server: connections, authentication, limits, health and metrics.

Clients connect a websocket to ``/v1/realtime`` (also ``/realtime`` and ``/``) and speak the
Realtime event protocol (``voice/protocol.py``). Plain HTTP on the same port serves
``/healthz`` (JSON) and ``/metrics`` (Prometheus text).

Each connection gets its own :class:`voice.session.Session`; engines are shared. Messages of
one connection are handled in order; a problem with one message becomes an ``error`` event for
that client only, and an unexpected exception closes that connection alone (code 1011).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import mimetypes
import signal
import time
from collections.abc import Sequence
from http import HTTPStatus
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.typing import Subprotocol

from voice.config import ServiceConfig
from voice.metrics import Metrics
from voice.ports import Engines
from voice.protocol import (
    ProtocolError,
    ServerEvent,
    encode_server_event,
    parse_binary_audio,
    parse_client_event,
)
from voice.session import Session, SessionDefaults, SessionLimitError

logger = logging.getLogger(__name__)

WEBSOCKET_PATHS = ("/v1/realtime", "/realtime", "/")
WEB_ROOT = Path(__file__).resolve().parents[1] / "clients" / "web"
KEY_SUBPROTOCOL = "openai-insecure-api-key."
BETA_SUBPROTOCOL = "openai-beta.realtime-v1"
CLOSE_POLICY = 1008
CLOSE_TOO_BIG = 1009
CLOSE_ERROR = 1011
CLOSE_GOING_AWAY = 1001


class VoiceServer:
    """Owns the listening socket and the live sessions."""

    def __init__(self, config: ServiceConfig, engines: Engines, defaults: SessionDefaults,
                 model_names: dict[str, str]) -> None:
        self.config = config
        self.engines = engines
        self.defaults = defaults
        self.model_names = model_names
        self.metrics = Metrics()
        self.metrics.watch(engines.schedulers)
        self.sessions: dict[ServerConnection, Session] = {}
        self._server: Server | None = None
        self._stopping = False
        self._background: set[asyncio.Future[None]] = set()
        self.started_at = time.time()

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(next(iter(self._server.sockets)).getsockname()[1])

    async def start(self) -> None:
        self._server = await serve(
            self._handle, self.config.host, self.config.port,
            process_request=self._process_request,
            select_subprotocol=self._select_subprotocol,
            # Our own check sends an error event first; this is the hard stop after it.
            max_size=4 * self.config.limits.max_message_bytes,
            ping_interval=20, ping_timeout=20, server_header="voice",
        )
        logger.info("listening on ws://%s:%d/v1/realtime (%d session(s) at most)",
                    self.config.host, self.port, self.config.limits.max_sessions)

    async def serve_until_stopped(self) -> None:
        """Run until SIGTERM or SIGINT, then shut down gracefully."""
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await stop.wait()
        logger.info("shutting down")
        await self.shutdown()

    async def shutdown(self) -> None:
        """Stop accepting, let running replies finish for a grace period, then close all."""
        self._stopping = True
        if self._server is not None:
            self._server.close(close_connections=False)
        deadline = time.monotonic() + self.config.shutdown_grace_s
        while (any(s.response is not None for s in self.sessions.values())
               and time.monotonic() < deadline):
            await asyncio.sleep(0.05)
        for connection in list(self.sessions):
            await connection.close(CLOSE_GOING_AWAY, "server shutting down")
        if self._server is not None:
            await self._server.wait_closed()

    # -- HTTP and the handshake --------------------------------------------------------------

    def _process_request(self, connection: ServerConnection,
                         request: Request) -> Response | None:
        path = urlsplit(request.path).path
        upgrade = request.headers.get("Upgrade", "").lower() == "websocket"
        if path == "/healthz":
            return self._json(HTTPStatus.OK, self.health())
        if path == "/metrics":
            metrics = self.metrics.render()
            return Response(200, "OK", Headers({
                "Content-Type": "text/plain; version=0.0.4; charset=utf-8",
                "Content-Length": str(len(metrics)), "Connection": "close"}), metrics)
        if path not in WEBSOCKET_PATHS or not upgrade:
            return self._static(connection, "/index.html" if path == "/" else path)
        if self._stopping:
            self.metrics.sessions_refused.labels(reason="shutting_down").inc()
            return connection.respond(HTTPStatus.SERVICE_UNAVAILABLE, "shutting down\n")
        if not self._authorized(request):
            self.metrics.sessions_refused.labels(reason="unauthorized").inc()
            return self._json(HTTPStatus.UNAUTHORIZED, {"error": {
                "type": "invalid_request_error", "code": "invalid_api_key",
                "message": "missing or wrong API key (Authorization: Bearer <key>, the "
                           "openai-insecure-api-key.<key> subprotocol, or ?api_key=<key>)"}})
        if len(self.sessions) >= self.config.limits.max_sessions:
            self.metrics.sessions_refused.labels(reason="capacity").inc()
            return self._json(HTTPStatus.SERVICE_UNAVAILABLE, {"error": {
                "type": "server_error", "code": "too_many_sessions",
                "message": f"the server is at its limit of {self.config.limits.max_sessions} "
                           "sessions; try again later"}})
        return None

    @staticmethod
    def _static(connection: ServerConnection, path: str) -> Response:
        """The browser page and its assets from clients/web (GET / is index.html)."""
        name = path.removeprefix("/web").lstrip("/")
        target = (WEB_ROOT / name).resolve()
        if not name or WEB_ROOT.resolve() not in target.parents or not target.is_file():
            return connection.respond(HTTPStatus.NOT_FOUND, "not found\n")
        data = target.read_bytes()
        kind = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
        if kind.startswith("text/") or kind.endswith("javascript"):
            kind += "; charset=utf-8"
        return Response(200, "OK", Headers({"Content-Type": kind, "Content-Length": str(len(data)),
                                            "Cache-Control": "no-cache"}), data)

    @staticmethod
    def _json(status: HTTPStatus, body: object) -> Response:
        data = (json.dumps(body) + "\n").encode()
        return Response(status.value, status.phrase, Headers({
            "Content-Type": "application/json", "Content-Length": str(len(data)),
            "Connection": "close"}), data)

    def _authorized(self, request: Request) -> bool:
        keys = self.config.api_keys
        if not keys:
            return True
        offered: list[str] = []
        authorization = request.headers.get("Authorization", "")
        if authorization.lower().startswith("bearer "):
            offered.append(authorization[7:].strip())
        for header in request.headers.get_all("Sec-WebSocket-Protocol"):
            offered += [p.strip()[len(KEY_SUBPROTOCOL):] for p in header.split(",")
                        if p.strip().startswith(KEY_SUBPROTOCOL)]
        query = parse_qs(urlsplit(request.path).query)
        offered += query.get("api_key", []) + query.get("key", [])
        return any(hmac.compare_digest(o.encode(), k.encode()) for o in offered for k in keys)

    @staticmethod
    def _select_subprotocol(connection: ServerConnection,
                            subprotocols: Sequence[Subprotocol]) -> Subprotocol | None:
        # Browsers must get one of the subprotocols they offered back; "realtime" if present.
        for preferred in ("realtime", *subprotocols):
            if preferred in subprotocols and not preferred.startswith(KEY_SUBPROTOCOL):
                return Subprotocol(preferred)
        return None

    def health(self) -> dict[str, object]:
        return {"status": "stopping" if self._stopping else "ok",
                "models": self.model_names,
                "sessions_active": len(self.sessions),
                "sessions_max": self.config.limits.max_sessions,
                "responses_active": sum(s.response is not None for s in self.sessions.values()),
                "uptime_s": round(time.time() - self.started_at, 1)}

    # -- one connection -----------------------------------------------------------------------

    async def _handle(self, connection: ServerConnection) -> None:
        request = connection.request
        assert request is not None
        beta = (request.headers.get("OpenAI-Beta", "").strip() == "realtime=v1"
                or connection.subprotocol == BETA_SUBPROTOCOL
                or BETA_SUBPROTOCOL in request.headers.get("Sec-WebSocket-Protocol", ""))
        outbox: asyncio.Queue[ServerEvent | None] = asyncio.Queue()
        session = Session(self.engines, self.defaults, outbox.put,
                          on_turn=self.metrics.observe_turn, on_error=self.metrics.count_error)
        self.sessions[connection] = session
        self.metrics.sessions_active.inc()
        self.metrics.sessions_total.inc()
        writer = asyncio.ensure_future(self._write(connection, outbox, beta))
        expiry = asyncio.get_running_loop().call_later(
            self.config.limits.max_session_s, self._expire, connection, session)
        logger.info("session %s opened from %s%s", session.id, connection.remote_address,
                    " (beta protocol)" if beta else "")
        close_code, close_reason = 1000, ""
        try:
            await session.start()
            async for message in connection:
                if len(message) > self.config.limits.max_message_bytes:
                    await self._fail(session, "message_too_large",
                                     f"messages are limited to "
                                     f"{self.config.limits.max_message_bytes} bytes")
                    close_code, close_reason = CLOSE_TOO_BIG, "message too large"
                    break
                try:
                    event = (parse_binary_audio(message) if isinstance(message, bytes)
                             else parse_client_event(message))
                except ProtocolError as error:
                    await session.error(error)
                    continue
                try:
                    await session.handle(event)
                except SessionLimitError as error:
                    await self._fail(session, error.code, str(error))
                    close_code, close_reason = CLOSE_POLICY, error.code
                    break
        except ConnectionClosed:
            pass
        except Exception:
            logger.exception("session %s failed", session.id)
            with contextlib.suppress(Exception):
                await session.error(ProtocolError("server_error", "internal server error",
                                                  error_type="server_error"))
            close_code, close_reason = CLOSE_ERROR, "internal error"
        finally:
            expiry.cancel()
            await session.close()  # stops generation and synthesis first
            await self._drain(outbox, writer)
            self.sessions.pop(connection, None)
            self.metrics.sessions_active.dec()
            await connection.close(close_code, close_reason)
            logger.info("session %s closed (%d %s)", session.id, close_code, close_reason)

    async def _fail(self, session: Session, code: str, message: str) -> None:
        self.metrics.count_error(code)
        await session.error(ProtocolError(code, message))

    @staticmethod
    async def _drain(outbox: asyncio.Queue[ServerEvent | None],
                     writer: asyncio.Future[None]) -> None:
        """Let the writer send what is queued (e.g. the last error) before closing."""
        await outbox.put(None)
        with contextlib.suppress(asyncio.TimeoutError, ConnectionClosed):
            await asyncio.wait_for(asyncio.shield(writer), 2.0)
        writer.cancel()

    def _expire(self, connection: ServerConnection, session: Session) -> None:
        async def expire() -> None:
            await self._fail(session, "session_expired",
                             f"sessions are limited to {self.config.limits.max_session_s:.0f} s")
            await asyncio.sleep(0.1)
            await connection.close(CLOSE_POLICY, "session expired")

        task = asyncio.ensure_future(expire())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    @staticmethod
    async def _write(connection: ServerConnection, outbox: asyncio.Queue[ServerEvent | None],
                     beta: bool) -> None:
        with contextlib.suppress(ConnectionClosed):
            while (event := await outbox.get()) is not None:
                await connection.send(encode_server_event(event, beta=beta))

