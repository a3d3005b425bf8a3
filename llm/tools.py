"""Function calling at the engine level: tool schemas into the prompt, tool calls out of the
token stream.

Tools arrive in the OpenAI Realtime ``session.tools`` format (``{"type": "function", "name",
"description", "parameters"}``, ``parameters`` a JSON Schema object). :func:`template_tools`
turns them into what chat templates take as ``tools=`` (Hugging Face's format, the function
nested under ``"function"``); ``ChatModel.render``/``stream`` pass it to the model's own
template, which writes the tools and the call syntax into the system turn.

Qwen2.5 answers a call as ``<tool_call>\\n{"name": ..., "arguments": {...}}\\n</tool_call>``;
Mistral's models after their ``[TOOL_CALLS]`` token, as a JSON list of ``{"name", "arguments",
"id"}`` (Mistral 7B v0.3, Small 3.1) or as ``name[ARGS]{...}`` (Ministral 3; Small 3.2 puts
``[CALL_ID]id`` before ``[ARGS]``).
:class:`ToolCallParser` reads the reply's text deltas as they come and splits them into text
that is safe to speak and completed calls, each checked against its tool's schema. Text that
could be the start of ``<tool_call>`` is held back until it is known not to be, so no piece of
the markup is ever spoken. Synchronous and pure: one parser per reply, fed from any thread.

Decode replies with tools without ``SamplingOptions.no_repeat_ngram_size`` (the service's loop
guard): a second call to the same tool repeats the first one's opening tokens.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import jsonschema

from llm.call_markup import (
    CALL_END,
    CALL_START,
    FENCE,
    MARKERS,
    MISTRAL_ARGS,
    MISTRAL_CALL_ID,
    MISTRAL_CALLS,
    fence_content,
    is_proper_prefix,
    looks_like_call,
    opens_call,
    partial_marker_length,
)

_START, _TEXT, _TAGGED, _BARE, _FENCED, _MISTRAL = (
    "start", "text", "tagged", "bare", "fenced", "mistral")
_DECODER = json.JSONDecoder()



class ToolError(ValueError):
    """A tool definition that cannot be used (not a function, no name, a broken schema)."""


@dataclasses.dataclass(frozen=True)
class Tool:
    """One function the model may call."""

    name: str
    description: str = ""
    parameters: Mapping[str, Any] = dataclasses.field(
        default_factory=lambda: {"type": "object", "properties": {}})

    @classmethod
    def from_json(cls, value: object) -> Tool:
        """Read one entry of Realtime's ``session.tools``; raises :class:`ToolError`."""
        if not isinstance(value, dict) or value.get("type", "function") != "function":
            raise ToolError('a tool must be an object with "type": "function"')
        name = value.get("name")
        if not isinstance(name, str) or not name.strip():
            raise ToolError("a tool needs a name")
        description = value.get("description", "")
        if not isinstance(description, str):
            raise ToolError(f"the description of tool {name} must be a string")
        parameters = value.get("parameters", {"type": "object", "properties": {}})
        if not isinstance(parameters, dict):
            raise ToolError(f"the parameters of tool {name} must be a JSON Schema object")
        try:
            jsonschema.Draft202012Validator.check_schema(parameters)
        except jsonschema.SchemaError as error:
            raise ToolError(f"the parameters of tool {name} are not a valid JSON Schema: "
                            f"{error.message}") from error
        return cls(name, description, parameters)

    def to_json(self) -> dict[str, Any]:
        """The Realtime ``session.tools`` entry."""
        return {"type": "function", "name": self.name, "description": self.description,
                "parameters": dict(self.parameters)}


def template_tools(tools: Iterable[Tool]) -> list[dict[str, Any]]:
    """The tools as chat templates take them (``tools=``): Hugging Face's JSON format."""
    return [{"type": "function", "function": {"name": tool.name,
                                              "description": tool.description,
                                              "parameters": dict(tool.parameters)}}
            for tool in tools]


def template_call_id(call_id: str) -> str:
    """A call id as chat templates take it: Mistral's insist on exactly 9 letters or digits
    (its tokenizer's format); Qwen's ignore ids. The last 9 of ``call_id``'s letters and
    digits, zero-padded, so a call and its result keep matching ids."""
    plain = "".join(c for c in call_id if c.isascii() and c.isalnum())
    return plain[-9:].rjust(9, "0")


def template_supports_tools(chat_template: str) -> bool:
    """Whether a chat template renders ``tools`` at all (many small models' do not)."""
    return "tools" in chat_template


@dataclasses.dataclass(frozen=True)
class ToolCall:
    """A completed call whose arguments satisfy its tool's schema; ``call_id`` names it in a
    conversation (its result answers that id)."""

    name: str
    arguments: Mapping[str, Any]
    call_id: str = ""

    @property
    def arguments_json(self) -> str:
        """The arguments as the JSON text Realtime's ``function_call`` items carry."""
        return json.dumps(self.arguments, ensure_ascii=False, separators=(",", ":"))


