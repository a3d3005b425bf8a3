"""Which voice speaks which language: Piper voices where installed, espeak-ng otherwise.

:class:`VoiceBook` maps a language code ("de") to a synthesizer. Piper voices are configured
per language; a language without one falls back to Debian's ``espeak-ng`` voice for it, so
every European language is spoken in its own language out of the box (robotic, clearly lower
quality; the fallback is logged once per language). Each voice is loaded once, on first use,
and shared; the book is thread-safe.
"""

from __future__ import annotations

import io
import logging
import shutil
import subprocess
import threading
import wave
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Protocol

import numpy as np

from tts.piper import PiperSynthesizer, SpeechChunk

logger = logging.getLogger(__name__)

# espeak-ng voice names where the bare language code is not the best choice.
_ESPEAK_VOICES = {"en": "en-us", "fr": "fr-fr", "pt": "pt", "nb": "nb", "no": "nb"}


class Synthesizer(Protocol):
    kind: str
    name: str
    language: str

    def synthesize(self, text: str) -> Iterator[SpeechChunk]: ...


class VoiceUnavailableError(Exception):
    pass


class EspeakSynthesizer:
    """Speech from the ``espeak-ng`` program: every European language, robotic quality."""

    kind = "espeak"

    # 130 words per minute: slower than espeak's 175 default, which whisper-base (and people)
    # understand noticeably better in German and French (measured in docs/benchmarks.md).
    def __init__(self, language: str, *, speed_wpm: int = 130,
                 executable: str | None = None) -> None:
        self.executable = executable or shutil.which("espeak-ng")
        if self.executable is None:
            raise VoiceUnavailableError(
                "espeak-ng is not installed (Debian: apt-get install espeak-ng)")
        self.language = language
        self.name = _ESPEAK_VOICES.get(language, language)
        self.speed_wpm = speed_wpm

    def synthesize(self, text: str) -> Iterator[SpeechChunk]:
        """Speak ``text`` as one chunk (espeak-ng's native 22,050 Hz). Blocks."""
        result = subprocess.run(
            [self.executable or "espeak-ng", "-v", self.name, "-s", str(self.speed_wpm),
             "--stdout", "--", text],
            capture_output=True, check=False, timeout=60,
        )
        if result.returncode != 0 or not result.stdout:
            raise VoiceUnavailableError(
                f"espeak-ng failed for voice {self.name}: {result.stderr.decode(errors='replace')}")
        with wave.open(io.BytesIO(result.stdout)) as wav:
            rate = wav.getframerate()
            samples = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2").copy()
        yield SpeechChunk(samples, rate)


def espeak_languages(executable: str | None = None) -> frozenset[str]:
    """Language codes the installed espeak-ng can speak (empty if it is not installed)."""
    executable = executable or shutil.which("espeak-ng")
    if executable is None:
        return frozenset()
    listing = subprocess.run([executable, "--voices"], capture_output=True, text=True,
                             check=False, timeout=30).stdout
    codes = set()
    for line in listing.splitlines()[1:]:
        fields = line.split()
        if len(fields) >= 2:
            codes.add(fields[1])
            codes.add(fields[1].split("-")[0])
    return frozenset(codes)


class VoiceBook:
    """Language code -> synthesizer, loading each voice once on first use."""

    def __init__(self, piper_voices: Mapping[str, Path], *, espeak_fallback: bool = True,
                 default_language: str = "en", piper_threads: int = 1) -> None:
        self._piper_paths = {lang.lower(): Path(path) for lang, path in piper_voices.items()}
        self._espeak_fallback = espeak_fallback
        self._espeak_languages = espeak_languages() if espeak_fallback else frozenset()
        self.default_language = default_language
        self._piper_threads = piper_threads
        self._loaded: dict[str, Synthesizer] = {}
        self._lock = threading.Lock()

    def languages(self) -> dict[str, str]:
        """Language -> "piper" or "espeak", for what is configured or installed."""
        kinds = {lang: "espeak" for lang in self._espeak_languages if "-" not in lang}
        kinds.update({lang: "piper" for lang in self._piper_paths})
        return kinds

    def for_language(self, language: str) -> Synthesizer:
        """The voice for ``language`` (e.g. "de" or "de_DE"); loads it on first use."""
        code = language.replace("-", "_").split("_")[0].lower()
        with self._lock:
            return self._get(code)

    def _get(self, code: str) -> Synthesizer:
        voice = self._loaded.get(code)
        if voice is None:
            voice = self._load(code)
            self._loaded[code] = voice
        return voice

    def _load(self, code: str) -> Synthesizer:
        path = self._piper_paths.get(code)
        if path is not None:
            return PiperSynthesizer(path, threads=self._piper_threads)
        if self._espeak_fallback and code in self._espeak_languages:
            logger.warning("no Piper voice for %r: falling back to espeak-ng (lower quality). "
                           "Install one with `voice models pull <voice>`", code)
            return EspeakSynthesizer(code)
        if code != self.default_language:
            logger.warning("no voice at all for %r: speaking it with the %r voice", code,
                           self.default_language)
            return self._get(self.default_language)
        raise VoiceUnavailableError(f"no voice for the default language {code!r}")
