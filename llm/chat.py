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
the last reply), so a long conversation is not read again for every reply (llm.kept_states).
"""

from __future__ import annotations

import functools
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Generator, Iterator, Sequence
from pathlib import Path
from typing import Any

from llm.batching import BatchedDecoder, StepOptions
from llm.chat_types import (
    ChatConfig,
    Message,
    Role,
    SamplingOptions,
    ctranslate2_uses_mkl,
    default_threads,
)
from llm.detokenizer import TextDeltas
from llm.gguf import TOKENIZER_FILE, ChatFormat
from llm.kept_states import KeptStates
from llm.paced import Pace, paced_steps
from llm.prefixes import PromptPrefixes
from llm.template import ChatTemplate, ChatTemplateError
from llm.tools import Tool, template_supports_tools, template_tools
from llm.torn import opening_ids, torn_opening

logger = logging.getLogger(__name__)
__all__ = ["ChatConfig", "ChatModel", "ChatModelError", "Message", "Role", "SamplingOptions",
           "ctranslate2_uses_mkl", "default_threads"]

class ChatModelError(Exception):
    pass


class ChatModel(KeptStates):
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
        threads = config.cpu_threads or default_threads(
            os.cpu_count() or 1, config.replicas, mkl=ctranslate2_uses_mkl())
        self.threads = threads if self.device == "cpu" else 0
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
        self._call_openings = opening_ids(self._tokenizer.token_to_id)
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
        self._said_torn_is_off = False  # logged once: batches do not apply call_when_torn
        logger.info("loaded chat model %s on %s (%s, %d replica(s)%s, batches of up to %d) in "
                    "%.1f s, context %d tokens", folder, self.device, self.compute_type,
                    config.replicas,
                    f" of {self.threads} thread(s)" if self.device == "cpu" else "",
                    self.max_batch, time.monotonic() - started, self.context_tokens)

    def report_batches(self, observe: Callable[[int], None]) -> None:
        """Call ``observe(size)`` for every batch decoded together (none on the CPU path)."""
        if self._batched is not None:
            self._batched.observe = observe

    def warm_up(self) -> None:
        """Decode one token, so the first user does not pay for CUDA's lazy initialization."""
        for _ in self.stream([Message("user", "Hi")], SamplingOptions(max_new_tokens=1)):
            pass

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
            if tools and options.call_when_torn > 0 and not self._said_torn_is_off:
                self._said_torn_is_off = True
                logger.info("replies are decoded in batches: one torn between words and a call "
                            "is not written again as a call (call_when_torn applies where each "
                            "copy of the model writes one reply)")
            # Batched replies share no static prompt; on a GPU a prompt's prefill is cheap.
            steps = self._batched.steps(prompt, StepOptions(
                options.temperature, options.top_k, options.top_p, options.repetition_penalty,
                options.no_repeat_ngram_size), options.max_new_tokens)
            return self._deltas(steps, cancel)
        generator, static = self._generator_and_static(kept, prompt, tools)
        logger.debug("a reply reads %d new prompt tokens after %d kept", len(prompt) - len(static),
                     len(static))
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
        if tools and options.call_when_torn > 0 and not options.prefix and self._call_openings:
            return self._counted(self._torn(generator, prompt[len(static):], settings, options,
                                            pace, cancel, stopped), stopped)
        steps = (generator.generate_tokens(prompt[len(static):], **settings)
                 if pace is None else
                 paced_steps(generator, prompt[len(static):], pace, cancel=cancel,
                             stopped=stopped, crowded=self._crowded, settings=settings))
        return self._counted(self._deltas(steps, cancel), stopped)

    def _torn(self, generator: Any, tokens: list[str], settings: dict[str, object],
              options: SamplingOptions, pace: Pace | None, cancel: threading.Event | None,
              stopped: threading.Event) -> Generator[str]:
        """The reply's deltas, written again from a call's opening where its first token is
        words but the model gave the openings ``options.call_when_torn`` or more (llm.torn)."""
        first_stopped = threading.Event()  # closing the first writing must not stop the next
        steps = paced_steps(generator, tokens, pace or _unpaced, cancel=cancel,
                            stopped=first_stopped, crowded=self._crowded,
                            settings={**settings, "return_logits_vocab": True})
        first = next(steps, None)
        torn = None if first is None else torn_opening(
            first.token, first.logits, self._call_openings,  # type: ignore[attr-defined]
            options.call_when_torn)
        if torn is None:
            yield from self._deltas(_starting_with(first, steps), cancel)
            return
        steps.close()
        if cancel is not None and cancel.is_set():
            return  # cancelled while the first token was written: no call to start
        opening, share = torn
        logger.info("the reply's first token %r was words, but a call's openings had %.2f: "
                    "written again as a call", first.token, share)  # type: ignore[attr-defined]
        settings = {**settings, "max_length": max(1, options.max_new_tokens - 1)}
        again = (generator.generate_tokens([*tokens, opening], **settings) if pace is None else
                 paced_steps(generator, [*tokens, opening], pace, cancel=cancel,
                             stopped=stopped, crowded=self._crowded, settings=settings))
        yield self._tokenizer.decode([self._call_openings[opening]], skip_special_tokens=False)
        yield from self._deltas(again, cancel)

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


def _unpaced(written: int) -> float:
    return 0.0  # a writing nobody holds


def _starting_with(first: object | None, steps: Generator[object]) -> Generator[object]:
    """``first`` (taken already), then the rest of ``steps``; closing it closes ``steps``."""
    try:
        if first is not None:
            yield first
        yield from steps
    finally:
        steps.close()