@dataclasses.dataclass(frozen=True)
class ToolCallError:
    """A call block the model wrote that cannot be made: ``text`` is what was between the
    markers, ``message`` says why (bad JSON, unknown tool, arguments against the schema)."""

    text: str
    message: str


Output = str | ToolCall | ToolCallError


class ToolCallParser:
    """Splits a reply's text deltas into speakable text and tool calls. One per reply.

    :meth:`feed` takes each delta and returns what is now certain, in order: ``str`` pieces of
    text, :class:`ToolCall` and :class:`ToolCallError` values. :meth:`finish` ends the reply and
    returns what was held back (an unfinished call is a :class:`ToolCallError`). The returned
    text concatenates to the reply with every call taken out.

    Calls are ``<tool_call>{json}</tool_call>`` anywhere in the reply (what Qwen2.5 templates
    ask for; ``<tools>{json}</tools>`` opening a reply too, which the 1.5B coder model
    sometimes writes), or
    JSON objects that open the reply, bare or in a ```` ``` ```` fence: the 0.5B Qwen2.5 models
    often write a call that way, without the tags; after words, a bare object that opens with
    ``{"name": "<one of the tools>"`` (the 1.5B model sometimes writes "Here is the weather in
    Berlin:" and then such a call), held from its ``{`` only while it may be one. Doubled braces
    around a call (``{{...}}``, copied from a defective template example) are read as single ones. A
    reply that opens with ``{`` is held back until the object is complete; a fence is held until it
    closes and is text if it does not hold a JSON object with a ``"name"``.
    """

    def __init__(self, tools: Sequence[Tool]) -> None:
        self._tools = {tool.name: tool for tool in tools}
        self._validators = {tool.name: jsonschema.Draft202012Validator(dict(tool.parameters))
                            for tool in tools}
        self._pending = ""
        self._mode = _START
        self._end = CALL_END  # the end marker of the tagged call being read
        self._spoke = False  # whether any text went out (then only a known tool's "{" is a call)
        self._finished = False

    def feed(self, delta: str) -> list[Output]:
        if self._finished:
            raise RuntimeError("feed() after finish()")
        self._pending += delta
        out: list[Output] = []
        while self._step(out):
            pass
        return out

    def finish(self) -> list[Output]:
        """The end of the reply: release held text; an unfinished call is an error."""
        self._finished = True
        out: list[Output] = []
        pending, self._pending = self._pending, ""
        if self._mode == _TAGGED and self._end != CALL_END and not looks_like_call(
                pending.strip()):
            self._text(out, "<tools>" + pending)  # words about tools, not a call
        elif self._mode == _TAGGED:
            out.append(ToolCallError(pending, f"the call has no {self._end}"))
        elif self._mode == _BARE:
            out.append(self._parse(pending))
        elif self._mode == _FENCED:
            inner = fence_content(pending)
            out.append(self._parse(inner) if looks_like_call(inner) else pending)
        elif self._mode == _MISTRAL:
            out.append(ToolCallError(pending, "the call after [TOOL_CALLS] is unfinished"))
        elif pending.strip() or self._mode == _TEXT:
            self._text(out, pending)
        return out

    def _step(self, out: list[Output]) -> bool:
        """Consume what can be decided of the pending text; whether to go on."""
        pending = self._pending
        if self._mode == _START:  # nothing but calls and blank space so far
            text = pending.lstrip()
            if not text or is_proper_prefix(text, FENCE) or any(
                    is_proper_prefix(text, marker) for marker in (*MARKERS, MISTRAL_CALLS)):
                return False
            marker = next((m for m in MARKERS if text.startswith(m)), None)
            if text.startswith(MISTRAL_CALLS):
                self._pending, self._mode = text[len(MISTRAL_CALLS):], _MISTRAL
            elif text.startswith("{"):
                self._pending, self._mode = text, _BARE
            elif text.startswith(FENCE):
                self._pending, self._mode = text, _FENCED
            elif marker is not None:
                self._pending, self._mode = text[len(marker):], _TAGGED
                self._end = MARKERS[marker]
            else:
                self._mode = _TEXT
            return True
        if self._mode == _TAGGED:
            end = pending.find(self._end)
            if end < 0:
                return False
            out.append(self._parse(pending[:end]))
            self._pending = pending[end + len(self._end):]
            self._mode = _TEXT if self._spoke else _START
            return True
        if self._mode == _MISTRAL:
            return self._mistral_calls(out)
        if self._mode == _BARE:
            doubled = pending.startswith("{{")  # "{{...}}": a template's doubled braces
            try:
                _, end = _DECODER.raw_decode(pending, 1 if doubled else 0)
            except json.JSONDecodeError:
                return False  # not complete yet (or never: then finish() says why)
            rest = pending[end:]
            if doubled:
                if not rest.lstrip():
                    return False  # the closing brace is still to come
                if rest.lstrip().startswith("}"):
                    rest = rest.lstrip()[1:]
            out.append(self._parse(pending[1 if doubled else 0:end]))
            self._pending, self._mode = rest, _TEXT if self._spoke else _START
            return True
        if self._mode == _FENCED:
            end = pending.find(FENCE, len(FENCE))
            if end < 0:
                return False
            block, self._pending = pending[:end + len(FENCE)], pending[end + len(FENCE):]
            inner = fence_content(block)
            if looks_like_call(inner):
                out.append(self._parse(inner))
                self._mode = _START
            else:
                self._text(out, block)
                self._mode = _TEXT
            return True
        start = pending.find(CALL_START)
        mistral = pending.find(MISTRAL_CALLS)
        brace, opens = self._first_call_brace(pending)
        if brace >= 0 and all(marker < 0 or brace < marker for marker in (start, mistral)):
            self._text(out, pending[:brace])
            self._pending = pending[brace:]
            if opens is None:
                return False  # held until it shows whether it opens a call
            self._mode = _BARE
            return True
        if mistral >= 0 and (start < 0 or mistral < start):
            self._text(out, pending[:mistral])
            self._pending, self._mode = pending[mistral + len(MISTRAL_CALLS):], _MISTRAL
            return True
        if start >= 0:
            self._text(out, pending[:start])
            self._pending, self._mode = pending[start + len(CALL_START):], _TAGGED
            self._end = CALL_END
            return True
        held = partial_marker_length(pending)
        self._text(out, pending[:len(pending) - held])
        self._pending = pending[len(pending) - held:]
        return False

    def _first_call_brace(self, text: str) -> tuple[int, bool | None]:
        """Where in ``text`` (after words) the first JSON object that opens a call of one of
        the tools begins, bare (``{"name": "set_light", ...``: models that write their call
        after a sentence without the tags), and whether it surely does (None: its end may
        still make it one); (-1, False) where none may."""
        at = text.find("{")
        while at >= 0:
            opens = opens_call(text[at:], self._tools)
            if opens is not False:
                return at, opens
            at = text.find("{", at + 1)
        return -1, False

    def _mistral_calls(self, out: list[Output]) -> bool:
        """After ``[TOOL_CALLS]``: a JSON list of calls, or ``name[ARGS]{...}`` (with
        ``[CALL_ID]id`` before ``[ARGS]``); False while it is incomplete."""
        text = self._pending.lstrip()
        if text.startswith("["):
            try:
                value, end = _DECODER.raw_decode(text)
            except json.JSONDecodeError:
                return False
            for entry in value if isinstance(value, list) else [value]:
                out.append(self._check(entry, json.dumps(entry, ensure_ascii=False)))
            rest = text[end:]
        else:
            at = text.find(MISTRAL_ARGS)
            if at < 0:
                return False
            name = text[:at].split(MISTRAL_CALL_ID)[0].strip()
            body = text[at + len(MISTRAL_ARGS):].lstrip()
            try:
                value, end = _DECODER.raw_decode(body)
            except json.JSONDecodeError:
                return False
            out.append(self._check({"name": name, "arguments": value}, text[:at] + body[:end]))
            rest = body[end:]
        self._pending = rest
        self._mode = _TEXT if self._spoke else _START
        return True

    def _text(self, out: list[Output], text: str) -> None:
        if not text:
            return
        self._spoke = self._spoke or bool(text.strip())
        if out and isinstance(out[-1], str):
            out[-1] += text
        else:
            out.append(text)

    def _parse(self, text: str) -> ToolCall | ToolCallError:
        text = text.strip()
        try:
            value = json.loads(text)
        except json.JSONDecodeError as error:
            if not (text.startswith("{{") and text.endswith("}}")):
                return ToolCallError(text, f"the call is not valid JSON: {error}")
            try:  # "{{...}}": the doubled braces of a template's example call
                value = json.loads(text[1:-1])
            except json.JSONDecodeError:
                return ToolCallError(text, f"the call is not valid JSON: {error}")
        return self._check(value, text)

    def _check(self, value: Any, text: str) -> ToolCall | ToolCallError:
        """A call read as JSON, checked: a known tool, arguments that fit its schema."""
        if not isinstance(value, dict) or not isinstance(value.get("name"), str):
            return ToolCallError(text, 'the call is not a JSON object with a "name"')
        name: str = value["name"]
        if name not in self._tools:
            known = ", ".join(sorted(self._tools)) or "none"
            return ToolCallError(text, f"there is no tool {name!r} (tools: {known})")
        arguments = value.get("arguments", value.get("parameters", {}))
        if isinstance(arguments, str):  # some models write the arguments as a JSON string
            try:
                arguments = json.loads(arguments) if arguments.strip() else {}
            except json.JSONDecodeError as error:
                return ToolCallError(text, f"the arguments of {name} are not valid JSON: "
                                           f"{error}")
        if not isinstance(arguments, dict):
            return ToolCallError(text, f"the arguments of {name} are not a JSON object")
        problem = jsonschema.exceptions.best_match(self._validators[name].iter_errors(arguments))
        if problem is not None:
            where = "/".join(str(part) for part in problem.absolute_path)
            return ToolCallError(text, f"the arguments of {name} do not fit its parameters"
                                       f"{' at ' + where if where else ''}: {problem.message}")
        return ToolCall(name, arguments)
