"""The browser page (clients/web) in headless Chromium against the real server and models.

Chromium's fake microphone plays a WAV made here (the Piper joe voice asking
tests.speech.ENGLISH_SENTENCE, then silence). The page must capture it through its AudioWorklet,
stream it over the websocket (authenticated with the API-key subprotocol, the key prefilled
from ``?key=``), and show a completed turn: the final transcript, reply text and audio, the
detected language and the latency report. Speaking over a reply (a second utterance mixed into
the page's microphone input at a chosen moment) must stop playback at once and truncate the
reply on the server to what was played. Screenshots are kept in the tmp dir and copied to
/tmp/web_page.png and /tmp/web_page_barge_in.png.

Needs Debian's ``chromium`` (``make test`` installs it) and the ``playwright`` Python package;
Playwright drives that Chromium, it downloads no browser. Nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import base64
import io
import math
import shutil
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soxr

from tests.live import running_server
from tests.prerequisites import missing
from tests.speech import to_16k, with_silence, word_error_rate
from voice.config import ServiceConfig
from voice.server import VoiceServer

pytestmark = pytest.mark.real_models

CHROMIUM = Path("/usr/bin/chromium")
API_KEY = "web-test-key"
WAV_RATE = 48_000
LEADING_SILENCE_S = 1.0
TRAILING_SILENCE_S = 4.0
TURN_TIMEOUT_MS = 120_000
SCREENSHOT_COPY = Path("/tmp/web_page.png")
BARGE_IN_SCREENSHOT_COPY = Path("/tmp/web_page_barge_in.png")
# Said without a pause in it: a lone "Actually," before a comma's pause is a word the guard
# may take for an acknowledgement and play the held reply on (docs/protocol.md), and this
# test is about the page holding and truncating a reply that the user's words cut.
INTERRUPTION = "Tell me about Paris and its museums instead."
STATE_JS = """() => {
    const s = window.voiceState;
    return {connection: s.connection, language: s.language, errors: s.errors,
            transcripts: s.transcripts, replyAudioSamples: s.replyAudioSamples,
            sentAudioMs: s.sentAudioMs, partials: s.partials.length,
            truncations: s.truncations, truncated: s.truncated, ducks: s.ducks,
            interruption: s.interruption,
            turns: s.turns.map(t => ({responseId: t.responseId, status: t.status,
                                     language: t.language, text: t.text, itemId: t.itemId,
                                     latency: t.latency, audioSamples: t.audioSamples,
                                     interruptedAtMs: t.interruptedAtMs}))};
}"""


@pytest.fixture(scope="module")
def web_server(prepared_model) -> Iterator[VoiceServer]:  # type: ignore[no-untyped-def]
    from voice.__main__ import build_engines
    from voice.models import ModelStore
    from voice.session_settings import session_defaults

    for name in ("whisper-base", "qwen2.5-coder-0.5b-instruct", "en_US-joe-medium"):
        prepared_model(name)
    config = ServiceConfig(port=0, device="cpu", max_output_tokens=60, api_keys=(API_KEY,))
    engines, names = build_engines(config, ModelStore(progress=False))
    with running_server(config, engines, session_defaults(config, names), names) as server:
        yield server


@pytest.fixture(scope="module")
def sync_playwright() -> Iterator[Any]:
    if not CHROMIUM.exists():
        missing(f"{CHROMIUM} is missing (apt-get install chromium; make test does)")
    import playwright.sync_api as playwright_api

    with playwright_api.sync_playwright() as playwright:
        yield playwright


def wav_bytes(audio_16k: np.ndarray, leading_s: float = 0.0, trailing_s: float = 0.0) -> bytes:
    """float32 16 kHz audio with silence around it as a 16-bit mono WAV at 48 kHz."""
    speech = soxr.resample(audio_16k, 16_000, WAV_RATE)
    audio = np.concatenate([np.zeros(int(leading_s * WAV_RATE), np.float32), speech,
                            np.zeros(int(trailing_s * WAV_RATE), np.float32)])
    pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2")
    data = io.BytesIO()
    with wave.open(data, "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(WAV_RATE)
        writer.writeframes(pcm.tobytes())
    return data.getvalue()


def write_fake_microphone(path: Path, speech_16k: np.ndarray) -> Path:
    """Silence, the speech, silence, for Chromium's fake microphone (48 kHz is safest)."""
    path.write_bytes(wav_bytes(speech_16k, LEADING_SILENCE_S, TRAILING_SILENCE_S))
    return path


