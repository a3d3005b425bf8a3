"""Session limits with fake engines: item and history size, reply length caps, languages."""

from __future__ import annotations

import asyncio
import threading

from asr.whisper import whisper_languages
from tests.fakes import FakeChat, FakeTranscriber
from tests.test_session import Harness, run
from voice.protocol import ItemCreate, ResponseCreate, SessionUpdate, parse_client_event

MEGABYTE_TEXT = "word " * 200_000  # 1,000,000 characters


class Ticker:
    """A coroutine sharing the session's event loop: it counts while the loop is free."""

    def __init__(self) -> None:
        self.ticks = 0
        self._task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        while True:
            self.ticks += 1
            await asyncio.sleep(0)

    def stop(self) -> None:
        self._task.cancel()


def test_megabyte_items_are_refused_with_the_limit_and_the_loop_stays_free() -> None:
    async def scenario() -> None:
        h = Harness(FakeTranscriber([]), FakeChat(["Short answer."]))
        ticker = Ticker()
        for index in range(20):
            await h.session.handle(ItemCreate(f"big{index}", None, "user", MEGABYTE_TEXT))
        errors = [e.fields["error"] for e in h.of("error")]
        assert [e["code"] for e in errors] == ["item_too_large"] * 20
        assert errors[0]["event_id"] == "big0" and errors[0]["param"] == "item.content"
        assert "1000000 characters" in errors[0]["message"]
        assert "limit is 16000" in errors[0]["message"]
        assert h.session.history == []

        await h.session.handle(ItemCreate("small", None, "user", "And now a short one?"))
        await h.session.handle(ResponseCreate("r1", None, ("text",)))
        ticks_at_request = ticker.ticks
        await h.wait_done()
        assert h.of("response.done")[0].fields["response"]["status"] == "completed"
        assert ticker.ticks > ticks_at_request  # the loop ran other work during the reply
        assert h.chat.threads[0] is not threading.main_thread()  # prompt work off the loop
        ticker.stop()
    run(scenario)


def test_the_history_keeps_only_the_newest_items_within_its_character_budget() -> None:
    async def scenario() -> None:
        h = Harness(FakeTranscriber([]), FakeChat(["Noted."]), max_item_chars=400,
                    max_history_chars=1000)
        texts = [f"{index} " + "x" * 298 for index in range(10)]  # 300 characters each
        for text in texts:
            await h.session.handle(ItemCreate(None, None, "user", text))
        assert [i.text for i in h.session.history] == texts[-3:]
        await h.session.handle(ResponseCreate("r1", None, ("text",)))
        await h.wait_done()
        sent = [m.content for m in h.chat.requests[0] if m.role != "system"]
        assert sent == texts[-3:]
        assert sum(len(i.text) for i in h.session.history) <= 1000
    run(scenario)


def test_instructions_over_the_size_limit_are_refused_and_change_nothing() -> None:
    async def scenario() -> None:
        h = Harness(FakeTranscriber([]), FakeChat([]), max_item_chars=100)
        await h.session.handle(SessionUpdate("s1", {"type": "realtime",
                                                    "instructions": "y" * 101}))
        error = h.of("error")[0].fields["error"]
        assert (error["code"], error["param"], error["event_id"]) == (
            "instructions_too_large", "session.instructions", "s1")
        assert h.session.config.instructions == "" and not h.of("session.updated")
        await h.session.handle(ResponseCreate("r1", "z" * 101, None))
        assert h.of("error")[1].fields["error"]["param"] == "response.instructions"
        assert h.session.response is None
    run(scenario)


def _update(text: str) -> SessionUpdate:
    event = parse_client_event(text)
    assert isinstance(event, SessionUpdate)
    return event


def test_session_max_output_tokens_inf_or_too_large_becomes_the_servers_cap() -> None:
    async def scenario() -> None:
        h = Harness(FakeTranscriber([]), FakeChat([]), max_output_tokens_limit=500)
        await h.session.start()
        assert h.of("session.created")[0].fields["session"]["max_output_tokens"] == 200
        for value, effective in (('"inf"', 500), ("1000000", 500), ("300", 300),
                                 ("null", 500)):
            await h.session.handle(_update(
                f'{{"type": "session.update", "session": {{"max_output_tokens": {value}}}}}'))
            assert h.of("session.updated")[-1].fields["session"][
                "max_output_tokens"] == effective, value
        assert not h.of("error")
    run(scenario)


def test_a_replys_max_output_tokens_is_capped_and_reported_in_the_response() -> None:
    async def scenario() -> None:
        h = Harness(FakeTranscriber([]), FakeChat(["One.", "Two.", "Three."]),
                    max_output_tokens_limit=500)
        await h.session.handle(ItemCreate(None, None, "user", "Count."))
        for index, (value, effective) in enumerate((('"inf"', 500), ("40", 40), (None, 200))):
            body = "{}" if value is None else f'{{"max_output_tokens": {value}}}'
            event = parse_client_event(f'{{"type": "response.create", "response": {body}}}')
            await h.session.handle(event)
            await h.wait_done(index + 1)
            options = h.chat.options[index]
            assert options is not None and options.max_new_tokens == effective, value
            assert options.no_repeat_ngram_size == 6  # the service's guard against loops
            for kind in ("response.created", "response.done"):
                assert h.of(kind)[index].fields["response"]["max_output_tokens"] == effective
    run(scenario)


def test_unknown_transcription_languages_are_refused_when_set() -> None:
    async def scenario() -> None:
        h = Harness(FakeTranscriber([("Hello", "en")]), FakeChat(["Hi."]))
        await h.session.handle(_update(
            '{"type": "session.update", "event_id": "l1", "session": {"audio": {"input": '
            '{"transcription": {"language": "zz"}}}}}'))
        await h.session.handle(_update(
            '{"type": "session.update", "event_id": "l2", "session": '
            '{"input_audio_transcription": {"languages": ["de", "xx"]}}}'))
        errors = [e.fields["error"] for e in h.of("error")]
        assert [(e["code"], e["param"], e["event_id"]) for e in errors] == [
            ("invalid_value", "session.audio.input.transcription.language", "l1"),
            ("invalid_value", "session.input_audio_transcription.languages[1]", "l2")]
        assert "'zz'" in errors[0]["message"] and "'xx'" in errors[1]["message"]
        assert h.session.config.language is None and h.session.config.languages is None
        await h.speak()  # the session still answers spoken turns
        await h.wait_done()
        assert h.of("response.done")[0].fields["response"]["status"] == "completed"
    run(scenario)


def test_whisper_language_codes_are_accepted_in_any_case() -> None:
    async def scenario() -> None:
        h = Harness(FakeTranscriber([]), FakeChat([]))
        await h.session.handle(_update(
            '{"type": "session.update", "session": {"audio": {"input": {"transcription": '
            '{"language": "DE", "languages": ["yue", "haw", "en"]}}}}}'))
        assert not h.of("error")
        assert h.session.config.language == "de"
        assert h.session.config.languages == ("yue", "haw", "en")
    run(scenario)
    assert {"en", "de", "yue"} <= whisper_languages() and "zz" not in whisper_languages()
