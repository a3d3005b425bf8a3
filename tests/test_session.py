"""Session behaviour with fake engines: turn-taking, barge-in, truncation, languages, latency."""

from __future__ import annotations

import asyncio
import base64
import itertools
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import numpy as np
import pytest

from llm.prompts import Assistant, system_prompt
from tests.fakes import (
    FakeChat,
    FakeTranscriber,
    FakeTurnModel,
    FakeVoices,
    fake_engines,
    silence,
    tone,
)
from voice.protocol import (
    AudioAppend,
    AudioCommit,
    ItemCreate,
    ItemTruncate,
    ResponseCancel,
    ResponseCreate,
    ServerEvent,
    SessionUpdate,
)
from voice.reply_audio import Gap
from voice.session import Session, SessionDefaults, SessionLimitError
from voice.turns import AgentState


class Harness:
    def __init__(self, transcriber: FakeTranscriber, chat: FakeChat,
                 voices: FakeVoices | None = None, turn_model: FakeTurnModel | None = None,
                 tools_chat: FakeChat | None = None, **defaults: Any) -> None:
        self.transcriber, self.chat = transcriber, chat
        self.voices = voices or FakeVoices()
        self.events: list[ServerEvent] = []
        self.turns: list[tuple[dict[str, float], str]] = []
        self.gaps: list[Gap] = []  # what the server's metrics count
        self.error_codes: list[str] = []  # what the server's metrics count
        self.session = Session(fake_engines(transcriber, chat, self.voices, turn_model,
                                            tools_chat),
                               SessionDefaults(**{"partial_interval_s": 0, **defaults}), self._send,
                               on_turn=self._on_turn,
                               on_error=self.error_codes.append)

    def _on_turn(self, latency: dict[str, float], status: str, gaps: Sequence[Gap]) -> None:
        self.turns.append((latency, status))
        self.gaps.extend(gaps)

    async def _send(self, event: ServerEvent) -> None:
        self.events.append(event)
        self.session.event_sent(event)  # as the server's writer does once it is on the socket

    def types(self) -> list[str]:
        return [e.type for e in self.events]

    def of(self, kind: str) -> list[ServerEvent]:
        return [e for e in self.events if e.type == kind]

    async def send_audio(self, samples: np.ndarray, frame_s: float = 0.02,
                         pace_s: float = 0.0) -> None:
        step = int(24_000 * frame_s)
        for start in range(0, samples.size, step):
            await self.session.handle(AudioAppend(None, samples[start:start + step]))
            await asyncio.sleep(pace_s)

    async def speak(self, seconds: float = 0.6, pause: float = 0.7, pace_s: float = 0.0) -> None:
        await self.send_audio(np.concatenate([tone(seconds), silence(pause)]), pace_s=pace_s)

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        while not predicate():
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"timed out; events so far: {self.types()}")
            await asyncio.sleep(0.005)

    async def wait_done(self, count: int = 1) -> None:
        await self.wait_for(lambda: len(self.of("response.done")) >= count)


def run(test: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(test(), 30))


def test_a_spoken_turn_produces_the_realtime_event_sequence() -> None:
    async def scenario() -> None:
        h = Harness(FakeTranscriber([("What time is it?", "en")]),
                    FakeChat(["It is noon. Have a nice lunch."]))
        await h.session.start()
        await h.speak()
        await h.wait_done()
        types = h.types()
        expected_order = [
            "session.created", "input_audio_buffer.speech_started",
            "input_audio_buffer.speech_stopped", "input_audio_buffer.committed",
            "conversation.item.added", "conversation.item.input_audio_transcription.completed",
            "response.created", "response.output_item.added", "response.content_part.added",
            "response.output_audio_transcript.delta", "response.output_audio.delta",
            "response.output_audio.done", "response.output_audio_transcript.done",
            "response.content_part.done", "response.output_item.done", "response.done"]
        positions = [types.index(t) for t in expected_order]
        assert positions == sorted(positions), types
        done = h.of("response.done")[0].fields["response"]
        assert done["status"] == "completed" and done["language"] == "en"
        transcript = h.of("response.output_audio_transcript.done")[0].fields["transcript"]
        assert transcript == "It is noon. Have a nice lunch."
        assert h.of("conversation.item.input_audio_transcription.completed")[0].fields[
            "transcript"] == "What time is it?"
        assert h.session.turns.agent is AgentState.IDLE
        assert [(i.role, i.text) for i in h.session.history] == [
            ("user", "What time is it?"), ("assistant", "It is noon. Have a nice lunch.")]
        # TTS got speakable pieces, not tokens.
        assert h.voices.voices["en"].spoken == ["It is noon.", "Have a nice lunch."]
    run(scenario)


