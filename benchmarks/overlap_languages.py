"""Speech over a reply in another language: does the guard's quick look tell the user from echo?

The interruption guard (voice/interruptions.py) transcribes speech heard over a reply a few
words at a time and asks voice.overlap.judge whether it is the reply's echo or the user's.
If the quick look is pinned to the reply's language, whisper turns a user's Portuguese over
an Italian reply into Italian-ish words, some of them the reply's own, and the guard may take
the user for echo and drop the turn (seen in a soak). Letting whisper detect the language,
with hysteresis towards the reply's (``switch_margin``), may fix that, but echo then risks
being heard as another language and taken for the user (the reply interrupting itself).

This measures both sides with the real whisper model, offline, look by look as the session
takes them (one every JUDGE_STEP_MS once min_speech_ms has passed, each of the latest LOOK_S
seconds, decode time counted as media time passing; confirmed by voice.overlap.confirms):

- user: each real recording (../shared/testdata/real, 8 languages) over a reply in its own
  language and in two others; how often the looks confirm it is the user's (sure, or two
  agreeing looks) and how soon;
- echo: each language's reply spoken by the service's voices (Piper for English, espeak-ng
  otherwise) through simulated rooms (benchmarks/laptop.Room), no echo cancelling; how
  often a look would cut the reply (confirmed as the user's).

    python -m benchmarks.overlap_languages --settings pinned detect:0.2 detect:0.5 --json o.json

``+loose`` (e.g. ``detect:0.2+loose``) keeps what whisper's no-speech and low-confidence rules
would drop: most early looks at a short stretch of speech hear "nothing" that way.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import statistics
import time
from pathlib import Path

import numpy as np
import soundfile
import soxr

from asr.transcript import TranscribeOptions
from asr.whisper import Transcriber, TranscriberConfig
from benchmarks.laptop import Room
from voice.interruptions import JUDGE_STEP_MS, JUDGE_TOKENS, LOOK_S
from voice.models import ModelKind, ModelStore, default_model_names
from voice.overlap import Judgement, confirms, follows, judge, loudness
from voice.protocol.session_config import Interruption

REAL = Path(__file__).resolve().parents[2] / "shared" / "testdata" / "real"
ASR_RATE = 16_000
ROOM_RATE = 24_000  # Room works at the client's rate
# What the assistant might be saying when the user speaks (about 8 s of speech each).
REPLIES = {
    "en": "Berlin is the capital of Germany. It has about 3.7 million people, many museums "
          "and a long history. The wall fell in 1989, and the city grew together again.",
    "de": "Berlin ist die Hauptstadt von Deutschland. Dort leben etwa 3,7 Millionen Menschen, "
          "es gibt viele Museen und eine lange Geschichte. Die Mauer fiel im Jahr 1989.",
    "fr": "Paris est la capitale de la France. La ville compte environ deux millions "
          "d'habitants, de nombreux musées et une longue histoire au bord de la Seine.",
    "es": "Madrid es la capital de España. Tiene unos tres millones de habitantes, muchos "
          "museos y una historia larga. El parque del Retiro es muy famoso.",
    "it": "Roma è la capitale d'Italia. Ha circa tre milioni di abitanti, molti musei e una "
          "storia lunghissima. Il Colosseo è il monumento più famoso della città.",
    "nl": "Amsterdam is de hoofdstad van Nederland. Er wonen ongeveer negenhonderdduizend "
          "mensen, er zijn veel musea en grachten, en de geschiedenis is lang.",
    "pt": "Lisboa é a capital de Portugal. Tem cerca de meio milhão de habitantes, muitos "
          "museus e uma longa história. O rio Tejo passa pela cidade.",
    "pl": "Warszawa jest stolicą Polski. Mieszka tam około 1,8 miliona ludzi, jest wiele "
          "muzeów i długa historia. Stare Miasto zostało odbudowane po wojnie.",
}
LANGUAGES = tuple(REPLIES)


@dataclasses.dataclass(frozen=True)
class Setting:
    name: str
    pinned: bool
    margin: float = 0.2
    loose: bool = False  # keep what whisper's no-speech and confidence rules would drop

    def options(self, reply_language: str) -> TranscribeOptions:
        options = TranscribeOptions(max_new_tokens=JUDGE_TOKENS, retry_full_window=False)
        if self.loose:
            options = dataclasses.replace(options, no_speech_threshold=1.0,
                                          log_prob_threshold=-100.0)
        if self.pinned:
            return dataclasses.replace(options, language=reply_language)
        return dataclasses.replace(options, previous_language=reply_language,
                                   switch_margin=self.margin)


def parse_setting(text: str) -> Setting:
    """``pinned`` (the reply's language) or ``detect[:MARGIN]`` (hysteresis towards it),
    either with ``+loose``."""
    base, plus, modifier = text.partition("+")
    if plus and modifier != "loose":
        raise argparse.ArgumentTypeError(f"{text!r}: the only modifier is +loose")
    if base == "pinned":
        return Setting(text, pinned=True, loose=bool(plus))
    kind, _, margin = base.partition(":")
    if kind != "detect":
        raise argparse.ArgumentTypeError(f"{text!r}: use pinned or detect[:MARGIN][+loose]")
    return Setting(text, pinned=False, margin=float(margin or 0.2), loose=bool(plus))


@dataclasses.dataclass
class Overlap:
    """One stretch of speech over a reply, judged look by look."""

    kind: str  # "user" or "echo"
    language: str  # of the speech (the user's, or the echoed reply's)
    reply_language: str
    cut_ms: int | None = None  # media time from the onset to the look that confirmed it
    looks: int = 0
    verdicts: list[str] = dataclasses.field(default_factory=list)
    decode_ms: list[float] = dataclasses.field(default_factory=list)


def confirm(transcriber: Transcriber, setting: Setting, overlap: Overlap, audio: np.ndarray,
            spoken: str, contour: np.ndarray | None = None, onset: int = 0) -> Overlap:
    """Look at ``audio`` (16 kHz, the speech from its onset) as the session does until a look
    confirms it is the user's or the audio ends. ``contour`` is the played reply's loudness,
    None when the reply's sound is not in the audio; ``audio`` began ``onset`` samples after
    the reply began playing."""
    languages = tuple(sorted({overlap.language, overlap.reply_language}))
    now = Interruption().min_speech_ms * ASR_RATE // 1000
    previous: Judgement | None = None
    while now <= audio.size:
        heard = audio[max(0, now - LOOK_S * ASR_RATE):now]
        started = time.perf_counter()
        transcript = transcriber.transcribe(heard, setting.options(overlap.reply_language))
        decode_s = time.perf_counter() - started
        overlap.decode_ms.append(decode_s * 1000)
        similarity = 0.0
        if contour is not None:
            first = onset + now - heard.size
            similarity = follows(loudness(heard, ASR_RATE), contour, first * 100 // ASR_RATE)
        judgement = judge(transcript.text, spoken,
                          tuple(sorted({*languages, transcript.language})),
                          follows_reply=similarity)
        overlap.looks += 1
        overlap.verdicts.append(f"{transcript.language}:{judgement.verdict.value}"
                                f"{'' if judgement.sure else '?'}:"
                                f"{transcript.text or transcript.rejected}")
        heard_ms = now * 1000 // ASR_RATE
        if confirms(judgement, previous, heard_ms):
            overlap.cut_ms = heard_ms
            return overlap
        previous = judgement
        now += int((max(decode_s, JUDGE_STEP_MS / 1000)) * ASR_RATE)
    return overlap


def real_speech(name: str) -> np.ndarray:
    audio, rate = soundfile.read(REAL / name, dtype="float32")
    audio = audio.mean(axis=1) if audio.ndim > 1 else audio
    audio = soxr.resample(audio, rate, ASR_RATE).astype(np.float32)
    onset = int(np.argmax(np.abs(audio) > 0.05 * float(np.abs(audio).max())))
    return audio[max(0, onset - ASR_RATE // 20):]


def reply_audio(language: str) -> np.ndarray:
    from tts.voices import VoiceBook
    from voice.config import ServiceConfig
    from voice.model_choice import piper_voices
    store = ModelStore(progress=False)
    book = VoiceBook(piper_voices(ServiceConfig(), store, default_model_names()[ModelKind.TTS]))
    chunks = list(book.for_language(language).synthesize(REPLIES[language]))
    audio = np.concatenate([c.samples for c in chunks]).astype(np.float32) / 32768
    return soxr.resample(audio, chunks[0].sample_rate, ROOM_RATE).astype(np.float32)


def through_room(audio: np.ndarray, room: Room) -> np.ndarray:
    frame = ROOM_RATE // 50
    padded = np.concatenate([audio, np.zeros(ROOM_RATE // 2, np.float32)])
    padded = padded[:padded.size // frame * frame]
    heard = np.concatenate([room.echo(piece) for piece in padded.reshape(-1, frame)])
    return soxr.resample(heard, ROOM_RATE, ASR_RATE).astype(np.float32)


def summarize(setting: Setting, overlaps: list[Overlap]) -> dict[str, object]:
    users = [o for o in overlaps if o.kind == "user"]
    cross = [o for o in users if o.language != o.reply_language]
    same = [o for o in users if o.language == o.reply_language]
    echoes = [o for o in overlaps if o.kind == "echo"]

    def cut(group: list[Overlap]) -> str:
        times = [o.cut_ms for o in group if o.cut_ms is not None]
        median = f", median {statistics.median(times):.0f} ms" if times else ""
        return f"{len(times)}/{len(group)} confirmed{median}"

    decode = sorted(ms for o in overlaps for ms in o.decode_ms)
    figures = {"setting": setting.name, "user_other_language": cut(cross),
               "user_same_language": cut(same), "echo_cut": cut(echoes),
               "decode_ms_p50": round(decode[len(decode) // 2]),
               "decode_ms_p90": round(decode[int(len(decode) * 0.9)])}
    print(f"{setting.name:>12}  user over another language's reply: "
          f"{figures['user_other_language']}"
          f"\n{'':>12}  user over a reply in their language: {figures['user_same_language']}"
          f"\n{'':>12}  echo cut the reply: {figures['echo_cut']}"
          f"\n{'':>12}  look decode p50/p90: {figures['decode_ms_p50']}/"
          f"{figures['decode_ms_p90']} ms", flush=True)
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--settings", nargs="+", type=parse_setting,
                        default=[parse_setting(s) for s in ("pinned", "detect:0.2",
                                                            "detect:0.5")])
    parser.add_argument("--rooms", type=int, default=3, help="simulated rooms per language")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", type=Path, help="write every look here")
    args = parser.parse_args()

    store = ModelStore(progress=False)
    name = default_model_names()[ModelKind.ASR]
    transcriber = Transcriber(TranscriberConfig(str(store.resolve(name, ModelKind.ASR)),
                                                device="cpu"))
    refs = json.loads((REAL / "refs.json").read_text())
    rng = random.Random(args.seed)
    rooms = [Room(rng.randint(20, 200), rng.uniform(-20, -6), rng.choice((30, 50, 70)))
             for _ in range(args.rooms)]
    echoes = {language: reply_audio(language) for language in LANGUAGES}
    report: list[dict[str, object]] = []
    for setting in args.settings:
        overlaps: list[Overlap] = []
        for file, ref in sorted(refs.items()):
            speech = real_speech(file)
            here = LANGUAGES.index(ref["lang"])
            for reply_language in (ref["lang"], LANGUAGES[(here + 1) % len(LANGUAGES)],
                                   LANGUAGES[(here + 3) % len(LANGUAGES)]):
                overlaps.append(confirm(transcriber, setting,
                                        Overlap("user", ref["lang"], reply_language), speech,
                                        REPLIES[reply_language], None))
        for language, played in echoes.items():
            contour = loudness(soxr.resample(played, ROOM_RATE, ASR_RATE), ASR_RATE)
            for room in rooms:
                room.tail[:] = 0
                heard = through_room(played, room)
                onset = int(np.argmax(np.abs(heard) > 0.01))
                overlaps.append(confirm(transcriber, setting,
                                        Overlap("echo", language, language), heard[onset:],
                                        REPLIES[language], contour, onset))
        report.append({**summarize(setting, overlaps),
                       "overlaps": [dataclasses.asdict(o) for o in overlaps]})
    if args.json:
        args.json.write_text(json.dumps(report, ensure_ascii=False, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
