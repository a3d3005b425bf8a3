"""Failures for lack of GPU memory, and trying a call again after one.

How CUDA and CTranslate2 word a failed allocation. Under memory pressure CTranslate2's thrust
kernels also report "parallel_for failed: cudaErrorInvalidDevice: invalid device ordinal", and
after a shortage some of its threads fail once more that way (seen on an H100,
docs/benchmarks.md "Out of GPU memory, and the load ramp again").
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

logger = logging.getLogger(__name__)
T = TypeVar("T")

_GPU_MEMORY_ERRORS = ("out of memory", "alloc_failed", "cudaerrormemoryallocation",
                      "cudaerrorinvaliddevice")


def is_gpu_memory_error(error: BaseException) -> bool:
    text = str(error).lower()
    return any(marker in text for marker in _GPU_MEMORY_ERRORS)


def retrying(call: Callable[[], T], retries: int, what: str) -> T:
    """``call()``, tried up to ``retries`` more times (50, 100, ... ms apart) while it fails
    for lack of GPU memory; other errors, and the last one, are raised."""
    for attempt in range(retries + 1):
        try:
            return call()
        except RuntimeError as error:
            if attempt == retries or not is_gpu_memory_error(error):
                raise
            logger.warning("%s failed on the GPU (%s); trying again", what, error)
            time.sleep(0.05 * (attempt + 1))
    raise AssertionError("unreachable")