def open_browser(playwright: Any, profile: Path, microphone: Path | None = None) -> Any:
    args = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--disable-default-apps", "--disable-extensions",
            # Everything but loopback fails to resolve: the page must need nothing else.
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
            "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
            "--autoplay-policy=no-user-gesture-required"]
    if microphone is not None:
        # %noloop: the file plays once, then the fake device is silent (no second turn).
        args.append(f"--use-file-for-fake-audio-capture={microphone}%noloop")
    context = playwright.chromium.launch_persistent_context(
        str(profile), executable_path=str(CHROMIUM), headless=True, args=args,
        viewport={"width": 1000, "height": 720}, permissions=["microphone"])
    context.set_default_timeout(30_000)
    context.route("**/*", lambda route: route.continue_()
                  if route.request.url.startswith(("http://127.0.0.1", "ws://127.0.0.1"))
                  else route.abort())
    return context


def watch_console(page: Any) -> list[str]:
    messages: list[str] = []
    page.on("console", lambda m: messages.append(f"{m.type}: {m.text}"))
    page.on("pageerror", lambda e: messages.append(f"pageerror: {e}"))
    return messages


def start_talking(context: Any, server: VoiceServer) -> tuple[Any, list[str]]:
    """Open the page with ?key=, press Start; returns the page and its console messages."""
    page = context.new_page()
    console = watch_console(page)
    page.goto(f"http://127.0.0.1:{server.port}/?key={API_KEY}")
    assert page.get_by_test_id("api-key").input_value() == API_KEY
    page.get_by_test_id("start-button").click()
    return page, console


def wait_for_turns(page: Any, count: int) -> None:
    """Until ``count`` responses are done and reply audio has arrived."""
    page.wait_for_function(
        """(count) => {
            const s = window.voiceState;
            return s.turns.filter(t => t.latency && t.status !== "in_progress").length >= count
                && s.replyAudioSamples > 0;
        }""", arg=count, timeout=TURN_TIMEOUT_MS)


def screenshot(page: Any, path: Path, copy: Path) -> None:
    page.screenshot(path=str(path), full_page=True)
    shutil.copyfile(path, copy)


def test_a_spoken_question_gets_a_spoken_reply_in_the_page(
        web_server: VoiceServer, sync_playwright: Any, english_question: np.ndarray,
        tmp_path: Path) -> None:
    microphone = write_fake_microphone(tmp_path / "question.wav", english_question)
    context = open_browser(sync_playwright, tmp_path / "profile", microphone)
    try:
        page, console = start_talking(context, web_server)
        try:
            wait_for_turns(page, 1)
            # Let the reply play on a little, so the screenshot shows the page in use.
            page.wait_for_timeout(1500)
        finally:
            screenshot(page, tmp_path / "web_page.png", SCREENSHOT_COPY)
        state = page.evaluate(STATE_JS)
        context_info = {"state": state, "console": console[-20:]}

        assert state["connection"] == "connected", context_info
        assert state["errors"] == [], context_info
        finals = [t for t in state["transcripts"] if t["text"].strip()]
        assert finals and "weather" in finals[0]["text"].lower(), context_info
        assert finals[0]["language"] == "en" and state["language"] == "en", context_info
        turn = state["turns"][0]
        assert turn["status"] == "completed", context_info
        assert turn["language"] == "en" and turn["text"].strip(), context_info
        assert turn["audioSamples"] > 0 and state["replyAudioSamples"] > 0, context_info
        assert set(turn["latency"]) == {"vad_ms", "transcript_ms", "llm_first_token_ms",
                                        "first_audio_ready_ms", "first_audio_sent_ms"}

        # What the user sees: the transcript, the reply, the language and the latency figures.
        assert "weather" in page.get_by_test_id("final-transcript").first.inner_text().lower()
        assert page.get_by_test_id("reply-text").first.inner_text().strip()
        assert page.get_by_test_id("language").inner_text() == "English (en)"
        report = page.get_by_test_id("latency-report").first
        assert report.is_visible()
        shown = report.inner_text()
        for label in ("end of speech", "transcript", "first token", "audio ready",
                      "audio sent"):
            assert label in shown, shown
        # As the page rounds (JavaScript's Math.round: halves up; Python's round() would give
        # 2620 for 2620.5).
        sent_ms = math.floor(turn["latency"]["first_audio_sent_ms"] + 0.5)
        assert f"{sent_ms} ms" in shown, shown
        assert page.get_by_test_id("connection-state").inner_text() == "Connected"
        # The browser applies the echo cancellation and noise suppression the page asks for.
        detail = page.get_by_test_id("audio-detail").inner_text()
        assert "echo cancellation on" in detail and "noise suppression on" in detail, detail
        # ... and tells the service so: a voice over a reply's first moments pauses it too.
        assert state["interruption"]["echo_cancelled"] is True, context_info
        assert state["interruption"]["hold"] is True, context_info

        page.get_by_test_id("start-button").click()  # Stop
        page.wait_for_function("() => window.voiceState.connection === 'closed'")
    finally:
        context.close()


