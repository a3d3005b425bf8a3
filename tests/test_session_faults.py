"""Engine faults with fake engines: an engine that raises costs one turn, never the session."""

from __future__ import annotations

from llm.chat import ChatModelError
from tests.fakes import FakeChat, FakeTranscriber
from tests.test_session import Harness, run
from voice.protocol import ItemCreate, ResponseCreate, parse_client_event
from voice.turns import AgentState

CUDA_OOM = RuntimeError("CUDA failed with error out of memory")
NO_AUTO_REPLY = parse_client_event(
    '{"type": "session.update", "session": {"audio": {"input": {"turn_detection": '
    '{"type": "server_vad", "create_response": false}}}}}')


async def _ask(h: Harness, text: str = "Hello?") -> None:
    await h.session.handle(ItemCreate(None, None, "user", text))
    await h.session.handle(ResponseCreate(None, None, None))


def test_a_reply_that_fails_mid_stream_is_an_error_and_the_next_turn_works() -> None:
    async def scenario() -> None:
        chat = FakeChat(["One two three four five six seven. Eight nine.", "Fine again."])
        chat.failures = [(4, CUDA_OOM)]
        h = Harness(FakeTranscriber([]), chat)
        await _ask(h)
        await h.wait_done()
        error = h.of("error")[0].fields["error"]
        assert (error["type"], error["code"]) == ("server_error", "response_failed")
        assert "ran out of memory" in error["message"]
        done = h.of("response.done")[0].fields["response"]
        assert done["status"] == "failed"
        assert done["status_details"]["error"] == {"type": "server_error",
                                                   "code": "response_failed"}
        assert h.session.turns.agent is AgentState.IDLE and chat.active == 0
        assert h.error_codes == ["response_failed"]  # counted, like every other error
        assert h.turns[-1][1] == "failed"

        await _ask(h, "Again?")
        await h.wait_done(2)
        assert h.of("response.done")[1].fields["response"]["status"] == "completed"
        assert h.of("response.output_audio_transcript.done")[-1].fields[
            "transcript"] == "Fine again."
    run(scenario)


def test_a_prompt_the_model_refuses_is_an_error_that_says_why() -> None:
    async def scenario() -> None:
        chat = FakeChat(["Never said.", "Okay then."])
        chat.failures = [(0, ChatModelError("the prompt does not fit in 900 tokens even "
                                             "without history"))]
        h = Harness(FakeTranscriber([]), chat)
        await _ask(h)
        await h.wait_done()
        assert "does not fit in 900 tokens" in h.of("error")[0].fields["error"]["message"]
        assert h.of("response.done")[0].fields["response"]["status"] == "failed"
        await _ask(h)
        await h.wait_done(2)
        assert h.of("response.done")[1].fields["response"]["status"] == "completed"
    run(scenario)


def test_a_failed_synthesis_stops_the_reply_with_an_error_and_the_next_turn_works() -> None:
    async def scenario() -> None:
        long_reply = " ".join(f"Sentence {n} is here." for n in range(80))
        chat = FakeChat([long_reply, "Spoken fine."], delay_s=0.005)
        h = Harness(FakeTranscriber([]), chat)
        h.voices.failures.append(RuntimeError("onnxruntime: Failed to allocate memory"))
        await _ask(h)
        await h.wait_done()
        error = h.of("error")[0].fields["error"]
        assert error["code"] == "response_failed" and "out of memory" in error["message"]
        assert h.of("response.done")[0].fields["response"]["status"] == "failed"
        assert not h.of("response.output_audio.delta")
        assert chat.active == 0 and chat.tokens_after_cancel <= 1  # generation stopped too
        assert h.session.turns.agent is AgentState.IDLE

        await _ask(h)
        await h.wait_done(2)
        assert h.of("response.done")[1].fields["response"]["status"] == "completed"
        assert h.of("response.output_audio.delta")
    run(scenario)


def test_a_failed_transcription_is_an_error_with_no_reply_and_the_next_turn_works() -> None:
    async def scenario() -> None:
        transcriber = FakeTranscriber([("Hello there", "en")])
        transcriber.failures.append(RuntimeError("CUDA out of memory. Tried to allocate 2 GiB"))
        h = Harness(transcriber, FakeChat(["Hi!"]))
        await h.speak()
        await h.wait_for(lambda: bool(h.of("error")))
        error = h.of("error")[0].fields["error"]
        assert (error["code"], error["type"]) == ("transcription_failed", "server_error")
        assert "ran out of memory" in error["message"]
        failed = h.of("conversation.item.input_audio_transcription.failed")[0].fields
        assert failed["item_id"] == h.of("input_audio_buffer.committed")[0].fields["item_id"]
        assert failed["error"]["code"] == "transcription_failed"
        await h.wait_for(lambda: h.session.turns.agent is AgentState.IDLE)
        assert not h.of("response.created") and not h.chat.requests

        await h.speak()
        await h.wait_done()
        assert h.of("response.done")[0].fields["response"]["status"] == "completed"
        assert h.error_codes == ["transcription_failed"]
    run(scenario)


def test_a_failed_transcription_without_automatic_replies_is_still_reported() -> None:
    async def scenario() -> None:
        transcriber = FakeTranscriber([])
        transcriber.failures.append(ValueError("a bug in the decoder"))
        h = Harness(transcriber, FakeChat([]))
        await h.session.handle(NO_AUTO_REPLY)
        await h.speak()
        await h.wait_for(lambda: bool(h.of("error")))
        error = h.of("error")[0].fields["error"]
        assert error["code"] == "transcription_failed"
        assert error["message"] == ("transcription failed because of a server fault; see the "
                                    "server log")  # no internals leak to the client
    run(scenario)



def test_thrusts_invalid_device_error_under_memory_pressure_says_out_of_memory() -> None:
    # What CTranslate2 raised on an H100 short of memory, besides "out of memory" itself.
    async def scenario() -> None:
        transcriber = FakeTranscriber([("Hello there", "en")])
        transcriber.failures.append(RuntimeError(
            "parallel_for failed: cudaErrorInvalidDevice: invalid device ordinal"))
        h = Harness(transcriber, FakeChat(["Hi!"]))
        await h.speak()
        await h.wait_for(lambda: bool(h.of("error")))
        error = h.of("error")[0].fields["error"]
        assert error["code"] == "transcription_failed"
        assert "ran out of memory" in error["message"]
    run(scenario)
