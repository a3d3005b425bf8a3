"""The working tree's system prompt written in English for every language.

For ``benchmarks/reply_quality.py --prompt-from benchmarks/reply_quality_english.py``: measures
whether writing the prompt in the user's language helps, with the same content.
"""

from __future__ import annotations

from llm import prompts

DEFAULT_ASSISTANT_NAME = prompts.DEFAULT_ASSISTANT_NAME


def system_prompt(language: str, instructions: str | None = None) -> str:
    return "\n\n".join([
        prompts._IDENTITY["en"].format(name=DEFAULT_ASSISTANT_NAME),
        prompts._STYLE["en"].format(language=prompts.language_name(language))])
