"""voice-mic --tools: local functions that really run, and the call -> result -> answer loop."""

from __future__ import annotations

import datetime
import json
from pathlib import Path

from clients.mic.options import Options
from clients.mic.tools import LocalTools, ring_tone
from tests.fake_audio import FakeAudio
from tests.fakes import tone
from tests.live import url_of
from tests.mcp_server import home_server
from tests.test_mic import RATE, fake_server, run, running_app, until

NOON = datetime.datetime(2026, 11, 26, 12, 0, 5)


def tools(tmp_path: Path, rung: list[str] | None = None) -> LocalTools:
    return LocalTools(tmp_path / "notes" / "notes.txt",
                      (rung if rung is not None else []).append, now=lambda: NOON)


def test_the_time_is_this_computers_date_weekday_and_time(tmp_path: Path) -> None:
    assert json.loads(tools(tmp_path).call("get_time", {})) == {
        "date": "2026-11-26", "weekday": "Thursday", "time": "12:00"}


def test_notes_are_written_to_the_file_and_read_back_newest_last(tmp_path: Path) -> None:
    local = tools(tmp_path)
    assert json.loads(local.call("add_note", {"text": " buy   milk "}))["note"] == "buy milk"
    local.call("add_note", {"text": "call Anna"})
    assert (tmp_path / "notes" / "notes.txt").read_text().splitlines() == [
        "2026-11-26 12:00  buy milk", "2026-11-26 12:00  call Anna"]
    assert json.loads(local.call("read_notes", {}))["notes"][-1].endswith("call Anna")
    assert "error" in json.loads(local.call("add_note", {"text": "  "}))


def test_a_timer_rings_when_it_ends_and_a_bad_one_is_an_error(tmp_path: Path) -> None:
    rung: list[str] = []

    async def scenario() -> None:
        local = tools(tmp_path, rung)
        result = json.loads(local.call("set_timer", {"seconds": 0.05, "label": "tea"}))
        assert result["started"] is True and result["label"] == "tea"
        await until(lambda: rung, 5, "the timer")
        assert "error" in json.loads(local.call("set_timer", {"minutes": 0}))
        assert "error" in json.loads(local.call("set_timer", {"minutes": "soon"}))
        assert "error" in json.loads(local.call("launch_rocket", {}))
    run(scenario, 10)
    assert rung == ["tea"]
    assert ring_tone(RATE).dtype.name == "int16" and ring_tone(RATE).size > RATE // 2


def test_a_call_is_run_here_answered_and_the_outcome_spoken(tmp_path: Path) -> None:
    call = '<tool_call>\n{"name": "add_note", "arguments": {"text": "buy milk"}}\n</tool_call>'
    with fake_server([("Note that I need milk", "en")], [call, "Noted: buy milk."]) as server:
        async def scenario() -> None:
            audio = FakeAudio(rate=RATE)
            notes = tmp_path / "notes.txt"
            async with running_app(Options(url=url_of(server), tools=notes), audio) as run_:
                app = run_.app
                await until(lambda: app.connections == 1, 10, "the connection")
                session = next(iter(server.sessions.values()))
                # (the connection counts before its session.update is answered)
                await until(lambda: session.settings.config.tools, 10, "the session's tools")
                assert [t.name for t in session.settings.config.tools] == [
                    "get_time", "set_timer", "add_note", "read_notes"]
                audio.say(tone(0.8))
                await until(lambda: len(app.responses) == 2, 30, "the spoken outcome")
                assert [r.status for r in app.responses] == ["completed", "completed"]
                assert notes.read_text().strip().endswith("buy milk")
                assert app.tools is not None and app.tools.calls[0][0] == "add_note"
                await until(lambda: audio.played_samples > 0, 10, "the answer's audio")
                assert "assistant: Noted: buy milk." in run_.out.getvalue()
        run(scenario)


def test_an_mcp_server_named_with_mcp_is_run_by_the_service_and_shown(tmp_path: Path) -> None:
    call = '<tool_call>\n{"name": "set_light", "arguments": {"room": "hall", "on": true}}\n' \
        '</tool_call>'
    with home_server() as home, fake_server(
            [("Hall light on", "en")], [call, "The hall light is on."],
            mcp_hosts=frozenset({"127.0.0.1"})) as server:
        async def scenario() -> None:
            audio = FakeAudio(rate=RATE)
            options = Options(url=url_of(server), mcp=(("home", home.url),))
            async with running_app(options, audio) as run_:
                app = run_.app
                await until(lambda: "MCP home:" in run_.out.getvalue(), 15, "the listing")
                audio.say(tone(0.8))
                await until(lambda: len(app.responses) == 1, 30, "the reply")
                assert home.calls == [("set_light", {"room": "hall", "on": True})]
                out = run_.out.getvalue()
                assert "MCP home: set_light, get_weather, slow_lookup, broken_switch" in out
                assert 'MCP home.set_light({"room":"hall","on":true}) -> The hall light is ' \
                    "now on." in out
                assert "assistant: The hall light is on." in out
        run(scenario)
