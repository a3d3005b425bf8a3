"""Spoken commands -> function calls: does the service call the right function with the right
arguments, in each language, and how soon after the end of speech?

    .venv/bin/python -m benchmarks.spoken_commands --url ws://127.0.0.1:8765/v1/realtime \
        [--languages de,fr] [--text | --mbrola] [--json out.json]

Three functions an app would offer (lights with a fixed set of rooms, a kitchen timer, a weather
lookup) and five commands in each of en, de, fr, es, it, nl, pt and pl. There are no real
recordings of such commands, so they are generated: Piper's English voice for English,
espeak-ng for the other languages (a harder input for Whisper than a person), or with
``--mbrola`` espeak-ng's MBROLA voices (diphones of real speakers; Debian's contrib and non-free
sections: ``apt-get install mbrola mbrola-de2 mbrola-fr1 mbrola-es2 mbrola-it3 mbrola-nl2 mbrola-pl1
mbrola-pt1``). Each command is played at real-time pace into a fresh session with the tools set, and
the first call of the reply is checked: its name, and every expected argument (rooms by their names
in the eight languages, as the user says them; cities by name, with the local spellings of a few).
The delay is from the end of the speech to
``response.function_call_arguments.done`` at the client. ``--text`` sends the commands as text
instead (no speech recognition): the model's own share of the errors. ``--prompt`` sets the
session's ``transcription.prompt`` to the words an app knows it will hear (its rooms, "light"
and "timer", in the command's language; never the cities of the weather questions); with
``--verbs`` also the words its light commands switch with ("allume, éteins").
``--pin`` pins each session's language to the command's (``transcription.language``).
``--room-names`` gives the light function the app's rooms in the command's language as an enum
(an app set up in its user's language knows its rooms' names), instead of a free-text room.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
import unicodedata
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from clients.client import VoiceClient, stream_file_realtime
from clients.latency.speech import RATE, Utterance, speak_texts
from voice.protocol import (
    Error,
    FunctionCallArgumentsDone,
    ResponseDone,
    TextDelta,
    TranscriptCompleted,
)

# The rooms as people name them (an app such as Home Assistant names its areas in the user's
# language, so the room is whatever the user said; a list of English names forced the 0.5B
# model to translate, and it answered "kitchen" for most rooms).
ROOMS = {
    "kitchen": {"kitchen", "küche", "kuche", "cuisine", "cocina", "cucina", "keuken", "cozinha",
                "kuchnia", "kuchni"},
    "bedroom": {"bedroom", "schlafzimmer", "chambre", "dormitorio", "camera da letto",
                "camera", "slaapkamer", "quarto", "sypialnia", "sypialni"},
    "living_room": {"living room", "living_room", "wohnzimmer", "salon", "salón", "soggiorno",
                    "woonkamer", "sala", "salonie"},
}
TOOLS: list[dict[str, Any]] = [
    {"type": "function", "name": "set_light", "description": "Switch the light of a room.",
     "parameters": {"type": "object", "properties": {
         "room": {"type": "string", "description": "the room, as the user names it"},
         "on": {"type": "boolean",
                "description": "true to switch the light on, false to switch it off"}},
         "required": ["room", "on"]}},
    {"type": "function", "name": "set_timer", "description": "Start a countdown timer.",
     "parameters": {"type": "object", "properties": {
         "minutes": {"type": "integer", "minimum": 1, "maximum": 600}},
         "required": ["minutes"]}},
    {"type": "function", "name": "get_weather",
     "description": "Look up the current weather in a city.",
     "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                    "required": ["city"]}},
]


def light(room: str, on: bool) -> tuple[str, dict[str, Any]]:
    return "set_light", {"room": room, "on": on}


def timer(minutes: int) -> tuple[str, dict[str, Any]]:
    return "set_timer", {"minutes": minutes}


def weather(city: str) -> tuple[str, dict[str, Any]]:
    return "get_weather", {"city": city}


COMMANDS: dict[str, list[tuple[str, tuple[str, dict[str, Any]]]]] = {
    "en": [("Turn on the light in the kitchen.", light("kitchen", True)),
           ("Switch off the bedroom light.", light("bedroom", False)),
           ("Set a timer for ten minutes.", timer(10)),
           ("What is the weather like in Madrid?", weather("Madrid")),
           ("Please turn the living room light off.", light("living_room", False))],
    "de": [("Schalte das Licht in der Küche ein.", light("kitchen", True)),
           ("Mach das Licht im Schlafzimmer aus.", light("bedroom", False)),
           ("Stell einen Timer auf fünf Minuten.", timer(5)),
           ("Wie ist das Wetter in Berlin?", weather("Berlin")),
           ("Schalte das Licht im Wohnzimmer an.", light("living_room", True))],
    "fr": [("Allume la lumière de la cuisine.", light("kitchen", True)),
           ("Éteins la lumière de la chambre.", light("bedroom", False)),
           ("Mets un minuteur de dix minutes.", timer(10)),
           ("Quel temps fait-il à Paris ?", weather("Paris")),
           ("Allume la lumière du salon.", light("living_room", True))],
    "es": [("Enciende la luz de la cocina.", light("kitchen", True)),
           ("Apaga la luz del dormitorio.", light("bedroom", False)),
           ("Pon un temporizador de cinco minutos.", timer(5)),
           ("¿Qué tiempo hace en Madrid?", weather("Madrid")),
           ("Apaga la luz del salón.", light("living_room", False))],
    "it": [("Accendi la luce della cucina.", light("kitchen", True)),
           ("Spegni la luce della camera da letto.", light("bedroom", False)),
           ("Imposta un timer di dieci minuti.", timer(10)),
           ("Che tempo fa a Roma?", weather("Rome")),
           ("Accendi la luce del soggiorno.", light("living_room", True))],
    "nl": [("Zet het licht in de keuken aan.", light("kitchen", True)),
           ("Doe het licht in de slaapkamer uit.", light("bedroom", False)),
           ("Zet een timer van vijf minuten.", timer(5)),
           ("Wat voor weer is het in Amsterdam?", weather("Amsterdam")),
           ("Zet het licht in de woonkamer uit.", light("living_room", False))],
    "pt": [("Acende a luz da cozinha.", light("kitchen", True)),
           ("Apaga a luz do quarto.", light("bedroom", False)),
           ("Define um temporizador de dez minutos.", timer(10)),
           ("Como está o tempo em Lisboa?", weather("Lisbon")),
           ("Acende a luz da sala.", light("living_room", True))],
    "pl": [("Włącz światło w kuchni.", light("kitchen", True)),
           ("Wyłącz światło w sypialni.", light("bedroom", False)),
           ("Ustaw minutnik na pięć minut.", timer(5)),
           ("Jaka jest pogoda w Warszawie?", weather("Warsaw")),
           ("Włącz światło w salonie.", light("living_room", True))],
}
# The rooms as an app set up in the user's language names them (Home Assistant's areas), for
# ``--room-names``: the light function's room is then one of these.
ROOM_NAMES = {"en": ["kitchen", "bedroom", "living room"],
              "de": ["Küche", "Schlafzimmer", "Wohnzimmer"],
              "fr": ["cuisine", "chambre", "salon"],
              "es": ["cocina", "dormitorio", "salón"],
              "it": ["cucina", "camera da letto", "soggiorno"],
              "nl": ["keuken", "slaapkamer", "woonkamer"],
              "pt": ["cozinha", "quarto", "sala"],
              "pl": ["kuchnia", "sypialnia", "salon"]}


def tools_for(language: str, room_names: bool) -> list[dict[str, Any]]:
    """The three functions; with ``room_names`` the light's room is one of the rooms the app
    knows in ``language`` (a JSON schema enum, which the server checks every call against)."""
    if not room_names:
        return TOOLS
    tools = json.loads(json.dumps(TOOLS))
    room = tools[0]["parameters"]["properties"]["room"]
    room["enum"] = ROOM_NAMES[language]
    room["description"] = "the room"
    return tools


# What an app with these functions could tell the recognizer to expect, per language.
PROMPTS = {"en": "kitchen, bedroom, living room, light, timer",
           "de": "Küche, Schlafzimmer, Wohnzimmer, Licht, Timer",
           "fr": "cuisine, chambre, salon, lumière, minuteur",
           "es": "cocina, dormitorio, salón, luz, temporizador",
           "it": "cucina, camera da letto, soggiorno, luce, timer",
           "nl": "keuken, slaapkamer, woonkamer, licht, timer",
           "pt": "cozinha, quarto, sala, luz, temporizador",
           "pl": "kuchnia, sypialnia, salon, światło, minutnik"}
# The words an app's light commands switch with, for ``--verbs`` (added to the prompt): the
# imperatives and particles its users say, in each language.
VERBS = {"en": "turn on, switch off",
         "de": "einschalten, ausschalten, an, aus",
         "fr": "allume, éteins",
         "es": "enciende, apaga",
         "it": "accendi, spegni",
         "nl": "aan, uit",
         "pt": "acende, apaga",
         "pl": "włącz, wyłącz"}
CITY_NAMES = {"rome": {"roma", "rom"}, "lisbon": {"lisboa", "lissabon"},
              "warsaw": {"warszawa", "warszawie"}}


def prompt_for(language: str, prompt: bool, verbs: bool) -> str | None:
    """The session's transcription prompt: none, the app's nouns, or its nouns and verbs."""
    if not prompt:
        return None
    # The verbs first: a prompt that ends with "switch off" made Whisper leave the spoken
    # "Switch off" out of the transcript, as if it continued the prompt.
    return f"{VERBS[language]}, {PROMPTS[language]}" if verbs else PROMPTS[language]


def _plain(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text.strip().lower())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def arguments_match(expected: dict[str, Any], got: dict[str, Any]) -> bool:
    for key, value in expected.items():
        if key == "room":
            if _plain(str(got.get("room", ""))).replace("_", " ") not in {
                    _plain(name).replace("_", " ") for name in ROOMS[value]}:
                return False
        elif key == "city":
            city = _plain(str(got.get("city", ""))).split(",")[0].strip()
            if city != _plain(value) and city not in CITY_NAMES.get(_plain(value), set()):
                return False
        elif got.get(key) != value or type(got.get(key)) is not type(value):
            return False
    return True


async def run_command(url: str, key: str | None, utterance: Utterance, text_only: bool,
                      timeout_s: float, tool_choice: str = "auto",
                      prompt: str | None = None, pin: bool = False,
                      room_names: bool = False) -> dict[str, Any]:
    row: dict[str, Any] = {"name": utterance.name, "language": utterance.language,
                           "text": utterance.text, "transcript": None, "calls": [],
                           "errors": [], "call_ms": None, "status": None, "reply": ""}
    async with await VoiceClient.connect(url, api_key=key) as client:
        await client.configure(tools=tools_for(utterance.language, room_names),
                               tool_choice=tool_choice, output_modalities=["text"],
                               transcription_prompt=prompt,
                               language=utterance.language if pin else None)
        if text_only:
            await client.say(utterance.text or "")  # the item and response.create
            speech_end = time.monotonic()
        else:
            speech_end = await stream_file_realtime(client, utterance.samples, RATE,
                                                    trailing_silence_s=2.5)
        deadline = speech_end + timeout_s
        events = client.events()
        while time.monotonic() < deadline:
            try:
                event = await asyncio.wait_for(anext(events), deadline - time.monotonic())
            except (TimeoutError, StopAsyncIteration):
                break
            if isinstance(event, TranscriptCompleted):
                row["transcript"] = event.transcript
            elif isinstance(event, FunctionCallArgumentsDone):
                if row["call_ms"] is None:
                    row["call_ms"] = (time.monotonic() - speech_end) * 1000
                row["calls"].append({"name": event.name,
                                     "arguments": json.loads(event.arguments)})
            elif isinstance(event, TextDelta):
                row["reply"] += event.delta
            elif isinstance(event, Error):
                row["errors"].append(event.code)
            elif isinstance(event, ResponseDone):
                row["status"] = event.response.get("status")
                break
    return row


def judge(row: dict[str, Any], expected: tuple[str, dict[str, Any]]) -> bool:
    if not row["calls"]:
        return False
    first = row["calls"][0]
    return bool(first["name"] == expected[0] and arguments_match(expected[1], first["arguments"]))


def print_table(rows: list[dict[str, Any]]) -> None:
    print("| language | correct | call after end of speech p50 / p90 (ms) |")
    print("|---|---:|---:|")
    languages = sorted({row["language"] for row in rows})
    for language in [*languages, "all"]:
        chosen = [r for r in rows if language in ("all", r["language"])]
        delays = sorted(r["call_ms"] for r in chosen if r["call_ms"] is not None)
        p50 = f"{statistics.median(delays):.0f}" if delays else "-"
        p90 = f"{delays[min(len(delays) - 1, int(0.9 * len(delays)))]:.0f}" if delays else "-"
        correct = sum(r["correct"] for r in chosen)
        print(f"| {language} | {correct}/{len(chosen)} ({100 * correct / len(chosen):.0f} %) "
              f"| {p50} / {p90} |")
    for row in rows:
        if not row["correct"]:
            print(f"  wrong: {row['name']} {row['text']!r} heard {row['transcript']!r} -> "
                  f"{row['calls'] or 'no call'} {row['errors'] or ''} {row['reply'][:80]!r}",
                  file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="ws://127.0.0.1:8765/v1/realtime")
    parser.add_argument("--key")
    parser.add_argument("--languages", help="comma-separated, e.g. de,fr (default: all)")
    parser.add_argument("--text", action="store_true", help="send the commands as text")
    parser.add_argument("--timeout-s", type=float, default=60.0)
    parser.add_argument("--tool-choice", choices=["auto", "required"], default="auto",
                        help="required: every reply must call (an app's command mode)")
    parser.add_argument("--mbrola", action="store_true",
                        help="speak the non-English commands with espeak-ng's MBROLA voices "
                        "(Debian non-free: mbrola, mbrola-de2 ...) instead of its own")
    parser.add_argument("--prompt", action="store_true",
                        help="set transcription.prompt to the rooms and functions' words")
    parser.add_argument("--verbs", action="store_true",
                        help="with --prompt: add the light's on/off words to the prompt")
    parser.add_argument("--pin", action="store_true",
                        help="pin each session's language to the command's (an app that knows "
                        "its user's language)")
    parser.add_argument("--room-names", action="store_true",
                        help="the light's room is one of the app's rooms, named in the "
                        "command's language (a schema enum) instead of free text")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    languages = args.languages.split(",") if args.languages else list(COMMANDS)
    items = [(f"{language}-{index + 1}", language, text, expected)
             for language in languages for index, (text, expected) in
             enumerate(COMMANDS[language])]
    if args.text:
        utterances = [Utterance(name, None, text, language)  # type: ignore[arg-type]
                      for name, language, text, _ in items]
    else:
        utterances = speak_texts([(name, language, text) for name, language, text, _ in items],
                                 mbrola=args.mbrola)
    rows = []
    for utterance, (_, _, _, expected) in zip(utterances, items, strict=True):
        row = asyncio.run(run_command(args.url, args.key, utterance, args.text, args.timeout_s,
                                      args.tool_choice,
                                      prompt_for(utterance.language, args.prompt, args.verbs),
                                      args.pin, args.room_names))
        row["expected"] = {"name": expected[0], "arguments": expected[1]}
        row["correct"] = judge(row, expected)
        print(f"  {row['name']}: {'ok' if row['correct'] else 'WRONG'} {row['calls']}",
              file=sys.stderr)
        rows.append(row)
    print(f"\n{len(rows)} {'typed' if args.text else 'spoken'} commands, one fresh session "
          "each\n")
    print_table(rows)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
