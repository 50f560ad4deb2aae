"""Incremental detokenization: token ids in, text deltas out.

Decoding tokens one at a time breaks multi-byte characters and words that a tokenizer joins
across tokens. Like vLLM and TGI we keep a small window: decode the tokens since the last
emitted boundary and emit only the new suffix, holding back text that ends in an incomplete
UTF-8 sequence (U+FFFD) until the next token completes it.

Each update needs two decodes (the window without and with the new tokens). Where the
OpenVINO tokenizer decodes (models without a byte table, see `byte_vocab`), a call costs
about 0.1 ms whatever its size, so callers gather the windows of every stream that advanced
in a step and decode them in one batch (`decode_batch`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

Decode = Callable[[Sequence[int]], str]
DecodeMany = Callable[[list[list[int]]], list[str]]


class IncrementalDetokenizer:
    def __init__(self) -> None:
        self._ids: list[int] = []
        self._prefix_offset = 0  # start of the window that gives spacing context
        self._read_offset = 0  # tokens before this have been emitted as text

    @property
    def token_count(self) -> int:
        return len(self._ids)

    @property
    def token_ids(self) -> tuple[int, ...]:
        """Every token added so far."""
        return tuple(self._ids)

    def add(self, token_ids: Sequence[int]) -> tuple[list[int], list[int]]:
        """Add new tokens; return the two windows to decode: before and after them."""
        self._ids.extend(token_ids)
        return (
            self._ids[self._prefix_offset : self._read_offset],
            self._ids[self._prefix_offset :],
        )

    def emit(self, prefix_text: str, full_text: str, *, final: bool = False) -> str:
        """The new text, given the decoded windows of the last `add`. `final` releases
        anything held back (an incomplete character at the very end)."""
        if len(full_text) <= len(prefix_text) or (full_text.endswith("\ufffd") and not final):
            return ""
        self._prefix_offset = self._read_offset
        self._read_offset = len(self._ids)
        return full_text[len(prefix_text) :]

    def push(self, token_ids: Sequence[int], decode: Decode, *, final: bool = False) -> str:
        """`add` and `emit` with one decoder call per window: for a single stream."""
        prefix, full = self.add(token_ids)
        return self.emit(decode(prefix), decode(full), final=final)


def decode_batch(
    detokenizers: Sequence[tuple[IncrementalDetokenizer, Sequence[int], bool]],
    decode_many: DecodeMany,
) -> list[str]:
    """Advance many streams with one batched decode: (detokenizer, new ids, final) each."""
    windows: list[list[int]] = []
    for detokenizer, token_ids, _ in detokenizers:
        windows.extend(detokenizer.add(token_ids))
    texts = decode_many(windows) if windows else []
    return [
        detokenizer.emit(texts[2 * i], texts[2 * i + 1], final=final)
        for i, (detokenizer, _, final) in enumerate(detokenizers)
    ]
