"""Semantic turn detection and early decoding, as a client sees them (fake engines, the real
VAD state machine on an energy stand-in for the Silero network)."""

from __future__ import annotations

import base64
import json

import numpy as np

from tests.fakes import FakeChat, FakeTranscriber, FakeTurnModel, silence, tone
from tests.test_session import Harness, run
from voice.protocol import parse_client_event

# A pause is judged at 200 ms; judged complete, the turn ends at 600 ms of silence, else 2 s.
SEMANTIC = {"type": "semantic_vad", "eagerness": "auto"}


async def use(h: Harness, turn_detection: dict[str, object]) -> None:
    await h.session.handle(parse_client_event(json.dumps({"type": "session.update", "session": {
        "audio": {"input": {"turn_detection": turn_detection}}}})))


def final_transcripts(h: Harness) -> list[str]:
    return [e.fields["transcript"] for e in
            h.of("conversation.item.input_audio_transcription.completed")]


def samples_sent(h: Harness) -> int:
    """Samples of reply audio the client received."""
    return sum(len(base64.b64decode(e.fields["delta"])) // 2
               for e in h.of("response.output_audio.delta"))


def samples_of(piece: str) -> int:
    """What the fake voice makes of a piece (10 ms a character at 16 kHz), at the default
    24 kHz output rate."""
    return round(len(piece) * 160 * 24_000 / 16_000)


def test_semantic_vad_answers_a_turn_judged_complete_after_a_short_silence() -> None:
    async def scenario() -> None:
        turn_model = FakeTurnModel(rest=0.9)
        h = Harness(FakeTranscriber([("What time is it?", "en")]),
                    FakeChat(["It is noon."]), turn_model=turn_model)
        await use(h, SEMANTIC)
        # 0.6 s of speech, then 0.8 s of silence: far less than the 2 s for an unfinished turn.
        await h.send_audio(np.concatenate([tone(0.6), silence(0.8)]), pace_s=0.02)
        await h.wait_done()
        assert turn_model.calls, "the turn model was asked at the pause"
        assert final_transcripts(h) == ["What time is it?"]
        assert h.of("response.done")[0].fields["response"]["status"] == "completed"
    run(scenario)


def test_semantic_vad_waits_through_a_pause_judged_unfinished() -> None:
    async def scenario() -> None:
        h = Harness(FakeTranscriber([("I would like", "en"), ("I would like a tea", "en")]),
                    FakeChat(["Here is your tea."]),
                    turn_model=FakeTurnModel([0.1, 0.1], rest=0.9))  # at 200 ms and at 600 ms
        await use(h, SEMANTIC)
        # "I would like" ... 1 s pause (judged unfinished) ... "a tea", then a pause.
        await h.send_audio(np.concatenate([tone(0.6), silence(1.0)]), pace_s=0.02)
        assert "input_audio_buffer.speech_stopped" not in h.types()
        await h.send_audio(np.concatenate([tone(0.4), silence(0.8)]), pace_s=0.02)
        await h.wait_done()
        assert h.types().count("input_audio_buffer.speech_stopped") == 1
        # The decode started at the first pause was dropped: the transcript is the whole turn.
        assert final_transcripts(h) == ["I would like a tea"]
    run(scenario)


def test_semantic_vad_ends_a_turn_judged_complete_on_the_second_look() -> None:
    async def scenario() -> None:
        turn_model = FakeTurnModel([0.2], rest=0.9)  # unsure at 200 ms, sure at 600 ms
        h = Harness(FakeTranscriber([("Obrigado", "pt")]), FakeChat(["De nada."]),
                    turn_model=turn_model)
        await use(h, SEMANTIC)
        await h.send_audio(np.concatenate([tone(0.6), silence(1.0)]), pace_s=0.02)
        await h.wait_done()  # well before the 2 s for a turn judged unfinished
        assert len(turn_model.calls) == 2
        assert turn_model.calls[1] > turn_model.calls[0]  # it heard more of the silence
    run(scenario)


def test_semantic_vad_ends_an_unfinished_turn_after_the_eagerness_limit() -> None:
    async def scenario() -> None:
        h = Harness(FakeTranscriber([("Well", "en")]), FakeChat(["Yes?"]),
                    turn_model=FakeTurnModel(rest=0.05))
        await use(h, {"type": "semantic_vad", "eagerness": "high"})  # at most 1000 ms
        await h.send_audio(np.concatenate([tone(0.6), silence(0.7)]), pace_s=0.0)
        assert "input_audio_buffer.speech_stopped" not in h.types()
        await h.send_audio(silence(0.5))
        await h.wait_done()
        assert final_transcripts(h) == ["Well"]
    run(scenario)


