"""A session's settings: the service-wide defaults, what ``session.update`` changed, and what
one response is asked to be (capped by the server's limits); and the default system prompts,
prefilled once at start-up."""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import TYPE_CHECKING

from asr.whisper import default_beam_size, whisper_languages
from llm.chat import SamplingOptions
from llm.chat_types import ctranslate2_uses_mkl
from llm.prompts import Assistant, system_prompt
from tts.segmenter import FIRST_PIECE_MAX_WORDS
from voice.config import ServiceConfig
from voice.protocol import (
    TOOL_CHOICES,
    AnyTool,
    JsonObject,
    ProtocolError,
    ResponseCreate,
    SessionConfig,
    SessionUpdate,
    TokenLimit,
    TurnDetection,
    apply_session_update,
    mcp_servers_of,
    names_of,
)
from voice.reply_settings import ReplySettings

if TYPE_CHECKING:
    import threading

    from llm.chat import ChatModel

logger = logging.getLogger(__name__)

# Greedy, as reproducible as decoding gets, with greedy loops ("des légumes, des légumes, ...")
# cut short: no 6 tokens twice in a reply (docs/benchmarks.md, "Reply quality").
REPLY_SAMPLING = SamplingOptions(no_repeat_ngram_size=6)


class SessionLimitError(Exception):
    """The client broke a limit; the server sends the error and closes the session."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclasses.dataclass(frozen=True)
class SessionDefaults:
    """Service-wide settings every session starts from (see ``voice/config.py``)."""

    config: SessionConfig = dataclasses.field(default_factory=SessionConfig)
    model_name: str = "local"
    max_vad_utterance_s: float = 30.0
    max_buffer_s: float = 120.0  # manual-commit input buffer
    partial_interval_s: float = 1.0  # 0 disables partial transcripts
    beam_size: int = 1
    second_language_below: float | None = None  # a first turn's close call decoded twice
    max_output_tokens: int = 200  # a reply's length unless the client sets one
    max_output_tokens_limit: int = 1024  # the most a client may ask for ("inf" means this)
    write_ahead_ms: float = 0.0  # a spoken reply's writing waits this far ahead; 0: never
    give_way_ms: float = 0.0  # with this much ahead, it waits while others wait; 0: never
    first_piece_words: int = FIRST_PIECE_MAX_WORDS  # a spoken reply's first piece, at most
    sampling: SamplingOptions = REPLY_SAMPLING
    max_history_items: int = 200
    input_burst_s: float = 4.0  # audio may run this far ahead of real time, then is paced
    max_item_chars: int = 16_000  # text of one conversation item, and of instructions
    max_history_chars: int = 64_000  # the oldest items are forgotten beyond this
    known_languages: frozenset[str] = dataclasses.field(default_factory=whisper_languages)
    assistant: Assistant = dataclasses.field(default_factory=Assistant)  # name, persona
    tools_supported: bool = True  # whether the language model's chat template takes tools
    # Hosts ("name" or "name:port") whose MCP servers clients may name; empty: MCP is off.
    mcp_hosts: frozenset[str] = frozenset()
    mcp_timeout_s: float = 10.0  # one MCP listing or call, connection included
    # Speech at least this long that Whisper could not make out is asked about ("Sorry, I
    # didn't catch that..."; voice/ask_again.py); 0: such a turn gets no reply.
    ask_again_min_speech_s: float = 1.0


class Settings:
    """The settings in force for one session."""

    def __init__(self, defaults: SessionDefaults) -> None:
        self.defaults = defaults
        self.config = defaults.config

    def to_json(self, session_id: str) -> JsonObject:
        session = self.config.to_json(session_id, self.defaults.model_name)
        session["max_output_tokens"] = self.token_limit(self.config.max_output_tokens)
        return session

    def token_limit(self, requested: TokenLimit | None) -> int:
        """The reply length in force: the client's number or "inf", capped by the server."""
        cap = self.defaults.max_output_tokens_limit
        if requested is None:
            return min(self.defaults.max_output_tokens, cap)
        return cap if requested == "inf" else min(requested, cap)

    def check_size(self, text: str, code: str, what: str, param: str,
                   event_id: str | None) -> None:
        limit = self.defaults.max_item_chars
        if len(text) > limit:
            raise ProtocolError(code, f"{what} has {len(text)} characters; the limit is "
                                f"{limit}", event_id=event_id, param=param)

    def update(self, event: SessionUpdate) -> None:
        """Apply ``session.update``; raises :class:`ProtocolError` and changes nothing if any
        part of it is refused."""
        config = apply_session_update(self.config, event.session, event.event_id,
                                      known_languages=self.defaults.known_languages)
        self._check_tools(config.tools, event.event_id, "session.tools")
        if config.instructions != self.config.instructions:
            self.check_size(config.instructions, "instructions_too_large", "the instructions",
                            "session.instructions", event.event_id)
        if config.max_output_tokens is not None:
            config = dataclasses.replace(
                config, max_output_tokens=self.token_limit(config.max_output_tokens))
        self.config = config

    def _check_tools(self, tools: tuple[AnyTool, ...], event_id: str | None,
                     param: str) -> None:
        """Refuse tools the model cannot call, and MCP servers the operator did not allow."""
        if tools and not self.defaults.tools_supported:
            self._refuse_tools(event_id, param)
        hosts = self.defaults.mcp_hosts
        for server in mcp_servers_of(tools):
            if not hosts:
                raise ProtocolError("unsupported_feature", "MCP tools are off on this server; "
                                    "its operator enables them for chosen hosts with [mcp] "
                                    "hosts in the config", event_id=event_id, param=param)
            if server.host not in hosts and server.netloc not in hosts:
                raise ProtocolError("mcp_host_not_allowed", f"MCP server {server.server_label}: "
                                    f"{server.netloc} is not among the hosts this server may "
                                    "call ([mcp] hosts in its config)", event_id=event_id,
                                    param=param)

    def _refuse_tools(self, event_id: str | None, param: str) -> None:
        raise ProtocolError("unsupported_feature", f"the language model {self.defaults.model_name}"
                            " cannot call functions (its chat template has no tools); "
                            "configure one that can, such as qwen2.5-coder-0.5b-instruct",
                            event_id=event_id, param=param)

    def _tools_for(self, event: ResponseCreate | None) -> tuple[tuple[AnyTool, ...], str]:
        """The tools and tool_choice of a response: its own, else the session's."""
        tools, choice = self.config.tools, self.config.tool_choice
        if event is None:
            return tools, choice
        if event.tools is not None:
            self._check_tools(event.tools, event.event_id, "response.tools")
            tools = event.tools
            if choice not in TOOL_CHOICES and choice not in names_of(tools):
                choice = "auto"  # the session's forced tool is not among this response's
        if event.tool_choice is not None:
            choice = event.tool_choice
            if choice not in TOOL_CHOICES and choice not in names_of(tools):
                raise ProtocolError("invalid_value", "response.tool_choice.name must name one "
                                    "of the tools", event_id=event.event_id,
                                    param="response.tool_choice.name")
        return tools, choice

    def for_response(self, event: ResponseCreate | None,
                     last_language: str | None) -> ReplySettings:
        """What a reply is asked to be: ``response.create``'s fields over the session's."""
        config = self.config
        tools, tool_choice = self._tools_for(event)
        instructions = event.instructions if event is not None else None
        if instructions is not None:
            assert event is not None
            self.check_size(instructions, "instructions_too_large", "the instructions",
                            "response.instructions", event.event_id)
        modalities = (event.output_modalities if event is not None else None) \
            or config.output_modalities
        limit = (event.max_output_tokens if event is not None else None) \
            or config.max_output_tokens
        sampling = self.defaults.sampling
        if config.temperature is not None and config.temperature > 0:
            sampling = dataclasses.replace(sampling, temperature=config.temperature, top_k=50,
                                           top_p=0.95)
        return ReplySettings(
            modalities=modalities,
            language=config.language or last_language or "en",
            language_pinned=config.language is not None,
            max_output_tokens=self.token_limit(limit),
            sampling=sampling,
            instructions=instructions or config.instructions or None,
            assistant=self.defaults.assistant,
            output_rate=config.output_rate,
            write_ahead_ms=self.defaults.write_ahead_ms,
            give_way_ms=self.defaults.give_way_ms,
            first_piece_words=self.defaults.first_piece_words,
            tools=tools, tool_choice=tool_choice,
            metadata=event.metadata if event is not None else None)


