"""Which model, and which instructions, call tools right: typed commands and other questions,
in process (no server, no speech), one model at a time.

    .venv/bin/python -m benchmarks.tool_choice --model qwen2.5-coder-1.5b-instruct \
        [--no-rule] [--threads 2] [--json out.json]

Each request is one user turn after the system prompt a spoken turn in its language gets
(llm.prompts), with the three functions of ``benchmarks.spoken_commands`` shown under
``tool_choice`` auto, greedy, as the service writes it; the call rule
(``llm.prompts.CALL_WHEN_ASKED``) is in the instructions unless ``--no-rule``;
``--call-when-torn P`` writes a reply as a call where its first token is words but a call's
openings had P or more (``[llm] call_when_torn``, llm/torn.py; the service's default is 0.2).
Three sets:

- the 40 commands of ``benchmarks.spoken_commands`` (right function and arguments);
- 16 more commands in other words (two per language), written after the call rule was chosen
  on the first set, to see whether it holds on requests it was not tuned on;
- 64 requests that no function serves (six kinds per language from ``benchmarks.reply_quality``
  and two more per language): any call, or a malformed one, within the first 40 tokens counts
  against.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.reply_quality import QUESTIONS
from benchmarks.spoken_commands import COMMANDS, TOOLS, arguments_match, light, timer, weather
from llm.chat import ChatConfig, ChatModel, Message, SamplingOptions
from llm.prompts import CALL_WHEN_ASKED, system_prompt
from llm.tools import Tool, ToolCall, ToolCallError, ToolCallParser

MORE_COMMANDS: dict[str, list[tuple[str, tuple[str, dict[str, Any]]]]] = {
    "en": [("Could you switch on the bedroom lights?", light("bedroom", True)),
           ("Will it rain in London today?", weather("London"))],
    "de": [("Bitte mach das Küchenlicht aus.", light("kitchen", False)),
           ("Regnet es heute in München?", weather("München"))],
    "fr": [("Éteins la lumière du salon, s'il te plaît.", light("living_room", False)),
           ("Il fait froid à Lyon aujourd'hui ?", weather("Lyon"))],
    "es": [("Pon un temporizador de veinte minutos, por favor.", timer(20)),
           ("¿Va a llover hoy en Sevilla?", weather("Sevilla"))],
    "it": [("Spegni la luce in cucina.", light("kitchen", False)),
           ("Piove oggi a Milano?", weather("Milano"))],
    "nl": [("Doe het licht in de keuken aan.", light("kitchen", True)),
           ("Regent het vandaag in Utrecht?", weather("Utrecht"))],
    "pt": [("Apaga a luz da sala, por favor.", light("living_room", False)),
           ("Vai chover hoje no Porto?", weather("Porto"))],
    "pl": [("Zgaś światło w kuchni.", light("kitchen", False)),
           ("Czy dziś pada deszcz w Krakowie?", weather("Kraków"))],
}
# A call comes first, or after a short sentence: the start of an answer shows it.
QUESTION_TOKENS = 40
MORE_QUESTIONS = {
    "en": ["How many legs does a spider have?", "Tell me a short joke."],
    "de": ["Wie viele Beine hat eine Spinne?", "Erzähl mir einen kurzen Witz."],
    "fr": ["Combien de pattes a une araignée ?", "Raconte-moi une blague courte."],
    "es": ["¿Cuántas patas tiene una araña?", "Cuéntame un chiste corto."],
    "it": ["Quante zampe ha un ragno?", "Raccontami una barzelletta breve."],
    "nl": ["Hoeveel poten heeft een spin?", "Vertel me een korte mop."],
    "pt": ["Quantas patas tem uma aranha?", "Conta-me uma piada curta."],
    "pl": ["Ile nóg ma pająk?", "Opowiedz mi krótki dowcip."],
}


def reply(model: ChatModel, tools: Sequence[Tool], text: str, language: str,
          rule: bool, tokens: int = 80, torn: float = 0.0,
          ) -> tuple[list[ToolCall], list[ToolCallError], str, float]:
    messages = [Message("system", system_prompt(language, CALL_WHEN_ASKED if rule else None)),
                Message("user", text)]
    parser = ToolCallParser(tools)
    outputs: list[str | ToolCall | ToolCallError] = []
    started = time.monotonic()
    options = SamplingOptions(max_new_tokens=tokens, call_when_torn=torn)
    for delta in model.stream(messages, options, tools=tools):
        outputs += parser.feed(delta)
    outputs += parser.finish()
    return ([o for o in outputs if isinstance(o, ToolCall)],
            [o for o in outputs if isinstance(o, ToolCallError)],
            "".join(o for o in outputs if isinstance(o, str)), time.monotonic() - started)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="qwen2.5-coder-1.5b-instruct",
                        help="catalog name (prepared) or model folder")
    parser.add_argument("--home", type=Path, default=Path.home() / ".cache/voice-assistant")
    parser.add_argument("--no-rule", action="store_true", help="without CALL_WHEN_ASKED")
    parser.add_argument("--call-when-torn", type=float, default=0.0, metavar="P",
                        help="write a reply as a call where its first token is words but a "
                        "call's openings had at least P ([llm] call_when_torn; 0: off)")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0: all cores)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    folder = Path(args.model)
    if not folder.is_dir():
        folder = args.home / "models" / "llm" / args.model
    model = ChatModel(ChatConfig(str(folder), cpu_threads=args.threads))
    tools = [Tool.from_json(t) for t in TOOLS]
    rows: list[dict[str, Any]] = []
    sets = [("commands", COMMANDS), ("more commands", MORE_COMMANDS)]
    for label, commands in sets:
        for language, entries in commands.items():
            for text, (name, arguments) in entries:
                calls, errors, said, seconds = reply(model, tools, text, language,
                                                     not args.no_rule, torn=args.call_when_torn)
                right = bool(calls) and calls[0].name == name and arguments_match(
                    arguments, dict(calls[0].arguments))
                rows.append({"set": label, "language": language, "text": text, "right": right,
                             "calls": [[c.name, dict(c.arguments)] for c in calls],
                             "errors": [e.message for e in errors], "said": said,
                             "seconds": seconds})
    for language in QUESTIONS:
        asked = [q for kind, q in QUESTIONS[language] if kind != "action"]
        for text in [*asked, *MORE_QUESTIONS[language]]:
            calls, errors, said, seconds = reply(model, tools, text, language, not args.no_rule,
                                                 tokens=QUESTION_TOKENS,
                                                 torn=args.call_when_torn)
            rows.append({"set": "questions", "language": language, "text": text,
                         "right": not calls and not errors,
                         "calls": [[c.name, dict(c.arguments)] for c in calls],
                         "errors": [e.message for e in errors], "said": said,
                         "seconds": seconds})
    print(f"{args.model}, call rule {'off' if args.no_rule else 'on'}, call when torn "
          f"{args.call_when_torn or 'off'}")
    print("| set | right | seconds per reply, median |")
    print("|---|---:|---:|")
    for label in ("commands", "more commands", "questions"):
        chosen = [r for r in rows if r["set"] == label]
        right = sum(r["right"] for r in chosen)
        seconds = statistics.median(r["seconds"] for r in chosen)
        print(f"| {label} | {right}/{len(chosen)} | {seconds:.1f} |")
    for row in rows:
        if not row["right"]:
            print(f"  wrong ({row['set']}, {row['language']}): {row['text']!r} -> "
                  f"{row['calls'] or row['errors'] or 'no call'} {row['said'][:70]!r}",
                  file=sys.stderr)
    if args.json:
        args.json.write_text(json.dumps(rows, ensure_ascii=False, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