def test_speaking_over_the_reply_stops_it_and_truncates_it(
        web_server: VoiceServer, sync_playwright: Any, english_question: np.ndarray,
        joe_voice: Any, tmp_path: Path) -> None:
    chunks = list(joe_voice.synthesize(INTERRUPTION))
    interruption = with_silence(to_16k(np.concatenate([c.samples for c in chunks]),
                                       chunks[0].sample_rate), after_s=0.5)
    microphone = write_fake_microphone(tmp_path / "question.wav", english_question)
    context = open_browser(sync_playwright, tmp_path / "profile", microphone)
    try:
        page, console = start_talking(context, web_server)
        # The first reply is being heard (long enough for the server to know the microphone
        # is quiet while it plays): speak over it.
        page.wait_for_function(
            "() => window.voiceDebug.isPlaying() && window.voiceDebug.playedMs() > 1200",
            timeout=TURN_TIMEOUT_MS, polling=50)
        page.evaluate(
            """(b64) => {
                const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
                window.voiceDebug.mixIntoMicrophone(bytes.buffer);
            }""", base64.b64encode(wav_bytes(interruption)).decode())
        page.wait_for_function("() => window.voiceState.truncated.length > 0", timeout=30_000)
        try:
            wait_for_turns(page, 2)
        finally:
            screenshot(page, tmp_path / "web_page_barge_in.png", BARGE_IN_SCREENSHOT_COPY)
        state = page.evaluate(STATE_JS)
        context_info = {"state": state, "console": console[-20:]}

        assert state["errors"] == [], context_info
        first, second = state["turns"][:2]
        # While the guard judged the words, the page held the reply (paused, nothing
        # dropped); the cut stopped it for good, and the server was told how much of the
        # reply was heard: what had played when it was held.
        [sent] = state["truncations"]
        [duck] = state["ducks"]
        assert duck["responseId"] == first["responseId"] and duck["hold"], context_info
        assert sent["held"] and sent["sourcesAfter"] == 0, context_info
        assert 1200 <= sent["audioEndMs"] < sent["totalMs"], context_info
        assert abs(sent["audioEndMs"] - duck["playedMs"]) <= 1, context_info
        assert sent["itemId"] == first["itemId"], context_info
        assert state["truncated"] == [{"itemId": first["itemId"],
                                       "audioEndMs": sent["audioEndMs"]}], context_info
        assert first["interruptedAtMs"] == sent["audioEndMs"], context_info
        assert "interrupted at" in page.get_by_test_id("reply").first.inner_text().lower()
        # The conversation goes on with the new question.
        finals = [t["text"].lower() for t in state["transcripts"] if t["text"].strip()]
        # Whisper-base hears "Paris" as "pairs" on some CPUs: judge the whole sentence.
        assert len(finals) == 2 and "weather" in finals[0], context_info
        assert word_error_rate(INTERRUPTION, finals[1]) <= 0.34, context_info
        assert second["status"] == "completed" and second["audioSamples"] > 0, context_info
    finally:
        context.close()


def test_a_wrong_api_key_is_reported(web_server: VoiceServer, sync_playwright: Any,
                                     tmp_path: Path) -> None:
    context = open_browser(sync_playwright, tmp_path / "profile")
    try:
        page = context.new_page()
        page.goto(f"http://127.0.0.1:{web_server.port}/?key=wrong")
        page.get_by_test_id("start-button").click()
        page.wait_for_function("() => window.voiceState.errors.length > 0")
        errors = page.evaluate("() => window.voiceState.errors")
        assert errors[0]["code"] == "connection_failed", errors
        assert "API key" in errors[0]["message"], errors
        assert page.get_by_test_id("connection-state").get_attribute("data-state") == "error"
        assert "API key" in page.get_by_test_id("errors").inner_text()
    finally:
        context.close()
