"""Streaming chat replies from a CTranslate2 decoder.

A model folder is what :func:`llm.gguf.convert_gguf` writes (CTranslate2 files, ``tokenizer.json``
and ``chat.json``). :meth:`ChatModel.stream` renders the conversation with the model's own chat
template, trims old turns to fit the context budget, and yields text deltas as tokens arrive.

Threading: the model is loaded once and may be shared. ``stream`` itself renders and tokenizes
the prompt (time linear in the conversation's length; the tokenizer releases the GIL) and
returns a lazy iterator whose every ``next()`` runs the model for one token: call both in a
worker thread, never on an event loop. Closing the iterator (``break``, ``.close()``) or
setting the ``cancel`` event stops generation before the next token.

Kept states: a reply starts from the model state after the longest start of its prompt that
is kept (a system prompt, or a conversation so far that :meth:`ChatModel.prefill` read after
the last reply), so a long conversation is not read again for every reply (llm.prefixes).
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import threading
import time
import weakref
from collections.abc import Callable, Generator, Iterator, Sequence
from pathlib import Path
from typing import Any

from llm.batching import BatchedDecoder, StepOptions
from llm.chat_types import ChatConfig, Message, Role, SamplingOptions, default_threads
from llm.detokenizer import TextDeltas
from llm.gguf import TOKENIZER_FILE, ChatFormat
from llm.paced import Pace, paced_steps
from llm.prefixes import PromptPrefixes, release_freed_memory
from llm.template import ChatTemplate, ChatTemplateError
from llm.tools import Tool, template_supports_tools, template_tools

logger = logging.getLogger(__name__)
__all__ = ["ChatConfig", "ChatModel", "ChatModelError", "Message", "Role", "SamplingOptions",
           "default_threads"]

# prefill keeps no conversation whose next prompt (a question, and the reply's room: this or a
# quarter of the context) might not fit the context, nor one that adds fewer new tokens than
# this to what is kept already.
PREFILL_ROOM_TOKENS = 512
PREFILL_MIN_NEW_TOKENS = 24


class ChatModelError(Exception):
    pass


class ChatModel:
    """A chat model. Thread-safe: several ``stream`` iterators may run in different threads."""

    def __init__(self, config: ChatConfig) -> None:
        import ctranslate2
        import tokenizers

        folder = Path(config.model_path)
        if not (folder / "model.bin").is_file():
            raise ChatModelError(f"{folder} is not a CTranslate2 model folder (no model.bin)")
        self.config = config
        self.format = ChatFormat.load(folder)
        self.device = config.device
        if self.device == "auto":
            self.device = "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"
        self.compute_type = config.compute_type
        if self.compute_type == "auto":
            self.compute_type = "float16" if self.device == "cuda" else "int8"
        started = time.monotonic()
        self._tokenizer = tokenizers.Tokenizer.from_file(str(folder / TOKENIZER_FILE))
        threads = config.cpu_threads or default_threads(os.cpu_count() or 1, config.replicas)
        self._load_generator = functools.partial(
            ctranslate2.Generator, str(folder), device=self.device,
            compute_type=self.compute_type, inter_threads=config.replicas, intra_threads=threads)
        self._generator = self._load_generator()
        self._template = ChatTemplate(self.format.chat_template,
                                      bos_token=self.format.bos_token or "",
                                      eos_token=self.format.eos_token)
        self.context_tokens = min(config.context_tokens or 4096, self.format.context_length)
        # Whether the model's own chat template describes tools (many small models' do not).
        self.supports_tools = template_supports_tools(self.format.chat_template)
        self._message_overhead = self._measure_message_overhead()
        self._cached_prompts: set[str] = set()
        self._cache_lock = threading.Lock()  # the generator and what its cache holds
        self._prefixes = PromptPrefixes(config.prompt_cache_tokens)
        self._reloading = threading.Lock()
        self._generation = 0  # reloads so far
        self._replicas = config.replicas
        self._writing = 0  # replies being generated (a held one keeps its copy)
        self._writing_lock = threading.Lock()
        self.max_batch = config.max_batch or (32 if self.device == "cuda" else 1)
        self._batched = (BatchedDecoder(self._generator, loops=config.replicas,
                                        max_batch=self.max_batch,
                                        end_tokens=list(self.format.stop_tokens),
                                        retries=config.gpu_memory_retries)
                         if self.max_batch > 1 else None)
        logger.info("loaded chat model %s on %s (%s, %d replica(s), batches of up to %d) in "
                    "%.1f s, context %d tokens", folder, self.device, self.compute_type,
                    config.replicas, self.max_batch, time.monotonic() - started,
                    self.context_tokens)

    def report_batches(self, observe: Callable[[int], None]) -> None:
        """Call ``observe(size)`` for every batch decoded together (none on the CPU path)."""
        if self._batched is not None:
            self._batched.observe = observe

    def warm_up(self) -> None:
        """Decode one token, so the first user does not pay for CUDA's lazy initialization."""
        for _ in self.stream([Message("user", "Hi")], SamplingOptions(max_new_tokens=1)):
            pass

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

    def close(self) -> None:
        """Stop the batch loops (replies still streaming end)."""
        if self._batched is not None:
            self._batched.close()

    def render(self, messages: Sequence[Message], tools: Sequence[Tool] = ()) -> str:
        """The prompt text for ``messages``, ending with the assistant's turn header.

        ``tools`` go to the model's own template, which describes them and the syntax of a
        call in the system turn (:mod:`llm.tools` parses the calls). Raises
        :class:`ChatModelError` if the template does not take tools.
        """
        if tools and not self.supports_tools:
            raise ChatModelError("this model's chat template does not support tools")
        try:
            return self._template.render(
                [m.template_json(self.supports_tools) for m in messages],
                add_generation_prompt=True, tools=template_tools(tools))
        except ChatTemplateError as error:
            raise ChatModelError(str(error)) from error

    def _tokens(self, texts: Sequence[str]) -> list[list[str]]:
        """Tokenize texts in one call. ``encode_batch`` releases the GIL (``encode`` holds it
        for the whole text), so a long prompt does not stall the other threads."""
        encodings = self._tokenizer.encode_batch(list(texts), add_special_tokens=False)
        return [encoding.tokens for encoding in encodings]

    def count_tokens(self, text: str) -> int:
        return len(self._tokens([text])[0])

    def _measure_message_overhead(self) -> int:
        """Tokens the chat template adds around one message's content (role headers, end
        markers), measured on a probe conversation; an estimate used to trim quickly."""
        probe = [Message("system", "a"), Message("user", "b"), Message("assistant", "c"),
                 Message("user", "d")]
        try:
            with_turns, system_only = self._tokens([self.render(probe),
                                                    self.render(probe[:1])])
        except Exception:  # a template that refuses the probe: a generous guess
            return 8
        return max(0, math.ceil((len(with_turns) - len(system_only)) / 3) - 1)

    def fit_to_context(self, messages: Sequence[Message], reserve: int,
                       tools: Sequence[Tool] = ()) -> list[Message]:
        """Drop the oldest turns until the prompt leaves ``reserve`` tokens for the reply.

        The first message if it is a system prompt, and the last message, are always kept;
        the history never starts with an orphaned assistant turn. Raises if even that is too
        long. Each message is tokenized once (the cost is linear in the conversation's
        length), then the kept prompt is rendered and checked.
        """
        return self._fit(messages, reserve, tools)[0]

    def _fit(self, messages: Sequence[Message], reserve: int,
             tools: Sequence[Tool] = ()) -> tuple[list[Message], list[str]]:
        """``fit_to_context`` plus the tokens of the kept prompt."""
        budget = self.context_tokens - reserve
        if not messages:
            raise ChatModelError("there is nothing to answer")
        first = 1 if messages[0].role == "system" else 0
        last = len(messages) - 1
        costs = [len(tokens) + self._message_overhead
                 for tokens in self._tokens([m.size_text for m in messages])]
        # Estimate: drop the oldest turns until the summed lengths fit.
        total = sum(costs)
        start = first  # messages[first:start] are dropped
        while total > budget and start < last:
            total -= costs[start]
            start += 1
        while True:
            while start < last and messages[start].role == "assistant":
                start += 1  # an assistant turn whose question was dropped
            kept = [*messages[:first], *messages[start:]]
            prompt = self._tokens([self.render(kept, tools)])[0]
            if len(prompt) <= budget:
                break
            if start >= last:
                raise ChatModelError(f"the prompt does not fit in {budget} tokens even "
                                     "without history")
            start += 1  # the estimate was short by a few template tokens: one more
        if len(kept) < len(messages):
            logger.info("trimmed %d old message(s) to fit the context",
                        len(messages) - len(kept))
        return kept, prompt

    def stream(self, messages: Sequence[Message], options: SamplingOptions | None = None,
               cancel: threading.Event | None = None,
               tools: Sequence[Tool] = (), *, pace: Pace | None = None) -> Iterator[str]:
        """Yield the reply as text deltas. Each ``next()`` blocks for about one token.

        Deltas are whole characters: bytes of a character split across tokens are held until
        the character is complete. Stops at the model's end-of-turn tokens, at
        ``max_new_tokens``, when ``cancel`` is set, or when the iterator is closed. With
        ``tools``, the deltas may contain the model's tool-call markup: feed them to an
        :class:`llm.tools.ToolCallParser`.

        The model writes ahead of the reader on its own thread; ``pace`` (see :data:`Pace`)
        may hold it between tokens, e.g. while a spoken reply is far ahead of its playback,
        so that its copy's cores serve others meanwhile. A held writing goes on at once when
        every copy is taken and another reply waits for one, and when ``cancel`` is set or
        the iterator closed. Batched decoding (``max_batch`` > 1) is never held.
        """
        options = options or SamplingOptions()
        kept, prompt = self._fit(messages, reserve=options.max_new_tokens, tools=tools)
        prompt = self._with_bos(prompt)
        if options.prefix:
            prompt = [*prompt, *self._tokens([options.prefix])[0]]
        if self._batched is not None:
            # Batched replies share no static prompt; on a GPU a prompt's prefill is cheap.
            steps = self._batched.steps(prompt, StepOptions(
                options.temperature, options.top_k, options.top_p, options.repetition_penalty,
                options.no_repeat_ngram_size), options.max_new_tokens)
            return self._deltas(steps, cancel)
        generator, static = self._generator_and_static(kept, prompt, tools)
        settings: dict[str, object] = dict(
            static_prompt=static or None,
            cache_static_prompt=bool(static),
            max_length=options.max_new_tokens,
            sampling_temperature=options.temperature,
            sampling_topk=options.top_k,
            sampling_topp=options.top_p,
            repetition_penalty=options.repetition_penalty,
            no_repeat_ngram_size=options.no_repeat_ngram_size,
            end_token=list(self.format.stop_tokens),
        )
        stopped = threading.Event()  # the reader is gone: never hold again
        steps = (generator.generate_tokens(prompt[len(static):], **settings)
                 if pace is None else
                 paced_steps(generator, prompt[len(static):], pace, cancel=cancel,
                             stopped=stopped, crowded=self._crowded, settings=settings))
        return self._counted(self._deltas(steps, cancel), stopped)

    def _crowded(self) -> bool:
        """More replies are being generated than there are copies: one waits for a copy."""
        return self._writing > self._replicas

    def _counted(self, deltas: Generator[str], stopped: threading.Event) -> Iterator[str]:
        """``deltas``, counted among the replies being generated from its first ``next()``
        (when generation starts) until it ends or is closed."""
        with self._writing_lock:
            self._writing += 1
        try:
            # Not "yield from": it would close ``deltas`` (which waits for a held writing to
            # end) before the finally below stops holding it.
            for delta in deltas:  # noqa: UP028
                yield delta
        finally:
            stopped.set()
            with self._writing_lock:
                self._writing -= 1
            deltas.close()

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
        if not self._prefixes.fits(len(tokens)) and (not reload or not self._reload()):
            return False
        # A reload forgot the turns it had seen: count this one again.
        if not self._system_turn(system, tools):
            return False
        with self._cache_lock:
            generator = self._generator
            if not self._prefixes.add(tokens):
                return False
        generator.generate_batch([tokens[-1:]], max_length=1, static_prompt=tokens,
                                 cache_static_prompt=True, include_prompt_in_result=False)
        return True

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
        if not self._prefixes.fits(len(tokens)) and (not reload or not self._reload()):
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

    def _with_bos(self, tokens: list[str]) -> list[str]:
        """The tokens with the BOS token first where the model wants one, unless the template
        wrote it already (Mistral's templates begin with ``{{ bos_token }}``)."""
        bos = self.format.bos_token
        if self.format.add_bos_token and bos and (not tokens or tokens[0] != bos):
            return [bos, *tokens]
        return tokens

    def _deltas(self, steps: Iterator[object], cancel: threading.Event | None) -> Generator[str]:
        deltas = TextDeltas(self._tokenizer)
        try:
            for step in steps:
                if cancel is not None and cancel.is_set():
                    return
                if step.token in self.format.stop_tokens:  # type: ignore[attr-defined]
                    break
                text = deltas.push(step.token_id)  # type: ignore[attr-defined]
                if text:
                    yield text
        finally:
            close = getattr(steps, "close", None)
            if close is not None:
                close()  # stops the generation inside CTranslate2

