"""The model states a chat model keeps, so that a reply reads only what is new.

A reply starts from the model state after the longest start of its prompt that is kept
(CTranslate2's static prompt): a system turn (with the tools its template writes into it), or
a conversation so far that :meth:`KeptStates.prefill` read after the last reply. CTranslate2
never drops a kept state, so the states count against ``ChatConfig.prompt_cache_tokens``
(llm.prefixes) and the model is reloaded with an empty cache when one more would not fit.
A mixin of :class:`llm.chat.ChatModel`.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from typing import Any

from llm.batching import BatchedDecoder
from llm.chat_types import ChatConfig, Message
from llm.prefixes import PromptPrefixes, release_freed_memory
from llm.template import ChatTemplate, ChatTemplateError
from llm.tools import Tool, template_tools

logger = logging.getLogger(__name__)

# prefill keeps no conversation whose next prompt (a question, and the reply's room: this or a
# quarter of the context) might not fit the context, nor one that adds fewer new tokens than
# this to what is kept already.
PREFILL_ROOM_TOKENS = 512
PREFILL_MIN_NEW_TOKENS = 24


class KeptStates:
    """System turns and conversations read ahead (a mixin of ChatModel, which sets these)."""

    config: ChatConfig
    context_tokens: int
    supports_tools: bool
    _batched: BatchedDecoder | None
    _generator: Any
    _generation: int
    _load_generator: Callable[[], Any]
    _template: ChatTemplate
    _prefixes: PromptPrefixes
    _cached_prompts: set[str]
    _cache_lock: threading.Lock
    _reloading: threading.Lock
    _tokens: Callable[[Sequence[str]], list[list[str]]]
    _with_bos: Callable[[list[str]], list[str]]
    _fit: Callable[..., tuple[list[Message], list[str]]]

    def cache_system_prompts(self, prompts: Sequence[str]) -> None:
        """Prefill these system prompts once, so that the first reply under each finds its
        state cached (CTranslate2's static prompt; ~150 ms of a reply's first token on two
        cores). Nothing to do for batched decoding, which caches no prompt."""
        if self._batched is not None:
            return
        for prompt in prompts:
            kept, tokens = self._fit([Message("system", prompt), Message("user", "Hi")],
                                     reserve=1)
            tokens = self._with_bos(tokens)
            generator, static = self._generator_and_static(kept, tokens)
            if static:  # generate_batch: no generation thread left to outlive the caller
                generator.generate_batch(
                    [tokens[len(static):]], max_length=1, static_prompt=static,
                    cache_static_prompt=True, include_prompt_in_result=False)

    def _static_prefix(self, messages: Sequence[Message], prompt: list[str],
                       tools: Sequence[Tool] = ()) -> list[str]:
        """The longest start of ``prompt`` whose model state is or may be cached: a
        conversation so far that :meth:`prefill` kept, else the system turn (the system prompt,
        and the tools the template writes into it) if it is one of the first
        ``cached_system_prompts`` distinct ones and fits the budget; else []."""
        system = self._system_prefix(messages, prompt, tools)
        conversation = self._prefixes.longest(prompt)
        return conversation if len(conversation) > len(system) else system

    def _system_prefix(self, messages: Sequence[Message], prompt: list[str],
                       tools: Sequence[Tool]) -> list[str]:
        if not messages or messages[0].role != "system" or len(messages) < 2:
            return []
        tokens = self._system_turn(messages[0].content, tools)
        # Only when the conversation's tokens really start with it (a template may render a
        # system message differently in context); the rest must not be empty.
        if not tokens or len(tokens) >= len(prompt) or prompt[:len(tokens)] != tokens:
            return []
        if not self._prefixes.holds(tokens) and not self._prefixes.add(tokens):
            return []  # the budget is spent: read it every time until a reload
        return tokens

    def _system_turn(self, content: str, tools: Sequence[Tool]) -> list[str]:
        """The tokens of a system turn (the template writes the tools into it) if it is one of
        the first ``cached_system_prompts`` distinct ones; else []."""
        variables: dict[str, object] = {"tools": template_tools(tools)} if tools else {}
        key = content + json.dumps(variables, sort_keys=True, ensure_ascii=False)
        with self._cache_lock:
            if key not in self._cached_prompts:
                if len(self._cached_prompts) >= self.config.cached_system_prompts:
                    return []
                self._cached_prompts.add(key)
        block = self._template.render([{"role": "system", "content": content}],
                                      add_generation_prompt=False, tools=template_tools(tools))
        return self._with_bos(self._tokens([block])[0])

    def cache_system_turn(self, system: str, tools: Sequence[Tool] = (), *,
                          reload: bool = True) -> bool:
        """Keep the state of a system turn with the tools it shows, ahead of the replies that
        start with it, reloading the model first when the kept states' budget is full (then
        the other kept states go). For a model that keeps system turns only: with tools, a
        system turn is ~400 tokens, and a conversation's state beside it pushed it out at
        every reply (docs/benchmarks.md, "The tools model keeps its system turns"). Blocks
        while the model reads it: call it from a worker thread when nothing more urgent
        waits. Returns whether a new state is kept."""
        if self._batched is not None or (tools and not self.supports_tools):
            return False
        try:
            tokens = self._system_turn(system, tools)
        except ChatTemplateError:
            return False
        if not tokens or self._prefixes.holds(tokens) \
                or len(tokens) > self.config.prompt_cache_tokens:
            return False
        # A reload forgets the turns it had seen: this one is counted again.
        return self._keep(tokens, reload, lambda: bool(self._system_turn(system, tools)))

    def _generator_and_static(self, messages: Sequence[Message], prompt: list[str],
                              tools: Sequence[Tool] = ()) -> tuple[Any, list[str]]:
        """The generator and the static prompt to use, both from before or both from after a
        reload (a state kept by the old generator is not in the new one's accounts)."""
        while True:
            generation, generator = self._generation, self._generator
            static = self._static_prefix(messages, prompt, tools)
            if generation == self._generation:
                return generator, static

    def prefill(self, messages: Sequence[Message], tools: Sequence[Tool] = (), *,
                reload: bool = True) -> bool:
        """Keep the model state after ``messages``, a conversation so far (ending with a
        reply), so that the next reply, whose prompt starts with them, reads only what is
        new: otherwise each reply reads the whole history again, ~1.7 ms a token on two cores
        (docs/benchmarks.md, "A conversation's history read once"). Blocks while the model
        reads them, and first reloads the model when the kept states would exceed
        ``prompt_cache_tokens``: call it from a worker thread when nothing more urgent waits.
        ``reload=False`` keeps nothing instead of reloading (a guess that may not be needed).
        Returns whether a new state is kept. Batched decoding keeps none: False."""
        if (self._batched is not None or len(messages) < 2 or messages[0].role != "system"
                or (tools and not self.supports_tools)):
            return False
        try:
            text = self._template.render(
                [m.template_json(self.supports_tools) for m in messages],
                add_generation_prompt=False, tools=template_tools(tools))
        except ChatTemplateError:
            return False
        tokens = self._with_bos(self._tokens([text])[0])
        room = min(PREFILL_ROOM_TOKENS, self.context_tokens // 4)
        if (len(tokens) + room > self.context_tokens  # the next prompt would be trimmed
                or len(tokens) > self.config.prompt_cache_tokens // 2
                or self._prefixes.holds(tokens)
                or len(tokens) - len(self._prefixes.longest(tokens)) < PREFILL_MIN_NEW_TOKENS):
            return False
        return self._keep(tokens, reload)

    def _keep(self, tokens: list[str], reload: bool,
              after_reload: Callable[[], bool] | None = None) -> bool:
        """Read ``tokens`` and keep the model state after them, reloading the model first
        (if ``reload``) when they do not fit the budget; ``after_reload`` must then agree."""
        if not self._prefixes.fits(len(tokens)):
            if not reload or not self._reload():
                return False
            if after_reload is not None and not after_reload():
                return False
        with self._cache_lock:
            generator = self._generator
            if not self._prefixes.add(tokens):
                return False
        generator.generate_batch([tokens[-1:]], max_length=1, static_prompt=tokens,
                                 cache_static_prompt=True, include_prompt_in_result=False)
        return True

    def _reload(self) -> bool:
        """Replace the generator with a new copy of the model, whose cache is empty; replies
        under way finish on the old one, freed after them. False if another thread is at it."""
        if not self._reloading.acquire(blocking=False):
            return False
        try:
            started, held = time.monotonic(), self._prefixes.tokens
            generator = self._load_generator()
            with self._cache_lock:
                old, self._generator = self._generator, generator
                self._generation += 1
                self._prefixes.clear()
                self._cached_prompts.clear()
            # Freed once the replies under way on it are done; then its memory goes back.
            weakref.finalize(old, release_freed_memory)
            del old
            logger.info("the kept prompt states reached %d tokens: reloaded the language model "
                        "to let them go in %.1f s", held, time.monotonic() - started)
            return True
        finally:
            self._reloading.release()
