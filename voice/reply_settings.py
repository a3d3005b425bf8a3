"""What one reply is asked to be, and the prompt and sampling that follow from it.

Pure data and functions (no I/O): the session builds :class:`ReplySettings` from its settings and
``response.create``; :mod:`voice.reply` and the write-ahead draft turn them into the model's
prompt and sampling options the same way.
"""

from __future__ import annotations

import dataclasses

from llm.chat import Message, SamplingOptions
from llm.prompts import Assistant, fold_tool_results, system_prompt
from voice.conversation import Conversation
from voice.protocol import LATENCY_STAGES, FunctionTool


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
    tools: tuple[FunctionTool, ...] = ()
    tool_choice: str = "auto"  # auto | none | required | the name of the one tool to call


def active_tools(settings: ReplySettings) -> tuple[FunctionTool, ...]:
    """The tools the model is shown for this reply (none when tool_choice is "none")."""
    return () if settings.tool_choice == "none" else settings.tools


def prompt_messages(conversation: Conversation, settings: ReplySettings, language: str, *,
                    exclude: str | None = None) -> list[Message]:
    """The prompt of a reply in ``language``: the system prompt, then the conversation, with
    function calls and results folded into notes the model can read (llm.prompts). A required
    tool call is asked for in words: decoding is not constrained to a call."""
    instructions = settings.instructions
    if reply_tools(conversation, settings, exclude) and settings.tool_choice != "auto":
        demand = ("Answer by calling one of the functions." if settings.tool_choice == "required"
                  else f"Answer by calling the function {settings.tool_choice}.")
        instructions = "\n".join(filter(None, (instructions, demand)))
    return fold_tool_results(conversation.prompt(
        system_prompt(language, instructions, settings.assistant), exclude=exclude))


def reply_tools(conversation: Conversation, settings: ReplySettings,
                exclude: str | None = None) -> tuple[FunctionTool, ...]:
    """The tools shown to the model for this reply. A reply to function results (the
    conversation ends with them) answers from them without tools under ``tool_choice`` auto:
    the small default model would otherwise call the same function again."""
    tools = active_tools(settings)
    if tools and settings.tool_choice == "auto":
        last = next((item for item in reversed(conversation.items)
                     if item.item_id != exclude), None)
        if last is not None and last.kind == "function_call_output":
            return ()
    return tools


def sampling_of(settings: ReplySettings, tools_shown: bool | None = None) -> SamplingOptions:
    """The reply's sampling; ``tools_shown`` defaults to whether the settings have tools."""
    sampling = dataclasses.replace(settings.sampling, max_new_tokens=settings.max_output_tokens)
    if active_tools(settings) if tools_shown is None else tools_shown:
        # The loop guard would stop a second call to a tool from repeating the first one's
        # opening tokens (llm/tools.py).
        sampling = dataclasses.replace(sampling, no_repeat_ngram_size=0)
    return sampling
