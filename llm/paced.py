"""A model's writing held back between tokens: CTranslate2's steps, paced by their reader.

CTranslate2 writes a reply on its own thread, as fast as it can, whatever the reader takes.
:func:`paced_steps` yields the same steps as ``Generator.generate_tokens`` but lets a
:data:`Pace` hold that thread between tokens (e.g. while a spoken reply is far ahead of its
playback, so that the copy's cores serve others meanwhile). Used by :class:`llm.chat.ChatModel`.

Threading: the pace is called in the model copy's thread; the returned iterator blocks in
``next()`` until the next token (call it off an event loop). No asyncio here.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Generator
from typing import Any

# How a reply's reader holds the writing back: called in the model's thread after each token
# with the number of tokens written so far, it returns the seconds to wait before the next one
# (0: go on). It is called again, with the same count, while the wait lasts.
Pace = Callable[[int], float]
PACE_POLL_S = 0.05  # a held writing looks at its pace (and at a cancel) this often
_END_OF_STEPS = object()


def paced_steps(generator: Any, prompt: list[str], pace: Pace, *,
                cancel: threading.Event | None, stopped: threading.Event,
                crowded: Callable[[], bool], settings: dict[str, object]) -> Generator[object]:
    """``generator``'s steps for ``prompt`` (``settings`` as ``generate_tokens`` takes them),
    held by ``pace`` between tokens. Its step callback (run in the copy's thread) hands each
    token to the reader first, then waits as ``pace`` says, unless ``cancel`` or ``stopped``
    is set or ``crowded()`` (another reply waits for a copy). ``generate_tokens`` hands a token
    over only once its callback returns, so a wait there would keep the token written last.
    Closing the iterator sets ``stopped`` and returns once the copy is free."""
    steps: queue.SimpleQueue[object] = queue.SimpleQueue()

    def on_step(step: object) -> bool:
        steps.put(step)
        written = step.step + 1  # type: ignore[attr-defined]
        while not stopped.is_set() and not (cancel is not None and cancel.is_set()):
            wait = pace(written)
            if wait <= 0 or crowded():
                break
            time.sleep(min(wait, PACE_POLL_S))
        return stopped.is_set()

    # As generate_tokens calls it: with the prompt in the result, the callback would see the
    # prompt's tokens first, forced through one by one.
    results = generator.generate_batch(
        [prompt], beam_size=1, asynchronous=True, include_prompt_in_result=False,
        callback=on_step, **settings)

    def finish() -> None:
        try:
            results[0].result()
        except Exception as error:  # the reader raises it
            steps.put(error)
        steps.put(_END_OF_STEPS)

    waiter = threading.Thread(target=finish, name="llm-paced", daemon=True)
    waiter.start()
    try:
        while (step := steps.get()) is not _END_OF_STEPS:
            if isinstance(step, Exception):
                raise step
            yield step
    finally:
        stopped.set()
        waiter.join()  # the copy is free again when the reader is done
