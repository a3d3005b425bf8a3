"""A spoken reply's writing waits while it is far ahead of playback (voice/pacing.py): the rule
as a table, the model's thread held between tokens (a real CTranslate2 model), and a session's
reply that is paced, still said to the end, and still stops at once when cancelled."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import pytest

from llm.chat import ChatConfig, ChatModel, Message, SamplingOptions
from tests.fakes import FakeChat, FakeTranscriber
from tests.test_session import Harness, run
from voice.pacing import GIVE_WAY_POLL_S, UNTIL_PLAYBACK_S, WritingPace, writing_hold_s
from voice.protocol import ItemCreate, ResponseCancel, ResponseCreate, ServerEvent

LONG = UNTIL_PLAYBACK_S


@pytest.mark.parametrize(("buffered", "queued", "lead", "playing", "hold"), [
    (0, 0, 3000, False, 0.0),        # nothing written yet: write
    (0, 2000, 3000, False, 0.0),     # the first pieces, under the limit: write on
    (0, 3500, 3000, False, LONG),    # enough written before playback: wait for it to start
    (2500, 0, 3000, True, 0.0),      # less than the limit ahead: write
    (4000, 0, 3000, True, 1.0),      # a second over: wait while a second plays
    (3000, 1500, 3000, True, 1.5),   # pieces waiting count too
    (500, 3200, 3000, True, LONG),   # synthesis lags: wait for the next piece to be ready
    (9000, 0, 0, True, 0.0),         # no limit
])
def test_the_writing_waits_only_while_the_speech_ahead_reaches_the_limit(
        buffered: float, queued: float, lead: float, playing: bool, hold: float) -> None:
    assert writing_hold_s(buffered_ms=buffered, queued_ms=queued, write_ahead_ms=lead,
                          playing=playing) == pytest.approx(hold)


def test_a_pace_holds_after_its_token_limit_until_lifted_and_never_once_released() -> None:
    pace = WritingPace(hold_after_tokens=4)
    assert pace(3) == 0 and pace(4) > 0
    pace.lift_token_limit()
    assert pace(4) == 0
    pace.hold_until(time.monotonic() + 5)
    assert 4 < pace(5) <= 5
    pace.release()
    assert pace(5) == 0


class _Gate:
    """A pace that holds the writing from ``after`` tokens on until ``go`` is set; after
    ``give_up_s`` it lets go by itself (and says so), so that a failing test cannot hang."""

    def __init__(self, after: int, give_up_s: float = 8.0) -> None:
        self.after = after
        self.go = threading.Event()
        self.asked: list[int] = []
        self.gave_up = False
        self._deadline = time.monotonic() + give_up_s

    def __call__(self, written: int) -> float:
        self.asked.append(written)
        if time.monotonic() > self._deadline:
            self.gave_up = True
        return 0.0 if self.go.is_set() or self.gave_up or written < self.after else 10.0


def _drain_in_thread(stream: object) -> tuple[threading.Thread, list[str]]:
    out: list[str] = []
    thread = threading.Thread(target=lambda: out.extend(stream), daemon=True)  # type: ignore
    thread.start()
    return thread, out


@pytest.fixture(scope="module")
def one_copy(random_decoder_dir: Path) -> ChatModel:
    return ChatModel(ChatConfig(str(random_decoder_dir), device="cpu", replicas=1))


def test_a_paced_stream_writes_exactly_what_an_unpaced_one_writes(one_copy: ChatModel) -> None:
    messages = [Message("system", "Be brief."), Message("user", "hello there")]
    options = SamplingOptions(max_new_tokens=24)
    plain = list(one_copy.stream(messages, options))
    paced = list(one_copy.stream(messages, options, pace=lambda written: 0.0))
    assert paced == plain and plain  # the reply, not the prompt forced through first


def test_a_held_pace_stops_the_models_own_thread_between_tokens(one_copy: ChatModel) -> None:
    gate = _Gate(after=3)
    stream = one_copy.stream([Message("user", "hello")], SamplingOptions(max_new_tokens=24),
                             pace=gate)
    thread, out = _drain_in_thread(stream)
    time.sleep(0.5)
    assert max(gate.asked) == 3  # the model wrote nothing past the third token meanwhile
    gate.go.set()
    thread.join(10)
    assert not thread.is_alive() and not gate.gave_up
    assert max(gate.asked) > 3 and out


def test_closing_or_cancelling_a_held_stream_ends_it_at_once(one_copy: ChatModel) -> None:
    messages = [Message("user", "hello")]
    gate = _Gate(after=8)
    stream = one_copy.stream(messages, SamplingOptions(max_new_tokens=24), pace=gate)
    first = next(stream)  # a few tokens before the hold
    assert first
    time.sleep(0.3)  # meanwhile the model reached the hold
    stream.close()  # does not wait for the pace
    assert not gate.gave_up and max(gate.asked) == 8

    cancel = threading.Event()
    gate = _Gate(after=3)
    stream = one_copy.stream(messages, SamplingOptions(max_new_tokens=24), cancel, pace=gate)
    thread, _ = _drain_in_thread(stream)
    time.sleep(0.3)
    cancel.set()
    thread.join(5)
    assert not thread.is_alive() and not gate.gave_up and max(gate.asked) == 3


def test_a_held_writing_goes_on_when_another_reply_waits_for_its_copy(
        one_copy: ChatModel) -> None:
    gate = _Gate(after=2)
    held = one_copy.stream([Message("user", "hello")], SamplingOptions(max_new_tokens=24),
                           pace=gate)
    held_thread, held_out = _drain_in_thread(held)
    time.sleep(0.3)
    other = one_copy.stream([Message("user", "hi")], SamplingOptions(max_new_tokens=8))
    other_thread, other_out = _drain_in_thread(other)
    other_thread.join(10)
    held_thread.join(10)
    assert not other_thread.is_alive() and not held_thread.is_alive()
    assert other_out and held_out and not gate.go.is_set() and not gate.gave_up


# -- a session's spoken reply ---------------------------------------------------------------

SENTENCES = ("The first thing to know is this. " * 2 + "Then there is more to say about it. " * 4
             ).strip()  # FakeVoice speaks 10 ms a character: ~2.1 s in all


class _Stamped(Harness):
    """Records when each event was sent."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.stamps: list[tuple[float, ServerEvent]] = []

    async def _send(self, event: ServerEvent) -> None:
        self.stamps.append((time.monotonic(), event))
        await super()._send(event)


