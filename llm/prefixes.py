"""The prompt prefixes whose model state a CTranslate2 generator keeps between replies.

CTranslate2 keeps the decoder state after a *static prompt* (``static_prompt`` with
``cache_static_prompt``) for as long as the model is loaded, keyed by its exact tokens, and a
later request whose static prompt is the same skips reading those tokens. It never lets a
state go, and a state is large: ~170-290 KB a token for the 0.5B default model on the CPU
(the key and value of every head of every layer in float32; docs/benchmarks.md, "A
conversation's history read once"). So :class:`PromptPrefixes` records which prefixes the
generator holds and how many tokens they add up to, against a budget; the owner reloads the
model, which starts with an empty cache, when one more would not fit.

Thread-safe: replies on several threads look prefixes up while one is added.
"""

from __future__ import annotations

import ctypes
import threading
from collections.abc import Sequence


class PromptPrefixes:
    """Token prefixes held in a generator's cache, and their total length."""

    def __init__(self, budget_tokens: int) -> None:
        self.budget_tokens = budget_tokens
        self._prefixes: set[tuple[str, ...]] = set()
        self._tokens = 0
        self._lock = threading.Lock()

    @property
    def tokens(self) -> int:
        """The tokens of every held prefix, summed (what the cache's memory grows with)."""
        return self._tokens

    def __len__(self) -> int:
        return len(self._prefixes)

    def longest(self, prompt: Sequence[str]) -> list[str]:
        """The longest held prefix of ``prompt`` that leaves at least one token of it to
        read ([] if none): CTranslate2 needs a token past the static prompt to go on from."""
        best: tuple[str, ...] = ()
        with self._lock:
            candidates = list(self._prefixes)
        for prefix in candidates:
            if (len(best) < len(prefix) < len(prompt)
                    and tuple(prompt[:len(prefix)]) == prefix):
                best = prefix
        return list(best)

    def holds(self, tokens: Sequence[str]) -> bool:
        with self._lock:
            return tuple(tokens) in self._prefixes

    def fits(self, count: int) -> bool:
        """Whether ``count`` more tokens stay within the budget."""
        return self._tokens + count <= self.budget_tokens

    def add(self, tokens: Sequence[str]) -> bool:
        """Record ``tokens`` as held; False (nothing recorded) if they would exceed the
        budget or are held already."""
        key = tuple(tokens)
        with self._lock:
            if key in self._prefixes or self._tokens + len(key) > self.budget_tokens:
                return False
            self._prefixes.add(key)
            self._tokens += len(key)
            return True

    def clear(self) -> None:
        """The generator was replaced: it holds nothing."""
        with self._lock:
            self._prefixes.clear()
            self._tokens = 0


def release_freed_memory() -> None:
    """Give what a dropped model copy freed back to the system (glibc's ``malloc_trim``; a no-op
    where there is none). Most of a copy's buffers are under the mmap threshold and come from
    the heap arena of the thread that loaded it; a reload from another worker thread fills
    another arena and the freed one kept its pages: +600 MB of RSS a reload in a 20-minute
    soak, flat with this (docs/benchmarks.md, "A conversation's history read once")."""
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return
    trim(0)