def test_semantic_vad_ends_a_sentence_the_turn_model_doubts_after_a_second() -> None:
    async def scenario() -> None:
        # Smart Turn scores Polish endings low; Whisper's question mark still ends the turn
        # at 1 s of silence, not 2 s.
        h = Harness(FakeTranscriber([("Jaka jest średnica rury?", "pl")]),
                    FakeChat(["Dwa centymetry."]), turn_model=FakeTurnModel(rest=0.1))
        await use(h, SEMANTIC)
        await h.send_audio(np.concatenate([tone(0.6), silence(1.3)]), pace_s=0.02)
        await h.wait_done()
        assert final_transcripts(h) == ["Jaka jest średnica rury?"]
    run(scenario)


def test_semantic_vad_still_waits_for_words_that_end_no_sentence() -> None:
    async def scenario() -> None:
        h = Harness(FakeTranscriber([("Jaka jest", "pl")]), FakeChat(["Tak?"]),
                    turn_model=FakeTurnModel(rest=0.1))
        await use(h, SEMANTIC)
        await h.send_audio(np.concatenate([tone(0.6), silence(1.3)]), pace_s=0.02)
        assert "input_audio_buffer.speech_stopped" not in h.types()
        await h.send_audio(silence(0.9), pace_s=0.02)  # 2.2 s: the longest wait is over
        await h.wait_done()
        assert final_transcripts(h) == ["Jaka jest"]
    run(scenario)


def test_a_decode_started_at_the_pause_is_kept_when_nothing_follows() -> None:
    async def scenario() -> None:
        transcriber = FakeTranscriber([("Hello", "en"), ("never used", "en")])
        h = Harness(transcriber, FakeChat(["Hi."]))  # server_vad, 500 ms
        transcriber.observe = lambda: "input_audio_buffer.speech_stopped" in h.types()
        await h.speak(pause=0.8, pace_s=0.02)
        await h.wait_done()
        # One final decode, started at the pause, before the turn ended at 500 ms.
        assert transcriber.observed == [False]
        assert final_transcripts(h) == ["Hello"]
    run(scenario)


def test_the_final_decode_starts_at_100_ms_of_silence_and_is_kept() -> None:
    async def scenario() -> None:
        transcriber = FakeTranscriber([("Hello", "en"), ("never used", "en")])
        h = Harness(transcriber, FakeChat(["Hi."]), turn_model=FakeTurnModel(rest=0.9))
        await use(h, SEMANTIC)
        # 190 ms of silence, then the audio stops: media time stands still before the 200 ms
        # pause that the turn model judges, and long before the turn can end.
        await h.send_audio(np.concatenate([tone(0.6), silence(0.19)]), pace_s=0.02)
        await h.wait_for(lambda: any(o.max_new_tokens is None for o in transcriber.calls))
        assert "input_audio_buffer.speech_stopped" not in h.types()
        await h.send_audio(silence(1.0))
        await h.wait_done()
        assert [o.max_new_tokens for o in transcriber.calls].count(None) == 1
        assert final_transcripts(h) == ["Hello"]
    run(scenario)


def test_semantic_vad_without_a_turn_model_falls_back_to_silence() -> None:
    async def scenario() -> None:
        h = Harness(FakeTranscriber([("Hello", "en")]), FakeChat(["Hi."]))
        await use(h, SEMANTIC)
        await h.speak(pause=0.7)  # the server_vad 500 ms still ends the turn
        await h.wait_done()
        assert final_transcripts(h) == ["Hello"]
        session = h.of("session.updated")[-1].fields["session"]
        assert session["audio"]["input"]["turn_detection"] == {
            "type": "semantic_vad", "eagerness": "auto", "create_response": True,
            "interrupt_response": True}
    run(scenario)


