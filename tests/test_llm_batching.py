"""Batched decoding: replies of several sessions decoded together, each stopping on its own."""

from __future__ import annotations

import dataclasses
import logging
import re
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from llm.batching import BatchedDecoder, StepOptions
from llm.chat import ChatConfig, ChatModel, Message, SamplingOptions
from llm.tools import Tool

GREEDY = StepOptions(temperature=1.0, top_k=1, top_p=1.0, repetition_penalty=1.0,
                     no_repeat_ngram_size=0)
QUESTIONS = ["What is the capital of France?",
             "Name three colours that you can see in a rainbow, please.",
             "Write one sentence about the sea, the wind and the boats of a small harbour."]


@pytest.fixture(scope="module")
def smollm2(prepared_model: Callable[[str], Path]) -> Path:
    return prepared_model("smollm2-135m-instruct")


def _collect(streams: list[Iterator[str]]) -> list[str]:
    """Drain several reply iterators at once, each in its own thread, as sessions do."""
    texts = [""] * len(streams)

    def drain(index: int) -> None:
        texts[index] = "".join(streams[index])

    threads = [threading.Thread(target=drain, args=(i,)) for i in range(len(streams))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return texts


def test_replies_decoded_together_each_answer_their_own_question(smollm2: Path) -> None:
    alone = ChatModel(ChatConfig(str(smollm2), device="cpu", max_batch=1))
    together = ChatModel(ChatConfig(str(smollm2), device="cpu", max_batch=8))
    sizes: list[int] = []
    together.report_batches(sizes.append)
    options = SamplingOptions(max_new_tokens=24)
    solo = ["".join(alone.stream([Message("user", q)], options)) for q in QUESTIONS]
    try:
        # All three are asked before the loop is free: one batch holds them all.
        with together._batched._condition:  # type: ignore[union-attr]
            streams = [together.stream([Message("user", q)], options) for q in QUESTIONS]
        texts = _collect(streams)
    finally:
        together.close()
    # Greedy replies decoded in a batch may drift from the same reply decoded alone (the
    # longer prompts' tails are decoded step by step; seen after 6 words on one CPU and after
    # one word on another: "The sea, the wind ..." for "The wind carried ..."), so each reply
    # must share more of its words with its own question's reply alone than with any other's,
    # on whatever CPU: no tokens crossed between batch rows.
    for index, text in enumerate(texts):
        own = _shared(text, solo[index])
        assert all(own > _shared(text, other) for other in solo if other is not solo[index]), (
            texts, solo)
    assert sizes == [3]


def _shared(one: str, other: str) -> float:
    """The share of two texts' words they have in common (Jaccard)."""
    first, second = (set(re.findall(r"\w+", text.lower())) for text in (one, other))
    return len(first & second) / max(1, len(first | second))


def test_batched_replies_say_once_that_a_torn_reply_is_not_written_as_a_call(
        prepared_model: Callable[[str], Path], caplog: pytest.LogCaptureFixture) -> None:
    qwen = prepared_model("qwen2.5-coder-0.5b-instruct")  # (smollm2's template has no tools)
    together = ChatModel(ChatConfig(str(qwen), device="cpu", max_batch=4))
    tool = Tool("get_weather", "The weather in a city.",
                {"type": "object", "properties": {"city": {"type": "string"}}})
    options = SamplingOptions(max_new_tokens=4, call_when_torn=0.2)
    try:
        with caplog.at_level(logging.INFO, logger="llm.chat"):
            replies = ["".join(together.stream([Message("user", "Weather in Rome?")], options,
                                               tools=[tool])) for _ in range(2)]
    finally:
        together.close()
    assert all(replies)
    said = [r for r in caplog.records if "not written again as a call" in r.getMessage()]
    assert len(said) == 1


def test_every_reply_gets_its_own_token_limit_whatever_its_prompt_length(smollm2: Path) -> None:
    import ctranslate2
    import tokenizers

    generator = ctranslate2.Generator(str(smollm2), device="cpu", compute_type="int8")
    tokenizer = tokenizers.Tokenizer.from_file(str(smollm2 / "tokenizer.json"))
    prompts = [tokenizer.encode(text).tokens for text in
               ["Once upon a time", "Once upon a time, in a land far away, there lived a king "
                "who had three daughters and a very large garden full of apple trees"]]
    assert len(prompts[1]) > len(prompts[0]) + 10
    decoder = BatchedDecoder(generator, loops=1, max_batch=4, end_tokens=[])
    try:
        with decoder._condition:
            streams = [decoder.steps(prompt, GREEDY, limit)
                       for prompt, limit in zip(prompts, [12, 7], strict=True)]
        counts = [0, 0]

        def count(index: int) -> None:
            counts[index] = sum(1 for _ in streams[index])

        threads = [threading.Thread(target=count, args=(i,)) for i in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
    finally:
        decoder.close()
    assert counts == [12, 7]


@dataclasses.dataclass
class _Step:
    batch_id: int
    token: str
    token_id: int
    is_last: bool


class _ScriptedGenerator:
    """Stands in for CTranslate2: each batch writes ``tokens`` steps per sequence, after
    waiting for ``release`` on its first call; records each batch's prompts."""

    def __init__(self, tokens: int = 3, fail: bool = False, fail_first: int = 0,
                 fail_after_first_step: bool = False) -> None:
        self.tokens = tokens
        self.fail = fail
        self.fail_first = fail_first  # this many batches fail as CTranslate2 does when short
        self.fail_after_first_step = fail_after_first_step
        self.release = threading.Event()
        self.hold_after_first_step: threading.Event | None = None
        self.batches: list[list[list[str]]] = []
        self.stopped: list[tuple[int, int, int]] = []  # (batch, sequence, step) told to stop

    def generate_batch(self, prompts: list[list[str]], *, callback: Any, **options: Any
                       ) -> None:
        self.batches.append(prompts)
        batch = len(self.batches) - 1
        self.release.wait(10)
        if self.fail:
            raise RuntimeError("CUDA error: out of memory")
        if batch < self.fail_first:
            raise RuntimeError("parallel_for failed: cudaErrorInvalidDevice: invalid device "
                               "ordinal")
        running = set(range(len(prompts)))
        for step in range(self.tokens):
            for index in sorted(running):
                if callback(_Step(index, f"t{step}", step, step == self.tokens - 1)):
                    running.discard(index)
                    self.stopped.append((batch, index, step))
            if step == 0 and self.hold_after_first_step is not None:
                self.hold_after_first_step.wait(10)
            if step == 0 and self.fail_after_first_step:
                raise RuntimeError("CUDA failed with error out of memory")


def test_replies_with_other_sampling_settings_wait_for_their_own_batch() -> None:
    generator = _ScriptedGenerator()
    decoder = BatchedDecoder(generator, loops=1, max_batch=8, end_tokens=[])
    sampled = dataclasses.replace(GREEDY, temperature=0.7, top_k=40)
    sizes: list[int] = []
    decoder.observe = sizes.append
    try:
        first = decoder.steps(["a"], GREEDY, 10)
        while not generator.batches:  # the loop took the first request alone
            threading.Event().wait(0.01)
        later = [decoder.steps(["b"], GREEDY, 10), decoder.steps(["c"], sampled, 10),
                 decoder.steps(["d"], GREEDY, 10)]
        generator.release.set()
        tokens = [[step.token for step in stream] for stream in [first, *later]]
    finally:
        decoder.close()
    assert tokens == [["t0", "t1", "t2"]] * 4
    assert generator.batches == [[["a"]], [["b"], ["d"]], [["c"]]]
    assert sizes == [1, 2, 1]


def test_a_closed_reply_stops_alone_and_its_batch_mates_finish() -> None:
    generator = _ScriptedGenerator(tokens=5)
    generator.hold_after_first_step = closed = threading.Event()
    decoder = BatchedDecoder(generator, loops=1, max_batch=8, end_tokens=[])
    try:
        with decoder._condition:
            keep, leave = decoder.steps(["a"], GREEDY, 10), decoder.steps(["b"], GREEDY, 10)
        generator.release.set()
        assert next(leave).token == "t0"
        leave.close()
        closed.set()
        kept = [step.token for step in keep]
    finally:
        decoder.close()
    assert kept == ["t0", "t1", "t2", "t3", "t4"]
    assert generator.stopped == [(0, 1, 1), (0, 0, 4)]  # at its next step; at its last


def test_a_reply_closed_before_its_batch_starts_is_never_decoded() -> None:
    generator = _ScriptedGenerator()
    decoder = BatchedDecoder(generator, loops=1, max_batch=8, end_tokens=[])
    try:
        first = decoder.steps(["a"], GREEDY, 10)
        while not generator.batches:
            threading.Event().wait(0.01)
        dropped = decoder.steps(["b"], GREEDY, 10)
        dropped.close()  # a generator never started: its cleanup runs now
        kept = decoder.steps(["c"], GREEDY, 10)
        generator.release.set()
        assert [s.token for s in first] == [s.token for s in kept] == ["t0", "t1", "t2"]
    finally:
        decoder.close()
    assert generator.batches == [[["a"]], [["c"]]]


def test_a_failing_batch_raises_in_every_reply_and_the_loop_goes_on() -> None:
    generator = _ScriptedGenerator(fail=True)
    decoder = BatchedDecoder(generator, loops=1, max_batch=8, end_tokens=[])
    try:
        with decoder._condition:
            streams = [decoder.steps([t], GREEDY, 10) for t in "ab"]
        generator.release.set()
        for stream in streams:
            with pytest.raises(RuntimeError, match="out of memory"):
                next(stream)
        assert len(generator.batches) == 3  # tried twice more before giving up
        generator.fail = False
        assert [s.token for s in decoder.steps(["c"], GREEDY, 10)] == ["t0", "t1", "t2"]
    finally:
        decoder.close()


def test_a_batch_short_of_gpu_memory_before_its_first_token_is_decoded_again() -> None:
    # After a shortage, CTranslate2 on an H100 failed once more per thread with thrust's
    # "invalid device ordinal"; the replies must not fail for that.
    generator = _ScriptedGenerator(fail_first=2)
    generator.release.set()
    decoder = BatchedDecoder(generator, loops=1, max_batch=8, end_tokens=[])
    try:
        with decoder._condition:
            streams = [decoder.steps([t], GREEDY, 10) for t in "ab"]
        assert [[s.token for s in stream] for stream in streams] == [["t0", "t1", "t2"]] * 2
        assert generator.batches == [[["a"], ["b"]]] * 3
    finally:
        decoder.close()


def test_a_batch_that_fails_after_streaming_tokens_is_not_decoded_again() -> None:
    generator = _ScriptedGenerator(fail_after_first_step=True)
    generator.release.set()
    decoder = BatchedDecoder(generator, loops=1, max_batch=8, end_tokens=[])
    try:
        stream = decoder.steps(["a"], GREEDY, 10)
        assert next(stream).token == "t0"
        with pytest.raises(RuntimeError, match="out of memory"):
            next(stream)
        assert len(generator.batches) == 1  # its first token was heard: no second start
    finally:
        decoder.close()


def test_a_reply_asked_of_a_closed_decoder_is_refused() -> None:
    decoder = BatchedDecoder(_ScriptedGenerator(), loops=1, max_batch=2, end_tokens=[])
    decoder.close()
    with pytest.raises(RuntimeError, match="closed"):
        decoder.steps(["a"], GREEDY, 10)
