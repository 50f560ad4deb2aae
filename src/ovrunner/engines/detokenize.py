"""Incremental detokenization: token ids in, text deltas out.

Decoding tokens one at a time breaks multi-byte characters and words that a tokenizer joins
across tokens. Like vLLM and TGI we keep a small window: decode the tokens since the last
emitted boundary and emit only the new suffix, holding back text that ends in an incomplete
UTF-8 sequence (U+FFFD) until the next token completes it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

Decode = Callable[[Sequence[int]], str]


class IncrementalDetokenizer:
    def __init__(self, decode: Decode) -> None:
        self._decode = decode
        self._ids: list[int] = []
        self._prefix_offset = 0  # start of the window that gives spacing context
        self._read_offset = 0  # tokens before this have been emitted as text

    @property
    def token_count(self) -> int:
        return len(self._ids)

    def push(self, token_ids: Sequence[int]) -> str:
        """Add new tokens; return the text they complete (possibly empty)."""
        if not token_ids:
            return ""
        self._ids.extend(token_ids)
        prefix_text = self._decode(self._ids[self._prefix_offset : self._read_offset])
        full_text = self._decode(self._ids[self._prefix_offset :])
        if full_text.endswith("\ufffd") or len(full_text) <= len(prefix_text):
            return ""
        self._prefix_offset = self._read_offset
        self._read_offset = len(self._ids)
        return full_text[len(prefix_text) :]

    def flush(self) -> str:
        """Text still held back at the end of generation (an incomplete character)."""
        prefix_text = self._decode(self._ids[self._prefix_offset : self._read_offset])
        full_text = self._decode(self._ids[self._prefix_offset :])
        self._prefix_offset = self._read_offset = len(self._ids)
        return full_text[len(prefix_text) :]
