"""A model's own chat template, rendered the way Hugging Face renders it.

The converted model folder keeps the template (``chat.json``); :class:`ChatTemplate` compiles it
once in a sandbox, repairs known defects of packaged templates, and renders conversations given
as the plain dicts templates take (:meth:`llm.chat.Message.template_json`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence

import jinja2
import jinja2.sandbox

logger = logging.getLogger(__name__)

# A defect of some packaged Qwen2.5 templates (the GGUF of qwen2.5-coder-1.5b-instruct): the
# example call is written with doubled braces, as if for Python's str.format, and the model
# copies them ("{{"name": ...}}}"), which is not JSON. Qwen's own template has single braces.
_DOUBLED_CALL_EXAMPLE = '{{\\"name\\": <function-name>, \\"arguments\\": <args-json-object>}}'


class ChatTemplateError(Exception):
    """The template refused the conversation (its ``raise_exception``)."""


class ChatTemplate:
    """A compiled chat template. Rendering is thread-safe."""

    def __init__(self, source: str, *, bos_token: str, eos_token: str) -> None:
        environment = jinja2.sandbox.ImmutableSandboxedEnvironment(
            trim_blocks=True, lstrip_blocks=True)
        environment.globals["raise_exception"] = _raise_template_error
        environment.filters["tojson"] = _tojson
        self._template = environment.from_string(repair_template(source))
        self._bos_token = bos_token
        self._eos_token = eos_token

    def render(self, messages: Sequence[dict[str, object]], *, add_generation_prompt: bool,
               tools: Sequence[dict[str, object]] = ()) -> str:
        """The prompt text; with ``add_generation_prompt`` it ends with the assistant's header.
        ``tools`` (JSON schemas as templates take them) are passed only when there are some."""
        variables: dict[str, object] = {"tools": list(tools)} if tools else {}
        return str(self._template.render(
            messages=list(messages), add_generation_prompt=add_generation_prompt,
            bos_token=self._bos_token, eos_token=self._eos_token, **variables))


def repair_template(template: str) -> str:
    """The chat template with known defects of packaged templates repaired."""
    if _DOUBLED_CALL_EXAMPLE in template:
        logger.info("chat template: the example tool call had doubled braces; repaired")
        return template.replace(_DOUBLED_CALL_EXAMPLE, _DOUBLED_CALL_EXAMPLE[1:-1])
    return template


def _tojson(value: object, ensure_ascii: bool = False, indent: int | None = None,
            separators: tuple[str, str] | None = None, sort_keys: bool = False) -> str:
    """Templates' ``tojson`` as Hugging Face renders it (plain ``json.dumps``), not Jinja's
    HTML-safe one, which writes ``<`` as ``\\u003c``: the model saw the former in training."""
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                      sort_keys=sort_keys)


def _raise_template_error(message: str) -> None:
    raise ChatTemplateError(f"chat template error: {message}")
