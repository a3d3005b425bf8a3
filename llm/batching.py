"""Batched decoding: the replies of several sessions advance together, one step for all.

On a GPU one decoding step of a small model costs about the same for 1 or 32 sequences, so
replies that each ran on their own CTranslate2 replica (measured on an H200: 16 replicas, 32
sessions, first token p50 4.4 s) are better decoded as one batch. Each replica runs one loop
thread here: it takes every waiting request with the same sampling settings (up to
``max_batch``), decodes them with one ``generate_batch`` call, and its per-step callback hands
each token to its own request's queue. A request stops on its own (its token limit, its
consumer closing the iterator) by the callback answering True for it; the others go on.

CTranslate2 cannot add a sequence to a running batch: a request that arrives while every loop
is busy waits for the first loop to finish its batch. On the CPU the replicas path of
:class:`llm.chat.ChatModel` is faster (docs/benchmarks.md, "LLM concurrency"), so this is used
where the model runs on CUDA, or when configured.

A batch that fails for lack of GPU memory before any of its replies got a token is decoded again
(``retries`` more times): a momentary shortage passes, and after one CTranslate2's threads can
fail once more with a stale error (docs/benchmarks.md, "Out of GPU memory"). A batch that
already streamed tokens fails for every unfinished reply.

Threading: :meth:`BatchedDecoder.steps` may be called from any thread; the iterator it returns
blocks in ``next()`` until its next token (call it off an event loop). No asyncio here.
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

logger = logging.getLogger(__name__)

_END = object()

# How CUDA and CTranslate2 word a failed allocation, "parallel_for failed:
# cudaErrorInvalidDevice" included (CTranslate2's thrust kernels under memory pressure).
_GPU_MEMORY_ERRORS = ("out of memory", "alloc_failed", "cudaerrormemoryallocation",
                      "cudaerrorinvaliddevice")


def is_gpu_memory_error(error: BaseException) -> bool:
    text = str(error).lower()
    return any(marker in text for marker in _GPU_MEMORY_ERRORS)


@dataclasses.dataclass(frozen=True)
class StepOptions:
    """What must be equal for requests to share a batch (CTranslate2 takes one set)."""

    temperature: float
    top_k: int
    top_p: float
    repetition_penalty: float
    no_repeat_ngram_size: int


@dataclasses.dataclass(eq=False)
class _Request:
    prompt: list[str]
    options: StepOptions
    max_new_tokens: int
    steps: queue.SimpleQueue[Any] = dataclasses.field(default_factory=queue.SimpleQueue)
    stopped: threading.Event = dataclasses.field(default_factory=threading.Event)
    produced: int = 0
    ended: bool = False

    def end(self, item: Any = _END) -> None:
        if not self.ended:
            self.ended = True
            self.steps.put(item)


class _Steps:
    """One request's steps; ``close()`` (also before the first ``next()``) stops it."""

    def __init__(self, request: _Request) -> None:
        self._request = request

    def __iter__(self) -> _Steps:
        return self

    def __next__(self) -> Any:
        if self._request.stopped.is_set():
            raise StopIteration
        item = self._request.steps.get()
        if item is _END:
            self.close()
            raise StopIteration
        if isinstance(item, BaseException):
            self.close()
            raise item
        return item

    def close(self) -> None:
        self._request.stopped.set()

    def __del__(self) -> None:
        self.close()


class BatchedDecoder:
    """``loops`` generation loops over one CTranslate2 generator (give it that many replicas:
    ``inter_threads``), each decoding up to ``max_batch`` requests at once."""

    def __init__(self, generator: Any, *, loops: int, max_batch: int,
                 end_tokens: Sequence[str], retries: int = 2) -> None:
        if loops < 1 or max_batch < 1 or retries < 0:
            raise ValueError("loops and max_batch must be at least 1, retries not negative")
        self._retries = retries
        self._generator = generator
        self._max_batch = max_batch
        self._end_tokens = list(end_tokens)
        self._pending: list[_Request] = []
        self._condition = threading.Condition()
        self._closed = False
        self.observe: Callable[[int], None] | None = None  # told each batch's size
        self._threads = [threading.Thread(target=self._loop, name=f"llm-batch-{index}",
                                          daemon=True) for index in range(loops)]
        for thread in self._threads:
            thread.start()

    def steps(self, prompt: list[str], options: StepOptions,
              max_new_tokens: int) -> Iterator[Any]:
        """The reply's generation steps (``token``, ``token_id``, ``is_last``), one per
        ``next()``; the end token is the last one yielded. Closing the iterator stops the
        request, at once if it is still waiting for a loop."""
        request = _Request(prompt, options, max_new_tokens)
        with self._condition:
            if self._closed:
                raise RuntimeError("the decoder is closed")
            self._pending.append(request)
            self._condition.notify()
        return _Steps(request)

    def close(self) -> None:
        with self._condition:
            self._closed = True
            for request in self._pending:
                request.end()
            self._pending.clear()
            self._condition.notify_all()
        for thread in self._threads:
            thread.join(timeout=5)

    def _next_batch(self) -> list[_Request] | None:
        with self._condition:
            while True:
                self._pending = [r for r in self._pending if not r.stopped.is_set()]
                if self._closed:
                    return None
                if self._pending:
                    break
                self._condition.wait()
            head = self._pending[0]
            batch = [r for r in self._pending if r.options == head.options][:self._max_batch]
            self._pending = [r for r in self._pending if r not in batch]
            return batch

    def _loop(self) -> None:
        while (batch := self._next_batch()) is not None:
            try:
                self._decode_retrying(batch)
            except Exception as error:  # the model failed: every unfinished reply hears it
                logger.exception("batched decoding of %d replies failed", len(batch))
                for request in batch:
                    request.end(error)
            finally:
                for request in batch:
                    request.end()

    def _decode_retrying(self, batch: list[_Request]) -> None:
        for attempt in range(self._retries + 1):
            try:
                self._decode(batch)
                return
            except Exception as error:
                started = any(request.produced or request.ended for request in batch)
                if started or attempt == self._retries or not is_gpu_memory_error(error):
                    raise
                logger.warning("batched decoding of %d replies failed before their first "
                               "token (%s); trying again", len(batch), error)
                time.sleep(0.05 * (attempt + 1))

    def _decode(self, batch: list[_Request]) -> None:
        def on_step(step: Any) -> bool:
            request = batch[step.batch_id]
            if request.stopped.is_set() or request.ended:
                return True
            request.steps.put(step)
            request.produced += 1
            if step.is_last or request.produced >= request.max_new_tokens:
                request.end()
                return True
            return False

        if self.observe is not None:
            self.observe(len(batch))
        lengths = [len(request.prompt) for request in batch]
        options = batch[0].options
        # With prompts of different lengths, CTranslate2 forwards the shortest length at once
        # and decodes the rest step by step; those steps count towards max_length.
        self._generator.generate_batch(
            [request.prompt for request in batch], include_prompt_in_result=False,
            max_length=max(r.max_new_tokens for r in batch) + max(lengths) - min(lengths),
            sampling_temperature=options.temperature, sampling_topk=options.top_k,
            sampling_topp=options.top_p, repetition_penalty=options.repetition_penalty,
            no_repeat_ngram_size=options.no_repeat_ngram_size, end_token=self._end_tokens,
            callback=on_step)
