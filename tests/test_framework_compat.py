"""What agent frameworks send and expect, at the session level: ``null`` for fields they do not
set, ``response.metadata`` echoed (LiveKit matches replies by it), history kept in sync with
``conversation.item.delete``/``.retrieve``, and a session object that pipecat's own model
parses (it fails on any key the GA protocol does not give the transcription settings)."""

from __future__ import annotations

import json

from tests.fakes import FakeChat, FakeTranscriber
from tests.realtime_types import ga_problems
from tests.test_session import Harness, run
from voice.protocol import (
    ItemCreate,
    ItemDelete,
    ItemRetrieve,
    ResponseCreate,
    SessionUpdate,
    parse_client_event,
)


def all_ga(h: Harness) -> None:
    assert [p for e in h.events for p in ga_problems(json.loads(e.to_json()))] == []


def test_a_response_create_full_of_nulls_with_metadata_is_answered_and_echoes_it() -> None:
    async def scenario() -> None:
        h = Harness(FakeTranscriber([]), FakeChat(["Hello there."]))
        await h.session.handle(ItemCreate(None, None, "user", "Hi"))
        # As LiveKit's generate_reply() sends it.
        await h.session.handle(parse_client_event(json.dumps({
            "type": "response.create", "event_id": "e1", "response": {
                "instructions": None, "tools": None, "tool_choice": None,
                "output_modalities": None, "metadata": {"client_event_id": "e1"}}})))
        await h.wait_done()
        assert not h.of("error")
        created = h.of("response.created")[0].fields["response"]
        done = h.of("response.done")[0].fields["response"]
        assert created["metadata"] == done["metadata"] == {"client_event_id": "e1"}
        assert done["status"] == "completed"
        all_ga(h)
    run(scenario)


def test_deleted_items_leave_the_history_and_retrieve_sends_an_item_back() -> None:
    async def scenario() -> None:
        chat = FakeChat(["Fine."])
        h = Harness(FakeTranscriber([]), chat)
        await h.session.handle(ItemCreate(None, "keep", "user", "What is two plus two?"))
        await h.session.handle(ItemCreate(None, "gone", "user", "Forget this."))
        await h.session.handle(ItemDelete("d1", "gone"))
        await h.session.handle(ItemRetrieve("r1", "keep"))
        await h.session.handle(ItemDelete("d2", "never-was"))
        assert [e.fields["item_id"] for e in h.of("conversation.item.deleted")] == ["gone"]
        retrieved = h.of("conversation.item.retrieved")[0].fields["item"]
        assert retrieved["id"] == "keep"
        assert retrieved["content"][0]["text"] == "What is two plus two?"
        errors = [e.fields["error"] for e in h.of("error")]
        assert [(e["code"], e["param"]) for e in errors] == [("item_not_found", "item_id")]
        await h.session.handle(ResponseCreate(None, None, None))
        await h.wait_done()
        assert [m.content for m in chat.requests[0][1:]] == ["What is two plus two?"]
        all_ga(h)
    run(scenario)


def test_pipecats_own_session_model_parses_our_session() -> None:
    from pipecat.services.openai.realtime.events import SessionProperties

    async def scenario() -> None:
        h = Harness(FakeTranscriber([]), FakeChat([]))
        await h.session.start()
        await h.session.handle(SessionUpdate("u1", {"audio": {"input": {"transcription": {
            "language": "de", "languages": ["de", "en"]}}}}))
        for event in (h.of("session.created")[0], h.of("session.updated")[0]):
            session = json.loads(event.to_json())["session"]
            parsed = SessionProperties.model_validate(session)
            assert parsed.audio is not None and parsed.audio.input is not None
        assert json.loads(h.of("session.updated")[0].to_json())["session"]["languages"] == [
            "de", "en"]
        all_ga(h)
    run(scenario)
