"""How often turn detection cuts a sentence in half, against how long it waits at the end.

Every real recording in ``../shared/testdata/real/`` is one sentence, so every turn end before
its last word is a cut. Each clip is played twice: as recorded (natural pauses) and with one
silence of 400-800 ms inserted at a word boundary inside the sentence (word times from
faster-whisper's word timestamps; the silence is the clip's own quietest stretch, tiled, so the
room tone goes on). Each version goes through the service's own turn machinery in media time:
the real Silero VAD (:class:`asr.vad.StreamingVad`) configured as a session configures it,
:class:`voice.turns.TurnTaker`, and for ``semantic_vad`` the real Smart Turn model at every
pause. Nothing here depends on the machine's speed except the reported model times.

Per language and setting it reports the cut rate (clips whose first turn ended before the last
word) and the median end-of-turn delay (end of the last word -> the turn ended, in media time;
add the turn model's time, reported separately, for the wall-clock delay).

    .venv/bin/python -m benchmarks.turn_cuts [--clips ../shared/testdata/real] [--json out.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from asr.vad import SAMPLE_RATE, SileroVadModel, StreamingVad, VadConfig, VadEventType
from voice.turn_effects import EndAfterSilence, UserPaused
from voice.turns import EAGERNESS, PAUSE_MS, TurnPolicy, TurnTaker

DEFAULT_CLIPS = Path(__file__).resolve().parents[2] / "shared" / "testdata" / "real"
TRAILING_S = 5.0  # silence after the clip: every setting ends the turn within it
FRAME = 320  # 20 ms frames, as a microphone sends


@dataclasses.dataclass(frozen=True)
class Setting:
    name: str
    vad: VadConfig
    complete_at: float | None  # semantic_vad's completion threshold; None: server_vad
    confirm_ms: int = 0


def settings() -> list[Setting]:
    found = [Setting("server_vad 500 ms", VadConfig(silence_duration_ms=500, tail_ms=200,
                                                    pause_ms=PAUSE_MS), None)]
    for eagerness in ("high", "auto", "low"):
        wait = EAGERNESS[eagerness]
        found.append(Setting(f"semantic_vad {eagerness}",
                             VadConfig(silence_duration_ms=wait.max_wait_ms, tail_ms=200,
                                       pause_ms=PAUSE_MS, recheck_ms=wait.confirm_ms),
                             wait.complete_at, wait.confirm_ms))
    return found


@dataclasses.dataclass
class Outcome:
    cut: bool
    delay_ms: float | None  # end of the last word -> end of the turn (media time)
    model_ms: list[float]


def play(audio: np.ndarray, last_word_end: int, setting: Setting, vad_model: SileroVadModel,
         turn_model: Callable[[np.ndarray], float] | None) -> Outcome:
    """Run ``audio`` (16 kHz float32) through the VAD and the turn-taker as a session does."""
    vad = StreamingVad(vad_model, setting.vad)
    turns = TurnTaker(TurnPolicy(complete_at=setting.complete_at,
                                 confirm_ms=setting.confirm_ms))
    model_ms: list[float] = []
    ends: list[int] = []
    for start in range(0, audio.size, FRAME):
        frame = audio[start:start + FRAME]
        turns.audio(frame.size)
        for event in vad.feed(frame):
            if event.type is VadEventType.SPEECH_STARTED:
                turns.speech_started(event.start_sample)
            elif event.type is VadEventType.SPEECH_RESUMED:
                turns.speech_resumed(event.end_sample or 0)
            elif event.type is VadEventType.SPEECH_STOPPED:
                turns.speech_stopped(event.end_sample or 0)
                ends.append(turns.now)
            elif event.type is VadEventType.SPEECH_PAUSED:
                assert event.end_sample is not None and event.audio is not None
                effects = turns.speech_paused(event.end_sample)
                if turn_model is None or not any(
                        isinstance(e, UserPaused) and e.score for e in effects):
                    continue
                started = time.perf_counter()
                heard = vad.current_utterance() if event.reason == "recheck" else event.audio
                probability = turn_model(heard)
                model_ms.append((time.perf_counter() - started) * 1000)
                for effect in turns.turn_end_scored(event.end_sample, probability):
                    if isinstance(effect, EndAfterSilence):
                        vad.end_after(effect.silence_ms)
    if not ends:
        return Outcome(False, None, model_ms)
    # A turn that ended before the last word (with margin for the VAD's 32 ms windows) cut it.
    cut = ends[0] < last_word_end - SAMPLE_RATE // 10
    final = next((end for end in ends if end >= last_word_end - SAMPLE_RATE // 10), None)
    delay = None if final is None else (final - last_word_end) * 1000 / SAMPLE_RATE
    return Outcome(cut, delay, model_ms)


def room_tone(audio: np.ndarray, seconds: float) -> np.ndarray:
    """``seconds`` of the clip's quietest 100 ms, tiled (the recording's own background)."""
    step = SAMPLE_RATE // 10
    windows = [audio[i:i + step] for i in range(0, audio.size - step, step // 2)]
    quiet = min(windows, key=lambda w: float(np.sqrt(np.mean(w**2))))
    count = int(seconds * SAMPLE_RATE)
    return np.resize(quiet, count).astype(np.float32)


def with_pause(audio: np.ndarray, words: Sequence[tuple[float, float]],
               rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """The clip with a 400-800 ms room-tone pause at a word boundary in its middle third."""
    middle = [i for i in range(1, len(words)) if len(words) / 3 <= i <= 2 * len(words) / 3]
    boundary = int(rng.choice(middle)) if middle else len(words) // 2
    gap = float(rng.uniform(0.4, 0.8))
    # Cut between the words: halfway through the gap the recording already has there.
    at = int((words[boundary - 1][1] + words[boundary][0]) / 2 * SAMPLE_RATE)
    return np.concatenate([audio[:at], room_tone(audio, gap), audio[at:]]), gap


def load(folder: Path, languages: Sequence[str] | None) -> list[tuple[str, str, np.ndarray]]:
    from faster_whisper.audio import decode_audio

    refs = json.loads((folder / "refs.json").read_text())
    return [(name, ref["lang"], decode_audio(str(folder / name), sampling_rate=SAMPLE_RATE))
            for name, ref in sorted(refs.items())
            if not languages or ref["lang"] in languages]


def word_times(clips: list[tuple[str, str, np.ndarray]]) -> dict[str, list[tuple[float, float]]]:
    """Word start/end seconds of each clip (faster-whisper base, word timestamps)."""
    from faster_whisper import WhisperModel

    from voice.models import ModelKind, ModelStore

    path = ModelStore(progress=False).resolve("whisper-base", ModelKind.ASR)
    model = WhisperModel(str(path), device="cpu", compute_type="int8")
    times = {}
    for name, language, audio in clips:
        segments, _ = model.transcribe(audio, language=language, word_timestamps=True,
                                       vad_filter=False, beam_size=5)
        times[name] = [(w.start, w.end) for s in segments for w in (s.words or [])]
    return times


def speech_end(audio: np.ndarray, vad_model: SileroVadModel) -> int:
    """The end of the clip's last speech window by the VAD alone (the true end of the turn)."""
    vad = StreamingVad(vad_model, VadConfig(silence_duration_ms=3000, tail_ms=0))
    end = 0
    for event in vad.feed(np.concatenate([audio, np.zeros(4 * SAMPLE_RATE, np.float32)])):
        if event.type is VadEventType.SPEECH_STOPPED and event.end_sample is not None:
            end = event.end_sample
    return end


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=Path, default=DEFAULT_CLIPS)
    parser.add_argument("--languages", help="comma-separated, e.g. de,fr (default: all)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)

    from asr.turn import SmartTurnModel
    from voice.models import ModelKind, ModelStore, default_model_names

    clips = load(args.clips, args.languages.split(",") if args.languages else None)
    if not clips:
        raise SystemExit(f"error: no clips in {args.clips}")
    vad_model = SileroVadModel()
    turn_model = SmartTurnModel(ModelStore(progress=False).resolve(
        default_model_names()[ModelKind.TURN], ModelKind.TURN))
    print(f"{len(clips)} clips; word timestamps...", file=sys.stderr)
    words = word_times(clips)
    rng = np.random.default_rng(args.seed)
    rows: list[dict[str, object]] = []
    for name, language, audio in clips:
        paused, gap = with_pause(audio, words[name], rng) if len(words[name]) >= 3 else (None, 0)
        for version, clip in (("natural", audio), ("pause", paused)):
            if clip is None:
                continue
            clip = np.concatenate([clip, room_tone(audio, TRAILING_S)])
            last = speech_end(clip, vad_model)
            for setting in settings():
                model = turn_model.probability if setting.complete_at is not None else None
                outcome = play(clip, last, setting, vad_model, model)
                rows.append({"clip": name, "language": language, "version": version,
                             "gap_s": round(gap, 3) if version == "pause" else None,
                             "setting": setting.name, "cut": outcome.cut,
                             "delay_ms": outcome.delay_ms, "model_ms": outcome.model_ms})
        print(f"  {name} done", file=sys.stderr)
    print_report(rows)
    if args.json:
        args.json.write_text(json.dumps({"machine": machine(), "rows": rows}, indent=1))
    return 0


def machine() -> str:
    return f"{platform.processor() or platform.machine()}, {platform.system()}"


def print_report(rows: list[dict[str, object]]) -> None:
    names = [s.name for s in settings()]
    languages = sorted({str(r["language"]) for r in rows})
    for version in ("natural", "pause"):
        label = ("as recorded" if version == "natural"
                 else "with a 400-800 ms pause inserted at a word boundary")
        print(f"\n### Clips {label}: cut rate / median end-of-turn delay (ms)\n")
        print("| language | clips | " + " | ".join(names) + " |")
        print("|---|---:|" + "---:|" * len(names))
        for language in [*languages, "all"]:
            cells = []
            count = 0
            for name in names:
                chosen = [r for r in rows if r["version"] == version and r["setting"] == name
                          and (language == "all" or r["language"] == language)]
                count = len(chosen)
                cuts = sum(1 for r in chosen if r["cut"])
                delays = [float(r["delay_ms"]) for r in chosen  # type: ignore[arg-type]
                          if r["delay_ms"] is not None]
                median = f"{statistics.median(delays):.0f}" if delays else "-"
                cells.append(f"{cuts}/{count} / {median}")
            print(f"| {language} | {count} | " + " | ".join(cells) + " |")
    model_ms = [m for r in rows for m in r["model_ms"]]  # type: ignore[attr-defined]
    if model_ms:
        print(f"\nSmart Turn per call: p50 {statistics.median(model_ms):.0f} ms, "
              f"p90 {float(np.percentile(model_ms, 90)):.0f} ms ({len(model_ms)} calls)")


if __name__ == "__main__":
    sys.exit(main())
