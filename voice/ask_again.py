"""What the assistant says when the user spoke but Whisper could not make out the words.

A turn of a second or more of speech whose transcript Whisper rejected (no speech, too low a
confidence, a repetition loop) used to get no reply at all: to the user, the assistant just
ignored them. Now it asks them to say it again, in their language, as an ordinary response
(docs/protocol.md, "Speech the service could not make out"). Short sounds (a cough, a door, a
"hm") that transcribe to nothing still get silence, and a turn that cut a reply off and held
nothing intelligible resumes that reply instead (voice/interruptions.py).
"""

from __future__ import annotations

from asr.transcript import Transcript

# Whisper's reasons for rejecting all of a turn's words; "silence" (nothing loud enough to
# be speech) and a failed decode (an error event already) get no reply.
UNCLEAR = frozenset({"no_speech", "low_confidence", "repetitive"})
# The language Whisper detects in such a turn is kept only where it was this sure.
SURE_LANGUAGE = 0.5

PHRASES = {
    "en": "Sorry, I didn't catch that. Could you say it again?",
    "de": "Entschuldigung, das habe ich nicht verstanden. Kannst du das noch einmal sagen?",
    "fr": "Pardon, je n'ai pas compris. Tu peux répéter ?",
    "es": "Perdona, no te he entendido. ¿Puedes repetirlo?",
    "it": "Scusa, non ho capito. Puoi ripetere?",
    "nl": "Sorry, dat verstond ik niet. Kun je het herhalen?",
    "pt": "Desculpe, não entendi. Pode repetir?",
    "pl": "Przepraszam, nie udało mi się tego zrozumieć. Możesz powtórzyć?",
}


def unclear(heard: Transcript, speech_s: float, min_speech_s: float) -> bool:
    """Whether ``heard`` is speech worth asking about: ``speech_s`` seconds of it (by the
    VAD) that Whisper rejected as a whole. ``min_speech_s`` 0 never asks."""
    return (min_speech_s > 0 and not heard.text and heard.rejected in UNCLEAR
            and speech_s >= min_speech_s)


def ask_again(heard: Transcript, language: str, pinned: bool) -> tuple[str, str]:
    """The words that ask the user to repeat, and their language: the session's when it is
    pinned, else the one Whisper detected if it was sure of it, else the conversation's."""
    if not pinned and heard.language_probability >= SURE_LANGUAGE and heard.language in PHRASES:
        language = heard.language
    if language not in PHRASES:
        language = "en"
    return PHRASES[language], language