def session_defaults(config: ServiceConfig, names: dict[str, str], *,
                     tools_supported: bool = True, asr_device: str = "cpu") -> SessionDefaults:
    """Every session's starting settings from the service's configuration; ``names`` are the
    loaded models' (``llm`` is the one ``session.created`` reports), ``asr_device`` where
    Whisper runs (an automatic beam depends on it)."""
    beam_size = config.beam_size or default_beam_size(asr_device, mkl=ctranslate2_uses_mkl())
    if not config.beam_size:
        logger.info("final transcripts: beam %d (automatic, %s)", beam_size,
                    "Intel MKL" if beam_size > 1 else f"{asr_device}, not MKL")
    return SessionDefaults(
        config=SessionConfig(
            turn_detection=TurnDetection(type=config.vad_type, eagerness=config.vad_eagerness,
                                         threshold=config.vad_threshold,
                                         prefix_padding_ms=config.vad_prefix_padding_ms,
                                         silence_duration_ms=config.vad_silence_duration_ms),
            languages=config.languages),
        model_name=names["llm"],
        max_vad_utterance_s=config.limits.max_utterance_s,
        max_buffer_s=config.limits.max_buffer_s,
        partial_interval_s=config.partial_interval_s,
        beam_size=beam_size,
        second_language_below=config.second_language_below or None,
        max_output_tokens=config.max_output_tokens,
        max_output_tokens_limit=config.max_output_tokens_limit,
        write_ahead_ms=config.llm_write_ahead_s * 1000,
        give_way_ms=config.llm_give_way_s * 1000,
        first_piece_words=config.tts_first_piece_words,
        sampling=dataclasses.replace(REPLY_SAMPLING, call_when_torn=config.llm_call_when_torn),
        max_item_chars=config.limits.max_item_chars,
        max_history_chars=config.limits.max_history_chars,
        assistant=Assistant(config.assistant_name.strip(), config.assistant_persona),
        tools_supported=tools_supported,
        mcp_hosts=frozenset(host.strip().lower() for host in config.mcp_hosts),
        mcp_timeout_s=config.mcp_timeout_s,
        ask_again_min_speech_s=config.ask_again_min_speech_s)


def prefill_system_prompts(chat: ChatModel, defaults: SessionDefaults,
                         stop: threading.Event) -> None:
    """Prefill the default system prompt of every allowed language in the background at
    start-up: the first reply in each language would otherwise write its first token ~100 ms
    later on two cores (docs/benchmarks.md, "The system prompts prefilled at start-up").
    ``stop`` ends it after the prompt in progress (the service is shutting down)."""
    started = time.monotonic()
    languages = defaults.config.languages or ("en",)
    for done, language in enumerate(languages):
        if stop.is_set():
            logger.info("stopped prefilling system prompts (%d of %d done)", done,
                        len(languages))
            return
        try:
            chat.cache_system_prompts([system_prompt(language, defaults.config.instructions,
                                                     defaults.assistant)])
        except Exception:  # the replies prefill them themselves
            logger.exception("could not prefill the system prompts")
            return
    logger.info("prefilled the system prompts of %d languages in %.1f s", len(languages),
                time.monotonic() - started)
