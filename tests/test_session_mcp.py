"""MCP tools in a session: a real MCP server (the ``mcp`` SDK's own, on loopback) is listed,
called by the server when the model asks, and its outcome answered aloud; approvals, and a
server that is down, slow or failing. The model is a fake that writes the calls; every event
the session sends is checked against the official SDK's GA types."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.fakes import FakeChat, FakeTranscriber
from tests.mcp_server import HomeServer, free_port_url, home_server
from tests.realtime_types import ga_problems
from tests.test_session import Harness, run
from voice.protocol import ItemCreate, ResponseCreate, SessionUpdate


def call(name: str, **arguments: Any) -> str:
    return (f'<tool_call>\n{json.dumps({"name": name, "arguments": arguments})}\n'
            '</tool_call>')


@pytest.fixture(scope="module")
def home() -> Iterator[HomeServer]:
    with home_server(slow_s=3.0) as server:
        yield server


def mcp_tool(url: str, **extra: Any) -> dict[str, Any]:
    return {"type": "mcp", "server_label": "home", "server_url": url, **extra}


def harness(chat: FakeChat, **defaults: Any) -> Harness:
    defaults.setdefault("mcp_hosts", frozenset({"127.0.0.1"}))
    return Harness(FakeTranscriber([]), chat, **defaults)


async def ask(h: Harness, text: str, count: int) -> None:
    await h.session.handle(ItemCreate(None, None, "user", text))
    await h.session.handle(ResponseCreate(None, None, None))
    await h.wait_done(count)


async def with_mcp(h: Harness, url: str, **extra: Any) -> None:
    await h.session.handle(SessionUpdate("u1", {"type": "realtime",
                                                "tools": [mcp_tool(url, **extra)]}))
    await h.wait_for(lambda: bool(h.of("mcp_list_tools.completed")
                                  or h.of("mcp_list_tools.failed")), timeout=15)


def said(h: Harness) -> str:
    """What was spoken (the pieces it was synthesized in depend on timing)."""
    voice = h.voices.voices.get("en")
    return " ".join(voice.spoken) if voice is not None else ""


def all_ga(h: Harness) -> None:
    problems = [p for e in h.events for p in ga_problems(json.loads(e.to_json()))]
    assert problems == []


def test_an_mcp_server_named_in_the_session_is_listed_with_the_allowed_tools(
        home: HomeServer) -> None:
    async def scenario() -> None:
        h = harness(FakeChat([]))
        await with_mcp(h, home.url, allowed_tools=["set_light", "get_weather"])
        listed = [e.fields["item"] for e in h.of("conversation.item.done")
                  if e.fields["item"]["type"] == "mcp_list_tools"]
        assert [t["name"] for t in listed[0]["tools"]] == ["set_light", "get_weather"]
        assert listed[0]["tools"][0]["input_schema"]["required"] == ["room", "on"]
        item_id = listed[0]["id"]
        assert [e.fields["item_id"] for e in h.of("mcp_list_tools.in_progress")] == [item_id]
        assert h.types().index("mcp_list_tools.in_progress") < \
            h.types().index("mcp_list_tools.completed")
        session = h.of("session.updated")[0].fields["session"]
        assert session["tools"][0]["allowed_tools"] == {"tool_names": ["set_light",
                                                                       "get_weather"]}
        all_ga(h)
    run(scenario)


def test_mcp_tools_are_off_unless_the_operator_allows_the_host(home: HomeServer) -> None:
    async def scenario() -> None:
        off = harness(FakeChat([]), mcp_hosts=frozenset())
        await off.session.handle(SessionUpdate("u1", {"tools": [mcp_tool(home.url)]}))
        other = harness(FakeChat([]), mcp_hosts=frozenset({"mcp.example"}))
        await other.session.handle(SessionUpdate("u1", {"tools": [mcp_tool(home.url)]}))
        port = harness(FakeChat([]), mcp_hosts=frozenset({f"127.0.0.1:{home.port}"}))
        await port.session.handle(SessionUpdate("u1", {"tools": [mcp_tool(home.url)]}))
        assert [e.fields["error"]["code"] for e in off.of("error")] == ["unsupported_feature"]
        assert [e.fields["error"]["code"] for e in other.of("error")] == \
            ["mcp_host_not_allowed"]
        assert not off.of("session.updated") and not other.of("session.updated")
        assert not port.of("error") and port.of("session.updated")
        assert home.calls == [] or all(name != "set_light" for name, _ in home.calls)
    run(scenario)


def test_the_server_runs_the_mcp_call_and_the_reply_speaks_its_outcome(
        home: HomeServer) -> None:
    async def scenario() -> None:
        chat = FakeChat([call("set_light", room="kitchen", on=True),
                         "The kitchen light is on now."])
        h = harness(chat)
        await with_mcp(h, home.url, require_approval="never")
        before = len(home.calls)
        await ask(h, "Turn on the kitchen light", 1)
        assert home.calls[before:] == [("set_light", {"room": "kitchen", "on": True})]
        types = h.types()
        assert [t for t in types if t.startswith("response.mcp_call")] == [
            "response.mcp_call_arguments.delta", "response.mcp_call_arguments.done",
            "response.mcp_call.in_progress", "response.mcp_call.completed"]
        done = h.of("response.done")[0].fields["response"]
        assert done["status"] == "completed"
        assert [o["type"] for o in done["output"]] == ["mcp_call", "message"]
        mcp_call = done["output"][0]
        assert (mcp_call["server_label"], mcp_call["name"]) == ("home", "set_light")
        assert mcp_call["output"] == "The kitchen light is now on." and mcp_call["error"] is None
        assert done["output"][1]["content"][0]["transcript"] == "The kitchen light is on now."
        assert said(h) == "The kitchen light is on now."
        # The model saw the server's tool, then answered from its result without tools.
        assert [t.name for t in chat.tools[0]] == ["set_light", "get_weather", "slow_lookup",
                                                   "broken_switch"]
        assert chat.tools[1] == []
        assert "The kitchen light is now on." in chat.requests[1][-1].content
        all_ga(h)
    run(scenario)


def test_a_call_that_needs_approval_waits_for_the_client_and_runs_once_approved(
        home: HomeServer) -> None:
    async def scenario() -> None:
        chat = FakeChat([call("set_light", room="hall", on=False), "The hall is dark now."])
        h = harness(chat)
        await with_mcp(h, home.url)  # require_approval defaults to "always"
        before = len(home.calls)
        await ask(h, "Hall light off", 1)
        first = h.of("response.done")[0].fields["response"]
        assert [o["type"] for o in first["output"]] == ["mcp_approval_request"]
        request = first["output"][0]
        assert json.loads(request["arguments"]) == {"room": "hall", "on": False}
        assert home.calls[before:] == []  # nothing runs before the client says yes
        await h.session.handle(ItemCreate(None, None, "user", "", "mcp_approval_response",
                                          approval_request_id=request["id"], approve=True))
        await h.session.handle(ResponseCreate(None, None, None))
        await h.wait_done(2)
        assert home.calls[before:] == [("set_light", {"room": "hall", "on": False})]
        second = h.of("response.done")[1].fields["response"]
        assert [o["type"] for o in second["output"]] == ["mcp_call", "message"]
        assert second["output"][0]["approval_request_id"] == request["id"]
        assert said(h) == "The hall is dark now."
        all_ga(h)
    run(scenario)


def test_a_declined_call_is_never_run_and_the_model_is_told(home: HomeServer) -> None:
    async def scenario() -> None:
        chat = FakeChat([call("set_light", room="hall", on=False), "Okay, I left it on."])
        h = harness(chat)
        await with_mcp(h, home.url, require_approval={"never": {"read_only": True}})
        before = len(home.calls)
        await ask(h, "Hall light off", 1)
        request = h.of("response.done")[0].fields["response"]["output"][0]
        assert request["type"] == "mcp_approval_request"
        await h.session.handle(ItemCreate(None, None, "user", "not now",
                                          "mcp_approval_response",
                                          approval_request_id=request["id"], approve=False))
        await h.session.handle(ResponseCreate(None, None, None))
        await h.wait_done(2)
        assert home.calls[before:] == []
        assert "declined (not now)" in chat.requests[1][-1].content
        assert chat.tools[1] == []
        assert said(h) == "Okay, I left it on."
        all_ga(h)
    run(scenario)


def test_an_approval_for_an_unknown_request_is_an_error() -> None:
    async def scenario() -> None:
        h = harness(FakeChat([]))
        await h.session.handle(ItemCreate("e1", None, "user", "", "mcp_approval_response",
                                          approval_request_id="item_nope", approve=True))
        errors = [e.fields["error"] for e in h.of("error")]
        assert [(e["code"], e["param"]) for e in errors] == [
            ("item_not_found", "item.approval_request_id")]
    run(scenario)


def test_a_server_that_is_down_fails_its_listing_and_the_session_goes_on() -> None:
    async def scenario() -> None:
        h = harness(FakeChat(["I can still talk."]))
        await with_mcp(h, free_port_url(), require_approval="never")
        assert h.of("mcp_list_tools.failed")
        errors = [e.fields["error"] for e in h.of("error")]
        assert [e["code"] for e in errors] == ["mcp_list_tools_failed"]
        assert "cannot reach MCP server home" in errors[0]["message"]
        await ask(h, "Hello", 1)
        assert h.of("response.done")[0].fields["response"]["status"] == "completed"
        assert said(h) == "I can still talk."
        all_ga(h)
    run(scenario)


def test_a_server_gone_at_call_time_gives_an_error_item_and_a_spoken_apology() -> None:
    async def scenario() -> None:
        with home_server() as gone:
            chat = FakeChat([call("set_light", room="kitchen", on=True),
                             "Sorry, I could not reach the lights."])
            h = harness(chat)
            await with_mcp(h, gone.url, require_approval="never")
        await ask(h, "Kitchen light on", 1)  # the server stopped after the listing
        await_failed(h, "http_error", 502)
        assert "cannot reach MCP server home" in chat.requests[1][-1].content
        assert said(h) == "Sorry, I could not reach the lights."
        all_ga(h)
    run(scenario)


def await_failed(h: Harness, kind: str, code: int | None) -> dict[str, Any]:
    done = h.of("response.done")[0].fields["response"]
    assert done["status"] == "completed"
    assert [o["type"] for o in done["output"]] == ["mcp_call", "message"]
    error = done["output"][0]["error"]
    assert error["type"] == kind and error.get("code") == code
    assert done["output"][0]["output"] is None
    assert [t for t in h.types() if t.startswith("response.mcp_call.")] == [
        "response.mcp_call.in_progress", "response.mcp_call.failed"]
    return error  # type: ignore[no-any-return]


def test_a_slow_tool_times_out_with_an_error_item_not_a_hung_turn(home: HomeServer) -> None:
    async def scenario() -> None:
        chat = FakeChat([call("slow_lookup", query="invoice 7"), "Sorry, that took too long."])
        h = harness(chat, mcp_timeout_s=1.0)
        await with_mcp(h, home.url, require_approval="never")
        started = time.monotonic()
        await ask(h, "Find invoice 7", 1)
        assert time.monotonic() - started < home.slow_s
        error = await_failed(h, "http_error", 504)
        assert "did not answer within 1 s" in error["message"]
        assert said(h) == "Sorry, that took too long."
        all_ga(h)
    run(scenario)


def test_a_tool_that_fails_gives_a_tool_execution_error_and_an_answer(
        home: HomeServer) -> None:
    async def scenario() -> None:
        chat = FakeChat([call("broken_switch", room="attic"), "Sorry, the fan did not react."])
        h = harness(chat)
        await with_mcp(h, home.url, require_approval="never")
        await ask(h, "Attic fan on", 1)
        error = await_failed(h, "tool_execution_error", None)
        assert "broken_switch" in error["message"] or "fan" in error["message"]
        assert "It failed" in chat.requests[1][-1].content
        all_ga(h)
    run(scenario)


def test_speaking_during_a_slow_call_stops_it_at_once(home: HomeServer) -> None:
    async def scenario() -> None:
        chat = FakeChat([call("slow_lookup", query="x"), "never said"])
        h = harness(chat)
        await with_mcp(h, home.url, require_approval="never")
        await h.session.handle(ItemCreate(None, None, "user", "Look it up"))
        await h.session.handle(ResponseCreate(None, None, None))
        await h.wait_for(lambda: bool(h.of("response.mcp_call.in_progress")))
        started = time.monotonic()
        await h.speak()  # barge-in
        await h.wait_done()
        assert time.monotonic() - started < 2.0
        done = h.of("response.done")[0].fields["response"]
        assert done["status"] == "cancelled"
        assert said(h) == ""
        await asyncio.sleep(0)
    run(scenario)


def test_an_approved_call_whose_server_was_removed_fails_as_an_item_not_a_crash(
        home: HomeServer) -> None:
    async def scenario() -> None:
        chat = FakeChat([call("set_light", room="hall", on=True), "That light is gone."])
        h = harness(chat)
        await with_mcp(h, home.url)
        before = len(home.calls)
        await ask(h, "Hall light on", 1)
        request = h.of("response.done")[0].fields["response"]["output"][0]
        await h.session.handle(SessionUpdate("u2", {"tools": []}))  # the server is removed
        await h.session.handle(ItemCreate(None, None, "user", "", "mcp_approval_response",
                                          approval_request_id=request["id"], approve=True))
        await h.session.handle(ResponseCreate(None, None, None))
        await h.wait_done(2)
        assert home.calls[before:] == []
        done = h.of("response.done")[1].fields["response"]
        assert [o["type"] for o in done["output"]] == ["mcp_call", "message"]
        assert done["output"][0]["error"]["type"] == "protocol_error"
        assert said(h) == "That light is gone."
        all_ga(h)
    run(scenario)
