"""Function calling in a session: calls become function_call items, results are answered."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from llm.chat import Message, SamplingOptions
from llm.prompts import CALL_WHEN_ASKED, system_prompt
from tests.fakes import FakeChat, FakeTranscriber, FakeTurnModel, silence, tone
from tests.test_session import Harness, run
from voice.protocol import ItemCreate, ResponseCreate, SessionUpdate

LIGHT = {"type": "function", "name": "set_light", "description": "Switch a room's light",
         "parameters": {"type": "object", "properties": {
             "room": {"type": "string"}, "on": {"type": "boolean"}},
             "required": ["room", "on"]}}
CALL = ('<tool_call>\n{"name": "set_light", "arguments": {"room": "kitchen", "on": true}}\n'
        '</tool_call>')


async def with_tools(h: Harness, **session: object) -> None:
    await h.session.handle(SessionUpdate("u1", {"type": "realtime", "tools": [LIGHT],
                                                **session}))


def test_a_spoken_request_becomes_a_function_call_and_nothing_of_it_is_spoken() -> None:
    async def scenario() -> None:
        h = Harness(FakeTranscriber([("Turn on the kitchen light", "en")]), FakeChat([CALL]))
        await h.session.start()
        await with_tools(h)
        await h.speak()
        await h.wait_done()
        added = h.of("response.output_item.added")
        assert [e.fields["item"]["type"] for e in added] == ["function_call"]
        assert added[0].fields["item"]["status"] == "in_progress"
        done = h.of("response.function_call_arguments.done")[0].fields
        assert done["name"] == "set_light"
        assert json.loads(done["arguments"]) == {"room": "kitchen", "on": True}
        delta = h.of("response.function_call_arguments.delta")[0].fields
        assert (delta["call_id"], delta["item_id"]) == (done["call_id"], done["item_id"])
        item_done = h.of("response.output_item.done")[0].fields
        assert item_done["item"]["status"] == "completed"
        assert item_done["item"]["call_id"] == done["call_id"]
        response = h.of("response.done")[0].fields["response"]
        assert response["status"] == "completed"
        assert [o["type"] for o in response["output"]] == ["function_call"]
        # Nothing spoken, no message: the model's markup never reaches the client or TTS.
        assert not h.of("response.output_audio.delta")
        assert not h.of("response.output_audio_transcript.delta")
        assert h.voices.voices.get("en") is None or not h.voices.voices["en"].spoken
        assert [tool.name for tool in h.chat.tools[0]] == ["set_light"]
        assert h.chat.options[0] is not None and h.chat.options[0].no_repeat_ngram_size == 0
    run(scenario)


def test_the_functions_result_is_given_to_the_model_and_answered_aloud() -> None:
    async def scenario() -> None:
        h = Harness(FakeTranscriber([("Turn on the kitchen light", "en")]),
                    FakeChat([CALL, "The kitchen light is on."]))
        await h.session.start()
        await with_tools(h)
        await h.speak()
        await h.wait_done()
        call_id = h.of("response.function_call_arguments.done")[0].fields["call_id"]
        await h.session.handle(ItemCreate("o1", None, "user", '{"ok": true}',
                                          "function_call_output", call_id))
        added = [e.fields["item"] for e in h.of("conversation.item.added")]
        assert added[-1]["type"] == "function_call_output" and added[-1]["call_id"] == call_id
        await h.session.handle(ResponseCreate("r2", None, None))
        await h.wait_done(2)
        # The call and its result reach the model as a note in the user's turn, and the
        # answer is written without tools (the small model would call again).
        assert h.chat.requests[1][1:] == [Message("user", (
            'Turn on the kitchen light\n\n(The app ran set_light(room="kitchen", on=true) and '
            'got: {"ok": true}. Tell me the outcome in one short sentence.)'))]
        assert h.chat.tools[1] == []
        assert h.of("response.output_audio_transcript.done")[0].fields["transcript"] == \
            "The kitchen light is on."
        # Spoken in full (its first piece ends after a few words).
        assert " ".join(h.voices.voices["en"].spoken) == "The kitchen light is on."
    run(scenario)


def test_replies_that_may_call_tools_are_written_by_the_tools_model() -> None:
    """With a tools model, it writes the spoken request's reply (the one that may call); the
    answer to the result, written without tools, and a session's replies before it had tools
    come from the conversational model."""
    async def scenario() -> None:
        chat, tools_chat = FakeChat(["Hello there.", "The kitchen light is on."]), FakeChat([CALL])
        h = Harness(FakeTranscriber([("Hello", "en"), ("Turn on the kitchen light", "en")]),
                    chat, tools_chat=tools_chat)
        await h.session.start()
        await h.speak()
        await h.wait_done()
        await with_tools(h)
        await h.speak()
        await h.wait_done(2)
        call_id = h.of("response.function_call_arguments.done")[0].fields["call_id"]
        await h.session.handle(ItemCreate("o1", None, "user", '{"ok": true}',
                                          "function_call_output", call_id))
        await h.session.handle(ResponseCreate("r3", None, None))
        await h.wait_done(3)
        assert [request[-1].content for request in tools_chat.requests] == [
            "Turn on the kitchen light"]
        assert [tool.name for tool in tools_chat.tools[0]] == ["set_light"]
        # It is told to call rather than describe or guess; the others are not told of tools.
        assert CALL_WHEN_ASKED in tools_chat.requests[0][0].content
        assert all(CALL_WHEN_ASKED not in request[0].content for request in chat.requests)
        assert [request[-1].content.split("\n")[0] for request in chat.requests] == [
            "Hello", "Turn on the kitchen light"]
        assert chat.tools == [[], []]
        transcripts = h.of("response.output_audio_transcript.done")
        assert [e.fields["transcript"] for e in transcripts] == [
            "Hello there.", "The kitchen light is on."]
    run(scenario)


# The call after the sentence: tagged, or bare on the next lines (as the 1.5B model wrote it).
BARE_CALL = '\n{\n  "name": "set_light",\n  "arguments": {"room": "kitchen", "on": true}\n}'


@pytest.mark.parametrize("call", [CALL, BARE_CALL], ids=["tagged", "bare"])
def test_one_response_can_say_a_sentence_and_call_a_function(call: str) -> None:
    async def scenario() -> None:
        h = Harness(FakeTranscriber([]), FakeChat([f"Sure, one moment. {call}"]))
        await with_tools(h)
        await h.session.handle(ItemCreate("i1", None, "user", "Kitchen light on, please"))
        await h.session.handle(ResponseCreate("r1", None, None))
        await h.wait_done()
        output = h.of("response.done")[0].fields["response"]["output"]
        assert [o["type"] for o in output] == ["message", "function_call"]
        assert output[0]["content"][0]["transcript"] == "Sure, one moment."
        indexes = {e.fields["item"]["type"]: e.fields["output_index"]
                   for e in h.of("response.output_item.added")}
        assert indexes == {"message": 0, "function_call": 1}
        assert h.voices.voices["en"].spoken == ["Sure, one moment."]
    run(scenario)


def test_a_call_that_breaks_its_schema_is_an_error_never_a_call() -> None:
    async def scenario() -> None:
        bad = ('<tool_call>\n{"name": "set_light", "arguments": {"room": 5}}\n</tool_call>')
        h = Harness(FakeTranscriber([]), FakeChat([bad]))
        await with_tools(h)
        await h.session.handle(ItemCreate("i1", None, "user", "Light"))
        await h.session.handle(ResponseCreate("r1", None, None))
        await h.wait_done()
        errors = [e.fields["error"] for e in h.of("error")]
        assert [e["code"] for e in errors] == ["invalid_tool_call"]
        assert errors[0]["type"] == "server_error"
        assert not h.of("response.function_call_arguments.done")
        assert h.of("response.done")[0].fields["response"]["status"] == "completed"
    run(scenario)


def test_a_question_taken_for_a_call_that_cannot_be_made_is_answered_in_words() -> None:
    async def scenario() -> None:
        wrong = '<tool_call>\n{"name": "get_legs", "arguments": {}}\n</tool_call>'
        h = Harness(FakeTranscriber([("How many legs does a spider have?", "en")]),
                    FakeChat([wrong, "Spiders have eight legs."]))
        await h.session.start()
        await with_tools(h)
        await h.speak()
        await h.wait_done()
        assert [e.fields["error"]["code"] for e in h.of("error")] == ["invalid_tool_call"]
        response = h.of("response.done")[0].fields["response"]
        assert response["status"] == "completed"
        assert [o["type"] for o in response["output"]] == ["message"]
        assert h.voices.voices["en"].spoken == ["Spiders have eight legs."]
        # The words are written without tools, and without the rule about them.
        assert h.chat.tools[1] == []
        assert CALL_WHEN_ASKED not in h.chat.requests[1][0].content
    run(scenario)


def test_a_required_call_that_cannot_be_made_is_not_replaced_by_words() -> None:
    async def scenario() -> None:
        wrong = '{"name": "get_legs", "arguments": {}}'
        h = Harness(FakeTranscriber([]), FakeChat([wrong, "Words."]))
        await with_tools(h, tool_choice="required")
        await h.session.handle(ItemCreate("i1", None, "user", "Legs?"))
        await h.session.handle(ResponseCreate("r1", None, None))
        await h.wait_done()
        assert [e.fields["error"]["code"] for e in h.of("error")] == ["invalid_tool_call"]
        assert h.of("response.done")[0].fields["response"]["output"] == []
        assert len(h.chat.requests) == 1
    run(scenario)


def test_tool_choice_none_for_one_response_hides_the_tools_from_the_model() -> None:
    async def scenario() -> None:
        h = Harness(FakeTranscriber([]), FakeChat(["Hello!"]))
        await with_tools(h)
        await h.session.handle(ItemCreate("i1", None, "user", "Hi"))
        await h.session.handle(ResponseCreate("r1", None, None, tool_choice="none"))
        await h.wait_done()
        assert h.chat.tools == [[]]
        assert h.chat.options[0] is not None and h.chat.options[0].no_repeat_ngram_size == 6
    run(scenario)


def test_a_forced_function_is_asked_for_and_its_call_is_opened_for_the_model() -> None:
    async def scenario() -> None:
        bare = '{"name": "set_light", "arguments": {"room": "kitchen", "on": true}}'
        h = Harness(FakeTranscriber([]), FakeChat([bare]))
        await with_tools(h, tool_choice={"type": "function", "name": "set_light"})
        await h.session.handle(ItemCreate("i1", None, "user", "Kitchen"))
        await h.session.handle(ResponseCreate("r1", None, None))
        await h.wait_done()
        assert "calling the function set_light" in h.chat.requests[0][0].content
        # Decoding starts inside the call: the model only writes its arguments.
        options = h.chat.options[0]
        assert options is not None and options.prefix == '{"name": "set_light", "arguments": '
        done = h.of("response.function_call_arguments.done")[0].fields
        assert (done["name"], json.loads(done["arguments"])) == (
            "set_light", {"room": "kitchen", "on": True})
    run(scenario)


def test_required_opens_a_call_and_the_model_names_the_function() -> None:
    async def scenario() -> None:
        bare = '{"name": "set_light", "arguments": {"room": "hall", "on": false}}'
        h = Harness(FakeTranscriber([]), FakeChat([bare, "Done."]))
        await with_tools(h, tool_choice="required")
        await h.session.handle(ItemCreate("i1", None, "user", "Hall light off"))
        await h.session.handle(ResponseCreate("r1", None, None))
        await h.wait_done()
        options = h.chat.options[0]
        assert options is not None and options.prefix == '{"name": "'
        assert h.of("response.function_call_arguments.done")[0].fields["name"] == "set_light"
        assert not h.of("response.output_audio_transcript.delta")  # nothing of it is spoken
        # Answering the result is not forced: no opening, no tools.
        call_id = h.of("response.function_call_arguments.done")[0].fields["call_id"]
        await h.session.handle(ItemCreate("o1", None, "user", "ok", "function_call_output",
                                          call_id))
        await h.session.handle(ResponseCreate("r2", None, None, tool_choice="auto"))
        await h.wait_done(2)
        assert h.chat.options[1] is not None and h.chat.options[1].prefix == ""
    run(scenario)


def test_a_response_may_bring_its_own_tools() -> None:
    async def scenario() -> None:
        h = Harness(FakeTranscriber([]), FakeChat([CALL]))
        await h.session.handle(ItemCreate("i1", None, "user", "Kitchen light on"))
        from voice.protocol import parse_tools
        tools = parse_tools([LIGHT], None, "response.tools")
        await h.session.handle(ResponseCreate("r1", None, None, tools=tools))
        await h.wait_done()
        assert [tool.name for tool in h.chat.tools[0]] == ["set_light"]
        assert h.of("response.function_call_arguments.done")
        assert h.session.settings.config.tools == ()  # the session's own stay as they were
    run(scenario)


def test_a_model_that_cannot_call_functions_refuses_tools_clearly() -> None:
    async def scenario() -> None:
        h = Harness(FakeTranscriber([]), FakeChat([]), tools_supported=False)
        await with_tools(h)
        error = h.of("error")[0].fields["error"]
        assert (error["code"], error["param"]) == ("unsupported_feature", "session.tools")
        assert "cannot call functions" in error["message"]
        assert h.session.settings.config.tools == ()
    run(scenario)


def test_a_call_is_written_ahead_with_the_tools_and_sent_as_a_call_after_the_turn() -> None:
    async def scenario() -> None:
        chat = FakeChat([CALL])
        h = Harness(FakeTranscriber([("Turn on the kitchen light", "en")]), chat,
                    turn_model=FakeTurnModel(rest=0.9))
        await with_tools(h, audio={"input": {"turn_detection": {
            "type": "semantic_vad", "eagerness": "auto"}}})
        # The pause is reported at 200 ms; 400 ms into the confirming silence the model writes.
        await h.send_audio(np.concatenate([tone(0.6), silence(0.4)]), pace_s=0.02)
        await h.wait_for(lambda: bool(chat.requests))
        assert not [t for t in h.types() if t.startswith("response.")]  # nothing sent yet
        assert [tool.name for tool in chat.tools[0]] == ["set_light"]
        await h.send_audio(silence(0.4), pace_s=0.02)
        await h.wait_done()
        assert len(chat.requests) == 1  # the reply adopted what was written ahead
        done = h.of("response.function_call_arguments.done")[0].fields
        assert json.loads(done["arguments"]) == {"room": "kitchen", "on": True}
        assert not h.of("response.output_audio_transcript.delta")
        # Nothing of the call was synthesized ahead either (nor after).
        assert h.voices.voices.get("en") is None or not h.voices.voices["en"].spoken
    run(scenario)


@pytest.mark.parametrize(("pinned", "language"), [(None, "de"), ("fr", "fr")])
def test_the_tools_model_keeps_its_system_turn_not_the_conversation(
        pinned: str | None, language: str) -> None:
    """A separate tools model keeps the state of its system turn with the tools (read while
    the user speaks, once the partials are sure of the language; a pinned one's as soon as
    the session is configured), never
    a conversation's: its small budget of kept states would reload the model at every call."""
    async def scenario() -> None:
        chat, tools_chat = FakeChat([]), FakeChat([CALL])
        transcriber = FakeTranscriber([("Schalte das Küchenlicht ein", "de")])
        h = Harness(transcriber, chat, tools_chat=tools_chat)
        h.session.defaults = dataclasses.replace(h.session.defaults, partial_interval_s=0.5)
        await h.session.start()
        if pinned is not None:
            await with_tools(h, audio={"input": {"transcription": {"language": pinned}}})
            # Pinned: read as soon as the session is configured, before the user speaks (and
            # asked again while they speak, which a model that holds it answers at once).
            await h.wait_for(lambda: len(tools_chat.system_turns) == 1)
        else:
            await with_tools(h)
        reads = 3 if pinned is not None else 2
        transcriber.observe = lambda: len(tools_chat.system_turns)  # at the final decode
        await h.send_audio(np.concatenate([tone(2.5), silence(0.7)]), pace_s=0.01)
        await h.wait_done()
        await h.wait_for(lambda: len(tools_chat.system_turns) == reads)
        assert transcriber.observed == [reads - 1]  # read before the final transcript
        system = tools_chat.requests[0][0].content
        assert system.split("\n")[0] == system_prompt(language).split("\n")[0]
        assert tools_chat.system_turns == [(system, ["set_light"])] * reads  # and after the reply
        assert tools_chat.prefilled == [] and chat.prefilled == []
    run(scenario)


def test_only_a_reply_free_to_call_may_be_written_as_a_call_when_torn() -> None:
    # [llm] call_when_torn reaches the model under tool_choice auto (llm/torn.py); a forced
    # call opens itself, and tool_choice none shows no tools.
    async def scenario() -> None:
        torn = SamplingOptions(no_repeat_ngram_size=6, call_when_torn=0.2)
        h = Harness(FakeTranscriber([]), FakeChat(["Words.", CALL, "Words."]), sampling=torn)
        await with_tools(h)
        for index, choice in enumerate(["auto", "required", "none"]):
            await h.session.handle(ItemCreate(f"i{index}", None, "user", "Kitchen light"))
            await h.session.handle(ResponseCreate(f"r{index}", None, None,
                                                  tool_choice=choice))
            await h.wait_done(index + 1)
        assert [o.call_when_torn if o else None for o in h.chat.options] == [0.2, 0.0, 0.0]
    run(scenario)