def test_a_spoken_reply_is_written_no_further_ahead_of_playback_than_the_limit() -> None:
    async def scenario() -> None:
        chat = FakeChat([SENTENCES], delay_s=0.001)
        h = _Stamped(FakeTranscriber([]), chat, write_ahead_ms=600)
        await h.session.handle(ItemCreate("i1", None, "user", "Tell me."))
        await h.session.handle(ResponseCreate("r1", None, None))
        await h.wait_done()
        first_audio = next(t for t, e in h.stamps if e.type == "response.output_audio.delta")
        last_text = max(t for t, e in h.stamps
                        if e.type == "response.output_audio_transcript.delta")
        # ~2.1 s of speech, at most 0.6 s of it ahead plus the piece being written (0.35 s):
        # the last words cannot be written before ~1.1 s of it has played.
        assert last_text - first_audio >= 0.9
        assert chat.held_s > 0.5
        done = h.of("response.done")[0].fields["response"]
        assert done["status"] == "completed"
        transcript = h.of("response.output_audio_transcript.done")[0].fields["transcript"]
        assert transcript == SENTENCES  # nothing dropped while held
    run(scenario)


def test_an_unpaced_or_text_reply_is_never_held() -> None:
    async def scenario() -> None:
        for modalities, lead in ((None, 0.0), (("text",), 600.0)):
            chat = FakeChat([SENTENCES], delay_s=0.001)
            h = Harness(FakeTranscriber([]), chat, write_ahead_ms=lead)
            await h.session.handle(ItemCreate("i1", None, "user", "Tell me."))
            await h.session.handle(ResponseCreate("r1", None, modalities))
            await h.wait_done()
            assert chat.held_s == 0 and chat.paces == [None]
    run(scenario)


