"""Full duplex on a simulated laptop: does the assistant interrupt itself, and does the user?

    .venv/bin/python -m benchmarks.full_duplex --url ws://127.0.0.1:8811/v1/realtime

A client that behaves like ``voice-mic`` on laptop speakers, in real time (20 ms frames): it
plays the reply audio it receives, the "room" plays it back into the microphone (``sox reverb``
impulse response, 20-200 ms later, 6-20 dB quieter, half the replies with background noise at
-45 dBFS), optionally through voice-mic's echo canceller (:class:`clients.mic.echo.
EchoCanceller`), and it stops playback on ``input_audio_buffer.speech_started`` as Realtime
clients do. Each reply answers a spoken question (Piper English; a real recording in the
other languages); then, 1.5 s into the reply's playback (``--event-after``: earlier, while
the echo canceller of a fresh client is still converging), the scenario adds:

- ``echo``: nothing. Any speech_started or turn_detected cancel is a self-interruption.
- ``interrupt``: the user talks over the reply (2 s of a real recording in the reply's
  language from where its voice begins, or Piper's "Stop, wait a moment." in English).
  Reported: the delay from the start of that speech to the moment playback stopped
  (speech_started arrived at the client). A voice starts where the Silero VAD, run on the
  clean sound before the run, hears it begin (``benchmarks.laptop.voice_onset``; until
  2026-11-28 where its level first rose above -34 dBFS, which a click or breath a second
  before some speakers began passed); a noise starts where its level rises.
- ``backchannel``: an acknowledgement in the reply's language (espeak-ng, e.g. "genau"); it
  must not interrupt.
- ``noise``: a cough-like burst, a door knock, a noise burst; it must not interrupt, or with
  the guard off, the reply must resume (``response.resumed``).

The client also ducks as voice-mic did before 2026-11-28 (``output_audio_buffer.duck``: the
reply plays, and so echoes, that much quieter until ``unduck`` or ``speech_started``), or,
in the ``hold`` configuration, holds it as voice-mic does now (``session.interruption.hold``:
playback pauses and goes on from there at ``unduck``); reported per event: the delay from its
onset to the duck or hold, whether the reply was restored (unducked, not cut), the delay
to the reply going silent (held or cut, whichever came first), and for a sound that cut the
reply, the delay to the last of the reply's audio the client received (the issue's "last
reply audio sent"; 0 when all of it had come before the sound).

Configurations: today's behaviour (``guard off, no AEC``) against ``AEC + guard``, in the same
run, on the same server, and a few others with ``--configs`` (``noduck``: AEC + guard with
``duck_db: 0``, the guard as it was before ducking; ``hold``: AEC + guard, holding;
``holdnoaec``: the guard holding on laptop speakers without a canceller). Prints
one line per reply and a summary table (medians, p90).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import dataclasses
import json
import random
import statistics
import sys
import time
from typing import Any

import numpy as np
from websockets.asyncio.client import connect

from benchmarks.laptop import FRAME, RATE, Room, noises, spoken, voice_onset
from clients.mic.echo import EchoCanceller

EVENT_AFTER_S = 1.5  # into the reply's playback (default of --event-after)
INSTRUCTIONS = "Answer in three or four full sentences."
BACKCHANNELS = {"en": "yeah", "de": "genau", "fr": "d'accord", "es": "vale", "it": "certo",
                "nl": "ja hoor", "pt": "sim", "pl": "tak"}
QUESTIONS = {"en": "Tell me about the city of Berlin.",
             "de": "de_voxforge_05.wav", "fr": "fr_voxforge_02.wav", "es": "es_voxforge_03.wav",
             "it": "it_voxforge_04.wav", "nl": "nl_voxforge_02.wav", "pt": "pt_voxforge_02.wav",
             "pl": "pl_neon_02.wav"}
INTERRUPTIONS = {"en": "Stop, wait a moment.", "de": "de_voxforge_03.wav",
                 "fr": "fr_voxforge_03.wav", "es": "es_voxforge_01.wav",
                 "it": "it_voxforge_01.wav", "nl": "nl_voxforge_04.wav",
                 "pt": "pt_voxforge_04.wav", "pl": "pl_neon_01.wav"}


# -- one reply --------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Config:
    name: str
    aec: bool
    guard: bool
    headset: bool = False  # the microphone hears none of the reply (no room, no echo)
    duck: bool = True  # the server may ask to duck the reply (session.interruption.duck_db)
    hold: bool = False  # ... to hold it instead (session.interruption.hold)


@dataclasses.dataclass
class Outcome:
    config: str
    scenario: str
    language: str
    detail: str
    room: str
    self_interruptions: int = 0  # speech_started that no injected sound explains
    interrupted: bool = False  # the injected sound stopped playback
    delay_ms: float | None = None  # from its onset to playback stopping
    ducks: int = 0  # output_audio_buffer.duck events (in an echo-only reply: false ones)
    duck_ms: float | None = None  # from the event's onset to the reply ducking
    restored: bool = False  # ducked, then unducked, not cut
    silent_ms: float | None = None  # from the event's onset to the reply held or cut
    played_on: bool = False  # held or ducked, restored, and only then cut
    last_audio_ms: float | None = None  # cut: from the onset to the reply's last audio received
    resumed: bool = False
    backchannel_event: bool = False
    played_s: float = 0.0
    error: str | None = None


def pcm(audio: np.ndarray) -> bytes:
    return (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()


async def one_reply(url: str, config: Config, scenario: str, language: str,
                    question: np.ndarray, event: np.ndarray | None, detail: str,
                    rng: random.Random, noisy: bool,
                    event_after_s: float = EVENT_AFTER_S) -> Outcome:
    delay_ms, gain_db = rng.randint(20, 200), rng.uniform(-20, -6)
    reverb = rng.choice((30, 50, 70))
    room = Room(delay_ms, gain_db, reverb)
    outcome = Outcome(config.name, scenario, language, detail,
                      "headset" if config.headset else
                      f"{delay_ms}ms {gain_db:.0f}dB rv{reverb}{' noise' if noisy else ''}")
    canceller = EchoCanceller(RATE) if config.aec else None
    noise_rng = np.random.default_rng(rng.randint(0, 1 << 30))
    playback: list[np.ndarray] = []  # queued reply audio
    interrupted: set[str] = set()
    pending: set[str] = set()  # responses created, not done
    state: dict[str, Any] = {"first_play": None, "event_onset": None, "speech_starts": [],
                             "first": None, "gain": 1.0}
    watched: set[str] = set()  # the reply and its resumption: the run ends once they are done
    user = np.concatenate([np.zeros(RATE // 2, np.float32), question])
    # A voice's onset is where the VAD hears it begin; a noise's, where its sound rises.
    event_onset = None if event is None or scenario == "noise" else voice_onset(event)
    if event is not None and event_onset is None:
        event_onset = int(np.argmax(np.abs(event) > 0.02))
    async with connect(url, max_size=None) as ws:
        await ws.send(json.dumps({"type": "session.update", "session": {
            "type": "realtime", "instructions": INSTRUCTIONS, "max_output_tokens": 80,
            "interruption": {"guard": config.guard, "hold": config.hold,
                             "echo_cancelled": config.aec or config.headset,
                             **({} if config.duck else {"duck_db": 0})}}}))

        async def receive() -> None:
            async for message in ws:
                event_json = json.loads(message)
                kind = event_json["type"]
                now = time.monotonic()
                if kind == "response.created":
                    pending.add(event_json["response"]["id"])
                    if state["first"] is None:
                        state["first"] = event_json["response"]["id"]
                        watched.add(state["first"])
                elif kind == "response.output_audio.delta":
                    # Only the reply under test (and its resumption) is played: the replies
                    # to turns its echo started are not followed.
                    response_id = event_json["response_id"]
                    if response_id == state["first"]:
                        state["last_delta"] = now
                    if response_id not in interrupted and (
                            response_id == state["first"] or response_id in watched):
                        audio = np.frombuffer(base64.b64decode(event_json["delta"]), "<i2")
                        playback.append(audio.astype(np.float32) / 32768)
                elif kind == "output_audio_buffer.duck":
                    outcome.ducks += 1
                    if event_json.get("hold"):
                        state["held"] = True  # paused where it is, nothing dropped
                    else:
                        state["gain"] = 10 ** (event_json["gain_db"] / 20)
                    state.setdefault("ducks", []).append(now)
                elif kind == "output_audio_buffer.unduck":
                    state["gain"] = 1.0
                    state["held"] = False
                    state["unducked"] = now
                elif kind == "input_audio_buffer.speech_started":
                    state["speech_starts"].append(now)
                    state["gain"] = 1.0
                    state["held"] = False
                    interrupted.update(pending)
                    playback.clear()
                    state["stop"] = True  # what is buffered too, at the next frame
                elif kind == "response.done":
                    pending.discard(event_json["response"]["id"])
                    watched.discard(event_json["response"]["id"])
                elif kind == "response.resumed":
                    outcome.resumed = True
                    watched.add(event_json["response_id"])
                elif kind == "input_audio_buffer.backchannel":
                    outcome.backchannel_event = True
                elif kind == "error":
                    print("  server error:", event_json["error"].get("message"), file=sys.stderr)

        receiver = asyncio.ensure_future(receive())
        position, buffered = 0, np.zeros(0, np.float32)
        started = time.monotonic()
        tick = 0
        quiet_since: float | None = None
        event_at: int | None = None  # sample index in `user` where the event's sound starts
        try:
            while time.monotonic() - started < 45:
                tick += 1
                await asyncio.sleep(max(0.0, started + tick * 0.02 - time.monotonic()))
                # What the speaker plays in these 20 ms.
                if state.pop("stop", False):
                    buffered = np.zeros(0, np.float32)
                while buffered.size < FRAME and playback:
                    buffered = np.concatenate([buffered, playback.pop(0)])
                played = np.zeros(FRAME, np.float32)
                take = 0 if state.get("held") else min(FRAME, buffered.size)
                played[:take], buffered = buffered[:take] * state["gain"], buffered[take:]
                if take and state["first_play"] is None:
                    state["first_play"] = tick
                outcome.played_s += take / RATE
                # The event's sound, event_after_s into the playback.
                if (event is not None and event_at is None and state["first_play"] is not None
                        and tick - state["first_play"] >= event_after_s * 50):
                    event_at = position  # the question was sent before the reply came
                    user = np.concatenate([np.zeros(position, np.float32), event])
                    onset = event_onset or 0
                    state["event_start"] = time.monotonic()
                    state["event_onset"] = state["event_start"] + onset / RATE
                mic = np.zeros(FRAME, np.float32)
                piece = user[position:position + FRAME]
                mic[:piece.size] += piece
                position += FRAME
                if not config.headset:
                    mic += room.echo(played)
                if noisy:
                    mic += noise_rng.normal(0, 10 ** (-45 / 20), FRAME).astype(np.float32)
                if canceller is not None:
                    canceller.played((played * 32767).astype(np.int16))
                    sent = canceller.captured((np.clip(mic, -1, 1) * 32767).astype(np.int16))
                    data = sent.astype("<i2").tobytes()
                else:
                    data = pcm(mic)
                if data:
                    await ws.send(json.dumps({"type": "input_audio_buffer.append",
                                              "audio": base64.b64encode(data).decode()}))
                # The reply (and a resumption of it) done and played out: the turns that
                # self-interruptions start are not followed further.
                busy = watched or playback or buffered.size or position < user.size
                if state["first"] is not None and not busy:
                    quiet_since = quiet_since or time.monotonic()
                    # A cut reply may yet resume, once what cut it is transcribed.
                    wait_s = 6.0 if state["first"] in interrupted else 2.0
                    if time.monotonic() - quiet_since > wait_s:
                        break
                else:
                    quiet_since = None
        finally:
            receiver.cancel()
    starts = state["speech_starts"][1:]  # the first is the question
    onset = state["event_onset"]
    caused = [s for s in starts if onset is not None and s >= onset - 0.1]
    outcome.self_interruptions = len(starts) - len(caused)
    if caused:
        outcome.interrupted = True
        outcome.delay_ms = (caused[0] - onset) * 1000
        if "last_delta" in state:
            outcome.last_audio_ms = max(0.0, state["last_delta"] - onset) * 1000
    ducked = [t for t in state.get("ducks", []) if t >= state.get("event_start", np.inf)]
    if ducked and onset is not None:
        # (the VAD may hear a soft start before the sound reaches the onset's level: 0)
        outcome.duck_ms = max(0.0, ducked[0] - onset) * 1000
    silenced = [*(ducked[:1] if config.hold else []), *caused[:1]]
    if silenced and onset is not None:
        outcome.silent_ms = max(0.0, min(silenced) - onset) * 1000
    outcome.restored = bool(state.get("unducked")) and not caused
    outcome.played_on = bool(state.get("unducked")) and bool(caused) and bool(ducked) \
        and state["unducked"] < caused[0]
    if state["first_play"] is None:
        outcome.error = "no reply audio"
    return outcome


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def main_async(args: argparse.Namespace) -> int:
    rng = random.Random(args.seed)
    sounds = noises(np.random.default_rng(args.seed))
    configs = {"today": Config("guard off, no AEC", False, False),
               "both": Config("AEC + guard", True, True),
               "guard": Config("guard, no AEC", False, True),
               "aec": Config("AEC, guard off", True, False),
               "noduck": Config("AEC + guard, no duck", True, True, duck=False),
               "hold": Config("AEC + guard, hold", True, True, hold=True),
               "holdnoaec": Config("guard, no AEC, hold", False, True, hold=True)}
    english = spoken("en", QUESTIONS["en"])
    outcomes: list[Outcome] = []

    async def run(config: Config, scenario: str, language: str, event: np.ndarray | None,
                  detail: str, noisy: bool) -> None:
        question = english if language == "en" else spoken(language, QUESTIONS[language])
        outcome = await one_reply(args.url, config, scenario, language, question, event,
                                  detail, rng, noisy, args.event_after)
        outcomes.append(outcome)
        print(f"{outcome.config:18} {scenario:11} {language} {detail:12} {outcome.room:22} "
              f"self={outcome.self_interruptions} cut={outcome.interrupted} "
              f"delay={outcome.delay_ms and round(outcome.delay_ms)} resumed={outcome.resumed} "
              f"ducks={outcome.ducks} duck={outcome.duck_ms and round(outcome.duck_ms)} "
              f"restored={outcome.restored} played_on={outcome.played_on} "
              f"last_audio={outcome.last_audio_ms and round(outcome.last_audio_ms)} "
              f"played={outcome.played_s:.1f}s {outcome.error or ''}", flush=True)

    for name in args.configs:
        for index in range(args.replies):
            await run(configs[name], "echo", "en", None, "-", noisy=index % 2 == 1)
    languages = list(QUESTIONS)
    if args.events:
        for name in args.event_configs:
            config = configs[name]
            if "interrupt" in args.scenarios:
                for index, language in enumerate(languages):
                    await run(config, "interrupt", language,
                              spoken(language, INTERRUPTIONS[language], 2.0), "words",
                              noisy=index % 2 == 1)
            if "backchannel" in args.scenarios:
                for index, language in enumerate(languages):
                    await run(config, "backchannel", language,
                              spoken(language, BACKCHANNELS[language]), BACKCHANNELS[language],
                              noisy=index % 2 == 1)
            if "noise" in args.scenarios:
                for index, (kind, sound) in enumerate(sounds.items()):
                    await run(config, "noise", "en", sound, kind, noisy=index % 2 == 1)
    summarize(outcomes)
    return 0


def summarize(outcomes: list[Outcome]) -> None:
    print("\n| configuration | scenario | replies | self-interruptions (replies with one) | "
          "cut by the event | resumed | delay p50 / p90 ms | ducked (restored) | "
          "duck delay p50 / p90 ms | silent (held or cut) p50 / p90 ms | "
          "cut: last reply audio received p50 / p90 ms |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    keys = sorted({(o.config, o.scenario) for o in outcomes}, key=lambda k: (k[1], k[0]))
    for config, scenario in keys:
        group = [o for o in outcomes if (o.config, o.scenario) == (config, scenario)]
        delays = [o.delay_ms for o in group if o.delay_ms is not None]
        timing = (f"{statistics.median(delays):.0f} / {percentile(delays, 0.9):.0f}"
                  if delays else "-")
        ducked = [o.duck_ms for o in group if o.duck_ms is not None]
        duck_timing = (f"{statistics.median(ducked):.0f} / {percentile(ducked, 0.9):.0f}"
                       if ducked else "-")
        silent = [o.silent_ms for o in group if o.silent_ms is not None]
        silent_timing = (f"{statistics.median(silent):.0f} / {percentile(silent, 0.9):.0f}"
                         if silent else "-")
        last = [o.last_audio_ms for o in group if o.last_audio_ms is not None]
        last_timing = (f"{statistics.median(last):.0f} / {percentile(last, 0.9):.0f}"
                       if last else "-")
        errors = sum(o.error is not None for o in group)
        count = f"{len(group)}" + (f" ({errors} without audio)" if errors else "")
        print(f"| {config} | {scenario} | {count} "
              f"| {sum(o.self_interruptions for o in group)} "
              f"({sum(o.self_interruptions > 0 for o in group)}) "
              f"| {sum(o.interrupted for o in group)}{played_on(group)} "
              f"| {sum(o.resumed for o in group)} "
              f"| {timing} | {sum(o.ducks > 0 for o in group)} "
              f"({sum(o.restored for o in group)}) | {duck_timing} | {silent_timing} "
              f"| {last_timing} |")


CONFIG_NAMES = ("today", "both", "guard", "aec", "noduck", "hold", "holdnoaec")


def played_on(group: list[Outcome]) -> str:
    count = sum(o.played_on for o in group)
    return f" ({count} after playing on)" if count else ""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", default="ws://127.0.0.1:8811/v1/realtime")
    parser.add_argument("--replies", type=int, default=20, help="echo-only replies per config")
    parser.add_argument("--configs", nargs="+", default=["today", "both"],
                        choices=list(CONFIG_NAMES))
    parser.add_argument("--event-configs", nargs="+", default=["both", "aec"],
                        choices=list(CONFIG_NAMES))
    parser.add_argument("--no-events", dest="events", action="store_false",
                        help="only the echo-only replies")
    parser.add_argument("--scenarios", nargs="+", default=["interrupt", "backchannel", "noise"],
                        choices=["interrupt", "backchannel", "noise"],
                        help="which events to play over replies (default: all three)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--event-after", type=float, default=EVENT_AFTER_S, metavar="S",
                        help="seconds into the reply's playback at which the event starts "
                             "(default: %(default)s)")
    return asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
