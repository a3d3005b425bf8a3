"""The chat model's settings, and the messages and sampling options of a reply.

Plain frozen dataclasses, importable without CTranslate2 (:mod:`llm.chat` re-exports them).
"""

from __future__ import annotations

import dataclasses
import os
import platform
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from llm.tools import ToolCall, template_call_id

Role = Literal["system", "user", "assistant", "tool"]


@dataclasses.dataclass(frozen=True)
class Message:
    """One turn of the chat. An assistant turn may carry the calls it made; a ``tool`` turn is
    a call's result (``content``)."""

    role: Role
    content: str
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str = ""  # a tool turn: the call it answers

    def template_json(self, tools_supported: bool) -> dict[str, object]:
        """The message as chat templates take it. A template without tools gets calls and
        results as plain text, so the conversation still reads right."""
        if tools_supported:
            body: dict[str, object] = {"role": self.role, "content": self.content}
            if self.tool_calls:
                body["tool_calls"] = [{"type": "function", "id": template_call_id(call.call_id),
                                       "function": {"name": call.name,
                                                    "arguments": dict(call.arguments)}}
                                      for call in self.tool_calls]
            if self.tool_call_id:
                body["tool_call_id"] = template_call_id(self.tool_call_id)
            return body
        if self.role == "tool":
            return {"role": "user", "content": f"[function result] {self.content}"}
        calls = " ".join(f"[called {call.name} {call.arguments_json}]"
                         for call in self.tool_calls)
        return {"role": self.role, "content": " ".join(filter(None, (self.content, calls)))}

    @property
    def size_text(self) -> str:
        """What the message's length is estimated from."""
        return self.content + "".join(call.arguments_json + call.name
                                      for call in self.tool_calls)


def default_threads(cores: int, replicas: int, *, mkl: bool = False) -> int:
    """Threads per model copy on the CPU when none are set: the cores shared among the copies,
    and with oneDNN (CTranslate2's backend on AMD processors) at least two where there are two
    cores. There, four copies on two cores with one thread each wrote a reply alone on one
    core; with two each, it writes 26 % faster, and four at once lose ~6 % a token
    (docs/benchmarks.md, "The first words sooner on two cores"). With Intel MKL (``mkl``:
    :func:`ctranslate2_uses_mkl`) one thread a copy writes as fast alone, and in the service,
    beside Whisper, the turn model and the speech synthesis, the first audio came 94-194 ms
    sooner, paired clip by clip (docs/benchmarks.md, "One thread a language model copy on
    Intel's MKL")."""
    if mkl:
        return max(1, cores // max(1, replicas))
    return max(min(2, cores), cores // max(1, replicas))


_TRUE = ("1", "true", "yes", "on")


def ctranslate2_uses_mkl(environ: Mapping[str, str] | None = None, cpuinfo: str | None = None,
                         machine: str | None = None) -> bool:
    """Whether CTranslate2 does its CPU matrix products with Intel MKL, as it decides: the
    ``CT2_USE_MKL`` variable if set, else on an x86-64 processor whose vendor is
    GenuineIntel (the published wheels carry MKL; others get oneDNN). ``cpuinfo``: the text
    of ``/proc/cpuinfo`` (read when not given; where there is none, False); ``machine``:
    :func:`platform.machine` unless given."""
    environ = os.environ if environ is None else environ
    chosen = environ.get("CT2_USE_MKL", "").strip().lower()
    if chosen:
        return chosen in _TRUE
    machine = platform.machine() if machine is None else machine
    if machine.lower() not in ("x86_64", "amd64"):
        return False
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(errors="replace")
        except OSError:
            return False
    vendor = re.search(r"^vendor_id\s*:\s*(\S+)", cpuinfo, re.MULTILINE)
    return vendor is not None and vendor.group(1) == "GenuineIntel"


@dataclasses.dataclass(frozen=True)
class ChatConfig:
    """Load-time settings of the language model."""

    model_path: str
    device: str = "auto"  # "auto": CUDA when CTranslate2 sees a GPU, else CPU
    compute_type: str = "auto"  # "auto": float16 on CUDA, int8 on CPU
    # 0: the machine's cores shared among the replicas; with oneDNN (AMD) at least two per
    # replica where there are two cores, so a reply alone writes on both (default_threads).
    cpu_threads: int = 0
    # Copies of the model that generate at once (CTranslate2 ``inter_threads``; the weights are
    # shared). With one, a short reply waits for a long one of another session to finish.
    # Measured against batched decoding in docs/benchmarks.md ("LLM concurrency").
    replicas: int = 1
    # Prompt + reply must fit here; defaults to min(model context, 4096) tokens.
    context_tokens: int | None = None
    # The model state after a system prompt is kept (CTranslate2's static prompt cache, shared
    # by the replicas) for this many distinct system prompts, so their length costs nothing per
    # turn. The cache only empties when the model is reloaded (``prompt_cache_tokens``):
    # prompts beyond these (clients' own instructions) are not kept.
    cached_system_prompts: int = 32
    # The states kept after prompt prefixes (the system prompts above, ~75 tokens each, and
    # each conversation so far, kept by ``prefill`` after a reply) add up to at most this many
    # tokens; ``prefill`` then reloads the model with an empty cache. ~170-290 KB a token for
    # the 0.5B model on the CPU (docs/benchmarks.md, "A conversation's history read once").
    prompt_cache_tokens: int = 3072
    # Replies decoded together in one batch per replica (llm.batching); None: 32 on CUDA, where
    # a step costs about the same for 1 or 32 replies, and 1 (each reply alone) on the CPU.
    max_batch: int | None = None
    # A batch that fails for lack of GPU memory before its first token is decoded again this
    # many more times (llm.batching).
    gpu_memory_retries: int = 2


@dataclasses.dataclass(frozen=True)
class SamplingOptions:
    """Per-reply settings. The defaults are greedy decoding (deterministic, used by tests)."""

    max_new_tokens: int = 256
    temperature: float = 1.0
    top_k: int = 1
    top_p: float = 1.0
    repetition_penalty: float = 1.0
    # 0: off. N: the reply never writes the same N tokens twice (the prompt does not count),
    # which ends greedy loops ("des légumes, des légumes, ...").
    no_repeat_ngram_size: int = 0
    # The reply starts with this text as if the model had written it (it is not yielded): the
    # opening of a tool call forces a call (tool_choice "required" or a named function).
    prefix: str = ""
    # With tools and no prefix: a reply whose first token is words while the openings of a
    # call had at least this probability is written again as a call (llm.torn). 0: off.
    call_when_torn: float = 0.0