def test_the_latency_report_has_every_stage_in_order() -> None:
    async def scenario() -> None:
        h = Harness(FakeTranscriber([("Hello", "en")], delay_s=0.05),
                    FakeChat(["Hi there, nice to meet you."], delay_s=0.02))
        await h.speak(pace_s=0.02)  # real-time pace, so the end of speech has a real time
        await h.wait_done()
        latency = h.of("response.done")[0].fields["response"]["latency"]
        stages = ["vad_ms", "transcript_ms", "llm_first_token_ms", "first_audio_ready_ms",
                  "first_audio_sent_ms"]
        assert list(latency) == stages
        values = [latency[s] for s in stages]
        assert values == sorted(values), latency
        # The VAD needs silence_duration_ms (500) of silence to call the end of speech.
        assert 400 <= latency["vad_ms"] <= 1500
        # The final decode started at the first 200 ms pause, so it is ready by then or soon.
        assert latency["transcript_ms"] >= latency["vad_ms"]
        assert h.turns and h.turns[0][1] == "completed"
    run(scenario)


def test_barge_in_stops_the_reply_and_keeps_only_what_was_heard() -> None:
    long_reply = " ".join(f"Sentence number {n} is here." for n in range(40))

    async def scenario() -> None:
        h = Harness(FakeTranscriber([("Tell me a story", "en"), ("Stop", "en")]),
                    FakeChat([long_reply, "Okay, I stopped."], delay_s=0.01))
        await h.speak()
        await h.wait_for(lambda: len(h.of("response.output_audio.delta")) >= 2)
        await asyncio.sleep(0.05)
        barge_at = len(h.events)
        await h.speak()
        await h.wait_done(2)

        first = h.of("response.done")[0].fields["response"]
        assert first["status"] == "cancelled"
        assert first["status_details"]["reason"] == "turn_detected"
        cancelled_id = first["id"]
        speech_started = next(i for i, e in enumerate(h.events)
                              if i >= barge_at and e.type == "input_audio_buffer.speech_started")
        after = [e for e in h.events[speech_started:]
                 if e.fields.get("response_id") == cancelled_id]
        assert after == [], [e.type for e in after]  # nothing of it after the cancel
        assert h.chat.tokens_after_cancel <= 1  # generation stopped within one token
        assistant = [i for i in h.session.history if i.role == "assistant"]
        assert long_reply.startswith(assistant[0].text)
        assert len(assistant[0].text) < len(long_reply) / 2
        assert assistant[0].status == "incomplete"
        assert h.of("response.done")[1].fields["response"]["status"] == "completed"
        assert h.chat.active == 0
    run(scenario)


