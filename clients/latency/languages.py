"""The language suite's figures: ASR word error rate, language detected, language of the reply
(by its words, and by what the service's own Whisper hears in the reply audio)."""

from __future__ import annotations

import asyncio
import re
import sys
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from clients.client import VoiceClient
from clients.latency.accounting import Turn
from clients.latency.speech import QUESTIONS, RATE, Utterance
from voice.protocol import Error, TranscriptCompleted

# Frequent short words, to tell which language a reply was written in.
STOPWORDS: dict[str, frozenset[str]] = {
    "en": frozenset("the is and a an of to in it you for that i are this with your be".split()),
    "de": frozenset("der die das ist und nicht ein eine ich sie es zu mit von den auf für wir "
                    "du dir ihnen gerne sind".split()),
    "fr": frozenset("le la les est et un une de des je vous il en pour que qui du au à c'est "
                    "sont votre".split()),
    "es": frozenset("el la los las es y un una de que en por para con del se está son su "
                    "muy".split()),
    "it": frozenset("il lo la le è e un una di che in per con del della sono non si mi "
                    "molto".split()),
    "nl": frozenset("de het een is en van in dat niet ik je met voor op zijn er wat".split()),
    "pt": frozenset("o a os as é e um uma de que em para com do da não se você está "
                    "muito".split()),
    "pl": frozenset("i w na jest nie się z do że to jak o co ale są dla".split()),
}

HeardBack = dict[tuple[int, int], tuple[str, str | None]]  # (session, turn) -> text, language


def reply_language(text: str) -> str | None:
    words = [w.strip(".,!?¡¿«»\"'():;").lower() for w in text.split()]
    votes = {lang: sum(w in stop for w in words) for lang, stop in STOPWORDS.items()}
    best = max(votes, key=lambda lang: votes[lang])
    return best if votes[best] > 0 else None


def word_error_rate(reference: str, hypothesis: str) -> float:
    import jiwer

    def words(text: str) -> str:
        return " ".join(re.sub(r"[^\w\s']", " ", text.lower()).split())

    hypothesis = words(hypothesis)
    return 1.0 if not hypothesis else float(jiwer.wer(words(reference), hypothesis))


# How far ahead of real time the reply audio is sent back: the service drops input that runs
# more than 4 s ahead (input_audio_too_fast), so a long reply is paced after this burst.
HEAR_BACK_BURST_S = 2.0


async def transcribe_back(url: str, key: str | None, audio: np.ndarray) -> tuple[str, str | None]:
    """What the service's own Whisper hears in reply audio (a text-only, manual session)."""
    async with await VoiceClient.connect(url, api_key=key) as client:
        await client.configure(server_vad=False, output_modalities=["text"])
        started = time.monotonic()
        for start in range(0, audio.size, RATE):
            ahead = start / RATE - (time.monotonic() - started)
            if ahead > HEAR_BACK_BURST_S:
                await asyncio.sleep(ahead - HEAR_BACK_BURST_S)
            await client.send_audio(audio[start:start + RATE], RATE)
        await client.commit()
        async with asyncio.timeout(60):
            async for event in client.events():
                if isinstance(event, TranscriptCompleted):
                    return event.transcript, event.language
                if isinstance(event, Error):
                    return "", None
    return "", None


def language_table(turns: Sequence[Turn], utterances: dict[str, Utterance],
                   heard_back: HeardBack) -> list[dict[str, Any]]:
    rows = []
    for language in QUESTIONS:
        ours = [t for t in turns if utterances.get(t.clip) is not None
                and utterances[t.clip].language == language]
        if not ours:
            continue
        wers = [word_error_rate(utterances[t.clip].text or "", t.transcript) for t in ours]
        by_text = [reply_language(t.reply_text) == language for t in ours if t.reply_text]
        by_audio = [heard_back[(t.session, t.index)][1] == language for t in ours
                    if (t.session, t.index) in heard_back]
        latencies = [t.voice_to_voice_ms for t in ours if t.voice_to_voice_ms is not None]
        rows.append({
            "language": language, "turns": len(ours),
            "asr_wer_mean": float(np.mean(wers)),
            "language_detected": sum(t.language == language for t in ours) / len(ours),
            "reply_language_text": (sum(by_text) / len(by_text)) if by_text else None,
            "reply_language_audio": (sum(by_audio) / len(by_audio)) if by_audio else None,
            "voice_to_voice_p50_ms": float(np.median(latencies)) if latencies else None,
            "lost": sum(t.lost for t in ours),
        })
    return rows


def print_language_table(rows: Sequence[dict[str, Any]], out: Any = None) -> None:
    out = out or sys.stdout

    def pct(value: float | None) -> str:
        return "   -" if value is None else f"{value * 100:3.0f}%"

    print("\nlanguage  turns  ASR WER  lang detected  reply lang (text)  reply lang (audio)"
          "  v2v p50 ms  lost", file=out)
    for row in rows:
        latency = row["voice_to_voice_p50_ms"]
        print(f"{row['language']:<8}{row['turns']:>7}{row['asr_wer_mean']:>9.2f}"
              f"{pct(row['language_detected']):>15}{pct(row['reply_language_text']):>19}"
              f"{pct(row['reply_language_audio']):>20}"
              f"{('-' if latency is None else f'{latency:.0f}'):>12}{row['lost']:>6}", file=out)
