"""Reply quality: are the default model's replies worth hearing, per language and system prompt?

Run after `voice models prepare`:

    .venv/bin/python benchmarks/reply_quality.py [--before REV] [--prompt-from PATH]
        [--languages en de ...] [--max-new-tokens 120] [--show] [--json out.json]
    .venv/bin/python benchmarks/reply_quality.py --rescore out.json [--show]

A fixed set of questions per language (en, de, fr, es, it, nl, pt, pl: the assistant's name and
maker, two requests to act, small talk, a fact, an explanation, advice) goes to the real model
through ``llm.chat.ChatModel`` (greedy, no 6 tokens twice: the service's default sampling;
``--no-repeat-ngram 0`` turns that guard off), one question per
conversation, with a system prompt variant's ``system_prompt(language)``. Variants: the working
tree's ``llm/prompts.py`` ("current"), the one of a git revision (``--before REV``: its
``llm/prompts.py`` from ``git show``, executed as a module) and any prompts file
(``--prompt-from PATH``; ``benchmarks/reply_quality_english.py`` is the working tree's prompt
written in English for every language); all run on the same loaded model, in the same process.
``--rescore`` scores the replies saved by an earlier ``--json`` run again, without the model.

Each reply is scored automatically:

- **language**: py3langid (langid.py) picks the reply's language among the eight and Chinese
  (the model's other native language), with the assistant's name taken out; right if it is
  the question's. Replies of two or three words are sometimes misjudged ("Jestem Nova.").
- **narration**: the reply speaks of "the user" in the third person ("The user turned on the
  light.", also "Il user ha...") by per-language patterns, or of the assistant by its name
  ("Nova turned on the light.": a sentence that starts with the name and goes on).
- **false identity**: the reply names a model maker or model (OpenAI, Alibaba, Qwen, ChatGPT,
  ...): the service is self-hosted and made by none of them.
- **markup**: list bullets, numbered lines, headings, emphasis, code or tables, or a
  placeholder in brackets ("My name is [Your Name].").
- **repetition**: three words that come three times or more (a greedy decoding loop).
- **recites prompt**: five words in a row taken from the system prompt, in replies to other
  questions than the name and maker ones (a small model parrots its instructions).
- **own name**: the reply to "what is your name" contains the assistant's configured name
  (``--name``, by default the service's default).
- **length**: words and sentences; "short" is one to three sentences and at most 60 words.

Greedy outputs differ between CPUs (AVX2 and AVX-512 round differently), so compare variants
measured in the same run, on the same machine. CPU heavy: about 4 s a reply on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import time
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

from llm.chat import ChatConfig, ChatModel, Message, SamplingOptions
from voice.models import ModelKind, ModelStore, default_model_names
from voice.session_settings import REPLY_SAMPLING

ROOT = Path(__file__).resolve().parent.parent

# (kind, question) per language. Kinds: name, maker, action, action, smalltalk, fact, explain,
# advice.
QUESTIONS: dict[str, list[tuple[str, str]]] = {
    "en": [("name", "What is your name?"), ("maker", "Who made you?"),
           ("action", "Turn on the living room light."),
           ("action", "Set a timer for ten minutes."), ("smalltalk", "How are you today?"),
           ("fact", "What is the capital of Australia?"), ("explain", "Why is the sky blue?"),
           ("advice", "What should I cook for dinner tonight?")],
    "de": [("name", "Wie heißt du?"), ("maker", "Wer hat dich gemacht?"),
           ("action", "Mach das Licht im Wohnzimmer an."),
           ("action", "Stell einen Timer auf zehn Minuten."),
           ("smalltalk", "Wie geht es dir heute?"),
           ("fact", "Was ist die Hauptstadt von Australien?"),
           ("explain", "Warum ist der Himmel blau?"),
           ("advice", "Was soll ich heute Abend kochen?")],
    "fr": [("name", "Comment t'appelles-tu ?"), ("maker", "Qui t'a créé ?"),
           ("action", "Allume la lumière du salon."),
           ("action", "Mets un minuteur de dix minutes."),
           ("smalltalk", "Comment vas-tu aujourd'hui ?"),
           ("fact", "Quelle est la capitale de l'Australie ?"),
           ("explain", "Pourquoi le ciel est-il bleu ?"),
           ("advice", "Qu'est-ce que je pourrais cuisiner ce soir ?")],
    "es": [("name", "¿Cómo te llamas?"), ("maker", "¿Quién te creó?"),
           ("action", "Enciende la luz del salón."),
           ("action", "Pon un temporizador de diez minutos."),
           ("smalltalk", "¿Cómo estás hoy?"),
           ("fact", "¿Cuál es la capital de Australia?"),
           ("explain", "¿Por qué el cielo es azul?"),
           ("advice", "¿Qué puedo cocinar esta noche?")],
    "it": [("name", "Come ti chiami?"), ("maker", "Chi ti ha creato?"),
           ("action", "Accendi la luce del soggiorno."),
           ("action", "Imposta un timer di dieci minuti."), ("smalltalk", "Come stai oggi?"),
           ("fact", "Qual è la capitale dell'Australia?"),
           ("explain", "Perché il cielo è blu?"),
           ("advice", "Cosa posso cucinare stasera?")],
    "nl": [("name", "Hoe heet je?"), ("maker", "Wie heeft jou gemaakt?"),
           ("action", "Doe het licht in de woonkamer aan."),
           ("action", "Zet een timer van tien minuten."),
           ("smalltalk", "Hoe gaat het vandaag met je?"),
           ("fact", "Wat is de hoofdstad van Australië?"),
           ("explain", "Waarom is de lucht blauw?"),
           ("advice", "Wat zal ik vanavond koken?")],
    "pt": [("name", "Qual é o teu nome?"), ("maker", "Quem te criou?"),
           ("action", "Acende a luz da sala."),
           ("action", "Põe um temporizador de dez minutos."),
           ("smalltalk", "Como estás hoje?"),
           ("fact", "Qual é a capital da Austrália?"),
           ("explain", "Porque é que o céu é azul?"),
           ("advice", "O que posso cozinhar hoje à noite?")],
    "pl": [("name", "Jak masz na imię?"), ("maker", "Kto cię stworzył?"),
           ("action", "Włącz światło w salonie."),
           ("action", "Ustaw minutnik na dziesięć minut."),
           ("smalltalk", "Jak się dzisiaj masz?"),
           ("fact", "Jaka jest stolica Australii?"),
           ("explain", "Dlaczego niebo jest niebieskie?"),
           ("advice", "Co mogę dziś ugotować na kolację?")],
}

# "The user" spoken of in the third person, per language (the English one is checked in every
# language: a model that slips into English slips into its phrases too).
NARRATION = {
    "en": r"\bthe user('s)?\b|\buser (asked|wants|said|requested|turned)|"
          r"\b(der|die|dem|den|le|il|el|lo|het|de|o) user\b",  # the English word, borrowed
    "de": r"\b(der|dem|den|des) (benutzer|nutzer|anwender)s?\b|\bbenutzer(in)? (hat|möchte|will)",
    "fr": r"\bl['’]utilisat(eur|rice)\b|\ble user\b",
    "es": r"\b(el|al|del) usuario\b",
    "it": r"\bl['’]utente\b",
    "nl": r"\bde gebruiker\b",
    "pt": r"\b(o|ao|do) (usuário|utilizador)\b",
    "pl": r"\bużytkownik(a|owi|iem)?\b",
}
FALSE_IDENTITY = re.compile(
    r"open\s?ai|alibaba|qwen|chat\s?gpt|\bgpt-?\d|anthropic|claude|\bgoogle\b|microsoft|"
    r"\bmeta\b|tongyi|通义|阿里", re.IGNORECASE)
# Markdown (bullets, numbered lines, headings, emphasis, code, tables) or a placeholder that
# was never filled in ("[Your Name]").
MARKUP = re.compile(r"^\s*([-*•]|\d+[.)]|#+)\s|\*\*|__|`|^\s*\||\[[^\]]*\]|\{[^}]*\}",
                    re.MULTILINE)
SENTENCE_END = re.compile(r"[.!?。！？]+(?=\s|$)")
SHORT_WORDS = 60


def language_detector() -> Callable[[str], str | None]:
    from py3langid.langid import MODEL_DIR, MODEL_FILE, LanguageIdentifier

    identifier = LanguageIdentifier.from_modelpath(MODEL_DIR / MODEL_FILE)
    identifier.set_languages([*QUESTIONS, "zh"])

    def detect(text: str) -> str | None:
        return str(identifier.classify(text)[0]) if text.strip() else None

    return detect


def echoes(reply: str, prompt: str, words: int = 5) -> bool:
    """Whether the reply recites the system prompt: five words in a row taken from it."""
    said = re.findall(r"\w+", reply.lower())
    source = " " + " ".join(re.findall(r"\w+", prompt.lower())) + " "
    return any(f" {' '.join(said[i:i + words])} " in source
               for i in range(len(said) - words + 1))


def score(reply: str, language: str, kind: str, name: str, prompt: str,
          detect: Callable[[str], str | None]) -> dict[str, Any]:
    itself = rf"|(^|[.!?]\s+){re.escape(name)}\s+\w" if name else ""
    narration = re.compile(f"{NARRATION['en']}|{NARRATION[language]}{itself}", re.IGNORECASE)
    words = len(reply.split())
    text = reply.strip()
    ends = list(SENTENCE_END.finditer(text))
    # an unfinished last sentence (cut by the token limit, or no full stop) counts too
    sentences = len(ends) + (1 if text and (not ends or ends[-1].end() < len(text)) else 0)
    detected = detect(re.sub(re.escape(name), " ", text) if name else text)
    return {
        "detected": detected,
        "right_language": detected == language,
        "narration": bool(narration.search(reply)),
        "false_identity": bool(FALSE_IDENTITY.search(reply)),
        "markup": bool(MARKUP.search(reply)),
        "repetition": repeats(text),
        "echo": echoes(text, prompt) if kind not in ("name", "maker") else None,
        "own_name": name.lower() in text.lower() if kind == "name" and name else None,
        "words": words,
        "sentences": sentences,
        "short": 1 <= sentences <= 3 and words <= SHORT_WORDS,
    }


def repeats(text: str) -> bool:
    """Whether some three words come three times or more: a greedy decoding loop."""
    words = re.findall(r"\w+", text.lower())
    triples = [tuple(words[i:i + 3]) for i in range(len(words) - 2)]
    return any(triples.count(triple) >= 3 for triple in set(triples))


def load_prompt_module(source: str, label: str) -> types.ModuleType:
    """Execute the text of a prompts module as a fresh module (it may import the project)."""
    module = types.ModuleType(f"reply_quality_prompts_{len(sys.modules)}")
    module.__file__ = label
    sys.modules[module.__name__] = module  # dataclasses look their module up
    exec(compile(source, label, "exec"), module.__dict__)
    return module


def prompt_variants(before: list[str], files: list[Path],
                    current: bool = True) -> dict[str, types.ModuleType]:
    variants = {}
    for revision in before:
        source = subprocess.run(["git", "show", f"{revision}:llm/prompts.py"], cwd=ROOT,
                                check=True, capture_output=True, text=True).stdout
        variants[revision] = load_prompt_module(source, f"{revision}:llm/prompts.py")
    for path in files:
        variants[path.stem] = load_prompt_module(path.read_text(encoding="utf-8"), str(path))
    if current or not variants:
        variants["current"] = load_prompt_module(
            (ROOT / "llm" / "prompts.py").read_text(encoding="utf-8"), "llm/prompts.py")
    return variants


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    def share(key: str) -> float:
        values = [row[key] for row in rows if row[key] is not None]
        return 100 * sum(values) / len(values) if values else float("nan")

    return {"replies": len(rows), "right_language": share("right_language"),
            "narration": share("narration"), "false_identity": share("false_identity"),
            "markup": share("markup"), "repetition": share("repetition"),
            "echo": share("echo"),
            "own_name": share("own_name"),
            "short": share("short"),
            "median_words": statistics.median(row["words"] for row in rows),
            "median_sentences": statistics.median(row["sentences"] for row in rows)}


COLUMNS = [("right_language", "right language %"), ("narration", "narration %"),
           ("false_identity", "false identity %"), ("markup", "markup %"),
           ("repetition", "repetition %"), ("echo", "recites prompt %"),
           ("own_name", "own name %"), ("short", "short (1-3 sentences, <=60 words) %"),
           ("median_words", "median words"), ("median_sentences", "median sentences")]


def table(title: str, summaries: dict[str, dict[str, Any]]) -> str:
    lines = [f"**{title}**", "", "| prompt | " + " | ".join(c for _, c in COLUMNS) + " |",
             "| --- |" + " --- |" * len(COLUMNS)]
    for variant, summary in summaries.items():
        cells = [f"{summary[key]:.0f}" if isinstance(summary[key], float) else str(summary[key])
                 for key, _ in COLUMNS]
        lines.append(f"| {variant} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def generate(args: argparse.Namespace) -> tuple[str, str, str, list[dict[str, Any]]]:
    """Ask every question with every prompt variant: (model, name, header, replies)."""
    variants = prompt_variants(args.before, args.prompt_from, current=not args.skip_current)
    name = args.name or getattr(list(variants.values())[-1], "DEFAULT_ASSISTANT_NAME", "")
    llm = args.llm or default_model_names()[ModelKind.LLM]
    model = ChatModel(ChatConfig(str(ModelStore(progress=False).resolve(llm, ModelKind.LLM)),
                                 device="cpu"))
    options = SamplingOptions(max_new_tokens=args.max_new_tokens,
                              no_repeat_ngram_size=args.no_repeat_ngram)
    replies: list[dict[str, Any]] = []
    started = time.perf_counter()
    for language in args.languages:
        for kind, question in QUESTIONS[language]:
            for variant, module in variants.items():  # interleaved: same load for each
                prompt = module.system_prompt(language)
                reply = "".join(model.stream([Message("system", prompt),
                                              Message("user", question)], options)).strip()
                replies.append({"variant": variant, "language": language, "kind": kind,
                                "question": question, "reply": reply, "prompt": prompt})
                print(".", end="", flush=True)
    header = (f"model {llm} on {model.device}/{model.compute_type}, greedy, up to "
              f"{args.max_new_tokens} new tokens, no_repeat_ngram_size "
              f"{args.no_repeat_ngram}; {len(replies)} replies in "
              f"{time.perf_counter() - started:.0f} s")
    return llm, name, header, replies


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", action="append", default=[], metavar="REV",
                        help="also measure llm/prompts.py as of this git revision")
    parser.add_argument("--prompt-from", action="append", default=[], type=Path,
                        metavar="PATH", help="also measure this prompts module")
    parser.add_argument("--skip-current", action="store_true",
                        help="measure only the --before and --prompt-from variants")
    parser.add_argument("--languages", nargs="+", default=list(QUESTIONS),
                        choices=list(QUESTIONS))
    parser.add_argument("--max-new-tokens", type=int, default=120)
    parser.add_argument("--no-repeat-ngram", type=int, metavar="N",
                        default=REPLY_SAMPLING.no_repeat_ngram_size,
                        help="SamplingOptions.no_repeat_ngram_size (default: the service's, "
                        "%(default)s; 0 is off)")
    parser.add_argument("--name", help="the assistant's name to look for (default: the "
                        "current prompts module's default)")
    parser.add_argument("--llm", default=None, help="LLM name or path (default: the default)")
    parser.add_argument("--show", action="store_true", help="print every reply")
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    parser.add_argument("--rescore", type=Path, metavar="JSON",
                        help="score the replies of an earlier --json run again (no model)")
    args = parser.parse_args()

    if args.rescore:
        saved = json.loads(args.rescore.read_text(encoding="utf-8"))
        llm, name, header = saved["model"], args.name or saved["name"], saved["header"]
        replies = [{key: row[key] for key in ("variant", "language", "kind", "question",
                                              "reply", "prompt")} for row in saved["replies"]]
    else:
        llm, name, header, replies = generate(args)
    detect = language_detector()
    rows = [{**row, **score(row["reply"], row["language"], row["kind"], name, row["prompt"],
                            detect)} for row in replies]
    if args.show:
        for row in rows:
            flags = [key for key in ("narration", "false_identity", "markup", "repetition",
                                     "echo") if row[key]]
            print(f"[{row['variant']}] {row['language']} {row['question']!r} -> "
                  f"{row['reply']!r} ({row['detected']}{''.join(' ' + f for f in flags)})")
    variants = list(dict.fromkeys(row["variant"] for row in rows))
    languages = list(dict.fromkeys(row["language"] for row in rows))
    per_language = {language: {variant: summarize([r for r in rows if r["variant"] == variant
                                                   and r["language"] == language])
                               for variant in variants} for language in languages}
    overall = {variant: summarize([r for r in rows if r["variant"] == variant])
               for variant in variants}
    print(f"\n{header}; assistant name {name!r}\n")
    print(table("all languages", overall))
    for language, summaries in per_language.items():
        print(table(language, summaries))
    if args.json:
        args.json.write_text(json.dumps({"model": llm, "name": name, "header": header,
                                         "overall": overall,
                                         "per_language": per_language, "replies": rows},
                                        ensure_ascii=False, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
