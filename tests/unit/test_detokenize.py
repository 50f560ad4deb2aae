from __future__ import annotations

from collections.abc import Sequence

from ovrunner.engines.decoding.detokenize import IncrementalDetokenizer, decode_batch

# A byte-level vocabulary: each token is some bytes; "é" (c3 a9) and "🙂" (f0 9f 99 82) are
# split across tokens, as byte-level BPE does with rare characters.
VOCAB = {1: b"caf", 2: b"\xc3", 3: b"\xa9", 4: b" ", 5: b"\xf0\x9f", 6: b"\x99\x82", 7: b"!"}


def decode(ids: Sequence[int]) -> str:
    return b"".join(VOCAB[i] for i in ids).decode("utf-8", errors="replace")


def decode_many(windows: list[list[int]]) -> list[str]:
    return [decode(w) for w in windows]


def test_split_characters_are_held_back_until_complete() -> None:
    detokenizer = IncrementalDetokenizer()
    pieces = [detokenizer.push([token], decode) for token in [1, 2, 3, 4, 5, 6, 7]]
    assert pieces == ["caf", "", "é", " ", "", "🙂", "!"]
    assert "".join(pieces) == decode([1, 2, 3, 4, 5, 6, 7])
    assert detokenizer.token_count == 7


def test_final_releases_a_trailing_incomplete_character() -> None:
    detokenizer = IncrementalDetokenizer()
    assert detokenizer.push([1, 2], decode) == ""
    assert detokenizer.push([], decode, final=True) == "caf\ufffd"


def test_batch_matches_one_stream_at_a_time() -> None:
    streams = [[1, 2, 3, 4, 7], [5, 6, 4, 1], [7, 7, 2, 3]]
    singles = []
    for ids in streams:
        detokenizer = IncrementalDetokenizer()
        singles.append("".join(detokenizer.push([t], decode) for t in ids))
    batched = [IncrementalDetokenizer() for _ in streams]
    joined = ["", "", ""]
    for step in range(4):
        texts = decode_batch(
            [
                (d, ids[step : step + 1] if step < 3 else ids[step:], step == 3)
                for d, ids in zip(batched, streams)
            ],  # fmt: skip
            decode_many,
        )
        joined = [j + t for j, t in zip(joined, texts)]
    assert joined == singles == [decode(ids) for ids in streams]
