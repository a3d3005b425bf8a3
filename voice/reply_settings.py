"""What one reply is asked to be, and the prompt and sampling that follow from it.

Pure data and functions (no I/O): the session builds :class:`ReplySettings` from its settings and
``response.create``; :mod:`voice.reply` and the write-ahead draft turn them into the model's
prompt and sampling options the same way.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Sequence

from llm.chat import Message, SamplingOptions
from llm.prompts import CALL_WHEN_ASKED, Assistant, fold_tool_results, system_prompt
from llm.tools import Tool
from tts.segmenter import FIRST_PIECE_MAX_WORDS
from voice.conversation import Conversation
from voice.protocol import (
    LATENCY_STAGES,
    AnyTool,
    ListedTool,
    McpTool,
    functions_of,
    mcp_servers_of,
)

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class TurnTimes:
    """Monotonic seconds of the stages of one turn; ``speech_end`` is the reference."""

    speech_end: float
    vad: float | None = None
    transcript: float | None = None
    llm_first_token: float | None = None
    first_audio_ready: float | None = None
    first_audio_sent: float | None = None  # stamped by the writer, when it hit the socket

    def report(self) -> dict[str, float]:
        stages = (self.vad, self.transcript, self.llm_first_token, self.first_audio_ready,
                  self.first_audio_sent)
        return {name: (value - self.speech_end) * 1000
                for name, value in zip(LATENCY_STAGES, stages, strict=True) if value is not None}


@dataclasses.dataclass(frozen=True)
class ReplySettings:
    """What a reply is asked to be: set when it starts, from the session and response.create."""

    modalities: tuple[str, ...]
    language: str  # until the transcript says otherwise (unless pinned)
    language_pinned: bool
    max_output_tokens: int
    sampling: SamplingOptions
    instructions: str | None
    output_rate: int
    assistant: Assistant = dataclasses.field(default_factory=Assistant)
    tools: tuple[AnyTool, ...] = ()  # functions and MCP servers
    tool_choice: str = "auto"  # auto | none | required | the name of the one tool to call
    metadata: dict[str, str] | None = None  # response.create's, echoed in the response
    write_ahead_ms: float = 0.0  # spoken: the writing waits this far ahead of playback (pacing)
    # spoken: with this much audio ahead of the listener, the writing waits while others wait
    give_way_ms: float = 0.0
    # spoken: the first piece goes to the voice after this many words
    first_piece_words: int = FIRST_PIECE_MAX_WORDS

    @property
    def mcp_servers(self) -> tuple[McpTool, ...]:
        """The MCP servers this reply may use (none when tool_choice is "none")."""
        return mcp_servers_of(active_tools(self))


def active_tools(settings: ReplySettings) -> tuple[AnyTool, ...]:
    """The tools the model is shown for this reply (none when tool_choice is "none")."""
    return () if settings.tool_choice == "none" else settings.tools


def model_tools(tools: tuple[AnyTool, ...],
                listed: Sequence[ListedTool]) -> tuple[list[Tool], dict[str, ListedTool]]:
    """What the model is shown: the functions, then the listed tools of the MCP servers among
    ``tools``; and which names are MCP tools. A name already taken (a function, or a tool of
    an earlier server) hides a later tool of that name."""
    shown = [Tool(t.name, t.description, t.parameters) for t in functions_of(tools)]
    servers = {server.server_label for server in mcp_servers_of(tools)}
    mcp: dict[str, ListedTool] = {}
    for tool in listed:
        if tool.server.server_label not in servers:
            continue
        if any(t.name == tool.name for t in shown):
            logger.warning("MCP tool %s of %s is hidden by another tool of that name",
                           tool.name, tool.server.server_label)
            continue
        description = tool.description or tool.server.server_description
        shown.append(Tool(tool.name, description, dict(tool.input_schema)))
        mcp[tool.name] = tool
    return shown, mcp


def prompt_messages(conversation: Conversation, settings: ReplySettings, language: str, *,
                    exclude: str | None = None) -> list[Message]:
    """The prompt of a reply in ``language``: the system prompt, then the conversation, with
    function calls and results folded into notes the model can read (llm.prompts). With tools
    shown, the instructions say when to call (``CALL_WHEN_ASKED`` under auto) or ask for the
    required call in words (decoding then starts inside a call: ``call_opening``)."""
    instructions = settings.instructions
    if reply_tools(conversation, settings, exclude):
        demand = (CALL_WHEN_ASKED if settings.tool_choice == "auto"
                  else "Answer by calling one of the functions."
                  if settings.tool_choice == "required"
                  else f"Answer by calling the function {settings.tool_choice}.")
        instructions = "\n".join(filter(None, (instructions, demand)))
    return fold_tool_results(conversation.prompt(
        system_prompt(language, instructions, settings.assistant), exclude=exclude))


def reply_tools(conversation: Conversation, settings: ReplySettings,
                exclude: str | None = None) -> tuple[AnyTool, ...]:
    """The tools shown to the model for this reply. A reply to function or MCP results, or to
    a declined approval (the conversation ends with them), answers from them without tools
    under ``tool_choice`` auto: the small default model would otherwise call again."""
    tools = active_tools(settings)
    if tools and settings.tool_choice == "auto":
        last = next((item for item in reversed(conversation.items)
                     if item.item_id != exclude and item.kind != "mcp_list_tools"), None)
        if last is not None and last.kind in ("function_call_output", "mcp_call",
                                              "mcp_approval_response"):
            return ()
    return tools


def sampling_of(settings: ReplySettings, tools_shown: bool | None = None) -> SamplingOptions:
    """The reply's sampling; ``tools_shown`` defaults to whether the settings have tools."""
    sampling = dataclasses.replace(settings.sampling, max_new_tokens=settings.max_output_tokens)
    if active_tools(settings) if tools_shown is None else tools_shown:
        # The loop guard would stop a second call to a tool from repeating the first one's
        # opening tokens (llm/tools.py).
        sampling = dataclasses.replace(sampling, no_repeat_ngram_size=0,
                                       prefix=call_opening(settings.tool_choice))
    return sampling if sampling.prefix == "" and settings.tool_choice == "auto" \
        else dataclasses.replace(sampling, call_when_torn=0.0)


def call_opening(tool_choice: str) -> str:
    """How a reply must start under ``tool_choice``: "required" opens a call and the model
    names the function; a named function is opened up to its arguments; else nothing. The
    model writes the rest of the JSON (llm.tools parses it, and checks it)."""
    if tool_choice in ("auto", "none"):
        return ""
    if tool_choice == "required":
        return '{"name": "'
    return '{"name": ' + json.dumps(tool_choice) + ', "arguments": '

