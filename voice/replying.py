"""A session's replies: started for a turn, resumed after a false interruption, run, and
accounted for (latency, the conversation's language, the history kept).

A mixin of :class:`~voice.session.Session`, whose fields it names below.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence

from asr.transcript import Transcript
from voice.ask_again import ask_again, unclear
from voice.conversation import Conversation, Item
from voice.draft import Draft, keep_history
from voice.mcp_listing import SessionMcp
from voice.ports import Engines
from voice.protocol import ProtocolError, ServerEvent, new_id
from voice.reply import Reply, Resume
from voice.reply_audio import Gap
from voice.reply_settings import ReplySettings, TurnTimes
from voice.session_settings import SessionDefaults
from voice.turn_effects import Effect
from voice.turns import TurnTaker
from voice.user_turn import UserTurn

logger = logging.getLogger("voice.session")  # the turn log line is the session's, as before


class Replying:
    """Starts, runs and accounts for the session's replies."""

    id: str
    engines: Engines
    defaults: SessionDefaults
    conversation: Conversation
    mcp: SessionMcp
    turns: TurnTaker
    reply: Reply | None
    last_language: str | None
    _replaced: Reply | None
    _last_turn: UserTurn | None
    _draft: Draft | None
    _replies_counted: int
    _on_turn: Callable[[dict[str, float], str, Sequence[Gap]], None] | None
    _emit: Callable[[ServerEvent], Awaitable[None]]
    error: Callable[[ProtocolError], Awaitable[None]]
    _spawn: Callable[[Awaitable[object]], asyncio.Future[object]]
    _apply: Callable[[list[Effect], ReplySettings | None], Awaitable[None]]
    _acknowledges: Callable[[str, Transcript], bool]

    def _start_reply(self, turn_id: str, settings: ReplySettings) -> None:
        turn, self._last_turn = self._last_turn, None
        draft, self._draft = self._draft, None  # used if its prompt is the reply's
        times = turn.times if turn else TurnTimes(speech_end=time.monotonic())
        item = Item(new_id("item"), "assistant", audio="audio" in settings.modalities,
                    status="in_progress")
        self._launch(Reply(new_id("resp"), turn_id, item, settings, times, owner=self.id,
                           engines=self.engines, conversation=self.conversation,
                           send=self._emit, report_error=self.error,
                           media_now=lambda: self.turns.now, draft=draft, mcp=self.mcp,
                           nothing_to_answer=lambda heard: self._acknowledges(turn_id, heard),
                           ask_again=lambda heard: self._ask_again(turn_id, turn, heard,
                                                                   settings)),
                     turn.transcript if turn else None)

    def _ask_again(self, turn_id: str, turn: UserTurn | None, heard: Transcript,
                   settings: ReplySettings) -> tuple[str, str] | None:
        """What to say to a turn of speech that transcribed to nothing, and in which language
        (``voice/ask_again.py``); None: nothing (noise, or a cut-off reply resumes instead)."""
        speech_s = turn.speech_s if turn is not None and turn.speech_s is not None \
            else heard.duration_s  # a client's commit: all of its audio
        if self.turns.resumes_if_empty(turn_id) or not unclear(
                heard, speech_s, self.defaults.ask_again_min_speech_s):
            return None
        return ask_again(heard, settings.language, settings.language_pinned)

    def _start_resumed(self, turn_id: str, resume: Resume, settings: ReplySettings) -> None:
        """A new response that speaks the rest of a cut-off reply (``voice/interruptions.py``)."""
        item = Item(new_id("item"), "assistant", audio="audio" in settings.modalities,
                    status="in_progress")
        self._launch(Reply(new_id("resp"), turn_id, item, settings,
                           TurnTimes(speech_end=time.monotonic()), owner=self.id,
                           engines=self.engines, conversation=self.conversation,
                           send=self._emit, report_error=self.error,
                           media_now=lambda: self.turns.now, resume=resume), None)

    def _launch(self, reply: Reply, transcript: Awaitable[Transcript] | None) -> None:
        self._replaced, self.reply = self.reply, reply
        reply.task = self._spawn(self._run_reply(reply, transcript))  # type: ignore[assignment]

    async def _run_reply(self, reply: Reply, transcript: Awaitable[Transcript] | None) -> None:
        activity = self.engines.activity
        activity.replies += 1
        self._replies_counted += 1
        reply.first_words_came = activity.await_first_words(self.id)
        try:
            status = await reply.run(transcript)
        finally:
            reply.first_words_came()  # a reply that never spoke (text, a call, cancelled)
            activity.replies -= 1
            self._replies_counted -= 1
            self.turns.reply_ended(reply.turn_id)
        if status == "no_speech":
            # Noise cut the reply before this one off? Then that one goes on.
            await self._apply(self.turns.nothing_heard(reply.turn_id), None)
            return
        self.last_language = reply.language
        if status == "completed":
            self._spawn(keep_history(self.engines, self.id, self.conversation, reply))
        latency = reply.times.report()
        gaps = (f"; the client ran out of its audio {len(reply.gaps)} time(s), "
                f"{sum(gap.ms for gap in reply.gaps):.0f} ms in all" if reply.gaps else "")
        logger.info("session %s: turn %s %s in %s, latency %s%s", self.id, reply.response_id,
                    status, reply.language,
                    ", ".join(f"{k}={v:.0f}" for k, v in latency.items()), gaps)
        if self._on_turn is not None:
            self._on_turn(latency, status, reply.gaps)
