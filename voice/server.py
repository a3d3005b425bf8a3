"""The websocket server: connections, admission, limits, health, readiness and metrics.

Clients connect a websocket to ``/v1/realtime`` (also ``/realtime`` and ``/``) and speak the
Realtime event protocol (``voice/protocol.py``). Plain HTTP on the same port serves the browser
page at ``/``, ``/healthz`` and ``/readyz`` (JSON) and ``/metrics`` (Prometheus text).

Each connection gets its own :class:`voice.session.Session`; engines are shared. Messages of
one connection are handled in order; a problem with one message becomes an ``error`` event for
that client only, and an unexpected exception closes that connection alone (code 1011).
Whoever decides that a session must end (a limit, the idle timer, a full outbox, shutdown)
records a close code with :meth:`VoiceServer._end`; the connection's handler then closes it
with that code, in one place.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import json
import logging
import signal
import time
from collections.abc import Coroutine, Sequence
from http import HTTPStatus
from urllib.parse import urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.protocol import State
from websockets.typing import Subprotocol

from voice import gate
from voice.config import ServiceConfig, is_loopback
from voice.memory import HeapTrimmer, idle
from voice.metrics import Metrics
from voice.outbox import Outbox
from voice.ports import Engines, ReportsBatches
from voice.protocol import (
    ProtocolError,
    encode_server_event,
    parse_binary_audio,
    parse_client_event,
)
from voice.session import Session, SessionDefaults, SessionLimitError
from voice.webpage import page_file

logger = logging.getLogger(__name__)

WEBSOCKET_PATHS = ("/v1/realtime", "/realtime", "/")
BETA_SUBPROTOCOL = "openai-beta.realtime-v1"
CLOSE_GOING_AWAY = 1001
CLOSE_POLICY = 1008
CLOSE_TOO_BIG = 1009
CLOSE_ERROR = 1011
CLOSE_TIMEOUT_S = 10.0  # a close handshake that takes longer (client not reading) is cut
FLUSH_TIMEOUT_S = 2.0  # time to send what is queued (the last error) before closing


@dataclasses.dataclass
class _Client:
    """The server's side of one connection."""

    session: Session
    handler: asyncio.Task[object] | None  # the task that runs VoiceServer._handle
    receiver: asyncio.Task[None] | None = None
    verdict: tuple[int, str] | None = None  # close code and reason, once decided


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
        if isinstance(engines.chat, ReportsBatches):
            engines.chat.report_batches(functools.partial(self.metrics.observe_batch, "llm"))
        self._clients: dict[ServerConnection, _Client] = {}
        self._server: Server | None = None
        self._stopping = False
        self._stopped: asyncio.Future[None] | None = None
        self._background: set[asyncio.Future[None]] = set()
        self.started_at = time.time()

    @property
    def sessions(self) -> dict[ServerConnection, Session]:
        return {connection: client.session for connection, client in self._clients.items()}

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
            ping_interval=20, ping_timeout=20, close_timeout=CLOSE_TIMEOUT_S,
            server_header="voice",
            compression="deflate" if self.config.websocket_compression else None,
        )
        logger.info("listening on ws://%s:%d/v1/realtime (%d session(s) at most)",
                    self.config.host, self.port, self.config.limits.max_sessions)
        self._keep(HeapTrimmer(functools.partial(idle, self.engines.schedulers),
                               self.config.memory_trim_interval_s,
                               self.metrics.memory_trimmed.inc).run())
        self._keep(self.metrics.watch_loop_lag())

    def _keep(self, work: Coroutine[object, object, None]) -> None:
        """Run ``work`` in the background until it ends (or the server shuts down)."""
        task = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def serve_until_stopped(self) -> None:
        """Run until SIGTERM or SIGINT, then shut down gracefully."""
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await stop.wait()
        await self.shutdown()

    async def shutdown(self) -> None:
        """Drain, then close: while replies are running (up to ``shutdown_grace_s``) the
        listener stays open, answering new websocket handshakes with 503 and ``/readyz`` with
        503; then every session is closed with 1001 and the listener with it. Idempotent."""
        if self._stopped is None:
            self._stopped = asyncio.ensure_future(self._drain_and_close())
        await asyncio.shield(self._stopped)

    async def _drain_and_close(self) -> None:
        self._stopping = True
        logger.info("shutting down: draining %d session(s), %d reply(ies) running",
                    len(self._clients), self._responses_active())
        deadline = time.monotonic() + self.config.shutdown_grace_s
        while self._responses_active() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        handlers = [c.handler for c in self._clients.values() if c.handler is not None]
        for connection in list(self._clients):
            self._end(connection, CLOSE_GOING_AWAY, "server shutting down", "shutdown")
        if handlers:  # each closes its connection (bounded by the close timeout)
            await asyncio.wait(handlers, timeout=FLUSH_TIMEOUT_S + CLOSE_TIMEOUT_S + 1)
        if self._server is not None:
            self._server.close()  # also closes a connection that raced the loop above
            await self._server.wait_closed()
        for task in self._background:  # the memory trimmer, the loop-lag watch
            task.cancel()

    def _responses_active(self) -> int:
        return sum(c.session.response is not None for c in self._clients.values())

    # -- HTTP and the handshake --------------------------------------------------------------

    def _process_request(self, connection: ServerConnection,
                         request: Request) -> Response | None:
        headers = request.headers
        path = urlsplit(request.path).path
        host = _single(headers, "Host")
        refusal = gate.host_refusal(host, loopback_bound=is_loopback(self.config.host),
                                    allowed_hosts=self.config.allowed_hosts)
        if refusal is not None:
            return self._refuse(refusal)
        if path == "/healthz":
            return self._json(HTTPStatus.OK, self.health())
        if path == "/readyz":
            status = self.readiness()
            ready = status["status"] == "ready"
            return self._json(HTTPStatus.OK if ready else HTTPStatus.SERVICE_UNAVAILABLE, status)
        if path == "/metrics":
            metrics = self.metrics.render()
            return Response(200, "OK", Headers({
                "Content-Type": "text/plain; version=0.0.4; charset=utf-8",
                "Content-Length": str(len(metrics)), "Connection": "close"}), metrics)
        upgrade = "websocket" in (v.lower() for v in gate.split_header(headers.get_all("Upgrade")))
        if path not in WEBSOCKET_PATHS or not upgrade:
            return self._static(connection, path)
        handshake = gate.Handshake(
            origin=_single(headers, "Origin"), host=host, stopping=self._stopping,
            offered_keys=gate.offered_keys(
                headers.get_all("Authorization"),
                gate.split_header(headers.get_all("Sec-WebSocket-Protocol")), request.path),
            sessions=len(self._clients))
        refusal = gate.handshake_refusal(handshake, allowed_origins=self.config.allowed_origins,
                                         api_keys=self.config.api_keys,
                                         max_sessions=self.config.limits.max_sessions)
        return None if refusal is None else self._refuse(refusal)

    def _refuse(self, refusal: gate.Refusal) -> Response:
        self.metrics.sessions_refused.labels(reason=refusal.reason).inc()
        return self._json(refusal.status, refusal.body())

    @staticmethod
    def _static(connection: ServerConnection, path: str) -> Response:
        """The browser page and its assets from clients/web."""
        found = page_file(path)
        if found is None:
            return connection.respond(HTTPStatus.NOT_FOUND, "not found\n")
        data, kind = found
        return Response(200, "OK", Headers({"Content-Type": kind, "Content-Length": str(len(data)),
                                            "Cache-Control": "no-cache"}), data)

    @staticmethod
    def _json(status: HTTPStatus, body: object) -> Response:
        data = (json.dumps(body) + "\n").encode()
        return Response(status.value, status.phrase, Headers({
            "Content-Type": "application/json", "Content-Length": str(len(data)),
            "Connection": "close"}), data)

    @staticmethod
    def _select_subprotocol(connection: ServerConnection,
                            subprotocols: Sequence[Subprotocol]) -> Subprotocol | None:
        selected = gate.select_subprotocol(subprotocols)
        return None if selected is None else Subprotocol(selected)

    def health(self) -> dict[str, object]:
        return {"status": "stopping" if self._stopping else "ok",
                "models": self.model_names,
                "sessions_active": len(self._clients),
                "sessions_max": self.config.limits.max_sessions,
                "responses_active": self._responses_active(),
                "uptime_s": round(time.time() - self.started_at, 1)}

    def readiness(self) -> dict[str, object]:
        """``ready``, or why not: ``stopping`` (draining) or ``full`` (at the session limit)."""
        status = ("stopping" if self._stopping
                  else "full" if len(self._clients) >= self.config.limits.max_sessions
                  else "ready")
        return {"status": status, "sessions_active": len(self._clients),
                "sessions_max": self.config.limits.max_sessions}

    # -- one connection -----------------------------------------------------------------------

    async def _handle(self, connection: ServerConnection) -> None:
        request = connection.request
        assert request is not None
        beta = ("realtime=v1" in gate.split_header(request.headers.get_all("OpenAI-Beta"))
                or BETA_SUBPROTOCOL in gate.split_header(
                    request.headers.get_all("Sec-WebSocket-Protocol")))
        outbox = Outbox(self.config.limits.max_outbox_bytes,
                        functools.partial(encode_server_event, beta=beta),
                        functools.partial(self._overflowed, connection))
        session = Session(self.engines, self.defaults, outbox.put,
                          on_turn=self.metrics.observe_turn, on_error=self.metrics.count_error)
        client = self._clients[connection] = _Client(session, asyncio.current_task())
        self.metrics.sessions_active.inc()
        self.metrics.sessions_total.inc()
        writer = asyncio.ensure_future(self._write(connection, outbox, session))
        expiry = asyncio.get_running_loop().call_later(
            self.config.limits.max_session_s, self._expire, connection)
        logger.info("session %s opened from %s%s", session.id, connection.remote_address,
                    " (beta protocol)" if beta else "")
        try:
            await session.start()
            if client.verdict is None:
                client.receiver = asyncio.ensure_future(self._receive(connection, session))
                await asyncio.wait([client.receiver])
                if not client.receiver.cancelled() and client.receiver.exception() is not None:
                    logger.error("session %s failed", session.id,
                                 exc_info=client.receiver.exception())
                    await session.error(ProtocolError("server_error", "internal server error",
                                                      error_type="server_error"))
                    self._end(connection, CLOSE_ERROR, "internal error", "server_error")
        finally:
            expiry.cancel()
            if client.receiver is not None:
                client.receiver.cancel()
            await session.close()  # stops generation and synthesis first
            outbox.close()
            await self._flush(writer, 0 if outbox.overflowed else FLUSH_TIMEOUT_S)
            del self._clients[connection]
            self.metrics.sessions_active.dec()
            await self._close(connection, *(client.verdict or (1000, "")))
            logger.info("session %s closed (%s)", session.id, _how_closed(connection))

    async def _receive(self, connection: ServerConnection, session: Session) -> None:
        """Hand the client's messages to the session, in order, until the client leaves or a
        limit ends the session."""
        limits = self.config.limits
        while True:
            try:
                async with asyncio.timeout(limits.idle_timeout_s or None):
                    message = await connection.recv()
            except TimeoutError:
                if session.response is not None:
                    continue  # the client is listening to a reply, not idle
                await session.error(ProtocolError(
                    "session_idle_timeout", f"no message for {limits.idle_timeout_s:g} s; the "
                    "session is closed (send audio or events to keep it open)"))
                self._end(connection, CLOSE_POLICY, "idle timeout", "idle_timeout")
                return
            except ConnectionClosed:
                return
            if connection.state is not State.OPEN:
                return  # the client left: what it sent before is not worked on for nobody
            if len(message) > limits.max_message_bytes:
                await session.error(ProtocolError(
                    "message_too_large",
                    f"messages are limited to {limits.max_message_bytes} bytes"))
                self._end(connection, CLOSE_TOO_BIG, "message too large", "message_too_large")
                return
            try:
                event = (parse_binary_audio(message) if isinstance(message, bytes)
                         else parse_client_event(message))
            except ProtocolError as error:
                await session.error(error)
                continue
            try:
                await session.handle(event)
            except SessionLimitError as error:
                await session.error(ProtocolError(error.code, str(error)))
                self._end(connection, CLOSE_POLICY, error.code, error.code)
                return

    def _end(self, connection: ServerConnection, code: int, reason: str, why: str) -> None:
        """Decide that this session ends with ``code``; the first decision wins. Its handler
        stops reading and closes the connection."""
        client = self._clients.get(connection)
        if client is None or client.verdict is not None:
            return
        client.verdict = (code, reason)
        self.metrics.sessions_closed.labels(reason=why).inc()
        if client.receiver is not None and client.receiver is not asyncio.current_task():
            client.receiver.cancel()

    def _overflowed(self, connection: ServerConnection, size: int) -> None:
        client = self._clients.get(connection)
        if client is None or client.verdict is not None:
            return
        logger.warning("session %s: the client is not reading its events (%d bytes waiting, "
                       "limit %d); closing it", client.session.id, size,
                       self.config.limits.max_outbox_bytes)
        self._end(connection, CLOSE_POLICY, "client is not reading; outbox full", "outbox_full")

    def _expire(self, connection: ServerConnection) -> None:
        client = self._clients.get(connection)
        if client is None:
            return

        async def expire(session: Session) -> None:
            await session.error(ProtocolError(
                "session_expired",
                f"sessions are limited to {self.config.limits.max_session_s:.0f} s"))
            self._end(connection, CLOSE_POLICY, "session expired", "session_expired")

        self._keep(expire(client.session))

    async def _write(self, connection: ServerConnection, outbox: Outbox,
                     session: Session) -> None:
        try:
            while (queued := await outbox.get()) is not None:
                text, event = queued
                await connection.send(text)
                session.event_sent(event)
        except ConnectionClosed:
            pass
        except Exception:  # a bug, not the client: end this session alone
            logger.exception("sending to %s failed", connection.remote_address)
            self._end(connection, CLOSE_ERROR, "internal error", "server_error")

    @staticmethod
    async def _flush(writer: asyncio.Future[None], timeout: float) -> None:
        """Let the writer send what is queued (e.g. the last error) before closing."""
        with contextlib.suppress(asyncio.TimeoutError, ConnectionClosed):
            await asyncio.wait_for(asyncio.shield(writer), timeout)
        writer.cancel()

    @staticmethod
    async def _close(connection: ServerConnection, code: int, reason: str) -> None:
        """Close with this code; a client that does not read the close frame is cut off."""
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT_S):
                await connection.close(code, reason)
        except TimeoutError:
            connection.transport.abort()


def _single(headers: Headers, name: str) -> str | None:
    """A header that should appear once; repeated values are joined, so they match nothing."""
    values = headers.get_all(name)
    return ", ".join(values) if values else None


def _how_closed(connection: ServerConnection) -> str:
    """What the close handshake really was, for the log."""
    protocol = connection.protocol
    sent, received = protocol.close_sent, protocol.close_rcvd
    if received is not None and (sent is None or protocol.close_rcvd_then_sent):
        return f"by the client, {received.code} {received.reason}".rstrip()
    if sent is not None:
        closed = f"{sent.code} {sent.reason}".rstrip()
        return closed if received is not None else closed + ", never acknowledged"
    return "connection lost"
