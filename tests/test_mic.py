"""voice-mic (clients/mic/) with a fake sound card (tests/fake_audio.py) against a real server.

The fake card "records" audio at real-time pace and "plays" at real-time pace, from its own
threads like PortAudio callbacks, so barge-in, muting and push-to-talk run as they would with a
microphone. Most tests use the fake engines (fast); one uses the real default models.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import numpy as np
import pytest

from clients.mic import main
from clients.mic.app import MicApp
from clients.mic.console import Console, format_latency
from clients.mic.options import Options
from tests.fake_audio import FakeAudio
from tests.fakes import FakeChat, FakeTranscriber, fake_engines, tone
from tests.live import default_models_server, running_server, url_of
from voice.config import Limits, ServiceConfig
from voice.protocol import ResponseDone, ServerEvent
from voice.server import VoiceServer
from voice.session import SessionDefaults

RATE = 24_000
LONG_REPLY = " ".join(f"This is sentence number {n} of a long story." for n in range(1, 26))


@contextlib.contextmanager
def fake_server(transcripts: list[tuple[str, str]], replies: list[str], *,
                chat_delay_s: float = 0.01, mcp_hosts: frozenset[str] = frozenset(),
                **config: Any) -> Iterator[VoiceServer]:
    engines = fake_engines(FakeTranscriber(transcripts, delay_s=0.02),
                           FakeChat(replies, delay_s=chat_delay_s))
    service = ServiceConfig(port=config.pop("port", 0), shutdown_grace_s=0.5, **config)
    defaults = SessionDefaults(partial_interval_s=0.2, mcp_hosts=mcp_hosts)
    with running_server(service, engines, defaults) as server:
        yield server


async def until(condition: Callable[[], object], timeout: float, what: str) -> None:
    try:
        async with asyncio.timeout(timeout):
            while not condition():
                await asyncio.sleep(0.02)
    except TimeoutError:
        raise AssertionError(f"timed out after {timeout} s waiting for {what}") from None


class App:
    def __init__(self, app: MicApp, out: io.StringIO, err: io.StringIO,
                 task: asyncio.Task[int], events: list[ServerEvent]) -> None:
        self.app, self.out, self.err, self.task, self.events = app, out, err, task, events


@contextlib.asynccontextmanager
async def running_app(options: Options, audio: FakeAudio,
                      keys: asyncio.Queue[str | None] | None = None) -> AsyncIterator[App]:
    out, err = io.StringIO(), io.StringIO()
    events: list[ServerEvent] = []
    app = MicApp(options, audio, out=out, err=err, keys=keys, live=False,
                 on_event=events.append)
    task = asyncio.ensure_future(app.run())
    try:
        yield App(app, out, err, task, events)
    finally:
        app.stop()
        await asyncio.wait_for(asyncio.gather(task, return_exceptions=True), 15)
        audio.close()


def run(scenario: Callable[[], Any], timeout: float = 90) -> Any:
    return asyncio.run(asyncio.wait_for(scenario(), timeout))


def seconds(samples: int, rate: int = RATE) -> float:
    return samples / rate


# -- barge-in ---------------------------------------------------------------------------------


def test_speaking_over_the_reply_stops_playback_and_truncates_to_what_was_played() -> None:
    with fake_server([("Tell me a story", "en"), ("Stop please", "en")], [LONG_REPLY, "Okay."],
                     chat_delay_s=0.03) as server:
        async def scenario() -> None:
            audio = FakeAudio(rate=RATE)
            async with running_app(Options(url=url_of(server)), audio) as run_:
                app = run_.app
                await until(lambda: app.connections == 1, 10, "the connection")
                audio.say(tone(1.5))
                await until(lambda: audio.played_samples >= RATE, 30, "a second of reply audio")
                assert app.interruptions == []
                audio.say(tone(1.2))  # the user talks over the reply
                await until(lambda: app.interruptions, 10, "the barge-in")
                interruption = app.interruptions[0]
                stopped_at = audio.played_samples
                assert stopped_at == interruption.played_samples
                assert audio.pending_samples == 0
                await asyncio.sleep(0.4)  # the user is still talking: nothing new to play
                assert audio.played_samples == stopped_at, "audio played after the barge-in"
                # The whole reply was far longer than what was played.
                played = audio.played_audio()
                assert played.size == stopped_at
                assert interruption.played_ms == pytest.approx(played.size * 1000 / RATE)
                await until(lambda: app.truncations, 10, "conversation.item.truncated")
                assert app.truncations == [int(interruption.played_ms)]
                # The server keeps only the words of the audio played (10 ms per character).
                session = next(iter(server.sessions.values()))
                kept = next(h for h in session.history if h.role == "assistant")
                assert kept.status == "incomplete"
                assert 0 < len(kept.text) < len(LONG_REPLY) / 2
                assert LONG_REPLY.startswith(kept.text)
                assert abs(len(kept.text) - interruption.played_ms / 10) <= 60, kept.text
                # The interruption is itself answered, and that reply plays.
                await until(lambda: any(r.status == "completed" for r in app.responses), 20,
                            "the answer to the interruption")
                await until(lambda: audio.played_samples > stopped_at, 10, "the new reply")
            first = app.responses[0]
            assert first.status == "cancelled" and first.reason == "turn_detected"
            out = run_.out.getvalue()
            assert "you (partial): Tell" in out  # live partial transcripts
            assert "you: Tell me a story" in out and "you: Stop please" in out
            assert "interrupted after" in out and "assistant: Okay." in out
            assert "latency: " in out
            assert run_.err.getvalue() == ""
        run(scenario)


# -- push-to-talk -----------------------------------------------------------------------------


def test_push_to_talk_sends_only_while_talking_and_enter_interrupts_the_reply() -> None:
    with fake_server([("Hello there", "en"), ("Something else", "en")], [LONG_REPLY, "Sure."],
                     chat_delay_s=0.03) as server:
        async def scenario() -> None:
            audio = FakeAudio(rate=RATE)
            keys: asyncio.Queue[str | None] = asyncio.Queue()
            options = Options(url=url_of(server), push_to_talk=True)
            async with running_app(options, audio, keys) as run_:
                app = run_.app
                await until(lambda: app.connections == 1, 10, "the connection")
                await asyncio.sleep(0.3)
                assert app.sent_samples == 0  # the microphone is live but nobody pressed Enter
                keys.put_nowait("\n")
                audio.say(tone(1.0))
                await until(lambda: not audio.speaking, 10, "the tone to be spoken")
                await asyncio.sleep(0.1)
                keys.put_nowait("\n")
                await until(lambda: audio.played_samples >= RATE // 2, 30, "reply audio")
                sent = app.sent_samples
                assert 1.0 <= seconds(sent) <= 1.5
                await asyncio.sleep(0.2)
                assert app.sent_samples == sent  # Enter pressed again: nothing more is sent
                keys.put_nowait("\n")  # Enter during the reply: interrupt it and talk
                await until(lambda: app.interruptions, 10, "the interruption")
                stopped_at = audio.played_samples
                await until(lambda: app.truncations, 10, "conversation.item.truncated")
                assert app.truncations == [int(app.interruptions[0].played_ms)]
                await until(lambda: app.responses, 10, "the cancelled response")
                assert app.responses[0].status == "cancelled"
                assert app.responses[0].reason == "client_cancelled"
                assert audio.played_samples == stopped_at
                audio.say(tone(0.6))
                await until(lambda: not audio.speaking, 10, "the second tone")
                await asyncio.sleep(0.1)
                keys.put_nowait("\n")
                await until(lambda: len(app.responses) == 2, 20, "the second reply")
                assert app.responses[1].status == "completed"
            assert app.speech_started == 0  # no server VAD in this mode
            assert app.transcripts == ["Hello there", "Something else"]
            out = run_.out.getvalue()
            assert "push-to-talk" in out and "assistant: Sure." in out and "latency: " in out
            assert run_.err.getvalue() == ""
        run(scenario)


# -- mute while speaking ------------------------------------------------------------------------


def test_mute_while_speaking_sends_no_microphone_audio_while_the_reply_plays() -> None:
    reply = "This reply plays for a little while. " * 6  # 10 ms a character: 2.2 s
    with fake_server([("Hello", "en")], [reply.strip()]) as server:
        async def scenario() -> None:
            audio = FakeAudio(rate=RATE)
            options = Options(url=url_of(server), mute_while_speaking=True, mute_tail_s=0.3)
            async with running_app(options, audio) as run_:
                app = run_.app
                await until(lambda: app.connections == 1, 10, "the connection")
                audio.say(tone(0.6))
                await until(lambda: audio.played_samples > 0, 30, "reply audio")
                await asyncio.sleep(0.1)
                sent = app.sent_samples
                audio.say(tone(0.6))  # the speakers' echo, or the user: not sent
                await until(lambda: not audio.speaking, 10, "the tone to be spoken")
                assert audio.pending_samples > 0, "the reply should still be playing"
                assert app.sent_samples == sent
                assert seconds(app.muted_samples) >= 0.6
                await until(lambda: audio.pending_samples == 0, 20, "the end of the reply")
                await asyncio.sleep(0.2)
                assert app.sent_samples == sent  # still in the tail
                await until(lambda: app.sent_samples > sent, 5, "the microphone back on")
                total = app.responses[0]
                assert total.status == "completed"
            assert app.speech_started == 1 and app.interruptions == []
            assert audio.played_audio().size == audio.played_samples
            assert seconds(audio.played_samples) >= 2.0  # all of the reply was played
        run(scenario)


# -- connection problems ----------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_a_refused_key_or_no_server_is_one_clear_line_and_a_failure_status() -> None:
    with fake_server([], [], api_keys=("s3cret",)) as server:
        out, err = io.StringIO(), io.StringIO()
        status = main(["--url", url_of(server), "--key", "wrong"], audio=FakeAudio(rate=RATE),
                      out=out, err=err)
        assert status == 1
        lines = err.getvalue().splitlines()
        assert len(lines) == 1 and "refused" in lines[0] and "401" in lines[0], lines
        assert "--key" in lines[0] and "Traceback" not in err.getvalue()
    err = io.StringIO()
    url = f"ws://127.0.0.1:{_free_port()}/v1/realtime"
    assert main(["--url", url], audio=FakeAudio(rate=RATE), out=io.StringIO(), err=err) == 1
    lines = err.getvalue().splitlines()
    assert len(lines) == 1 and lines[0].startswith("voice-mic: cannot connect"), lines


def test_a_server_going_away_is_reported_and_ends_the_client() -> None:
    async def scenario() -> None:
        server_cm = fake_server([], [])
        server = server_cm.__enter__()
        try:
            audio = FakeAudio(rate=RATE)
            async with running_app(Options(url=url_of(server)), audio) as run_:
                await until(lambda: run_.app.connections == 1, 10, "the connection")
                await asyncio.to_thread(server_cm.__exit__, None, None, None)
                status = await asyncio.wait_for(run_.task, 10)
            assert status == 1
            lines = run_.err.getvalue().splitlines()
            assert lines == ["voice-mic: connection lost: the server closed the connection "
                             "(1001 server shutting down)"], lines
        finally:
            server_cm.__exit__(None, None, None)
    run(scenario)


def test_a_server_error_event_is_one_line_and_reconnect_brings_the_client_back() -> None:
    async def scenario() -> None:
        # A session limited to 1 s: the server sends an error event and closes.
        limits = Limits(max_session_s=1.0)
        with fake_server([("Hello again", "en")], ["Welcome back."], limits=limits) as server:
            audio = FakeAudio(rate=RATE)
            options = Options(url=url_of(server), reconnect=True, reconnect_delays_s=(0.2,))
            async with running_app(options, audio) as run_:
                await until(lambda: run_.app.connections >= 2, 15, "a reconnection")
            assert run_.task.result() == 0  # stopped by us
            err = run_.err.getvalue()
            assert "voice-mic: server error (session_expired): sessions are limited to" in err
            assert ("voice-mic: connection lost: the server closed the connection "
                    "(1008 session expired)") in err
            assert "Traceback" not in err
            assert "(reconnecting in 0.2 s)" in run_.out.getvalue()
    run(scenario)


def test_reconnect_waits_for_the_server_to_come_back_and_talks_again() -> None:
    async def scenario() -> None:
        first = fake_server([], [])
        server = first.__enter__()
        port = server.port
        second: contextlib.AbstractContextManager[VoiceServer] | None = None
        try:
            audio = FakeAudio(rate=RATE)
            options = Options(url=url_of(server), reconnect=True, reconnect_delays_s=(0.2, 0.4))
            async with running_app(options, audio) as run_:
                app = run_.app
                await until(lambda: app.connections == 1, 10, "the connection")
                await asyncio.to_thread(first.__exit__, None, None, None)
                await until(lambda: "still no connection" in run_.out.getvalue(), 10,
                            "a failed reconnection attempt")
                second = fake_server([("Are you back", "en")], ["I am back."], port=port)
                await asyncio.to_thread(second.__enter__)
                await until(lambda: app.connections == 2, 10, "the reconnection")
                audio.say(tone(0.6))
                await until(lambda: app.responses, 20, "a turn after reconnecting")
            assert app.responses[0].status == "completed"
            assert app.session_ids[0] != app.session_ids[1]
            out = run_.out.getvalue()
            assert "reconnected to" in out and "assistant: I am back." in out
            assert run_.err.getvalue().splitlines() == [
                "voice-mic: connection lost: the server closed the connection "
                "(1001 server shutting down)"]
        finally:
            first.__exit__(None, None, None)
            if second is not None:
                await asyncio.to_thread(second.__exit__, None, None, None)
    run(scenario)


def test_on_a_terminal_partials_update_one_line_in_place() -> None:
    out = io.StringIO()
    console = Console(out, io.StringIO(), live=True)
    console.partial("What is", "the weather")
    console.partial("What is the weather", "like")
    console.user("What is the weather like?", "en")
    console.reply_delta("Sunny")
    console.reply_delta(" and warm.")
    console.reply_end()
    assert out.getvalue() == ("\r\x1b[Kyou: What is \x1b[2mthe weather\x1b[0m…"
                              "\r\x1b[Kyou: What is the weather \x1b[2mlike\x1b[0m…"
                              "\r\x1b[Kyou: What is the weather like?  [en]\n"
                              "assistant: Sunny and warm.\n")


def test_latency_is_one_line() -> None:
    line = format_latency({"vad_ms": 510.4, "transcript_ms": 702.0, "llm_first_token_ms": 900.0,
                           "first_audio_ready_ms": 1180.0, "first_audio_sent_ms": 1190.6})
    assert line == ("latency: 1191 ms from the end of your speech to the first reply audio "
                    "(end of speech heard 510, transcript 702, first token 900, "
                    "audio ready 1180 ms)")


# -- the real models --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def real_server(prepared_model) -> Iterator[VoiceServer]:  # type: ignore[no-untyped-def]
    with default_models_server(prepared_model, 60) as server:
        yield server


@pytest.mark.real_models
def test_a_hands_free_turn_with_the_real_models(real_server: VoiceServer,
                                                english_question: np.ndarray) -> None:
    from tests.speech import ENGLISH_SENTENCE

    async def scenario() -> tuple[App, FakeAudio]:
        # The card runs at 16 kHz and the session at 24 kHz: both directions are resampled.
        audio = FakeAudio(english_question, 16_000)
        async with running_app(Options(url=url_of(real_server), rate=24_000), audio) as run_:
            await until(lambda: run_.app.responses, 240, "the reply")
            await until(lambda: audio.played_samples >= 16_000, 30, "reply audio played")
        return run_, audio

    run_, audio = run(scenario, 300)
    done: ResponseDone = run_.app.responses[0]
    assert done.status == "completed" and done.text.strip()
    lines = run_.out.getvalue().splitlines()
    said = [line for line in lines if line.startswith("you: ")]
    assert len(said) == 1 and "weather" in said[0].lower(), (ENGLISH_SENTENCE, said)
    replies = [line for line in lines if line.startswith("assistant: ")]
    assert len(replies) == 1 and len(replies[0]) > len("assistant: ") + 3, lines
    assert any(line.startswith("latency: ") and "ms from the end of your speech" in line
               for line in lines), lines
    assert seconds(audio.played_samples, 16_000) >= 1.0
    assert run_.err.getvalue() == ""
