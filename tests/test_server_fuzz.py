"""Property-based fuzzing of a live server (fake engines): no input drops a connection.

A fuzzed client sends any sequence of valid, mutated and junk events (text and binary frames);
after each one it sends a marker (an unknown event with its own ``event_id``), so the events
between two marker errors are the server's answer to that one message. Every event a GA client
gets must also be one the official SDK's types accept. Meanwhile a healthy client on a second
connection keeps completing turns.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from tests.fakes import FakeChat, FakeTranscriber, fake_engines, silence, tone
from tests.fuzzing import VALID_EVENTS, client_text, dump, mutated_events
from tests.live import open_session, running_server, url_of
from tests.realtime_types import ga_problems
from voice.config import ServiceConfig
from voice.protocol import (
    BETA_NAMES,
    AudioClear,
    AudioCommit,
    ClientEvent,
    ItemCreate,
    ItemTruncate,
    ProtocolError,
    SessionConfig,
    SessionUpdate,
    apply_session_update,
    parse_binary_audio,
    parse_client_event,
)
from voice.server import VoiceServer
from voice.session import SessionDefaults

ANSWER_TIMEOUT_S = 10.0


@pytest.fixture(scope="module")
def server() -> Iterator[VoiceServer]:
    engines = fake_engines(FakeTranscriber([("Hello there", "en")] * 100_000, delay_s=0.002),
                           FakeChat(["Hi there. How are you today?"] * 100_000, delay_s=0.002))
    with running_server(ServiceConfig(port=0, shutdown_grace_s=1.0), engines,
                        SessionDefaults(partial_interval_s=0.25)) as server:
        yield server


def _append(samples: np.ndarray) -> str:
    audio = base64.b64encode(samples.astype("<i2").tobytes()).decode()
    return json.dumps({"type": "input_audio_buffer.append", "audio": audio})


def _pcm(samples: np.ndarray) -> bytes:
    return samples.astype("<i2").tobytes()


# A whole utterance (speech then enough silence to end the turn), or 200 ms of speech or of
# silence: a run of them makes turns, partial transcripts and barge-ins happen.
UTTERANCE = np.concatenate([tone(0.4), silence(0.7)])
SPEECH = st.sampled_from((_append(UTTERANCE), _append(tone(0.2)), _append(silence(0.2)),
                          _pcm(UTTERANCE), _pcm(tone(0.2)), _pcm(silence(0.2))))
VALID = st.sampled_from(VALID_EVENTS).map(dump)
# Repeated branches are drawn more often: valid input keeps the session busy, so that junk
# arrives in every state.
MESSAGES = st.one_of(SPEECH, SPEECH, VALID, VALID, mutated_events().map(dump), client_text(),
                     st.binary(max_size=33))


def _expected_error(message: str | bytes) -> str | None:
    """The error code the server must answer with if parsing alone rejects ``message``."""
    try:
        event: ClientEvent = (parse_binary_audio(message) if isinstance(message, bytes)
                              else parse_client_event(message))
    except ProtocolError as error:
        return error.code
    if isinstance(event, SessionUpdate):
        try:
            apply_session_update(SessionConfig(), event.session)  # depends on no state
        except ProtocolError as error:
            return error.code
    return None


def _is_answer(message: str | bytes) -> Callable[[dict[str, Any]], bool] | None:
    """What answers ``message`` when no error does (GA names); None if nothing must."""
    if _expected_error(message) is not None or isinstance(message, bytes):
        return None
    event = parse_client_event(message)
    kinds = {SessionUpdate: "session.updated", AudioClear: "input_audio_buffer.cleared",
             AudioCommit: "input_audio_buffer.committed",
             ItemTruncate: "conversation.item.truncated"}
    if isinstance(event, ItemCreate):
        def added(answer: dict[str, Any]) -> bool:
            item = answer.get("item", {})
            return bool(answer["type"] == "conversation.item.added"
                        and item["role"] == event.role
                        and item["id"] == (event.item_id or item["id"]))
        return added
    kind = kinds.get(type(event))
    if kind is None:
        return None
    return lambda answer: answer["type"] == kind


async def _answer(ws: ClientConnection, marker: str, log: list[dict[str, Any]]
                  ) -> list[dict[str, Any]]:
    """Send a marker and return every event received before the marker's error."""
    await ws.send(json.dumps({"type": "fuzz.marker", "event_id": marker}))
    window: list[dict[str, Any]] = []
    async with asyncio.timeout(ANSWER_TIMEOUT_S):
        while True:
            try:
                event = json.loads(await ws.recv())
            except ConnectionClosed as closed:
                raise AssertionError(f"the server closed the connection: {closed!r}; "
                                     f"events before: {log[-5:]}") from closed
            log.append(event)
            if event["type"] == "error" and event["error"]["event_id"] == marker:
                assert event["error"]["code"] == "unknown_event_type"
                return window
            window.append(event)


