"""voice-latency: latency, load and language tests of a running voice service.

    voice-latency --url URL [--key KEY] [--sessions N] [--turns M] [--suite languages]
                  [--json PATH] [--plot PATH] [WAV ...]

Replays speech at real-time pace over N concurrent sessions, M turns each, and measures at the
client the **voice-to-voice** latency of every turn: from the end of the user's speech (the last
frame with sound in it) to the first byte of reply audio. It also collects the server's own
per-stage report (``response.done`` -> ``latency``). It prints p50/p90/p99/max per stage,
turns per second, errors and any turn that got no reply; ``--json`` writes every figure and
``--plot`` a PNG of the latency distribution and the stage breakdown.

Speech comes from the WAV files given (PCM16, any rate), or else from a generated set of
spoken questions (Piper for English, espeak-ng for the other languages).

``--suite languages`` plays at least five generated questions in each of en, de, fr, es, it,
nl, pt and pl, and reports per language: the ASR word error rate, whether the language was
detected correctly, whether the reply was in the same language (by its text, and by the
language the service's own Whisper hears in the reply audio), and latency.

``--load`` ramps sessions up (1, 2, 4, ... up to ``--sessions``) and reports where the p90
voice-to-voice latency crosses ``--p90-limit-ms``, and that no turn was lost.

Runs are bounded (``--max-minutes``) and, unless ``--allow-remote`` is given, only loopback
addresses are targeted.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import io
import ipaddress
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import time
import wave
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import soxr

from clients.client import (
    ReplyAudio,
    ReplyTextDelta,
    ResponseDone,
    ServerError,
    SpeechStarted,
    Transcript,
    VoiceClient,
    VoiceClientError,
    stream_file_realtime,
)

logger = logging.getLogger("voice-latency")

RATE = 24_000
STAGES = ("vad_ms", "transcript_ms", "llm_first_token_ms", "first_audio_ready_ms",
          "first_audio_sent_ms")

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


@dataclasses.dataclass
class Utterance:
    name: str
    samples: np.ndarray  # int16 mono at RATE
    text: str | None = None
    language: str | None = None


@dataclasses.dataclass
class TurnResult:
    session: int
    turn: int
    utterance: str
    status: str  # completed | cancelled | failed | no_reply
    voice_to_voice_ms: float | None = None
    server: dict[str, float] = dataclasses.field(default_factory=dict)
    transcript: str = ""
    language: str | None = None
    reply_language: str | None = None
    reply_text: str = ""
    errors: list[str] = dataclasses.field(default_factory=list)
    reply_audio: np.ndarray | None = None
    started_at: float = 0.0


def _loopback(url: str) -> bool:
    # Same rule as voice.config.is_loopback; clients may not import the service's config.
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


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


def _espeak(language: str, text: str) -> np.ndarray:
    executable = shutil.which("espeak-ng")
    if executable is None:
        raise SystemExit("error: espeak-ng is needed to generate test speech "
                         "(Debian: apt-get install espeak-ng)")
    raw = subprocess.run([executable, "-v", ESPEAK_VOICES.get(language, language), "-s", "130",
                          "-g", "2", "--stdout", text], capture_output=True, check=True).stdout
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
    voice = None
    path = _piper_voice_path(piper_voice)
    if "en" in languages and path is not None:
        from piper import PiperVoice

        voice = PiperVoice.load(str(path))
    utterances = []
    for language in languages:
        for index, text in enumerate(QUESTIONS[language][:per_language]):
            if language == "en" and voice is not None:
                chunks = list(voice.synthesize(text))
                audio = np.concatenate([c.audio_float_array for c in chunks])
                samples = _to_rate(audio, chunks[0].sample_rate)
            else:
                samples = _espeak(language, text)
            utterances.append(Utterance(f"{language}-{index + 1}", samples, text, language))
    return utterances


def reply_language(text: str) -> str | None:
    words = [w.strip(".,!?¡¿«»\"'():;").lower() for w in text.split()]
    votes = {lang: sum(w in stop for w in words) for lang, stop in STOPWORDS.items()}
    best = max(votes, key=lambda lang: votes[lang])
    return best if votes[best] > 0 else None


async def run_turn(client: VoiceClient, utterance: Utterance, session: int, turn: int,
                   timeout_s: float, keep_audio: bool) -> TurnResult:
    result = TurnResult(session, turn, utterance.name, "no_reply", started_at=time.monotonic())
    first_audio: float | None = None
    audio: list[np.ndarray] = []
    done = asyncio.Event()

    async def receive() -> None:
        nonlocal first_audio
        async for event in client.events():
            if isinstance(event, Transcript):
                result.transcript, result.language = event.text, event.language
                if not event.text:
                    done.set()  # nothing heard: the service will not reply
            elif isinstance(event, ReplyTextDelta):
                result.reply_text += event.delta
            elif isinstance(event, ReplyAudio):
                if first_audio is None:
                    first_audio = time.monotonic()
                if keep_audio:
                    audio.append(event.samples)
            elif isinstance(event, ServerError):
                result.errors.append(f"{event.code}: {event.message}")
            elif isinstance(event, ResponseDone):
                result.status = event.status
                result.server = event.latency
                result.reply_language = event.language
                done.set()
                return
            elif isinstance(event, SpeechStarted) and first_audio is not None:
                result.errors.append("speech detected during the reply (echo?)")

    receiver = asyncio.ensure_future(receive())
    speech_end = await stream_file_realtime(client, utterance.samples, RATE,
                                            trailing_silence_s=1.0)
    silence = np.zeros(RATE // 50, np.int16)
    deadline = time.monotonic() + timeout_s
    while not done.is_set() and time.monotonic() < deadline and not receiver.done():
        await client.send_audio(silence, RATE)  # a live microphone keeps sending
        await asyncio.sleep(0.02)
    receiver.cancel()
    if first_audio is not None:
        result.voice_to_voice_ms = (first_audio - speech_end) * 1000
    if audio:
        result.reply_audio = np.concatenate(audio)
    if not done.is_set():
        result.errors.append(f"no reply within {timeout_s:.0f} s")
    return result


async def run_session(url: str, key: str | None, session: int, utterances: Sequence[Utterance],
                      turns: int, timeout_s: float, keep_audio: bool,
                      deadline: float) -> list[TurnResult]:
    results: list[TurnResult] = []
    try:
        client = await VoiceClient.connect(url, api_key=key)
    except VoiceClientError as error:
        return [TurnResult(session, 0, "-", "failed", errors=[str(error)])]
    async with client:
        for turn in range(turns):
            if time.monotonic() > deadline:
                break
            utterance = utterances[(session + turn) % len(utterances)]
            results.append(await run_turn(client, utterance, session, turn, timeout_s,
                                          keep_audio))
    return results


async def run_level(url: str, key: str | None, sessions: int, turns: int,
                    utterances: Sequence[Utterance], timeout_s: float, keep_audio: bool,
                    deadline: float) -> tuple[list[TurnResult], float]:
    started = time.monotonic()
    groups = await asyncio.gather(*(
        run_session(url, key, s, utterances, turns, timeout_s, keep_audio, deadline)
        for s in range(sessions)))
    return [r for group in groups for r in group], time.monotonic() - started


async def transcribe_back(url: str, key: str | None, audio: np.ndarray) -> tuple[str, str | None]:
    """What the service's own Whisper hears in reply audio (a text-only, manual session)."""
    async with await VoiceClient.connect(url, api_key=key) as client:
        await client.configure(server_vad=False, output_modalities=["text"])
        for start in range(0, audio.size, RATE):
            await client.send_audio(audio[start:start + RATE], RATE)
        await client.commit()
        async with asyncio.timeout(60):
            async for event in client.events():
                if isinstance(event, Transcript):
                    return event.text, event.language
                if isinstance(event, ServerError):
                    return "", None
    return "", None


