"""End to end with the real default models: the real server, real websockets, real speech.

A client streams generated speech at real-time pace (a question, then silence) and must get the
speech events, a transcript with the right words, reply text in the user's language, and reply
audio that Whisper transcribes back to the reply text.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from asr.transcript import TranscribeOptions
from tests.live import (
    default_models_server,
    open_session,
    receive_until,
    reply_audio,
    stream_audio,
    url_of,
)
from tests.realtime_types import ga_problems
from tests.speech import (
    ENGLISH_SENTENCE,
    ESPEAK_SENTENCES,
    SpokenSentence,
    espeak_audio,
    to_16k,
    word_error_rate,
)
from tts.segmenter import Segmenter, SegmenterConfig, speakable
from tts.voices import EspeakSynthesizer
from voice.audio import to_output
from voice.server import VoiceServer

pytestmark = pytest.mark.real_models

STOPWORDS = {
    "en": {"the", "is", "and", "a", "an", "of", "to", "in", "it", "you", "for", "that", "i"},
    "de": {"der", "die", "das", "ist", "und", "nicht", "ein", "eine", "ich", "sie", "es", "in",
           "zu", "mit", "von", "den", "auf", "für", "wir", "du", "dir", "dich", "gerne", "ihnen"},
    "fr": {"le", "la", "les", "est", "et", "un", "une", "de", "des", "je", "vous", "il", "en",
           "pour", "que", "qui", "du", "au", "à", "c'est", "bonjour", "votre", "tu"},
}


def language_votes(text: str) -> dict[str, int]:
    words = [w.strip(".,!?¡¿«»\"'").lower() for w in text.split()]
    return {lang: sum(w in stop for w in words) for lang, stop in STOPWORDS.items()}


@pytest.fixture(scope="module")
def real_server(prepared_model, whisper_base) -> Iterator[VoiceServer]:  # type: ignore[no-untyped-def]
    with default_models_server(prepared_model, 80) as server:
        yield server


def _spoken_turn(url: str, audio: np.ndarray, rate: int = 24_000) -> list[dict[str, Any]]:
    async def talk() -> list[dict[str, Any]]:
        ws = await open_session(url)
        if rate != 24_000:
            await ws.send(json.dumps({"type": "session.update", "session": {
                "type": "realtime", "audio": {
                    "input": {"format": {"type": "audio/pcm", "rate": rate}},
                    "output": {"format": {"type": "audio/pcm", "rate": rate}}}}}))
        events: list[dict[str, Any]] = []
        sender = asyncio.ensure_future(stream_audio(ws, audio, rate=rate))
        await receive_until(ws, "response.done", 180, into=events)
        await sender
        await ws.close()
        return events
    return asyncio.run(talk())


def _check_turn(events: list[dict[str, Any]], whisper_base: Any, reference: str,
                language: str, max_wer: float, reply_max_wer: float,
                rate: int = 24_000) -> None:
    problems = sorted({problem for event in events for problem in ga_problems(event)})
    assert not problems, "\n".join(problems)  # the official SDK's GA types accept them all
    types = [e["type"] for e in events]
    for expected in ("input_audio_buffer.speech_started", "input_audio_buffer.speech_stopped",
                     "input_audio_buffer.committed",
                     "conversation.item.input_audio_transcription.completed",
                     "response.created", "response.output_audio_transcript.delta",
                     "response.output_audio.delta", "response.done"):
        assert expected in types, (expected, types)
    completed = next(e for e in events
                     if e["type"] == "conversation.item.input_audio_transcription.completed")
    assert completed["language"] == language, completed
    assert word_error_rate(reference, completed["transcript"]) <= max_wer, completed
    done = events[-1]["response"]
    assert done["status"] == "completed" and done["language"] == language
    assert set(done["latency"]) == {"vad_ms", "transcript_ms", "llm_first_token_ms",
                                    "first_audio_ready_ms", "first_audio_sent_ms"}
    reply = "".join(e["delta"] for e in events
                    if e["type"] == "response.output_audio_transcript.delta")
    votes = language_votes(reply)
    assert votes[language] == max(votes.values()) and votes[language] >= 1, (reply, votes)
    pcm = np.frombuffer(reply_audio(events), "<i2")
    if language != "en":
        # No Piper voice for this language: the espeak-ng fallback speaks, and espeak is
        # deterministic, so the audio must be exactly the segmented reply spoken by it.
        segmenter = Segmenter(SegmenterConfig(language=language))
        pieces = segmenter.feed(reply) + segmenter.flush()
        voice = EspeakSynthesizer(language)
        spoken = [speakable(piece) for piece in pieces]
        expected = np.concatenate([to_output(c.samples, c.sample_rate, rate)
                                   for text in spoken if text for c in voice.synthesize(text)])
        assert np.array_equal(pcm, expected), (pcm.size, expected.size)
        return  # the audio is exactly the reply, spoken: nothing more to hear back
    # Piper is not deterministic across CPUs: hear its audio back instead.
    heard = whisper_base.transcribe(to_16k(pcm, rate), TranscribeOptions(language=language))
    assert word_error_rate(reply, heard.text) <= reply_max_wer, (reply, heard.text)


def test_an_english_question_gets_a_spoken_english_answer(real_server, whisper_base,
                                                          english_question) -> None:
    events = _spoken_turn(url_of(real_server), english_question)
    # The joe voice reads the reply; whisper-base hears it back almost word for word. 0.35
    # leaves room for numbers and names written one way and heard another ("5" / "five").
    _check_turn(events, whisper_base, ENGLISH_SENTENCE, "en", 0.15, 0.35)


@pytest.mark.parametrize("sentence", [s for s in ESPEAK_SENTENCES if s.language in ("de", "fr")],
                         ids=lambda s: s.language)
def test_german_and_french_are_answered_in_kind(real_server, whisper_base,
                                                sentence: SpokenSentence) -> None:
    audio = espeak_audio(sentence.language, sentence.text, sentence.espeak_speed)
    events = _spoken_turn(url_of(real_server), audio, rate=16_000)
    # No Piper voice for de/fr on the registries: the reply is spoken by the espeak-ng
    # fallback, whose audio is checked sample for sample against the reply's text. Hearing it
    # back would test whisper-base on espeak's French and German (WER 0.2 to 1.0 on isolated
    # sentences, docs/benchmarks.md) on whatever the model happened to say: not done.
    _check_turn(events, whisper_base, sentence.text, sentence.language, sentence.max_wer,
                1.0, rate=16_000)


def test_barge_in_cancels_the_reply_and_stops_its_audio(real_server, english_question,
                                                       joe_voice) -> None:
    story = to_16k(np.concatenate([c.samples for c in joe_voice.synthesize(
        "Please tell me a long story about a brave dragon.")]), 22050)

    async def scenario() -> None:
        ws = await open_session(url_of(real_server))
        events: list[dict[str, Any]] = []
        await stream_audio(ws, story)
        await receive_until(ws, "response.output_audio.delta", 120, into=events)
        response_id = events[-1]["response_id"]
        interrupt = asyncio.ensure_future(stream_audio(ws, english_question))
        await receive_until(ws, "input_audio_buffer.speech_started", 60, into=events)
        barge_index = len(events) - 1
        await receive_until(ws, "response.done", 60, into=events)
        done = events[-1]["response"]
        assert done["id"] == response_id and done["status"] == "cancelled"
        assert done["status_details"]["reason"] == "turn_detected"
        late = [e for e in events[barge_index:]
                if e.get("response_id") == response_id and e["type"] != "response.done"]
        assert late == [], [e["type"] for e in late]
        # The interruption is itself answered.
        await receive_until(ws, "response.done", 180, into=events)
        assert events[-1]["response"]["status"] == "completed"
        await interrupt
        await ws.close()
    asyncio.run(scenario())


def test_the_official_openai_sdk_completes_a_spoken_turn(real_server, english_question) -> None:
    from openai import AsyncOpenAI

    from tests.live import pcm16_b64

    async def scenario() -> None:
        client = AsyncOpenAI(api_key="unused-locally",
                             websocket_base_url=f"ws://127.0.0.1:{real_server.port}/v1")
        async with client.realtime.connect(model="local") as connection:
            await connection.session.update(session={
                "type": "realtime", "output_modalities": ["audio"],
                "audio": {"input": {"format": {"type": "audio/pcm", "rate": 24000},
                                    "turn_detection": {"type": "server_vad"}}},
                "instructions": "You are a weather assistant."})
            silence = np.zeros(int(1.2 * 16000), np.float32)
            for chunk in pcm16_b64(np.concatenate([english_question, silence])):
                await connection.input_audio_buffer.append(audio=chunk)
                await asyncio.sleep(0.02)
            transcript, reply, audio = "", "", b""
            async for event in connection:
                if event.type == "conversation.item.input_audio_transcription.completed":
                    transcript = event.transcript
                elif event.type == "response.output_audio_transcript.delta":
                    reply += event.delta
                elif event.type == "response.output_audio.delta":
                    audio += base64.b64decode(event.delta)
                elif event.type == "error":
                    raise AssertionError(event.error)
                elif event.type == "response.done":
                    assert event.response.status == "completed"
                    break
        assert word_error_rate(ENGLISH_SENTENCE, transcript) <= 0.15, transcript
        assert reply.strip() and len(audio) > 24000 * 2  # more than a second of speech
    asyncio.run(asyncio.wait_for(scenario(), 240))


def test_two_concurrent_sessions_each_get_their_own_turn(real_server, english_question) -> None:
    german = ESPEAK_SENTENCES[0]
    german_audio = espeak_audio(german.language, german.text, german.espeak_speed)

    async def one(audio: np.ndarray) -> list[dict[str, Any]]:
        ws = await open_session(url_of(real_server))
        events: list[dict[str, Any]] = []
        sender = asyncio.ensure_future(stream_audio(ws, audio))
        await receive_until(ws, "response.done", 240, into=events)
        await sender
        await ws.close()
        return events

    async def both() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        first, second = await asyncio.gather(one(english_question), one(german_audio))
        return first, second

    english_events, german_events = asyncio.run(both())
    for events, reference, language, max_wer in (
            (english_events, ENGLISH_SENTENCE, "en", 0.15),
            (german_events, german.text, "de", german.max_wer)):
        completed = [e for e in events
                     if e["type"] == "conversation.item.input_audio_transcription.completed"]
        assert len(completed) == 1 and completed[0]["language"] == language
        assert word_error_rate(reference, completed[0]["transcript"]) <= max_wer
        assert events[-1]["response"]["status"] == "completed"
        assert events[-1]["response"]["language"] == language


def test_sigterm_closes_sessions_with_going_away_and_exits_cleanly(prepared_model) -> None:
    import os
    import re
    import signal
    import subprocess
    import sys

    from websockets.exceptions import ConnectionClosed

    prepared_model("smollm2-135m-instruct")
    process = subprocess.Popen(
        [sys.executable, "-m", "voice", "--no-progress", "serve", "--port", "0",
         "--llm", "smollm2-135m-instruct"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=os.environ.copy())
    try:
        assert process.stdout is not None
        port = None
        for line in process.stdout:
            found = re.search(r"ready on ws://127\.0\.0\.1:(\d+)/v1/realtime", line)
            if found:
                port = int(found.group(1))
                break
        assert port is not None, "the service never said it was ready"

        async def scenario() -> None:
            ws = await open_session(f"ws://127.0.0.1:{port}/v1/realtime")
            process.send_signal(signal.SIGTERM)
            with pytest.raises(ConnectionClosed):
                async with asyncio.timeout(30):
                    while True:
                        await ws.recv()
            assert ws.close_code == 1001
        asyncio.run(scenario())
        assert process.wait(30) == 0
    finally:
        if process.poll() is None:
            process.kill()