async def _fuzz(ws: ClientConnection, messages: list[str | bytes], beta: bool) -> None:
    log: list[dict[str, Any]] = []
    names = {value: key for key, value in BETA_NAMES.items()} if beta else {}
    await _answer(ws, "marker-start", log)
    for index, message in enumerate(messages):
        await ws.send(message)
        window = await _answer(ws, f"marker-{index}", log)
        for event in window:
            event["type"] = names.get(event["type"], event["type"])
        types = [e["type"] for e in window]
        errors = [e["error"] for e in window if e["type"] == "error"]
        context = f"message {index}: {message[:300]!r} -> {types}"
        assert all(e["type"] != "server_error" for e in errors), context
        expected = _expected_error(message)
        if expected is not None:
            assert [e["code"] for e in errors] == [expected], context
            continue
        assert len(errors) <= 1, context
        is_answer = _is_answer(message)
        if is_answer is not None:
            answers = sum(map(is_answer, window))
            if isinstance(parse_client_event(message), AudioCommit) and errors:
                # Audio appended before may end a turn by itself (server VAD) while this
                # commit is read: that turn's commit comes after its speech_stopped, and
                # leaves this one an empty buffer. (A commit that ends speech in progress
                # has a speech_stopped of its own, so without an error a committed is all
                # that is asked.)
                answers -= types.count("input_audio_buffer.speech_stopped")
            assert bool(errors) != (answers > 0), context
    if not beta:
        problems = sorted({problem for event in log for problem in ga_problems(event)})
        assert not problems, "\n".join(problems)


async def _keep_talking(ws: ClientConnection, fuzzing: asyncio.Task[None]) -> int:
    """Complete text turns until the fuzzing is over; returns how many completed."""
    turns = 0
    while not fuzzing.done() or turns == 0:
        await ws.send(json.dumps({"type": "conversation.item.create", "item": {
            "type": "message", "role": "user",
            "content": [{"type": "input_text", "text": f"turn {turns}"}]}}))
        await ws.send(json.dumps({"type": "response.create"}))
        async with asyncio.timeout(ANSWER_TIMEOUT_S):
            while (event := json.loads(await ws.recv()))["type"] != "response.done":
                assert event["type"] != "error", event
        assert event["response"]["status"] == "completed", event
        turns += 1
    return turns


async def _close(ws: ClientConnection) -> None:
    """Close while reading what is still coming: a client that stops reading stalls the
    closing handshake until the close timeout."""
    async def drain() -> None:
        with contextlib.suppress(ConnectionClosed):
            async for _ in ws:
                pass

    reader = asyncio.ensure_future(drain())
    await ws.close()
    await reader


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                 HealthCheck.function_scoped_fixture])
@given(st.lists(MESSAGES, min_size=1, max_size=20), st.booleans())
# Found by tests/test_protocol_fuzz.py: a 401-digit number used to close the connection (1011).
@example(['{"type": "session.update", "session": {"turn_detection": {"threshold": 1'
          + "0" * 400 + "}}}"], False)
def test_any_client_input_gets_typed_answers_and_spares_the_session_beside_it(
        server: VoiceServer, messages: list[str | bytes], beta: bool) -> None:
    async def scenario() -> None:
        headers = {"OpenAI-Beta": "realtime=v1"} if beta else {}
        fuzzed = await open_session(url_of(server), additional_headers=headers)
        healthy = await open_session(url_of(server))
        fuzzing = asyncio.ensure_future(_fuzz(fuzzed, messages, beta))
        try:
            turns = await _keep_talking(healthy, fuzzing)
            await fuzzing
        finally:
            fuzzing.cancel()
            await asyncio.gather(_close(fuzzed), _close(healthy))
        assert turns >= 1

    asyncio.run(asyncio.wait_for(scenario(), 120))


@pytest.mark.parametrize("message", [
    '{"type": "no.such.event", "event_id": "x\\udc00"}',
    '{"type": "conversation.item.create", "item": {"type": "message", "role": "user", '
    '"content": [{"type": "input_text", "text": "x\\ud800"}]}}',
], ids=["event_id", "item_text"])
def test_lone_surrogate_escapes_get_typed_answers(server: VoiceServer, message: str) -> None:
    async def scenario() -> None:
        ws = await open_session(url_of(server))
        try:
            await _fuzz(ws, [message], beta=False)
        finally:
            await _close(ws)

    asyncio.run(asyncio.wait_for(scenario(), 30))