def word_error_rate(reference: str, hypothesis: str) -> float:
    import jiwer

    def words(text: str) -> str:
        return " ".join(re.sub(r"[^\w\s']", " ", text.lower()).split())

    hypothesis = words(hypothesis)
    return 1.0 if not hypothesis else float(jiwer.wer(words(reference), hypothesis))


def percentiles(values: Sequence[float]) -> dict[str, float]:
    array = np.asarray(values, dtype=float)
    if array.size == 0:
        return {}
    return {"p50": float(np.percentile(array, 50)), "p90": float(np.percentile(array, 90)),
            "p99": float(np.percentile(array, 99)), "max": float(array.max()),
            "n": float(array.size)}


def summarize(results: Sequence[TurnResult], elapsed_s: float) -> dict[str, Any]:
    answered = [r for r in results if r.voice_to_voice_ms is not None]
    stages = {"voice_to_voice_ms": percentiles([r.voice_to_voice_ms for r in answered
                                                if r.voice_to_voice_ms is not None])}
    for stage in STAGES:
        stages[f"server_{stage}"] = percentiles([r.server[stage] for r in results
                                                 if stage in r.server])
    return {
        "turns": len(results),
        "completed": sum(r.status == "completed" for r in results),
        "no_reply": [f"session {r.session} turn {r.turn} ({r.utterance})" for r in results
                     if r.status == "no_reply"],
        "errors": [e for r in results for e in r.errors],
        "turns_per_s": len(results) / elapsed_s if elapsed_s > 0 else 0.0,
        "elapsed_s": elapsed_s,
        "stages": stages,
    }


