"""Engine faults as client errors: what a failed transcription or reply tells the client.

The engines raise whatever their libraries raise (CTranslate2 and ONNX Runtime use
``RuntimeError`` for everything, out-of-memory included). The session logs the traceback and
sends the client an ``error`` event made here: a code per stage and a message that says what
happened without leaking internals, except for the faults a client can act on.
"""

from __future__ import annotations

from llm.chat import ChatModelError
from voice.protocol import ProtocolError

# How CUDA, cuBLAS, CTranslate2, ONNX Runtime and PyTorch word an allocation failure. Short of GPU
# memory, CTranslate2's thrust kernels also fail with "parallel_for failed: cudaErrorInvalidDevice:
# invalid device ordinal" (docs/benchmarks.md, "Out of GPU memory").
_OUT_OF_MEMORY = ("out of memory", "failed to allocate", "alloc_failed", "outofmemory",
                  "cudaerrormemoryallocation", "cudaerrorinvaliddevice")


def is_out_of_memory(error: BaseException) -> bool:
    text = f"{type(error).__name__} {error}".lower()
    return isinstance(error, MemoryError) or any(marker in text for marker in _OUT_OF_MEMORY)


def engine_failure(code: str, what: str, error: Exception) -> ProtocolError:
    """The ``error`` event for an engine that raised while doing ``what`` (e.g. "the reply").

    ``code`` is ``response_failed`` or ``transcription_failed``; the session goes on."""
    if is_out_of_memory(error):
        message = (f"{what} failed: the server ran out of memory; try again in a moment "
                   "(if it keeps happening, the server needs a smaller model or fewer sessions)")
    elif isinstance(error, ChatModelError):
        message = f"{what} failed: {error}"  # e.g. a prompt that cannot fit the context
    else:
        message = f"{what} failed because of a server fault; see the server log"
    return ProtocolError(code, message, error_type="server_error")
