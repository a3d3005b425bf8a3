"""The speech voice-latency plays: WAV files, or spoken questions it generates.

Every utterance is int16 mono at :data:`RATE`. Reading and synthesis block: call them off the
event loop (``asyncio.to_thread``).
"""

from __future__ import annotations

import dataclasses
import io
import os
import shutil
import subprocess
import wave
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import soxr

RATE = 24_000

# Spoken questions for the language suite (and the default set): five per language.
QUESTIONS: dict[str, tuple[str, ...]] = {
    "en": ("What is the weather like in Berlin today?", "How many days are there in a week?",
           "What is the capital of France?", "Can you recommend a good book to read?",
           "How do I make a cup of tea?"),
    "de": ("Ich möchte morgen mit dem Zug nach Berlin fahren.",
           "Kannst du mir bitte sagen, wie spät es ist?",
           "Was ist die Hauptstadt von Frankreich?", "Wie wird das Wetter morgen in Hamburg?",
           "Ich habe einen kleinen Hund und eine schwarze Katze."),
    "fr": ("Bonjour, je m'appelle Marie et j'habite à Lyon.",
           "Je voudrais une tasse de café avec du lait, s'il vous plaît.",
           "Quelle est la capitale de l'Allemagne ?", "Quel temps fait-il aujourd'hui à Paris ?",
           "Pouvez-vous me recommander un bon livre ?"),
    "es": ("Hoy hace muy buen tiempo en la ciudad.",
           "Esta noche vamos al cine con nuestros amigos.",
           "¿Cuál es la capital de Italia?", "Me gustaría tomar un café con leche, por favor.",
           "¿Puedes recomendarme un buen libro?"),
    "it": ("Mi piace molto ascoltare la musica classica.",
           "Stasera andiamo al cinema con i nostri amici.",
           "Oggi il tempo è molto bello in città.", "Qual è la capitale della Spagna?",
           "Vorrei una tazza di caffè con il latte, per favore."),
    "nl": ("Ik wil graag een kopje koffie met melk.", "Wat is de hoofdstad van Frankrijk?",
           "Mijn broer woont met zijn familie in Amsterdam.",
           "Het weer is vandaag echt heel mooi.", "Kun je mij vertellen waar het station is?"),
    "pt": ("Esta noite vamos ao cinema com os nossos amigos.",
           "Qual é a capital de Portugal?", "Hoje o tempo está muito bonito na cidade.",
           "Eu gostaria de uma xícara de café com leite, por favor.",
           "O meu irmão mora em Lisboa com a família."),
    "pl": ("Dzień dobry, nazywam się Anna i mieszkam w Krakowie.",
           "Dzisiaj pogoda w mieście jest bardzo ładna.", "Jaka jest stolica Niemiec?",
           "Moja siostra pracuje w dużym szpitalu.",
           "Czy możesz mi powiedzieć, gdzie jest dworzec?"),
}
ESPEAK_VOICES = {"fr": "fr-fr"}
# espeak-ng's MBROLA voices: diphones of real speakers, nearer to a person than espeak-ng's own
# formant voices. Debian has them (``apt-get install mbrola mbrola-de2 ...``, with contrib
# and non-free in the apt sources); their licence allows non-commercial use, so they only
# ever make test speech here.
MBROLA_VOICES = {"en": "us1", "de": "de2", "fr": "fr1", "es": "es2", "it": "it3", "nl": "nl2",
                 "pl": "pl1", "pt": "pt1"}
MBROLA_FOLDER = Path("/usr/share/mbrola")


@dataclasses.dataclass
class Utterance:
    name: str
    samples: np.ndarray  # int16 mono at RATE
    text: str | None = None
    language: str | None = None
    speech_end: int | None = None  # sample where the speech ends, when known (else by level)


def load_wav(path: Path) -> Utterance:
    try:
        with wave.open(str(path)) as reader:
            if reader.getsampwidth() != 2:
                raise SystemExit(f"error: {path} is not 16-bit PCM")
            channels, rate = reader.getnchannels(), reader.getframerate()
            data = np.frombuffer(reader.readframes(reader.getnframes()), "<i2")
    except (OSError, wave.Error, EOFError) as error:
        raise SystemExit(f"error: cannot read {path}: {error}") from error
    audio = data.reshape(-1, channels).mean(axis=1).astype(np.float32) / 32768
    return Utterance(path.name, _to_rate(audio, rate))


def _to_rate(audio: np.ndarray, rate: int) -> np.ndarray:
    if rate != RATE:
        audio = soxr.resample(audio, rate, RATE)
    pcm: np.ndarray = (np.clip(audio, -1, 1) * 32767).astype(np.int16)
    return pcm


def _espeak(language: str, text: str, mbrola: bool = False) -> np.ndarray:
    executable = shutil.which("espeak-ng")
    if executable is None:
        raise SystemExit("error: espeak-ng is needed to generate test speech "
                         "(Debian: apt-get install espeak-ng)")
    voice = ESPEAK_VOICES.get(language, language)
    if mbrola:
        name = MBROLA_VOICES.get(language)
        if name is None:
            raise SystemExit(f"error: no MBROLA voice is set for {language!r}")
        if not (MBROLA_FOLDER / name).exists():
            raise SystemExit(f"error: the MBROLA voice {name} is not installed (Debian, "
                             f"contrib and non-free sections: apt-get install mbrola "
                             f"mbrola-{name})")
        voice = f"mb-{name}"
    raw = subprocess.run([executable, "-v", voice, "-s", "130", "-g", "2", "--stdout", text],
                         capture_output=True, check=True).stdout
    with wave.open(io.BytesIO(raw)) as reader:
        rate = reader.getframerate()
        audio = np.frombuffer(reader.readframes(reader.getnframes()), "<i2")
    return _to_rate(audio.astype(np.float32) / 32768, rate)


def _piper_voice_path(explicit: str | None) -> Path | None:
    if explicit:
        return Path(explicit)
    home = os.environ.get("VOICE_HOME")
    if home:
        base = Path(home)
    else:
        import platformdirs

        base = Path(platformdirs.user_cache_dir("voice-assistant"))
    path = base / "models" / "tts" / "en_US-joe-medium" / "en_US-joe-medium.onnx"
    return path if path.is_file() else None


def generate_utterances(languages: Sequence[str], per_language: int,
                        piper_voice: str | None) -> list[Utterance]:
    """Spoken questions: Piper for English (if its voice is prepared), espeak-ng otherwise."""
    return speak_texts([(f"{language}-{index + 1}", language, text) for language in languages
                        for index, text in enumerate(QUESTIONS[language][:per_language])],
                       piper_voice)


def speak_texts(texts: Sequence[tuple[str, str, str]],
                piper_voice: str | None = None, mbrola: bool = False) -> list[Utterance]:
    """(name, language, text) -> utterances at RATE: Piper's English voice for English when it
    is prepared (or given), espeak-ng for everything else (with its MBROLA voices if
    ``mbrola``)."""
    voice = None
    path = _piper_voice_path(piper_voice)
    if any(language == "en" for _, language, _ in texts) and path is not None:
        from piper import PiperVoice

        voice = PiperVoice.load(str(path))
    utterances = []
    for name, language, text in texts:
        if language == "en" and voice is not None:
            chunks = list(voice.synthesize(text))
            audio = np.concatenate([c.audio_float_array for c in chunks])
            samples = _to_rate(audio, chunks[0].sample_rate)
        else:
            samples = _espeak(language, text, mbrola)
        utterances.append(Utterance(name, samples, text, language))
    return utterances