def print_summary(title: str, summary: dict[str, Any], out: Any = None) -> None:
    out = out or sys.stdout
    print(f"\n{title}", file=out)
    print(f"{'stage (ms)':<32}{'p50':>8}{'p90':>8}{'p99':>8}{'max':>8}{'n':>5}", file=out)
    for name, figures in summary["stages"].items():
        if figures:
            print(f"{name:<32}" + "".join(f"{figures[k]:8.0f}" for k in ("p50", "p90", "p99",
                                                                        "max"))
                  + f"{figures['n']:5.0f}", file=out)
    print(f"turns {summary['turns']}, completed {summary['completed']}, "
          f"{summary['turns_per_s']:.2f} turns/s over {summary['elapsed_s']:.0f} s, "
          f"errors {len(summary['errors'])}, no reply {len(summary['no_reply'])}", file=out)
    for line in summary["errors"][:10]:
        print(f"  error: {line}", file=out)
    for line in summary["no_reply"]:
        print(f"  no reply: {line}", file=out)


def plot(path: Path, results: Sequence[TurnResult], levels: dict[int, dict[str, Any]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    values = sorted(r.voice_to_voice_ms for r in results if r.voice_to_voice_ms is not None)
    if values:
        left.hist(values, bins=min(30, max(5, len(values) // 2)), color="#4C72B0",
                  alpha=0.85)
        for name, q, color in (("p50", 50, "#2ca02c"), ("p90", 90, "#ff7f0e"),
                               ("p99", 99, "#d62728")):
            x = float(np.percentile(values, q))
            left.axvline(x, color=color, linestyle="--", label=f"{name} {x:.0f} ms")
        left.legend()
    left.set_title(f"Voice-to-voice latency ({len(values)} turns)")
    left.set_xlabel("ms from end of speech to first reply audio")
    left.set_ylabel("turns")
    if len(levels) > 1:
        xs = sorted(levels)
        for key, label in (("p50", "p50"), ("p90", "p90")):
            right.plot(xs, [levels[x]["stages"]["voice_to_voice_ms"].get(key, np.nan)
                            for x in xs], marker="o", label=f"voice to voice {label}")
        right.set_xlabel("concurrent sessions")
        right.set_ylabel("ms")
        right.set_title("Latency under load")
        right.legend()
    else:
        medians = [np.median([r.server[s] for r in results if s in r.server] or [np.nan])
                   for s in STAGES]
        previous = 0.0
        labels = ["VAD end of speech", "final transcript", "LLM first token",
                  "first audio ready", "first audio sent"]
        for median, label in zip(medians, labels, strict=True):
            width = max(0.0, float(median) - previous) if not np.isnan(median) else 0.0
            right.barh(["median turn"], [width], left=[previous], label=label)
            previous += width
        right.set_xlabel("ms after the end of user speech (server report)")
        right.set_title("Where the time goes (median stages)")
        right.legend(loc="lower right", fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


HeardBack = dict[tuple[int, int], tuple[str, str | None]]


def language_table(results: Sequence[TurnResult], utterances: dict[str, Utterance],
                   heard_back: HeardBack) -> list[dict[str, Any]]:
    rows = []
    for language in QUESTIONS:
        turns = [r for r in results if utterances.get(r.utterance) is not None
                 and utterances[r.utterance].language == language]
        if not turns:
            continue
        wers = [word_error_rate(utterances[r.utterance].text or "", r.transcript)
                for r in turns]
        by_text = [reply_language(r.reply_text) == language for r in turns if r.reply_text]
        by_audio = [heard_back[(r.session, r.turn)][1] == language for r in turns
                    if (r.session, r.turn) in heard_back]
        latencies = [r.voice_to_voice_ms for r in turns if r.voice_to_voice_ms is not None]
        rows.append({
            "language": language, "turns": len(turns),
            "asr_wer_mean": float(np.mean(wers)),
            "language_detected": sum(r.language == language for r in turns) / len(turns),
            "reply_language_text": (sum(by_text) / len(by_text)) if by_text else None,
            "reply_language_audio": (sum(by_audio) / len(by_audio)) if by_audio else None,
            "voice_to_voice_p50_ms": float(np.median(latencies)) if latencies else None,
            "no_reply": sum(r.status == "no_reply" for r in turns),
        })
    return rows


def print_language_table(rows: Sequence[dict[str, Any]], out: Any = None) -> None:
    out = out or sys.stdout

    def pct(value: float | None) -> str:
        return "   -" if value is None else f"{value * 100:3.0f}%"

    print("\nlanguage  turns  ASR WER  lang detected  reply lang (text)  reply lang (audio)"
          "  v2v p50 ms", file=out)
    for row in rows:
        latency = row["voice_to_voice_p50_ms"]
        print(f"{row['language']:<8}{row['turns']:>7}{row['asr_wer_mean']:>9.2f}"
              f"{pct(row['language_detected']):>15}{pct(row['reply_language_text']):>19}"
              f"{pct(row['reply_language_audio']):>20}"
              f"{('-' if latency is None else f'{latency:.0f}'):>12}", file=out)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="voice-latency", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="ws://127.0.0.1:8765/v1/realtime")
    parser.add_argument("--key", default=os.environ.get("VOICE_API_KEY"))
    parser.add_argument("--sessions", type=int, default=1, help="concurrent sessions")
    parser.add_argument("--turns", type=int, default=5, help="turns per session")
    parser.add_argument("--suite", choices=["languages"], help="built-in test suite")
    parser.add_argument("--per-language", type=int, default=5,
                        help="questions per language in the language suite (at most 5)")
    parser.add_argument("--load", action="store_true",
                        help="ramp sessions 1, 2, 4, ... up to --sessions")
    parser.add_argument("--p90-limit-ms", type=float, default=5000.0,
                        help="in --load mode: the p90 voice-to-voice latency to find")
    parser.add_argument("--json", type=Path, help="write all figures as JSON here")
    parser.add_argument("--plot", type=Path, help="write a PNG plot here")
    parser.add_argument("--timeout-s", type=float, default=90.0,
                        help="give up on a turn's reply after this long")
    parser.add_argument("--max-minutes", type=float, default=20.0,
                        help="stop starting new turns after this long")
    parser.add_argument("--piper-voice", help="Piper .onnx voice for generated English speech")
    parser.add_argument("--allow-remote", action="store_true",
                        help="allow a non-loopback URL (only for your own servers)")
    parser.add_argument("wavs", nargs="*", type=Path, metavar="WAV")
    return parser


async def _main(args: argparse.Namespace) -> int:
    deadline = time.monotonic() + args.max_minutes * 60
    # Synthesis and file reading block: keep them off the event loop.
    if args.suite == "languages":
        utterances = await asyncio.to_thread(generate_utterances, list(QUESTIONS),
                                             min(5, args.per_language), args.piper_voice)
        turns, sessions = 1, 1
    elif args.wavs:
        utterances = await asyncio.to_thread(lambda: [load_wav(path) for path in args.wavs])
        turns, sessions = args.turns, args.sessions
    else:
        utterances = await asyncio.to_thread(generate_utterances, ["en"], 5, args.piper_voice)
        turns, sessions = args.turns, args.sessions
    report: dict[str, Any] = {"url": args.url, "sessions": sessions, "turns": turns}
    levels: dict[int, dict[str, Any]] = {}
    all_results: list[TurnResult] = []
    ramp = ([n for n in (1, 2, 4, 8, 16, 32, 64, 128) if n < sessions] + [sessions]
            if args.load else [sessions])
    for level in ramp:
        if args.suite == "languages":
            # Each question in a fresh session, so no turn carries another's history (a long
            # history slows the first token) or another language's conversation.
            started = time.monotonic()
            results = []
            for index, utterance in enumerate(utterances):
                results += await run_session(args.url, args.key, index, [utterance], 1,
                                             args.timeout_s, True, deadline)
            elapsed = time.monotonic() - started
        else:
            results, elapsed = await run_level(args.url, args.key, level, turns, utterances,
                                               args.timeout_s, False, deadline)
        summary = summarize(results, elapsed)
        levels[level] = summary
        all_results += results
        print_summary(f"{len(utterances)} questions, one session each"
                      if args.suite == "languages"
                      else f"{level} session(s) x {turns} turn(s)", summary)
        if time.monotonic() > deadline:
            print("stopping: --max-minutes reached")
            break
    report["levels"] = {str(k): v for k, v in levels.items()}
    if args.load:
        crossing = next((n for n in sorted(levels)
                         if levels[n]["stages"]["voice_to_voice_ms"].get("p90", 0)
                         > args.p90_limit_ms), None)
        lost = sum(len(levels[n]["no_reply"]) for n in levels)
        report["p90_crosses_limit_at_sessions"] = crossing
        report["turns_lost"] = lost
        print(f"\np90 voice-to-voice crosses {args.p90_limit_ms:.0f} ms at "
              f"{crossing if crossing else 'none of the levels run'}"
              f"{' sessions' if crossing else ''}; turns without a reply: {lost}")
    if args.suite == "languages":
        by_name = {u.name: u for u in utterances}
        heard_back = {}
        for result in all_results:
            if result.reply_audio is not None and result.reply_audio.size:
                heard_back[(result.session, result.turn)] = await transcribe_back(
                    args.url, args.key, result.reply_audio)
        rows = language_table(all_results, by_name, heard_back)
        print_language_table(rows)
        report["languages"] = rows
        report["turns_detail"] = [{
            "utterance": r.utterance, "reference": by_name[r.utterance].text,
            "transcript": r.transcript, "language": r.language, "reply": r.reply_text,
            "reply_heard_back": heard_back.get((r.session, r.turn), ("", None))[0],
            "voice_to_voice_ms": r.voice_to_voice_ms} for r in all_results
            if r.utterance in by_name]
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, ensure_ascii=False))
        print(f"wrote {args.json}")
    if args.plot:
        plot(args.plot, all_results, levels)
        print(f"wrote {args.plot}")
    failures = sum(r.status in ("no_reply", "failed") for r in all_results)
    return 1 if failures else 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if not _loopback(args.url) and not args.allow_remote:
        print(f"error: {args.url} is not a loopback address; pass --allow-remote to test "
              "your own remote server", file=sys.stderr)
        return 2
    if args.sessions < 1 or args.turns < 1:
        print("error: --sessions and --turns must be at least 1", file=sys.stderr)
        return 2
    try:
        return asyncio.run(_main(args))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
