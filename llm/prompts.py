"""The system prompt: who the assistant is, and replies that are short, speakable and in the
user's language.

The prompt speaks to the model in the second person and, for the service's eight default
languages, in the user's own language: with the default 0.5B model that cut third-person
narration ("The user turned on the light."), lists and repetition loops compared with the same
text in English (docs/benchmarks.md, "Reply quality"). Other languages get the English text
with "Always answer in <language>".
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence

from llm.chat import Message
from llm.tools import ToolCall

# English names of the languages Whisper detects that we expect in Europe; other codes are
# passed through as they are.
LANGUAGE_NAMES = {
    "en": "English", "de": "German", "fr": "French", "es": "Spanish", "it": "Italian",
    "nl": "Dutch", "pt": "Portuguese", "pl": "Polish", "sv": "Swedish", "da": "Danish",
    "no": "Norwegian", "nn": "Norwegian Nynorsk", "fi": "Finnish", "cs": "Czech",
    "sk": "Slovak", "sl": "Slovenian", "hr": "Croatian", "sr": "Serbian", "bs": "Bosnian",
    "hu": "Hungarian", "ro": "Romanian", "bg": "Bulgarian", "el": "Greek", "uk": "Ukrainian",
    "ru": "Russian", "lt": "Lithuanian", "lv": "Latvian", "et": "Estonian", "ga": "Irish",
    "cy": "Welsh", "ca": "Catalan", "eu": "Basque", "gl": "Galician", "is": "Icelandic",
    "mt": "Maltese", "lb": "Luxembourgish", "sq": "Albanian", "mk": "Macedonian",
    "be": "Belarusian", "tr": "Turkish",
}

DEFAULT_ASSISTANT_NAME = "Nova"

# Per language: who the assistant is ({name}), then how it replies. The identity says what is
# true of every deployment (a self-hosted assistant, free software) and names no company: asked
# who made it, the model otherwise claims OpenAI, Anthropic or Alibaba.
_IDENTITY = {
    "en": "Your name is {name}. You are a voice assistant, free software that runs on its "
          "owner's own computers.",
    "de": "Du heißt {name}. Du bist ein Sprachassistent, freie Software, die auf den eigenen "
          "Computern ihres Besitzers läuft.",
    "fr": "Tu t'appelles {name}. Tu es un assistant vocal, un logiciel libre qui fonctionne "
          "sur les ordinateurs de son propriétaire.",
    "es": "Te llamas {name}. Eres un asistente de voz, software libre que funciona en los "
          "ordenadores de su propietario.",
    "it": "Ti chiami {name}. Sei un assistente vocale, software libero che funziona sui "
          "computer del suo proprietario.",
    "nl": "Je heet {name}. Je bent een spraakassistent, vrije software die op de eigen "
          "computers van je eigenaar draait.",
    "pt": "O seu nome é {name}. Você é um assistente de voz, software livre que funciona nos "
          "computadores do seu dono.",
    "pl": "Masz na imię {name}. Jesteś asystentem głosowym, wolnym oprogramowaniem "
          "działającym na komputerach swojego właściciela.",
}
_STYLE = {
    "en": "Always answer in {language}, speaking directly to the person, in one to three short "
          "sentences, without lists or markdown. If you cannot do something, say so briefly.",
    "de": "Antworte immer auf Deutsch, direkt an die Person gerichtet, in ein bis drei kurzen "
          "Sätzen, ohne Listen und ohne Markdown. Wenn du etwas nicht kannst, sag es kurz.",
    "fr": "Réponds toujours en français, directement à la personne, en une à trois phrases "
          "courtes, sans listes ni markdown. Si tu ne peux pas faire quelque chose, dis-le "
          "brièvement.",
    "es": "Responde siempre en español, directamente a la persona, en una a tres frases "
          "cortas, sin listas ni markdown. Si no puedes hacer algo, dilo brevemente.",
    "it": "Rispondi sempre in italiano, direttamente alla persona, con una a tre frasi brevi, "
          "senza elenchi né markdown. Se non puoi fare qualcosa, dillo brevemente.",
    "nl": "Antwoord altijd in het Nederlands, rechtstreeks tegen de persoon, in één tot drie "
          "korte zinnen, zonder lijstjes of markdown. Als je iets niet kunt, zeg dat dan kort.",
    "pt": "Responda sempre em português, diretamente à pessoa, em uma a três frases curtas, "
          "sem listas nem markdown. Se não puder fazer algo, diga isso brevemente.",
    "pl": "Odpowiadaj po polsku, bezpośrednio do rozmówcy, krótko: od jednego do trzech zdań, "
          "bez list i bez markdownu. Jeśli czegoś nie możesz zrobić, powiedz to krótko.",
}
_ANY_LANGUAGE = "the language the person speaks"

# Added to the instructions when the model is shown tools it may choose to call (tool_choice
# "auto"). Without it the 1.5B tools model often answers "you can use the get_weather
# function" or invents the weather; with it, on typed commands in eight languages, 51 of 56
# were right instead of 46, and 3 of 64 other questions got a call instead of 1
# (docs/benchmarks.md, "Spoken commands"). In English in every language: the model keeps
# answering in the user's.
CALL_WHEN_ASKED = ("If the person asks for something that one of your functions does, call "
                   "that function: do not describe it, and do not guess what it would "
                   "return. Anything else, answer in words.")


@dataclasses.dataclass(frozen=True)
class Assistant:
    """Who the assistant is, service-wide (``[assistant]`` in the config file)."""

    name: str = DEFAULT_ASSISTANT_NAME
    # More about it, in any language, given to the model with every reply: its role, who runs
    # it ("You answer questions about ACME's opening hours.").
    persona: str = ""


def language_name(code: str) -> str:
    return LANGUAGE_NAMES.get(code, code)


def system_prompt(language: str | None, instructions: str | None = None,
                  assistant: Assistant | None = None) -> str:
    """The system prompt for a turn whose user spoke ``language`` (an ISO 639-1 code).

    In order: the assistant's identity, its ``persona``, the client's ``instructions`` (e.g.
    from ``session.update``; after the identity, so that they may rename it), then the style
    and language rules, last so that they are always in force. Paragraphs are separated by
    blank lines. Written in ``language`` when it is one of the eight default languages.
    """
    assistant = assistant or Assistant()
    local = language if language in _IDENTITY else "en"
    parts = [_IDENTITY[local].format(name=assistant.name.strip() or DEFAULT_ASSISTANT_NAME)]
    parts += [text.strip() for text in (assistant.persona, instructions or "") if text.strip()]
    parts.append(_STYLE[local].format(
        language=language_name(language) if language else _ANY_LANGUAGE))
    return "\n\n".join(parts)


def fold_tool_results(messages: Sequence[Message]) -> list[Message]:
    """Calls and their results as notes in the user's turn, for models that cannot read them.

    Small models shown a call and its result in the chat template's own tool format call the
    function again instead of answering (qwen2.5-coder-0.5b did so for 5 of 5 requests in en,
    de, fr, es, it); told in the user's words what the app ran and got, they answer in one
    sentence in the right language. So each call is folded, with its result, into a note
    after the user message it answered; when the conversation ends with results, the note asks
    for the outcome. Results pair with calls in order, as the conversation holds them.
    """
    folded: list[Message] = []
    calls: list[ToolCall] = []
    notes: list[str] = []
    answering = False

    def attach() -> None:
        if not notes:
            return
        index = next((i for i in range(len(folded) - 1, -1, -1) if folded[i].role == "user"),
                     None)
        note = " ".join(notes)
        if index is None:
            folded.append(Message("user", f"({note})"))
        else:
            folded[index] = Message("user", f"{folded[index].content}\n\n({note})")
        notes.clear()

    for message in messages:
        if message.role == "tool":
            ran = _call_text(calls.pop(0)) if calls else "a function"
            notes.append(f"The app ran {ran} and got: {message.content}.")
            answering = True
            continue
        if message.tool_calls:
            calls.extend(message.tool_calls)
            if message.content:
                folded.append(Message(message.role, message.content))
            continue
        attach()
        answering = False
        folded.append(message)
    if answering:
        notes.append("Tell me the outcome in one short sentence.")
    attach()
    return folded


def _call_text(call: ToolCall) -> str:
    arguments = ", ".join(f"{key}={json.dumps(value, ensure_ascii=False)}"
                          for key, value in call.arguments.items())
    return f"{call.name}({arguments})"
