"""What a session asks of the engines besides its replies, with fake engines: the
conversation's model state kept after a reply (without a reload while other sessions are
answered) and read again early in another language, and the final transcript's beam."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from llm.prompts import system_prompt
from tests.fakes import FakeChat, FakeTranscriber, silence, tone
from tests.test_session import Harness, run
from voice.protocol import ResponseCancel
from voice.session import SessionDefaults


def test_after_a_reply_the_model_reads_the_conversation_the_next_prompt_begins_with() -> None:
    async def scenario() -> None:
        h = Harness(FakeTranscriber([("What is the capital of France?", "en"),
                                     ("And of Italy?", "en")]),
                    FakeChat(["Paris.", "Rome."]))
        await h.speak()
        await h.wait_done()
        await h.wait_for(lambda: len(h.chat.prefilled) == 1)
        assert h.chat.prefill_reloads == [True]  # the engines are idle: it may reload
        kept = h.chat.prefilled[0]
        assert [(m.role, m.content) for m in kept[1:]] == [
            ("user", "What is the capital of France?"), ("assistant", "Paris.")]
        await h.speak()
        await h.wait_done(2)
        # The second reply's prompt is what was kept, then the new question.
        assert h.chat.requests[1][:len(kept)] == kept
        assert [m.content for m in h.chat.requests[1][len(kept):]] == ["And of Italy?"]
    run(scenario)


def test_a_cancelled_reply_keeps_no_conversation_state() -> None:
    async def scenario() -> None:
        h = Harness(FakeTranscriber([("Tell me a long story.", "en")]),
                    FakeChat([" ".join(["word"] * 400)], delay_s=0.01))
        await h.speak()
        await h.wait_for(lambda: bool(h.of("response.output_audio.delta")))
        await h.session.handle(ResponseCancel(None, None))
        await h.wait_done()
        assert h.of("response.done")[0].fields["response"]["status"] == "cancelled"
        await h.wait_for(lambda: bool(h.turns))  # past the point where a state would be kept
        await asyncio.sleep(0.1)
        assert h.chat.prefilled == []
    run(scenario)


@pytest.mark.parametrize(("second", "read_in"), [
    (("Und Italien?", "de"), ["en", "de"]),  # read again in German while the user speaks
    (("And Italy?", "en"), ["en"]),  # the state kept after the reply already fits
])
def test_a_user_heard_speaking_another_language_has_the_conversation_read_in_it_early(
        second: tuple[str, str], read_in: list[str]) -> None:
    async def scenario() -> None:
        transcriber = FakeTranscriber([("What is the capital of France?", "en"), second])
        h = Harness(transcriber, FakeChat(["Paris.", "Rom."]))
        h.session.defaults = SessionDefaults(partial_interval_s=0.5)
        await h.speak()
        await h.wait_done()
        await h.wait_for(lambda: len(h.chat.prefilled) == 1)
        transcriber.observe = lambda: len(h.chat.prefilled)  # at each final decode
        await h.send_audio(np.concatenate([tone(3.0), silence(0.7)]), pace_s=0.01)
        await h.wait_done(2)
        assert transcriber.observed == [len(read_in)]  # read before the final transcript
        systems = {system_prompt(code): code for code in ("en", "de")}
        assert [systems[kept[0].content] for kept in h.chat.prefilled[:len(read_in)]] \
            == read_in
        kept = h.chat.prefilled[len(read_in) - 1]
        assert [m.content for m in kept[1:]] == ["What is the capital of France?", "Paris."]
        assert h.chat.requests[1][:len(kept)] == kept  # the reply's prompt starts with it
    run(scenario)


def test_while_another_session_is_answered_the_conversation_is_kept_only_where_room_is_left(
) -> None:
    async def scenario() -> None:
        h = Harness(FakeTranscriber([("What is the capital of France?", "en")]),
                    FakeChat(["Paris."]))
        h.session.engines.activity.replies += 1  # another session's reply is being written
        await h.speak()
        await h.wait_done()
        await h.wait_for(lambda: len(h.chat.prefilled) == 1)
        # Kept if the budget has room; never a reload of the model while others are answered.
        assert h.chat.prefill_reloads == [False]
        assert [m.content for m in h.chat.prefilled[0][1:]] == [
            "What is the capital of France?", "Paris."]
    run(scenario)


@pytest.mark.parametrize(("others_replying", "final_beam"), [
    (0, 3),  # the engines are this session's: the final gets the configured beam
    (1, 1),  # another session's reply is being written: greedy
])
def test_the_final_transcript_gets_the_configured_beam_only_while_no_one_else_waits(
        others_replying: int, final_beam: int) -> None:
    async def scenario() -> None:
        transcriber = FakeTranscriber([("What is the capital of France?", "en")])
        h = Harness(transcriber, FakeChat(["Paris."]))
        h.session.defaults = SessionDefaults(partial_interval_s=0.5, beam_size=3)
        h.session.engines.activity.replies += others_replying
        await h.send_audio(np.concatenate([tone(2.5), silence(0.7)]), pace_s=0.01)
        await h.wait_done()
        finals = [o.beam_size for o in transcriber.calls if o.max_new_tokens is None]
        partials = [o.beam_size for o in transcriber.calls if o.max_new_tokens is not None]
        assert finals == [final_beam]
        assert set(partials) <= {1}  # drafts are always greedy
        assert partials or others_replying  # (under load a session may get none)
        assert h.of("conversation.item.input_audio_transcription.completed")[0].fields[
            "transcript"] == "What is the capital of France?"
    run(scenario)


@pytest.mark.parametrize(("give_way_ms", "other", "decoded_at_pause"), [
    (2500, "speaking", True),   # another reply is only being spoken: it gives way
    (2500, "awaited", False),   # another session waits for its first words: they come first
    (0, "speaking", False),     # replies never give way: every reply in progress counts
])
def test_the_decode_at_a_pause_waits_only_for_work_others_wait_for(
        give_way_ms: float, other: str, decoded_at_pause: bool) -> None:
    async def scenario() -> None:
        transcriber = FakeTranscriber([("Hello", "en"), ("never used", "en")])
        h = Harness(transcriber, FakeChat(["Hi."]), give_way_ms=give_way_ms)  # server_vad
        activity = h.session.engines.activity
        activity.replies += 1  # another session's reply is in progress...
        if other == "awaited":  # ...and its user waits for its first words
            activity.await_first_words("other")
        transcriber.observe = lambda: "input_audio_buffer.speech_stopped" in h.types()
        await h.speak(pause=0.8, pace_s=0.02)
        await h.wait_done()
        # One final decode: at the pause (before the turn ended at 500 ms), or at the end.
        assert transcriber.observed == [not decoded_at_pause]
        assert h.of("conversation.item.input_audio_transcription.completed")[0].fields[
            "transcript"] == "Hello"
    run(scenario)
