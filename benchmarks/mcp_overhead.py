"""What an MCP call costs the service, apart from the tool's own work.

    .venv/bin/python -m benchmarks.mcp_overhead [--calls 30]

Starts the ``mcp`` SDK's own server (streamable HTTP, one instant tool) on loopback and times,
``--calls`` times each: the service's listing and its call (``voice.mcp_client``: a new
connection per operation, initialize handshake included), and for comparison the same call on
one connection kept open (what reusing connections would save). Prints p50 / p90 in ms.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import socket
import statistics
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Sequence

import uvicorn
from mcp import Client
from mcp.server import MCPServer

from voice.mcp_client import McpConnector
from voice.protocol import McpTool


def start_server() -> tuple[str, uvicorn.Server]:
    server = MCPServer("bench")

    @server.tool()
    def set_light(room: str, on: bool) -> str:
        """Switch the light of a room on or off."""
        return f"The {room} light is now {'on' if on else 'off'}."

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    runner = uvicorn.Server(uvicorn.Config(server.streamable_http_app(), log_level="warning"))
    threading.Thread(target=runner.run, kwargs={"sockets": [sock]}, daemon=True).start()
    while not runner.started:
        time.sleep(0.02)
    return f"http://127.0.0.1:{sock.getsockname()[1]}/mcp", runner


async def timed(calls: int, operation: Callable[[], Awaitable[object]]) -> list[float]:
    await operation()  # warm-up
    times = []
    for _ in range(calls):
        started = time.perf_counter()
        await operation()
        times.append((time.perf_counter() - started) * 1000)
    return sorted(times)


def summary(name: str, times: list[float]) -> str:
    p90 = times[min(len(times) - 1, int(0.9 * len(times)))]
    return f"| {name} | {statistics.median(times):.0f} | {p90:.0f} |"


async def measure(url: str, calls: int) -> None:
    server = McpTool("bench", url, require_approval="never")
    connector = McpConnector(timeout_s=10)
    [tool] = await connector.list_tools(server)
    arguments = {"room": "kitchen", "on": True}
    listing = await timed(calls, lambda: connector.list_tools(server))
    calling = await timed(calls, lambda: connector.call(tool, arguments))
    async with Client(url) as client:
        kept = await timed(calls, lambda: client.call_tool("set_light", arguments))
    print(f"{calls} of each, MCP server on loopback, instant tool\n")
    print("| operation | p50 (ms) | p90 (ms) |\n|---|---:|---:|")
    print(summary("list tools (new connection, as the service does)", listing))
    print(summary("call (new connection, as the service does)", calling))
    print(summary("call on a connection kept open", kept))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=30)
    args = parser.parse_args(argv)
    logging.getLogger("httpx2").setLevel(logging.WARNING)
    url, runner = start_server()
    try:
        asyncio.run(measure(url, args.calls))
    finally:
        runner.should_exit = True
    return 0


if __name__ == "__main__":
    sys.exit(main())
