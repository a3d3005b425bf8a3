"""A reply torn between words and a call opens the call.

Under ``tool_choice`` auto a small model sometimes answers a request its functions serve in
words ("To get the weather in Madrid, you can call the `get_weather` function ..."), although
its first token gave the opening of a call a good share of its probability. Measured with
qwen2.5-coder-1.5b-instruct on the spoken-command requests and ordinary questions in eight
languages (docs/benchmarks.md, "A reply torn between words and a call"): the openings got
0.26-0.33 where the model went on in words for a request, and at most 0.07 for the questions.
So when the first token is words and the openings together reach a threshold, the reply is
written again from the likeliest opening: the model then writes the call, and
:class:`llm.tools.ToolCallParser` checks it like any other.

Only the first token is looked at, on the path that decodes one reply per model copy (the
CPU's); batched decoding (CUDA) does not do it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np

# Tokens a call can begin with: Qwen2.5's tag, Mistral's marker, and the bare JSON object the
# small Qwen2.5 models write without the tag ("```" is left out: it also opens code).
CALL_OPENINGS = ("<tool_call>", "[TOOL_CALLS]", '{"', "{")


def opening_ids(token_id: Callable[[str], int | None]) -> dict[str, int]:
    """The call openings that are single tokens of a vocabulary (``token_id`` looks a token
    up, None where it has none), with their ids."""
    ids = {token: token_id(token) for token in CALL_OPENINGS}
    return {token: value for token, value in ids.items() if value is not None}


def torn_opening(token: str, logits: object, openings: Mapping[str, int],
                 threshold: float) -> tuple[str, float] | None:
    """The opening to write the reply from, and the openings' probability, where the first
    token ``token`` is not an opening but the openings together have at least ``threshold``
    of the probability ``logits`` (the first step's, over the vocabulary) give; else None."""
    if not openings or token in openings or threshold <= 0:
        return None
    values = np.asarray(logits, dtype=np.float64).reshape(-1)
    values = np.exp(values - values.max())
    ids: Sequence[int] = list(openings.values())
    shares = values[ids] / values.sum()
    total = float(shares.sum())
    if total < threshold:
        return None
    return list(openings)[int(shares.argmax())], total
