"""Voice-to-voice latency of the real service, measured at the client.

Starts the service in this process on the default models (or uses ``--url`` for a running
one), then plays spoken English questions (Piper joe voice) at real-time pace, each followed by
silence, one session per turn. For every turn it measures, at the client, the time from the
end of the question's speech to the first reply audio byte, and collects the server's
per-stage report from ``response.done``. Prints median, p90 and max.

    .venv/bin/python benchmarks/voice_to_voice.py --turns 20 [--url ws://127.0.0.1:8765/v1/realtime]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import platform
import statistics
import sys
import threading
import time
from pathlib import Path

import numpy as np
import soxr
from websockets.asyncio.client import connect

from tts.piper import PiperSynthesizer
from voice.models import ModelKind, ModelStore, default_model_names
from voice.protocol import AudioDelta, ResponseDone, SessionCreated, parse_server_event

QUESTIONS = (
    "What is the weather like in Berlin today?",
    "How many days are there in a week?",
    "What is the capital of France?",
    "Can you recommend a good book to read?",
    "How do I make a cup of tea?",
    "What time does the sun usually set in winter?",
    "Why is the sky blue?",
    "What is a healthy breakfast?",
    "How far is the moon from the earth?",
    "Tell me something interesting about cats.",
)
RATE = 24_000
FRAME = RATE // 50  # 20 ms


def questions_audio() -> list[np.ndarray]:
    store = ModelStore(progress=False)
    name = default_model_names()[ModelKind.TTS]
    voice = PiperSynthesizer(store.resolve(name, ModelKind.TTS) / f"{name}.onnx")
    clips = []
    for question in QUESTIONS:
        chunks = list(voice.synthesize(question))
        audio = np.concatenate([c.samples for c in chunks]).astype(np.float32) / 32768
        pcm = soxr.resample(audio, chunks[0].sample_rate, RATE)
        clips.append((np.clip(pcm, -1, 1) * 32767).astype("<i2"))
    return clips


async def one_turn(url: str, pcm: np.ndarray) -> dict[str, float]:
    async with connect(url, max_size=None) as ws:
        assert isinstance(parse_server_event(await ws.recv()), SessionCreated)
        frames = [pcm[i:i + FRAME] for i in range(0, pcm.size, FRAME)]
        # The end of speech is the last frame with sound in it (Piper adds a little silence).
        last_speech = max(i for i, f in enumerate(frames) if np.abs(f).max() > 500)
        frames += [np.zeros(FRAME, "<i2")] * 75  # 1.5 s of silence after the question
        first_audio: float | None = None
        speech_end = 0.0
        done: ResponseDone | None = None

        async def send() -> None:
            nonlocal speech_end
            started = time.monotonic()
            for index, frame in enumerate(frames):
                await ws.send(json.dumps({"type": "input_audio_buffer.append",
                                          "audio": base64.b64encode(frame.tobytes()).decode()}))
                if index == last_speech:
                    speech_end = time.monotonic()
                await asyncio.sleep(max(0.0, started + (index + 1) * 0.02 - time.monotonic()))
            # Keep the line open with silence until the reply is complete.
            while done is None:
                await ws.send(json.dumps({"type": "input_audio_buffer.append",
                                          "audio": base64.b64encode(frames[-1].tobytes())
                                          .decode()}))
                await asyncio.sleep(0.02)

        sender = asyncio.ensure_future(send())
        async with asyncio.timeout(180):
            while done is None:
                event = parse_server_event(await ws.recv())
                if isinstance(event, AudioDelta) and first_audio is None:
                    first_audio = time.monotonic()
                elif isinstance(event, ResponseDone):
                    done = event
        await sender
    if first_audio is None:
        raise RuntimeError(f"no reply audio (status {done.status})")
    result = {"voice_to_voice_ms": (first_audio - speech_end) * 1000}
    result.update({f"server_{k}": float(v) for k, v in done.latency.items()})
    return result


def start_local_service(partials_interval_s: float) -> str:
    from voice.__main__ import build_engines
    from voice.config import ServiceConfig
    from voice.server import VoiceServer
    from voice.session_settings import session_defaults

    config = ServiceConfig(port=0, partial_interval_s=partials_interval_s)
    engines, names = build_engines(config, ModelStore(progress=False))
    server = VoiceServer(config, engines, session_defaults(config, names), names)
    ready = threading.Event()

    async def run() -> None:
        await server.start()
        ready.set()
        await asyncio.Event().wait()

    threading.Thread(target=asyncio.run, args=(run(),), daemon=True).start()
    ready.wait(120)
    return f"ws://127.0.0.1:{server.port}/v1/realtime"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--turns", type=int, default=20)
    parser.add_argument("--url", help="a running service (default: start one in-process)")
    parser.add_argument("--partials-interval", type=float, default=1.0,
                        help="partial transcript interval of the in-process service (0: off)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    clips = questions_audio()
    url = args.url or start_local_service(args.partials_interval)
    results = []
    for turn in range(args.turns):
        result = asyncio.run(one_turn(url, clips[turn % len(clips)]))
        results.append(result)
        print(f"turn {turn + 1:>3}: voice-to-voice {result['voice_to_voice_ms']:7.0f} ms",
              flush=True)
    keys = list(results[0])
    print(f"\n{platform.node()} {platform.machine()}, {len(os.sched_getaffinity(0))} CPUs, "
          f"{args.turns} turns, one session per turn"
          + ("" if args.url else f", partials every {args.partials_interval} s") + "\n")
    print(f"{'figure (ms)':<34} {'median':>8} {'p90':>8} {'max':>8}")
    for key in keys:
        values = [r[key] for r in results if key in r]
        print(f"{key:<34} {statistics.median(values):8.0f} "
              f"{float(np.percentile(values, 90)):8.0f} {max(values):8.0f}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
