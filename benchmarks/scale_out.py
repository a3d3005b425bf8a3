"""Scale-out on one machine: two ``voice serve`` replicas behind HAProxy, one stopped mid-turn.

    .venv/bin/python -m benchmarks.scale_out [--clients 4] [--turns 6] [--json PATH]

Starts two replicas of the service on the default models and HAProxy in front of them (from
Debian: ``apt-get install haproxy``; websocket upgrade, ``leastconn``, health checks on
``/readyz``). Each client opens a session through the balancer and asks ``--turns`` short text
questions, one after another. Once every client has had a reply, the replica holding the first
client gets SIGTERM: it stops taking sessions (``/readyz`` 503, so HAProxy takes it out), lets
the replies in progress finish, then closes its sessions with 1001. Its clients reconnect
through the balancer (``VoiceClient.connect_retrying``) and go on; a question whose reply had
not come when the connection closed is asked again on the new session.

Reported: where sessions were before and after, turns asked and answered, turns lost (a reply
that never came, even after asking again), replies cut by the shutdown, reconnect time (close
to the new session), and per-turn time p50/p90.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from clients.client import VoiceClient, VoiceClientError
from voice.protocol import ResponseDone

QUESTIONS = ["What is two plus two?", "Name a colour.", "Say hello.", "What day comes after "
             "Monday?", "Name a fruit.", "How many legs does a cat have?"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def health(port: int) -> dict[str, Any] | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as answer:
            return dict(json.loads(answer.read()))
    except OSError:
        return None


@contextlib.contextmanager
def replica(port: int, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    command = [sys.executable, "-m", "voice", "--no-progress", "serve", "--port", str(port),
               "--max-output-tokens", "24", "--partials-interval", "0", "--llm-replicas", "1"]
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()


@contextlib.contextmanager
def haproxy(port: int, backends: Sequence[int], folder: Path) -> Iterator[None]:
    executable = shutil.which("haproxy") or "/usr/sbin/haproxy"
    if not Path(executable).exists():
        raise SystemExit("haproxy is not installed (Debian: apt-get install haproxy)")
    servers = "\n".join(f"  server r{index} 127.0.0.1:{backend} check"
                        for index, backend in enumerate(backends))
    config = folder / "haproxy.cfg"
    config.write_text(f"""
defaults
  mode http
  timeout connect 2s
  timeout client 60s
  timeout server 60s
  timeout tunnel 1h
frontend voice
  bind 127.0.0.1:{port}
  default_backend replicas
backend replicas
  balance leastconn
  option httpchk
  http-check send meth GET uri /readyz ver HTTP/1.1 hdr Host 127.0.0.1
  http-check expect status 200
  default-server inter 300ms fall 1 rise 2
{servers}
""")
    process = subprocess.Popen([executable, "-f", str(config), "-db"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        yield
    finally:
        process.terminate()
        process.wait(10)


class Client:
    def __init__(self, index: int, url: str, turns: int) -> None:
        self.index = index
        self.url = url
        self.turns = turns
        self.answered = 0
        self.asked = 0
        self.retried = 0
        self.cut = 0  # replies that ended other than completed
        self.turn_s: list[float] = []
        self.reconnect_s: list[float] = []
        self.sessions: list[str] = []
        self.first_reply = asyncio.Event()
        self.finished = asyncio.Event()  # all turns answered; the session stays open until
        self.leave = asyncio.Event()  # the end is measured

    async def run(self, pause_s: float) -> None:
        client = await VoiceClient.connect_retrying(self.url)
        await client.configure(output_modalities=["text"])
        self.sessions.append(client.session_id)
        question = 0
        while question < self.turns:
            self.asked += 1
            started = time.monotonic()
            await client.say(QUESTIONS[question % len(QUESTIONS)])
            status = await self._reply(client)
            if status == "completed":
                self.answered += 1
                self.turn_s.append(time.monotonic() - started)
                self.first_reply.set()
                question += 1
                await asyncio.sleep(pause_s)
            elif status is not None:
                self.cut += 1  # not completed: ask again
            if client.closed or status is None:
                closed_at = time.monotonic()
                await client.close()
                if status is None:
                    self.retried += 1  # the reply never came: ask again on the new session
                client = await VoiceClient.connect_retrying(self.url)
                await client.configure(output_modalities=["text"])
                self.sessions.append(client.session_id)
                self.reconnect_s.append(time.monotonic() - closed_at)
        self.finished.set()
        while True:  # idle until the end is measured; a closed session is opened again
            leave = asyncio.ensure_future(self.leave.wait())
            closed = asyncio.ensure_future(self._until_closed(client))
            await asyncio.wait((leave, closed), return_when=asyncio.FIRST_COMPLETED)
            if leave.done():
                closed.cancel()
                break
            leave.cancel()
            closed_at = time.monotonic()
            client = await VoiceClient.connect_retrying(self.url)
            await client.configure(output_modalities=["text"])
            self.sessions.append(client.session_id)
            self.reconnect_s.append(time.monotonic() - closed_at)
        await client.close()

    @staticmethod
    async def _until_closed(client: VoiceClient) -> None:
        async for _ in client.events():
            pass

    async def _reply(self, client: VoiceClient) -> str | None:
        """The reply's status, or None if the connection closed first."""
        async for event in client.events():
            if isinstance(event, ResponseDone):
                return str(event.status)
        return None


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