def test_cancelling_a_held_reply_stops_its_writing_at_once() -> None:
    async def scenario() -> None:
        chat = FakeChat([SENTENCES * 3], delay_s=0.001)
        h = Harness(FakeTranscriber([]), chat, write_ahead_ms=300)
        await h.session.handle(ItemCreate("i1", None, "user", "Tell me."))
        await h.session.handle(ResponseCreate("r1", None, None))
        await h.wait_for(lambda: chat.held_s > 0.1)
        await h.session.handle(ResponseCancel("x1", None))
        await h.wait_done()
        assert h.of("response.done")[0].fields["response"]["status"] == "cancelled"
        await h.wait_for(lambda: chat.active == 0, timeout=1.0)
        assert chat.tokens_after_cancel <= 1
        await asyncio.sleep(0)
    run(scenario)


def test_a_pace_gives_way_while_others_wait_only_with_enough_audio_ahead() -> None:
    waiting = [True]
    pace = WritingPace()
    pace.give_way(lambda: waiting[0], give_way_ms=1000)
    assert pace(1) == 0  # not playing yet: the first words are never held back
    pace.playing_ahead(1500)
    assert pace(2) == GIVE_WAY_POLL_S  # someone waits and 1.5 s is ahead: wait
    waiting[0] = False
    assert pace(2) == 0  # no one waits: write
    waiting[0] = True
    pace.playing_ahead(999)
    assert pace(3) == 0  # the client is down to less than the limit: write, whoever waits
    pace.playing_ahead(5000)
    pace.release()
    assert pace(4) == 0  # released: never held again


def test_a_pace_that_gives_way_still_holds_as_its_write_ahead_and_token_limit_say() -> None:
    pace = WritingPace(hold_after_tokens=4)
    pace.give_way(lambda: False, give_way_ms=1000)
    pace.playing_ahead(5000)
    assert pace(3) == 0 and pace(4) == LONG
    pace.lift_token_limit()
    pace.hold_until(time.monotonic() + 5)
    assert 4 < pace(5) <= 5


@pytest.mark.parametrize("another_waits", [True, False])
def test_a_spoken_reply_far_ahead_of_its_listener_gives_way_while_another_user_waits(
        another_waits: bool) -> None:
    async def scenario() -> None:
        chat = FakeChat([SENTENCES], delay_s=0.02)  # ~2x faster than it is spoken
        h = Harness(FakeTranscriber([]), chat, give_way_ms=300)
        activity = h.session.engines.activity
        came = activity.await_first_words("other") if another_waits else None
        await h.session.handle(ItemCreate("i1", None, "user", "Tell me."))
        await h.session.handle(ResponseCreate("r1", None, None))
        if came is None:
            await h.wait_done()
            assert chat.held_s == 0  # no one else waits: never held
        else:
            await h.wait_for(lambda: chat.held_s > 0.3)
            assert h.of("response.output_audio.delta")  # its own first words came first
            assert not h.of("response.done")
            came()  # the other user's first words came
            await h.wait_done()
        done = h.of("response.done")[0].fields["response"]
        assert done["status"] == "completed"
        transcript = h.of("response.output_audio_transcript.done")[0].fields["transcript"]
        assert transcript == SENTENCES  # nothing dropped while it gave way
        await h.wait_for(lambda: activity.awaited == 0)  # its own wait was counted once
    run(scenario)


class _Watched(Harness):
    """Records, at each event sent, its type and how many replies are awaited."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.awaited: list[tuple[str, int]] = []

    async def _send(self, event: ServerEvent) -> None:
        self.awaited.append((event.type, self.session.engines.activity.awaited))
        await super()._send(event)


@pytest.mark.parametrize("modalities", [None, ("text",)])
def test_a_reply_is_awaited_until_its_first_audio_is_sent_or_until_its_end(
        modalities: tuple[str, ...] | None) -> None:
    async def scenario() -> None:
        h = _Watched(FakeTranscriber([]), FakeChat([SENTENCES], delay_s=0.002))
        await h.session.handle(ItemCreate("i1", None, "user", "Tell me."))
        await h.session.handle(ResponseCreate("r1", None, modalities))
        await h.wait_done()
        await h.wait_for(lambda: h.session.engines.activity.awaited == 0)
        types = [kind for kind, _ in h.awaited]
        created = types.index("response.created")
        if modalities is None:  # spoken: awaited until its first audio is sent
            first_audio = types.index("response.output_audio.delta")
            assert {n for _, n in h.awaited[created:first_audio + 1]} == {1}
            assert {n for _, n in h.awaited[first_audio + 1:]} == {0}
        else:  # text: until its end
            assert {n for _, n in h.awaited[created:]} == {1}
    run(scenario)
