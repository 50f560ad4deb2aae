from __future__ import annotations

from collections.abc import Sequence

from ovrunner.engines.detokenize import IncrementalDetokenizer

# A byte-level vocabulary: each token is some bytes; "é" (c3 a9) and "🙂" (f0 9f 99 82) are
# split across tokens, as byte-level BPE does with rare characters.
VOCAB = {1: b"caf", 2: b"\xc3", 3: b"\xa9", 4: b" ", 5: b"\xf0\x9f", 6: b"\x99\x82", 7: b"!"}


def decode(ids: Sequence[int]) -> str:
    return b"".join(VOCAB[i] for i in ids).decode("utf-8", errors="replace")


def test_split_characters_are_held_back_until_complete() -> None:
    detokenizer = IncrementalDetokenizer(decode)
    pieces = [detokenizer.push([token]) for token in [1, 2, 3, 4, 5, 6, 7]]
    assert pieces == ["caf", "", "é", " ", "", "🙂", "!"]
    assert "".join(pieces) == decode([1, 2, 3, 4, 5, 6, 7])
    assert detokenizer.token_count == 7


def test_flush_returns_a_trailing_incomplete_character() -> None:
    detokenizer = IncrementalDetokenizer(decode)
    assert detokenizer.push([1, 2]) == ""
    assert detokenizer.flush() == "caf\ufffd"


def test_several_tokens_at_once() -> None:
    detokenizer = IncrementalDetokenizer(decode)
    assert detokenizer.push([1, 2, 3, 4]) + detokenizer.push([7]) == "café !"
