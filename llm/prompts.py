"""The system prompt that makes replies speakable and puts them in the user's language."""

from __future__ import annotations

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

VOICE_STYLE = (
    "You are a helpful voice assistant. Your replies are spoken aloud by a speech synthesizer, "
    "so answer in one to three short, natural sentences. Never use markdown, lists, headings, "
    "emoji, tables or code; spell out symbols as words."
)


def language_name(code: str) -> str:
    return LANGUAGE_NAMES.get(code, code)


def system_prompt(language: str | None, instructions: str | None = None) -> str:
    """The system prompt for a turn whose user spoke ``language`` (an ISO 639-1 code).

    ``instructions`` (e.g. from the client's ``session.update``) come first; the style and
    language rules follow so that they are always in force.
    """
    parts = [instructions.strip()] if instructions and instructions.strip() else []
    parts.append(VOICE_STYLE)
    if language:
        name = language_name(language)
        parts.append(f"The user is speaking {name}. Always reply in {name}, whatever language "
                     "earlier messages were in.")
    return "\n\n".join(parts)
