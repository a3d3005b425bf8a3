"""Run a real VoiceServer on 127.0.0.1, port 0, in a background thread with its own loop."""

from __future__ import annotations

import asyncio
import base64
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import soxr
from websockets.asyncio.client import ClientConnection, connect

from voice.config import ServiceConfig
from voice.ports import Engines
from voice.server import VoiceServer
from voice.session import SessionDefaults


@contextmanager
def running_server(config: ServiceConfig, engines: Engines, defaults: SessionDefaults,
                   names: dict[str, str] | None = None) -> Iterator[VoiceServer]:
    server = VoiceServer(config, engines, defaults, names or {"asr": "fake", "llm": "fake",
                                                              "voice": "fake"})
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    stop: asyncio.Event | None = None

    async def main() -> None:
        nonlocal stop
        stop = asyncio.Event()
        await server.start()
        ready.set()
        await stop.wait()
        await server.shutdown()

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    if not ready.wait(60):
        raise RuntimeError("the server did not start")
    try:
        yield server
    finally:
        assert stop is not None
        loop.call_soon_threadsafe(stop.set)
        thread.join(30)


@contextmanager
def default_models_server(prepared_model: Any, max_output_tokens: int,
                          mcp_hosts: tuple[str, ...] = (),
                          tools: bool = False) -> Iterator[VoiceServer]:
    """The real server with the real default models on the CPU (``prepared_model`` is the
    conftest fixture: a missing model fails under ``make test``, else skips). With ``tools``,
    the default tools model writes the replies that may call tools; without, the 0.5B model
    writes every reply (the bigger one is not loaded for tests that show no tools)."""
    from voice.__main__ import build_engines
    from voice.models import DEFAULT_TOOLS_LLM, ModelStore
    from voice.session_settings import session_defaults

    for name in ("whisper-base", "qwen2.5-coder-0.5b-instruct", "en_US-joe-medium",
                 *([DEFAULT_TOOLS_LLM] if tools else [])):
        prepared_model(name)
    config = ServiceConfig(port=0, device="cpu", max_output_tokens=max_output_tokens,
                           mcp_hosts=mcp_hosts,
                           tools_llm_model=DEFAULT_TOOLS_LLM if tools else "")
    engines, names = build_engines(config, ModelStore(progress=False))
    with running_server(config, engines, session_defaults(config, names), names) as server:
        yield server


def url_of(server: VoiceServer, path: str = "/v1/realtime") -> str:
    return f"ws://127.0.0.1:{server.port}{path}"


def pcm16_b64(audio_16k: np.ndarray, rate: int = 24_000) -> list[str]:
    """float32 16 kHz audio -> base64 PCM16 at ``rate`` in 20 ms chunks."""
    audio = soxr.resample(audio_16k, 16_000, rate) if rate != 16_000 else audio_16k
    pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2")
    step = rate // 50
    return [base64.b64encode(pcm[i:i + step].tobytes()).decode()
            for i in range(0, pcm.size, step)]


async def stream_audio(ws: ClientConnection, audio_16k: np.ndarray, *, rate: int = 24_000,
                       realtime: bool = True, trailing_silence_s: float = 2.5) -> float:
    """Send speech then silence at real-time pace; returns the monotonic time speech ended.
    The silence outlasts semantic_vad's 2 s wait for a turn judged unfinished, as a live
    microphone would."""
    chunks = pcm16_b64(audio_16k, rate)
    silence = pcm16_b64(np.zeros(int(trailing_silence_s * 16_000), np.float32), rate)
    started = time.monotonic()
    for index, chunk in enumerate(chunks):
        await ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": chunk}))
        if realtime:
            await asyncio.sleep(max(0.0, started + (index + 1) * 0.02 - time.monotonic()))
    speech_end = time.monotonic()
    for index, chunk in enumerate(silence):
        await ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": chunk}))
        if realtime:
            await asyncio.sleep(max(0.0, speech_end + (index + 1) * 0.02 - time.monotonic()))
    return speech_end


async def receive_until(ws: ClientConnection, event_type: str, timeout: float = 120.0,
                        into: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Collect server events up to and including the first of ``event_type``."""
    events = into if into is not None else []
    async with asyncio.timeout(timeout):
        while True:
            event = json.loads(await ws.recv())
            event["_received"] = time.monotonic()
            events.append(event)
            if event["type"] == event_type:
                return events


def reply_audio(events: list[dict[str, Any]], response_id: str | None = None) -> bytes:
    return b"".join(base64.b64decode(e["delta"]) for e in events
                    if e["type"] == "response.output_audio.delta"
                    and (response_id is None or e["response_id"] == response_id))


async def open_session(url: str, **kwargs: Any) -> ClientConnection:
    ws = await connect(url, max_size=None, **kwargs)
    created = json.loads(await ws.recv())
    assert created["type"] == "session.created", created
    return ws
