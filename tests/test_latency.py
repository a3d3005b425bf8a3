"""voice-latency against a real server: table, JSON, plot, load ramp, limits."""

from __future__ import annotations

import asyncio
import json
import time
import wave
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from clients import latency
from clients.latency import server_load
from clients.latency.runner import run_session
from clients.latency.speech import Utterance
from tests.fakes import FakeChat, FakeTranscriber, fake_engines
from tests.live import running_server, url_of
from voice.config import ServiceConfig
from voice.server import VoiceServer
from voice.session import SessionDefaults


@pytest.fixture(scope="module")
def fake_server() -> Iterator[VoiceServer]:
    engines = fake_engines(FakeTranscriber([("What is the time?", "en")] * 100, delay_s=0.02),
                           FakeChat(["It is noon. Enjoy your lunch."] * 100, delay_s=0.01))
    with running_server(ServiceConfig(port=0), engines,
                        SessionDefaults(partial_interval_s=0)) as server:
        yield server


def tone(seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * 16000)) / 16000
    return (np.sin(2 * np.pi * 220 * t) * 0.5 * 32767).astype("<i2")


@pytest.fixture(scope="module")
def tone_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("wav") / "tone.wav"
    samples = tone(0.8)
    with wave.open(str(path), "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(16000)
        writer.writeframes(samples.tobytes())
    return path


def test_turns_are_measured_and_reported_as_table_json_and_plot(
    fake_server: VoiceServer, tone_wav: Path, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    report, figure = tmp_path / "report.json", tmp_path / "latency.png"
    code = latency.main(["--url", url_of(fake_server), "--sessions", "2", "--turns", "2",
                         "--json", str(report), "--plot", str(figure), str(tone_wav)])
    assert code == 0
    out = capsys.readouterr().out
    assert "voice_to_voice_ms" in out and "server_first_audio_sent_ms" in out
    assert "turns 4, completed 4" in out and "no reply 0" in out
    data = json.loads(report.read_text())
    stages = data["levels"]["2"]["stages"]
    assert stages["voice_to_voice_ms"]["n"] == 4
    # The fake VAD needs 500 ms of silence, so no reply can come sooner than that.
    assert 450 < stages["voice_to_voice_ms"]["p50"] < 5000
    assert set(stages["voice_to_voice_ms"]) == {"p50", "p90", "p99", "max", "n"}
    # Every turn on its own too, with the server's stages and when speech_stopped arrived.
    records = data["turn_records"]
    assert sorted((r["session"], r["turn"]) for r in records) == [(0, 0), (0, 1), (1, 0),
                                                                   (1, 1)]
    for record in records:
        assert record["outcome"] == "completed" and record["voice_to_voice_ms"] > 0
        assert "first_audio_sent_ms" in record["server_latency"]
        assert 0 < record["speech_stopped_ms"] < record["voice_to_voice_ms"]
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_load_mode_ramps_sessions_and_counts_lost_turns(
    fake_server: VoiceServer, tone_wav: Path, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    report = tmp_path / "load.json"
    code = latency.main(["--url", url_of(fake_server), "--load", "--sessions", "4",
                         "--turns", "1", "--p90-limit-ms", "100", "--json", str(report),
                         str(tone_wav)])
    assert code == 0
    data = json.loads(report.read_text())
    assert list(data["levels"]) == ["1", "2", "4"]
    assert data["turns_lost"] == 0
    assert data["p90_crosses_limit_at_sessions"] == 1  # every turn is slower than 100 ms
    out = capsys.readouterr().out
    assert "crosses 100 ms at 1 sessions" in out
    # How busy the server was at each level, read from its /metrics before and after.
    for level in data["levels"].values():
        assert level["server"]["server_cpu_cores"] >= 0
        assert level["server"]["engine_calls_running"]["fake-llm"] > 0  # every turn was answered
    assert out.count("server CPU") == 3


def test_server_load_is_the_difference_of_two_readings_over_the_time_between() -> None:
    before = {"cpu_s": 10.0, "engine:asr": 1.0, "engine:llm": 4.0}
    after = {"cpu_s": 30.0, "engine:asr": 3.0, "engine:llm": 24.0, "engine:tts": 0.5}
    figures = server_load.busy(before, after, elapsed_s=10.0)
    assert figures == {"server_cpu_cores": 2.0,
                       "engine_calls_running": {"asr": 0.2, "llm": 2.0, "tts": 0.05}}
    assert "2.00 cores busy on average of the 2 here" in server_load.describe(figures, 2)
    assert server_load.busy(None, after, 10.0) == {}  # no reading before: no figures


def test_a_server_without_metrics_gives_no_load_figures_not_an_error() -> None:
    assert server_load.metrics_url("wss://example.org:8443/v1/realtime?x=1") \
        == "https://example.org:8443/metrics"
    assert server_load.read("ws://127.0.0.1:9/v1/realtime", timeout_s=1.0) is None


def test_only_loopback_is_targeted_unless_asked(capsys: pytest.CaptureFixture[str]) -> None:
    assert latency.main(["--url", "ws://192.0.2.10:8765/v1/realtime"]) == 2
    assert "not a loopback address" in capsys.readouterr().err


def test_a_turn_without_a_reply_is_reported_and_fails_the_run(
    tone_wav: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    engines = fake_engines(FakeTranscriber([("", "en")] * 10), FakeChat([]))
    with running_server(ServiceConfig(port=0), engines,
                        SessionDefaults(partial_interval_s=0)) as server:
        code = latency.main(["--url", url_of(server), "--turns", "1", "--timeout-s", "5",
                             str(tone_wav)])
    assert code == 1
    assert "no reply: session 0 turn 0 (tone.wav)" in capsys.readouterr().out


def write_wav(path: Path, samples: np.ndarray, rate: int = 16000) -> Path:
    with wave.open(str(path), "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(rate)
        writer.writeframes(samples.astype("<i2").tobytes())
    return path


@pytest.mark.parametrize(("second_half", "code", "counts"), [
    ("in Berlin?", 0, "completed 1, cancelled 0, failed 0, no reply 0: lost 0"),
    ("", 1, "completed 0, cancelled 1, failed 0, no reply 0: lost 1"),
])
def test_a_clip_heard_in_two_halves_is_one_turn_lost_only_without_a_completed_reply(
    second_half: str, code: int, counts: str, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # A pause inside the clip: the server answers the first half, the second half cancels
    # that reply (turn_detected) and gets a reply of its own, unless it is heard as nothing.
    t = np.arange(int(0.8 * 16000)) / 16000
    tone = np.sin(2 * np.pi * 220 * t) * 0.5 * 32767
    clip = write_wav(tmp_path / "paused.wav", np.concatenate([tone, np.zeros(16000), tone]))
    # Replies slow enough to be still under way when the second half begins.
    engines = fake_engines(FakeTranscriber([("What is the time", "en"), (second_half, "en")]),
                           FakeChat(["It is noon here, enjoy your lunch and the sun."] * 2,
                                    delay_s=0.3))
    report = tmp_path / "report.json"
    # A server that answers nothing to speech it could not make out (by default it would ask
    # the user to repeat a second or more of it: tests/test_ask_again.py).
    with running_server(ServiceConfig(port=0), engines,
                        SessionDefaults(partial_interval_s=0,
                                        ask_again_min_speech_s=0)) as server:
        assert latency.main(["--url", url_of(server), "--turns", "1", "--timeout-s", "30",
                             "--json", str(report), str(clip)]) == code
    out = capsys.readouterr().out
    assert f"turns 1, {counts}" in out
    level = json.loads(report.read_text())["levels"]["1"]
    assert level["responses_cancelled"] == {"turn_detected": 1}
    if code:
        assert "cancelled turns by reason: turn_detected 1" in out
        assert "cancelled: session 0 turn 0 (paused.wav): turn_detected" in out
    else:
        assert level["stages"]["voice_to_voice_ms"]["n"] == 1


def test_reply_language_is_read_from_the_words() -> None:
    assert latency.reply_language("Die Hauptstadt ist Berlin und sie ist schön.") == "de"
    assert latency.reply_language("La capitale est Paris et elle est belle.") == "fr"
    assert latency.reply_language("12345") is None


def test_generated_questions_cover_every_suite_language() -> None:
    assert set(latency.QUESTIONS) == {"en", "de", "fr", "es", "it", "nl", "pt", "pl"}
    assert all(len(q) >= 5 for q in latency.QUESTIONS.values())
    espeak = latency.generate_utterances(["pl"], 1, None)
    assert espeak[0].language == "pl" and espeak[0].samples.dtype == np.int16
    assert espeak[0].samples.size > latency.RATE  # over a second of speech


@pytest.mark.real_models
def test_the_language_suite_runs_end_to_end_on_the_real_models(
    prepared_model, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    """One question per language through the real service (about a minute on 2 cores)."""
    from voice.__main__ import build_engines
    from voice.models import ModelStore
    from voice.session_settings import session_defaults

    for name in ("whisper-base", "qwen2.5-coder-0.5b-instruct", "en_US-joe-medium"):
        prepared_model(name)
    config = ServiceConfig(port=0, max_output_tokens=40, partial_interval_s=0)
    engines, names = build_engines(config, ModelStore(progress=False))
    report = tmp_path / "languages.json"
    with running_server(config, engines, session_defaults(config, names), names) as server:
        code = latency.main(["--url", url_of(server), "--suite", "languages",
                             "--per-language", "1", "--json", str(report)])
    out = capsys.readouterr().out
    assert "language  turns  ASR WER" in out
    rows = {row["language"]: row for row in json.loads(report.read_text())["languages"]}
    assert set(rows) == set(latency.QUESTIONS)
    assert rows["en"]["language_detected"] == 1.0 and rows["en"]["asr_wer_mean"] <= 0.2
    assert rows["en"]["reply_language_text"] == 1.0
    assert rows["en"]["reply_language_audio"] == 1.0
    assert code in (0, 1)  # a language whose speech is not understood gets no reply


@pytest.mark.parametrize("pause_s", [0.5, None])
def test_a_session_speaks_again_only_after_hearing_the_reply_out_unless_it_talks_over(
    pause_s: float | None,
) -> None:
    # A reply of 3 s of audio (10 ms per character), written at once.
    engines = fake_engines(FakeTranscriber([("What is the time?", "en")] * 4),
                           FakeChat(["It is noon now. " * 19] * 4))
    clip = Utterance("tone.wav", tone(0.8).astype(np.int16), speech_end=int(0.8 * 16000))
    with running_server(ServiceConfig(port=0), engines,
                        SessionDefaults(partial_interval_s=0)) as server:
        first, second = asyncio.run(run_session(url_of(server), None, 0, [clip], 2, 10.0,
                                                False, time.monotonic() + 60,
                                                pause_s=pause_s))
    assert first.outcome == second.outcome == "completed"
    played = first.played_until()
    assert played is not None and played > first.started_at
    if pause_s is None:  # the next clip begins while the reply still plays
        assert second.started_at < played
    else:
        assert second.started_at >= played + pause_s