def test_truncate_keeps_the_text_of_the_audio_the_client_played() -> None:
    async def scenario() -> None:
        reply = "One two three four. Five six seven eight. Nine ten eleven twelve."
        h = Harness(FakeTranscriber([("Count", "en")]), FakeChat([reply], delay_s=0.0))
        await h.speak()
        await h.wait_done()
        item_id = h.of("response.output_item.done")[0].fields["item"]["id"]
        # Fake voice: 10 ms per character; "One two three four." lasts 190 ms.
        await h.session.handle(ItemTruncate("ev1", item_id, 0, 190 + 100))
        truncated = h.of("conversation.item.truncated")[0].fields
        assert truncated == {"item_id": item_id, "content_index": 0, "audio_end_ms": 290}
        assistant = h.session.history[-1]
            # "Five six seven eight." lasts 210 ms: 100 ms of it is one of its four words.
        assert assistant.text == "One two three four. Five"
        await h.session.handle(ItemTruncate("ev2", "item_missing", 0, 10))
        error = h.of("error")[-1].fields["error"]
        assert error["code"] == "item_not_found" and error["event_id"] == "ev2"
    run(scenario)


def test_the_reply_follows_the_language_of_each_turn() -> None:
    async def scenario() -> None:
        h = Harness(FakeTranscriber([("Wie spät ist es?", "de"), ("Quelle heure?", "fr")]),
                    FakeChat(["Es ist Mittag.", "Il est midi."]))
        await h.speak()
        await h.wait_done()
        await h.speak()
        await h.wait_done(2)
        assert [d.fields["response"]["language"] for d in h.of("response.done")] == ["de", "fr"]
        assert h.voices.requested == ["de", "fr"]
        assert h.chat.requests[0][0].content == system_prompt("de")
        assert h.chat.requests[1][0].content == system_prompt("fr")
        # The second request carries the first turn as history.
        assert [m.content for m in h.chat.requests[1][1:]] == [
            "Wie spät ist es?", "Es ist Mittag.", "Quelle heure?"]
    run(scenario)


def test_the_configured_assistant_name_and_persona_reach_the_model() -> None:
    async def scenario() -> None:
        h = Harness(FakeTranscriber([("Wie heißt du?", "de")]), FakeChat(["Ich heiße Hal."]),
                    assistant=Assistant(name="Hal", persona="Du arbeitest bei ACME."))
        await h.speak()
        await h.wait_done()
        prompt = h.chat.requests[0][0].content
        assert prompt == system_prompt("de", None, Assistant("Hal", "Du arbeitest bei ACME."))
        assert "Du heißt Hal." in prompt and "Du arbeitest bei ACME." in prompt
    run(scenario)


def test_a_pinned_language_is_used_for_recognition_and_reply() -> None:
    async def scenario() -> None:
        h = Harness(FakeTranscriber([("Bonjour", "en")]), FakeChat(["Bonjour !"]))
        await h.session.handle(SessionUpdate("e1", {
            "type": "realtime",
            "audio": {"input": {"transcription": {"model": "whisper", "language": "fr"}}}}))
        await h.speak()
        await h.wait_done()
        assert h.transcriber.calls[0].language == "fr"
        assert h.of("response.done")[0].fields["response"]["language"] == "fr"
        updated = h.of("session.updated")[0].fields["session"]
        assert updated["audio"]["input"]["transcription"]["language"] == "fr"
    run(scenario)


def test_manual_commit_then_response_create() -> None:
    async def scenario() -> None:
        h = Harness(FakeTranscriber([("Hello there", "en")]), FakeChat(["Hi!"]))
        await h.session.handle(SessionUpdate("e1", {"type": "realtime", "audio": {"input": {
            "turn_detection": None}}}))
        await h.session.handle(AudioCommit("c0"))
        assert h.of("error")[-1].fields["error"]["code"] == "input_audio_buffer_commit_empty"
        await h.send_audio(tone(0.5))
        assert "input_audio_buffer.speech_started" not in h.types()
        await h.session.handle(AudioCommit("c1"))
        await h.wait_for(lambda: bool(
            h.of("conversation.item.input_audio_transcription.completed")))
        assert "response.created" not in h.types()
        await h.session.handle(ResponseCreate("r1", None, None))
        await h.wait_done()
        assert h.of("response.done")[0].fields["response"]["status"] == "completed"
    run(scenario)


