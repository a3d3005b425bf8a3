"""Token ids in, text deltas out, with bounded work per token.

Decoding the whole reply again for every new token costs time quadratic in the reply's length.
:class:`TextDeltas` wraps the ``tokenizers`` library's ``DecodeStream``, which keeps a prefix
offset and a read offset (the technique of Hugging Face's incremental detokenizer): each token
decodes only the few ids since the last complete character, so the work per token is bounded.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tokenizers.decoders import DecodeStream

if TYPE_CHECKING:
    import tokenizers


class TextDeltas:
    """Incremental detokenizer for one reply. Not thread-safe: one per reply.

    The deltas concatenate to ``tokenizer.decode(ids)`` of all ids pushed, except that bytes of
    a character still incomplete are held back (never a broken character, no U+FFFD for a
    split one; an incomplete character at the very end of a reply is dropped).
    """

    def __init__(self, tokenizer: tokenizers.Tokenizer) -> None:
        self._tokenizer = tokenizer
        self._stream = DecodeStream(skip_special_tokens=False)

    def push(self, token_id: int) -> str:
        """The text that ``token_id`` completes: "" while a character is still incomplete."""
        return self._stream.step(self._tokenizer, token_id) or ""