def test_a_reply_is_written_and_its_first_piece_spoken_ahead_and_sent_after_the_turn() -> None:
    async def scenario() -> None:
        chat = FakeChat(["It is noon, have a nice lunch."])
        h = Harness(FakeTranscriber([("What time is it?", "en")]), chat,
                    turn_model=FakeTurnModel(rest=0.9))
        await use(h, SEMANTIC)
        # 400 ms into the 600 ms of confirming silence (the pause was reported at 200 ms), the
        # audio stops: media time stands still, so the turn cannot end while we look.
        await h.send_audio(np.concatenate([tone(0.6), silence(0.4)]), pace_s=0.02)
        voices = h.voices
        # The transcript came, the model wrote, and the first piece was synthesized.
        await h.wait_for(lambda: "en" in voices.voices and bool(voices.voices["en"].spoken))
        assert voices.voices["en"].spoken == ["It is noon,"]  # only the first piece, ahead
        assert "input_audio_buffer.speech_stopped" not in h.types()
        assert not [t for t in h.types() if t.startswith("response.")]  # nothing sent yet
        await h.send_audio(silence(0.4), pace_s=0.02)
        await h.wait_done()
        types = h.types()
        assert types.index("input_audio_buffer.speech_stopped") < types.index("response.created")
        assert len(chat.requests) == 1  # the reply is the one written ahead
        done = h.of("response.done")[0].fields["response"]
        assert done["status"] == "completed"
        assert done["output"][0]["content"][0]["transcript"] == "It is noon, have a nice lunch."
        # Each piece was synthesized once, and the audio sent is both pieces' audio.
        assert voices.voices["en"].spoken == ["It is noon,", "have a nice lunch."]
        assert samples_sent(h) == samples_of("It is noon,") + samples_of("have a nice lunch.")
    run(scenario)


def test_the_first_piece_spoken_ahead_is_as_long_as_the_service_sets_it() -> None:
    async def scenario() -> None:
        chat = FakeChat(["The kitchen light is on now for you."])
        h = Harness(FakeTranscriber([("Is the light on?", "en")]), chat,
                    turn_model=FakeTurnModel(rest=0.9), first_piece_words=3)
        await use(h, SEMANTIC)
        await h.send_audio(np.concatenate([tone(0.6), silence(0.4)]), pace_s=0.02)
        voices = h.voices
        await h.wait_for(lambda: "en" in voices.voices and bool(voices.voices["en"].spoken))
        # Three words, cut before the verb (a piece never ends on "is").
        assert voices.voices["en"].spoken == ["The kitchen light"]
        await h.send_audio(silence(0.4), pace_s=0.02)
        await h.wait_done()
        assert voices.voices["en"].spoken == ["The kitchen light", "is on now for you."]
        assert samples_sent(h) == (samples_of("The kitchen light")
                                   + samples_of("is on now for you."))
    run(scenario)


def test_a_reply_written_and_spoken_ahead_is_dropped_when_the_user_goes_on() -> None:
    async def scenario() -> None:
        chat = FakeChat(["(written ahead, never sent)", "Here is your tea."])
        h = Harness(FakeTranscriber([("I would like", "en"), ("I would like a tea", "en")]),
                    chat, turn_model=FakeTurnModel(rest=0.9))
        await use(h, SEMANTIC)
        await h.send_audio(np.concatenate([tone(0.6), silence(0.45)]), pace_s=0.02)
        voices = h.voices
        await h.wait_for(lambda: "en" in voices.voices and bool(voices.voices["en"].spoken))
        await h.send_audio(np.concatenate([tone(0.4), silence(0.8)]), pace_s=0.02)
        await h.wait_done()
        assert len(h.of("response.done")) == 1
        assert chat.requests[-1][-1].content == "I would like a tea"
        done = h.of("response.done")[0].fields["response"]
        assert done["output"][0]["content"][0]["transcript"] == "Here is your tea."
        assert "written ahead" not in str([e.fields for e in h.events])
        assert samples_sent(h) == samples_of("Here is your tea.")  # none of the draft's
    run(scenario)

class _BrokenTurnModel:
    def probability(self, audio: np.ndarray) -> float:
        raise RuntimeError("the turn model crashed")


def test_a_failing_turn_model_leaves_the_silence_limit_to_end_the_turn() -> None:
    async def scenario() -> None:
        h = Harness(FakeTranscriber([("Hello", "en")]), FakeChat(["Hi."]),
                    turn_model=_BrokenTurnModel())  # type: ignore[arg-type]
        await use(h, {"type": "semantic_vad", "eagerness": "high"})  # 1 s at most
        await h.send_audio(np.concatenate([tone(0.6), silence(1.3)]))
        await h.wait_done()
        assert final_transcripts(h) == ["Hello"]
        assert h.of("response.done")[0].fields["response"]["status"] == "completed"
        assert "error" not in h.types()  # the client is not bothered with it
    run(scenario)