def test_an_overlong_manual_buffer_breaks_the_session_limit() -> None:
    async def scenario() -> None:
        h = Harness(FakeTranscriber([]), FakeChat([]), max_buffer_s=1.0)
        await h.session.handle(SessionUpdate("e1", {"type": "realtime",
                                                    "turn_detection": None}))
        with pytest.raises(SessionLimitError, match="exceeds 1 s"):
            await h.send_audio(tone(1.5))
    run(scenario)


def test_text_turn_with_text_output_streams_text_deltas_only() -> None:
    async def scenario() -> None:
        h = Harness(FakeTranscriber([]), FakeChat(["Two plus two is four."]))
        await h.session.handle(ItemCreate("i1", None, "user", "What is two plus two?"))
        await h.session.handle(ResponseCreate("r1", None, ("text",)))
        await h.wait_done()
        deltas = "".join(e.fields["delta"] for e in h.of("response.output_text.delta"))
        assert deltas == "Two plus two is four."
        assert not h.of("response.output_audio.delta")
        assert h.of("response.output_text.done")[0].fields["text"] == "Two plus two is four."
    run(scenario)


def test_cancel_and_create_errors_name_the_offending_event() -> None:
    async def scenario() -> None:
        h = Harness(FakeTranscriber([]), FakeChat(["word " * 200], delay_s=0.01))
        await h.session.handle(ResponseCancel("x1", None))
        assert h.of("error")[-1].fields["error"]["code"] == "response_cancel_not_active"
        assert h.of("error")[-1].fields["error"]["event_id"] == "x1"
        await h.session.handle(ItemCreate("i1", None, "user", "Talk a lot."))
        await h.session.handle(ResponseCreate("r1", None, None))
        await h.session.handle(ResponseCreate("r2", None, None))
        assert h.of("error")[-1].fields["error"]["code"] == \
            "conversation_already_has_active_response"
        await h.wait_for(lambda: bool(h.of("response.output_audio.delta")))
        await h.session.handle(ResponseCancel("x2", None))
        await h.wait_done()
        done = h.of("response.done")[0].fields["response"]
        assert done["status"] == "cancelled"
        assert done["status_details"]["reason"] == "client_cancelled"
    run(scenario)


def test_closing_mid_reply_stops_generation() -> None:
    async def scenario() -> None:
        chat = FakeChat(["word " * 500], delay_s=0.005)
        h = Harness(FakeTranscriber([]), chat)
        await h.session.handle(ItemCreate("i1", None, "user", "Talk."))
        await h.session.handle(ResponseCreate("r1", None, None))
        await h.wait_for(lambda: bool(h.of("response.output_audio_transcript.delta")))
        sent = len(h.events)
        await h.session.close()
        assert chat.active == 0 and chat.closed == 1
        assert chat.tokens_after_cancel <= 1
        await asyncio.sleep(0.05)
        assert len(h.events) == sent  # nothing is sent to a closed session
    run(scenario)


def test_silence_that_transcribes_to_nothing_gets_no_reply() -> None:
    async def scenario() -> None:
        h = Harness(FakeTranscriber([("", "en")]), FakeChat(["Never said."]))
        await h.speak()
        await h.wait_for(lambda: bool(
            h.of("conversation.item.input_audio_transcription.completed")))
        await asyncio.sleep(0.1)
        assert "response.created" not in h.types() and "response.done" not in h.types()
        assert h.session.turns.agent is AgentState.IDLE and h.session.response is None
        assert not h.chat.requests
    run(scenario)


def test_partial_transcripts_arrive_while_the_user_speaks() -> None:
    async def scenario() -> None:
        transcriber = FakeTranscriber([("one two three four five six", "en")])
        h = Harness(transcriber, FakeChat(["Okay."]))
        h.session.defaults = SessionDefaults(partial_interval_s=0.5)
        await h.send_audio(np.concatenate([tone(3.0), silence(0.7)]), pace_s=0.01)
        await h.wait_done()
        deltas = h.of("conversation.item.input_audio_transcription.delta")
        assert deltas, h.types()
        first_delta = h.types().index("conversation.item.input_audio_transcription.delta")
        assert first_delta < h.types().index("input_audio_buffer.speech_stopped")
        confirmed = [d.fields["confirmed"] for d in deltas]
        assert all(b.startswith(a) for a, b in itertools.pairwise(confirmed))
    run(scenario)


