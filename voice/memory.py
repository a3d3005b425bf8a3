"""Native memory the engines free, given back to the system (glibc's allocator).

The engines (CTranslate2, onnxruntime) allocate large, short-lived buffers whose size follows
the prompt, the reply and the audio window at hand. glibc keeps what is freed inside its heaps
unless the block had its own mapping, and it raises the size from which blocks get one (its
mmap threshold) to the biggest mapped block freed so far: after one long prompt the engines'
multi-MiB buffers all stay in the heaps. Two remedies:

- :func:`set_mmap_threshold`, once at start-up: a fixed threshold (8 MiB by default) gives the
  big buffers back as they are freed (after long prompts ~400 MB less at no measurable cost in
  speed; the 4-session soak's plateau of short conversations stayed where it was;
  docs/benchmarks.md, "glibc's mmap threshold" and "Soak");
- :class:`HeapTrimmer`: ``malloc_trim`` hands back free pages inside the heaps while the service
  is idle (under load the working set is needed again at once). It walks the heaps holding
  their locks, so it runs only when no engine call is queued or running, on a worker thread,
  at most once per interval.

Elsewhere than glibc (musl, macOS) there is neither, and both do nothing.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
from collections.abc import Callable, Iterable
from typing import Any

import psutil

from voice.schedulers import Scheduler

logger = logging.getLogger(__name__)


def _libc_function(name: str) -> Any:
    """A function of the C library, or None where it has none by that name (not glibc)."""
    try:
        return getattr(ctypes.CDLL(ctypes.util.find_library("c")), name)
    except (OSError, AttributeError, TypeError):
        return None


def _malloc_trim() -> Callable[[int], int] | None:
    trim = _libc_function("malloc_trim")
    if trim is None:
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    function: Callable[[int], int] = trim
    return function


M_MMAP_THRESHOLD = -3  # mallopt's parameter number (glibc malloc.h)


def set_mmap_threshold(size: int) -> bool:
    """Serve allocations of ``size`` bytes and more with their own ``mmap``, given back to the
    system when freed, and stop glibc from raising that threshold by itself. Its default
    starts at 128 KiB and rises to the size of every mmapped block freed (up to 32 MiB): once
    a long prompt's or audio window's buffers have been freed, the next ones of that size come
    from the heaps, which keep them (docs/benchmarks.md, "glibc's mmap threshold"). False
    where there is no glibc ``mallopt`` or it refused the value."""
    mallopt = _libc_function("mallopt")
    if mallopt is None:
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return size > 0 and bool(mallopt(M_MMAP_THRESHOLD, size))


def idle(schedulers: Iterable[Scheduler]) -> bool:
    """Whether no call is queued or running in any of these engines."""
    return all(s.depth == 0 and s.running == 0 for s in schedulers)


class HeapTrimmer:
    """Every ``interval_s``, if ``idle()`` says no engine work is queued or running, trim the
    heaps; ``released(n)`` is told how many bytes of resident memory that gave back."""

    def __init__(self, idle: Callable[[], bool], interval_s: float,
                 released: Callable[[int], None] | None = None) -> None:
        self.idle = idle
        self.interval_s = interval_s
        self.released = released
        self._trim = _malloc_trim()
        self._process = psutil.Process()

    @property
    def available(self) -> bool:
        return self._trim is not None

    def trim(self) -> int:
        """Trim now (blocking: call it off the event loop); the resident bytes released."""
        if self._trim is None:
            return 0
        before: int = self._process.memory_info().rss
        self._trim(0)
        after: int = self._process.memory_info().rss
        return max(0, before - after)

    async def run(self) -> None:
        """Until cancelled."""
        if not self.available or self.interval_s <= 0:
            return
        while True:
            await asyncio.sleep(self.interval_s)
            if not self.idle():
                continue
            released = await asyncio.to_thread(self.trim)
            if released:
                logger.debug("gave %.0f MiB of freed memory back to the system",
                             released / 2**20)
            if self.released is not None:
                self.released(released)