async def scenario(lb: int, ports: Sequence[int], processes: Sequence[subprocess.Popen[bytes]],
                   clients: int, turns: int) -> dict[str, Any]:
    url = f"ws://127.0.0.1:{lb}/v1/realtime"
    people = [Client(index, url, turns) for index in range(clients)]
    tasks = []
    for person in people:  # one at a time, so leastconn spreads them
        tasks.append(asyncio.ensure_future(person.run(pause_s=0.3)))
        await asyncio.sleep(1.0)
    await asyncio.wait_for(asyncio.gather(*(p.first_reply.wait() for p in people)), 300)
    # health() is a blocking HTTP request: off the loop, where the clients run.
    before = {port: ((await asyncio.to_thread(health, port)) or {}).get("sessions_active")
              for port in ports}
    victim = max(range(len(ports)), key=lambda i: before[ports[i]] or 0)
    processes[victim].send_signal(signal.SIGTERM)
    await asyncio.wait_for(asyncio.gather(*(p.finished.wait() for p in people)), 600)
    await asyncio.to_thread(processes[victim].wait, 60)  # drained and gone; its clients move
    survivor = ports[1 - victim]
    # Every client on the survivor, once those closed at the victim's exit have reconnected
    # (a reconnection may first be refused by the dying replica and retried after a pause).
    after = None
    for _ in range(40):
        await asyncio.sleep(0.25)
        after = ((await asyncio.to_thread(health, survivor)) or {}).get("sessions_active")
        if after == clients:
            break
    for person in people:
        person.leave.set()
    await asyncio.wait_for(asyncio.gather(*tasks), 60)
    return {
        "clients": clients, "turns_per_client": turns,
        "sessions_before": {str(port): before[port] for port in ports},
        "stopped_replica": ports[victim],
        "exit_code_of_stopped": processes[victim].wait(60),
        "asked": sum(p.asked for p in people), "answered": sum(p.answered for p in people),
        "lost": sum(p.turns - p.answered for p in people),
        "asked_again": sum(p.retried + p.cut for p in people),
        "reconnected": sum(len(p.reconnect_s) for p in people),
        "reconnect_s": [round(s, 2) for p in people for s in p.reconnect_s],
        "turn_s_p50": round(statistics.median([s for p in people for s in p.turn_s]), 2),
        "turn_s_p90": round(percentile([s for p in people for s in p.turn_s], 0.9), 2),
        "survivor_sessions_at_end": after,
        "sessions_per_client": [len(p.sessions) for p in people],
    }


def run(clients: int = 4, turns: int = 6) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as folder:
        ports = [free_port(), free_port()]
        lb = free_port()
        with contextlib.ExitStack() as stack:
            processes = [stack.enter_context(replica(port, Path(folder) / f"r{port}.log"))
                         for port in ports]
            deadline = time.monotonic() + 300
            while not all(health(port) for port in ports):
                if time.monotonic() > deadline or any(p.poll() is not None for p in processes):
                    logs = [(Path(folder) / f"r{port}.log").read_text()[-2000:]
                            for port in ports]
                    raise RuntimeError(f"a replica did not start: {logs}")
                time.sleep(0.5)
            stack.enter_context(haproxy(lb, ports, Path(folder)))
            time.sleep(1.5)  # two health checks: both replicas up
            return asyncio.run(scenario(lb, ports, processes, clients, turns))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--turns", type=int, default=6)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    try:
        result = run(args.clients, args.turns)
    except VoiceClientError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(json.dumps(result, indent=1))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