def test_audio_is_resampled_to_the_sessions_output_rate() -> None:
    async def scenario() -> None:
        h = Harness(FakeTranscriber([("Hi", "en")]), FakeChat(["Hello to you."]))
        await h.session.handle(SessionUpdate("e1", {"type": "realtime", "audio": {
            "output": {"format": {"type": "audio/pcm", "rate": 48000}}}}))
        await h.speak()
        await h.wait_done()
        audio = b"".join(base64.b64decode(e.fields["delta"])
                         for e in h.of("response.output_audio.delta"))
        # "Hello to you." is 13 characters: 130 ms at the fake voice's pace.
        assert abs(len(audio) // 2 - int(0.13 * 48000)) <= 48
    run(scenario)


def test_a_quick_interruption_is_answered_even_while_the_old_reply_winds_down() -> None:
    async def scenario() -> None:
        chat = FakeChat([" ".join(["word"] * 300), "Sure."], delay_s=0.2)  # slow tokens
        h = Harness(FakeTranscriber([("Talk", "en"), ("Stop", "en")]), chat)
        await h.speak()
        await h.wait_for(lambda: bool(h.of("response.output_audio_transcript.delta")))
        await h.speak(seconds=0.3, pause=0.6)  # over in a moment, before the old token ends
        await h.wait_done(2)
        statuses = [d.fields["response"]["status"] for d in h.of("response.done")]
        assert sorted(statuses) == ["cancelled", "completed"]
        assert h.session.turns.agent is AgentState.IDLE
    run(scenario)


def test_a_reply_cut_off_before_its_first_word_stays_empty_and_can_be_truncated() -> None:
    async def scenario() -> None:
        h = Harness(FakeTranscriber([]), FakeChat(["word " * 200], delay_s=0.01))
        await h.session.handle(ItemCreate("i1", None, "user", "Talk."))
        await h.session.handle(ResponseCreate("r1", None, None))
        await h.wait_for(lambda: bool(h.of("response.output_item.added")))
        item_id = h.of("response.output_item.added")[0].fields["item"]["id"]
        await h.session.handle(ResponseCancel("c1", None))  # nothing played yet
        await h.wait_done()
        # Never deleted: the unheard reply stays, empty and incomplete, out of the prompt.
        unheard = next(i for i in h.session.history if i.item_id == item_id)
        assert unheard.text == "" and unheard.status == "incomplete"
        await h.session.handle(ItemTruncate("t1", item_id, 0, 0))
        assert h.of("conversation.item.truncated")[-1].fields["item_id"] == item_id
        assert not h.of("error")
    run(scenario)


def test_a_client_truncate_followed_by_cancel_keeps_the_clients_figure() -> None:
    async def scenario() -> None:
        reply = " ".join(f"Sentence {n} is here." for n in range(60))
        h = Harness(FakeTranscriber([]), FakeChat([reply], delay_s=0.01))
        await h.session.handle(ItemCreate("i1", None, "user", "Talk."))
        await h.session.handle(ResponseCreate("r1", None, None))
        await h.wait_for(lambda: len(h.of("response.output_audio.delta")) >= 3)
        item_id = h.of("response.output_item.added")[0].fields["item"]["id"]
        # "Sentence 0 is here." is 19 characters: 190 ms with the fake voice.
        await h.session.handle(ItemTruncate("t1", item_id, 0, 190))
        await h.session.handle(ResponseCancel("c1", None))
        await h.wait_done()
        assistant = next(i for i in h.session.history if i.item_id == item_id)
        assert assistant.text == "Sentence 0 is here."
        assert assistant.status == "incomplete"
    run(scenario)
