"""A real MCP server for tests: the ``mcp`` SDK's own ``MCPServer`` over streamable HTTP on
loopback, run by uvicorn in a thread. Its tools record the calls they get.

- ``set_light(room, on)``: a smart-home switch; answers what it did.
- ``get_weather(city)``: read-only; a fixed forecast.
- ``slow_lookup(query)``: answers after ``slow_s`` seconds (for timeouts and barge-in).
- ``broken_switch(room)``: always fails (a tool execution error).
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import anyio
import uvicorn
from mcp.server import MCPServer
from mcp.types import ToolAnnotations


class HomeServer:
    def __init__(self, slow_s: float = 5.0) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.slow_s = slow_s
        server = MCPServer("home")

        @server.tool()
        def set_light(room: str, on: bool) -> str:
            """Switch the light of a room on or off."""
            self.calls.append(("set_light", {"room": room, "on": on}))
            return f"The {room} light is now {'on' if on else 'off'}."

        @server.tool(annotations=ToolAnnotations(read_only_hint=True))
        def get_weather(city: str) -> str:
            """The weather forecast for a city."""
            self.calls.append(("get_weather", {"city": city}))
            return f"Sunny in {city}, 21 degrees."

        @server.tool()
        async def slow_lookup(query: str) -> str:
            """Look something up in a slow archive."""
            self.calls.append(("slow_lookup", {"query": query}))
            await anyio.sleep(self.slow_s)
            return "found it"

        @server.tool()
        def broken_switch(room: str) -> str:
            """Switch a room's fan (it is broken)."""
            self.calls.append(("broken_switch", {"room": room}))
            raise RuntimeError("the fan controller does not answer")

        self.app = server.streamable_http_app()
        self._socket = socket.socket()
        self._socket.bind(("127.0.0.1", 0))
        self.port = self._socket.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/mcp"
        self._uvicorn = uvicorn.Server(uvicorn.Config(self.app, log_level="warning",
                                                      lifespan="on"))
        self._thread = threading.Thread(target=self._uvicorn.run,
                                        kwargs={"sockets": [self._socket]}, daemon=True)

    def start(self) -> None:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._uvicorn.started:
            if time.monotonic() > deadline:
                raise RuntimeError("the MCP test server did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        self._uvicorn.should_exit = True
        self._thread.join(10)
        self._socket.close()


@contextlib.contextmanager
def home_server(slow_s: float = 5.0) -> Iterator[HomeServer]:
    # The SDK's server logs every tool failure with a full traceback; tests expect failures.
    logging.getLogger("mcp").setLevel(logging.CRITICAL)
    server = HomeServer(slow_s)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def free_port_url() -> str:
    """An MCP URL on loopback where nothing listens (a server that is down)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/mcp"
