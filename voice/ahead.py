"""Work started while the user still speaks or pauses: a reply written ahead of the turn's
end, and the conversation (or a tools model's system turn) read in the language heard; for a
pinned language, the tools model's system turn as soon as the session is configured.

A mixin of :class:`~voice.endpointing.Endpointing` (and so of the session), whose fields it
names below. Nothing here is sent to the client: a :class:`~voice.draft.Draft` is adopted by
the reply only when the turn ends with its words, and what is read ahead is only kept model
state. Each starts only while the engines work for no one else.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from llm.chat import Message
from voice.conversation import Conversation
from voice.draft import Draft, SpeechAhead, keep_conversation
from voice.mcp_listing import SessionMcp
from voice.partials import Partials
from voice.ports import Engines
from voice.protocol import SessionConfig
from voice.reply import Reply
from voice.reply_settings import active_tools, model_tools, prompt_messages, sampling_of
from voice.session_settings import SessionDefaults, Settings
from voice.turns import TurnTaker
from voice.user_turn import Speculation


class WritingAhead:
    """A reply's first tokens and the prompt's kept state, ahead of the turn's end."""

    id: str
    engines: Engines
    defaults: SessionDefaults
    settings: Settings
    conversation: Conversation
    mcp: SessionMcp
    turns: TurnTaker
    last_language: str | None
    _closed: bool
    _speculation: Speculation | None
    _draft: Draft | None
    _kept_language: str | None  # the language the current turn's conversation was read in
    _partials: Partials | None
    _replies_counted: int  # this session's replies counted in engines.activity.replies
    _spawn: Callable[[Awaitable[object]], asyncio.Future[object]]

    @property
    def config(self) -> SessionConfig:
        raise NotImplementedError

    @property
    def response(self) -> Reply | None:
        raise NotImplementedError

    def _drop_draft(self) -> None:
        if self._draft is not None:
            self._spawn(self._draft.discard())
            self._draft = None

    def _write_ahead(self, speculation: Speculation) -> None:
        """The paused turn's transcript is ready before the turn is confirmed over: start the
        reply's first tokens now (sent only once the turn ends with these words)."""
        decoding = speculation.decoding
        # Others' queued decodes or replies come first. (Not _engines_busy: the decode that
        # just finished may still count as running on the scheduler.)
        if (self._closed or speculation is not self._speculation or decoding.cancelled()
                or decoding.exception() is not None or self.turns.paused_at != speculation.at
                or not self.turns.policy.create_response or self.response is not None
                or self.engines.asr.depth > 0 or self._replies_ahead_of_us()):
            return
        transcript = decoding.result()
        if not transcript.text:
            return
        settings = self.settings.for_response(None, self.last_language)
        language = settings.language if settings.language_pinned else transcript.language
        messages = [*prompt_messages(self.conversation, settings, language),
                    Message("user", transcript.text)]
        # The reply will answer the user's new words, so it shows the model all its tools.
        tools, _ = model_tools(active_tools(settings),
                               self.mcp.listed_now(settings.mcp_servers))
        speech = (SpeechAhead(language, settings.output_rate, settings.first_piece_words)
                  if "audio" in settings.modalities else None)
        self._drop_draft()
        self._draft = Draft(self.id, self.engines, messages, sampling_of(settings), tools,
                            speech)

    def _language_heard(self, language: str) -> None:
        """The user's partial transcripts are surely in ``language``. When it is not the
        conversation's, the reply will have another system prompt, so no state kept after the
        last reply starts its prompt: have the model read the conversation under the new
        language's system prompt now, while the user still speaks, instead of after the
        final transcript (docs/benchmarks.md, "A change of language read while the user
        speaks"). Once per turn, only with nothing else to do, never for a pinned language
        (the prompt does not change). A reply that may call, written by a model of its own,
        starts with that model's system turn for the language (the pinned one, if pinned):
        it is read now if it is not kept, from the first turn on."""
        if (self._closed or language == self._kept_language
                or self.engines.activity.replies > 0 or self._engines_busy()):
            return
        settings = self.settings.for_response(None, self.last_language)
        tools, _ = model_tools(active_tools(settings),
                               self.mcp.listed_now(settings.mcp_servers))
        tools_model = bool(tools) and self.engines.chat_for(True) is not self.engines.chat
        if self.config.language is not None:
            if not tools_model:
                return
            language = self.config.language
        elif not tools_model and (self.last_language is None
                                  or language == self.last_language):
            return
        if language == self._kept_language:
            return
        self._kept_language = language
        # No reload for it: a full cache's reload (1-2 s) and a long read, still running when
        # the user stops, made the reply later than reading the conversation itself.
        self._spawn(keep_conversation(self.engines, self.id, self.conversation, settings,
                                      language, tools, reload=False))

    def _read_pinned_tools_turn(self) -> None:
        """A session whose language is pinned and whose replies may call, written by a model
        of its own, starts every such reply with that model's system turn in the pinned
        language: have it read as soon as the session is configured, not only once the user
        speaks (~3 s for a system turn with three tools on two cores, which the first command
        used to wait for in part)."""
        if self.config.language is not None:
            self._language_heard(self.config.language)

    def _replies_ahead_of_us(self) -> bool:
        """Whether other replies come before this session's optional work for its turn (a
        decode at a pause, a reply written ahead): those whose first words someone waits
        for. A reply only being spoken does not count while replies far ahead of their
        listener give way (``[llm] give_way_s``, voice/pacing.py); without that rule every
        reply in progress counts."""
        activity = self.engines.activity
        if self.defaults.give_way_ms > 0:
            return activity.others_awaited(self.id)
        return activity.replies > self._replies_counted

    def _others_waiting(self) -> bool:
        """Whether others wait for the engines now: transcripts queued or running, or replies
        ahead of this session's (:meth:`_replies_ahead_of_us`). The decode at a pause and the
        reply written ahead are left out then: work the user's next words may void would
        take their processor."""
        asr = self.engines.asr
        own_partial = 1 if self._partials is not None and self._partials.decoding else 0
        return asr.depth > 0 or asr.running > own_partial or self._replies_ahead_of_us()

    def _engines_busy(self) -> bool:
        """Whether the engines are working for others: transcripts queued or running, or a
        reply of another session in progress."""
        asr = self.engines.asr
        # This session's own partial decode does not count: it is the one being replaced.
        own_partial = 1 if self._partials is not None and self._partials.decoding else 0
        return (asr.depth > 0 or asr.running > own_partial
                or self.engines.activity.replies > self._replies_counted)
