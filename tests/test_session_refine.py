"""A paused turn decoded twice on a CPU: greedily, for the reply written ahead, then with a
wider beam, whose words are the final transcript where they differ (``[asr]
refine_beam_size``). Fake engines; what a client sees and what the language model was asked."""

from __future__ import annotations

import numpy as np
import pytest

from asr.transcript import TranscribeOptions, Transcript
from tests.fakes import FakeChat, FakeTranscriber, FakeTurnModel, silence, tone
from tests.test_session import Harness, run
from tests.test_session_turns import SEMANTIC, final_transcripts, samples_of, samples_sent, use


def final_beams(transcriber: FakeTranscriber) -> list[int]:
    return [options.beam_size for options in transcriber.calls if options.max_new_tokens is None]


def refining(greedy: str, wider: str, chat: FakeChat, **defaults: object) -> Harness:
    return Harness(FakeTranscriber([(greedy, "en"), (wider, "en")]), chat,
                   turn_model=FakeTurnModel(rest=0.9), refine_beam_size=2, **defaults)


def test_the_wider_beams_other_words_are_the_transcript_and_the_reply_is_written_on_them(
) -> None:
    async def scenario() -> None:
        chat = FakeChat(["(written on the greedy words, never sent)", "Milk is in the fridge."])
        h = refining("Where is the silk?", "Where is the milk?", chat)
        await use(h, SEMANTIC)
        # 400 ms into the turn's confirming silence: both decodes are done, the reply is
        # written ahead again on the wider beam's words, and nothing is sent yet.
        await h.send_audio(np.concatenate([tone(0.6), silence(0.4)]), pace_s=0.02)
        await h.wait_for(lambda: len(chat.requests) == 2)
        assert [request[-1].content for request in chat.requests] == [
            "Where is the silk?", "Where is the milk?"]
        assert not [t for t in h.types() if t.startswith("response.")]
        await h.send_audio(silence(0.4), pace_s=0.02)
        await h.wait_done()
        assert final_beams(h.transcriber) == [1, 2]  # greedy first, the wider beam after it
        assert final_transcripts(h) == ["Where is the milk?"]
        assert len(chat.requests) == 2  # the reply is the second one written ahead
        done = h.of("response.done")[0].fields["response"]
        assert done["output"][0]["content"][0]["transcript"] == "Milk is in the fridge."
        assert "never sent" not in str([e.fields for e in h.events])
        assert samples_sent(h) == samples_of("Milk is in the fridge.")  # none of the first's
    run(scenario)


def test_when_the_wider_beam_hears_the_same_words_the_reply_written_ahead_is_kept() -> None:
    async def scenario() -> None:
        chat = FakeChat(["It is noon, have a nice lunch."])
        # Case and punctuation aside, the same words: the greedy transcript stands.
        h = refining("what time is it", "What time is it?", chat)
        await use(h, SEMANTIC)
        await h.send_audio(np.concatenate([tone(0.6), silence(0.8)]), pace_s=0.02)
        await h.wait_done()
        assert final_beams(h.transcriber) == [1, 2]
        assert final_transcripts(h) == ["what time is it"]
        assert len(chat.requests) == 1  # written once, ahead, and adopted
        assert chat.requests[0][-1].content == "what time is it"
        assert h.of("response.done")[0].fields["response"]["status"] == "completed"
    run(scenario)


@pytest.mark.parametrize(("others_replying", "beams"), [
    (0, [1, 2]),
    (1, [1]),  # another session's reply is being written: one greedy decode
])
def test_the_turn_is_decoded_twice_only_while_no_one_else_waits(
        others_replying: int, beams: list[int]) -> None:
    async def scenario() -> None:
        h = refining("Turn on the light.", "Turn on the lights.", FakeChat(["Done."]))
        h.session.engines.activity.replies += others_replying
        await use(h, SEMANTIC)
        await h.send_audio(np.concatenate([tone(0.6), silence(0.8)]), pace_s=0.02)
        await h.wait_done()
        assert final_beams(h.transcriber) == beams
        expected = "Turn on the lights." if others_replying == 0 else "Turn on the light."
        assert final_transcripts(h) == [expected]
    run(scenario)


class _WiderBeamFails(FakeTranscriber):
    def _decode(self, audio: np.ndarray, options: TranscribeOptions) -> Transcript:
        if options.beam_size > 1:
            raise RuntimeError("the wider decode crashed")
        return super()._decode(audio, options)


def test_a_failed_wider_decode_leaves_the_greedy_transcript() -> None:
    async def scenario() -> None:
        h = Harness(_WiderBeamFails([("Turn on the light.", "en")]), FakeChat(["Done."]),
                    turn_model=FakeTurnModel(rest=0.9), refine_beam_size=2)
        await use(h, SEMANTIC)
        await h.send_audio(np.concatenate([tone(0.6), silence(0.8)]), pace_s=0.02)
        await h.wait_done()
        assert final_beams(h.transcriber) == [1, 2]
        assert final_transcripts(h) == ["Turn on the light."]
        assert h.error_codes == []  # no error for the client: the greedy words stand
        assert h.of("response.done")[0].fields["response"]["status"] == "completed"
    run(scenario)


def test_with_the_final_beam_as_wide_the_turn_is_decoded_once() -> None:
    async def scenario() -> None:
        h = refining("Turn on the light.", "never decoded", FakeChat(["Done."]), beam_size=2)
        await use(h, SEMANTIC)
        await h.send_audio(np.concatenate([tone(0.6), silence(0.8)]), pace_s=0.02)
        await h.wait_done()
        assert final_beams(h.transcriber) == [2]
        assert final_transcripts(h) == ["Turn on the light."]
    run(scenario)
