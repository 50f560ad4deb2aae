"""The byte-table decoder against the OpenVINO tokenizer it stands in for, on real vocabularies."""

from __future__ import annotations

import logging
import random
from pathlib import Path

import openvino_genai
import pytest

from ovrunner.engines.base import ModelFormat, ModelRef
from ovrunner.engines.decoding.byte_vocab import ByteVocab, fast_decoder
from ovrunner.engines.decoding.detokenize import IncrementalDetokenizer
from ovrunner.engines.openvino.generation import decoder
from ovrunner.store import ModelStore

TEXTS = [
    "The capital of France is Paris.",
    "Ünïcödé, 日本語, emoji 🙂🚀 and\ttabs\n\nand  double  spaces",
    "don't stop 's 1234567 (x+y)*z; <|im_end|> after a special token",
]


@pytest.fixture(scope="module", params=["tiny", "smollm2"])
def model(
    request: pytest.FixtureRequest, tiny_model: ModelRef, tmp_path_factory: pytest.TempPathFactory
) -> ModelRef:
    if request.param == "tiny":
        return tiny_model
    return ModelStore(tmp_path_factory.mktemp("store")).get("smollm2-135m")


@pytest.fixture(scope="module")
def tokenizer(model: ModelRef) -> openvino_genai.Tokenizer:
    return openvino_genai.Tokenizer(str(model.path))


def with_tokenizer(tokenizer: openvino_genai.Tokenizer):  # type: ignore[no-untyped-def]
    return lambda windows: list(tokenizer.decode(windows, skip_special_tokens=True))


def test_a_byte_level_gguf_gets_the_byte_table(
    model: ModelRef, tokenizer: openvino_genai.Tokenizer
) -> None:
    decode_many = decoder(tokenizer, model)
    assert isinstance(getattr(decode_many, "__self__", None), ByteVocab)


def test_random_windows_decode_exactly_as_the_tokenizer(
    model: ModelRef, tokenizer: openvino_genai.Tokenizer
) -> None:
    """Random ids give every kind of window: special tokens, split and invalid UTF-8."""
    decode_many = decoder(tokenizer, model)
    size = len(decode_many.__self__)  # type: ignore[attr-defined]
    rng = random.Random(7)
    windows = [[rng.randrange(size) for _ in range(rng.randrange(0, 24))] for _ in range(3000)]
    assert decode_many(windows) == with_tokenizer(tokenizer)(windows)


def test_streams_of_real_text_join_to_the_tokenizers_text(
    model: ModelRef, tokenizer: openvino_genai.Tokenizer
) -> None:
    decode_many = decoder(tokenizer, model)
    for text in TEXTS:
        ids = [int(i) for i in tokenizer.encode(text, add_special_tokens=False).input_ids.data[0]]
        detokenizer = IncrementalDetokenizer()
        pieces = [detokenizer.push([i], lambda w: decode_many([list(w)])[0]) for i in ids]
        expected = tokenizer.decode(ids, skip_special_tokens=True)
        assert "".join(pieces) == expected
        assert expected.replace("<|im_end|>", "") == text.replace("<|im_end|>", "")


def test_an_id_outside_the_table_is_left_to_the_tokenizer() -> None:
    calls: list[list[list[int]]] = []

    def reference(windows: list[list[int]]) -> list[str]:
        calls.append(windows)
        return ["from the tokenizer"] * len(windows)

    vocab = ByteVocab([b"a", b"b"], reference)
    assert vocab.decode_many([[0, 1, 0]]) == ["aba"]
    assert vocab.decode_many([[0], [5]]) == ["from the tokenizer"] * 2
    assert calls == [[[0], [5]]]


def test_a_table_that_disagrees_is_not_used(model: ModelRef, tokenizer: openvino_genai.Tokenizer,
                                           caplog: pytest.LogCaptureFixture) -> None:  # fmt: skip
    """A tokenizer whose decoder changes text (here: strips spaces) keeps decoding itself."""

    def stripping(windows: list[list[int]]) -> list[str]:
        return [text.replace(" ", "") for text in with_tokenizer(tokenizer)(windows)]

    def encode(text: str) -> list[int]:
        return [int(i) for i in tokenizer.encode(text, add_special_tokens=False).input_ids.data[0]]

    with caplog.at_level(logging.WARNING):
        assert fast_decoder(model.path, stripping, encode) is stripping
    assert "differs on" in caplog.text


def test_other_vocabularies_keep_the_tokenizer(tmp_path: Path) -> None:
    def reference(windows: list[list[int]]) -> list[str]:
        return [""] * len(windows)

    # A SentencePiece-style token ("▁" is not in the byte-level alphabet) is not byte-level.
    assert ByteVocab.from_tokens(["a", "▁the"], [1, 1], reference) is None
    not_gguf = tmp_path / "model.gguf"
    not_gguf.write_bytes(b"nope")
    assert fast_decoder(not_gguf, reference, lambda text: []) is reference
    ir = ModelRef("ir", tmp_path, ModelFormat.OPENVINO_IR, "openvino")
    assert decoder(object(), ir).__name__ == "with_tokenizer"


@pytest.mark.parametrize(
    "data",
    [
        b"caf\xc3\xa9",
        b"\xc3",
        b"a\xc3",
        b"\xc3a",
        b"a\xa9a",
        b"a\xffa",
        b"\xc0\xafa",
        b"\xc1\x80b",
        b"\xe0\x80\x80c",
        b"\xe0\x80A",
        b"\xf0\x8f\xbf\xbfd",
        b"\xed\xa0\x80a",
        b"\xf4\x90\x80\x80e",
        b"\xf5\x80\x80\x80f",
        b"x\xf0\x9f\x99",
        b"\xf0\x9f\x99\x82!",
    ],
)
def test_invalid_utf8_is_handled_as_the_tokenizer_handles_it(
    data: bytes, tiny_model: ModelRef
) -> None:
    """The tiny vocabulary has a token for every single byte, so any byte string can be sent."""
    tokenizer = openvino_genai.Tokenizer(str(tiny_model.path))
    decode_many = decoder(tokenizer, tiny_model)
    table = decode_many.__self__._table  # type: ignore[attr-defined]
    by_byte = {entry[0]: i for i, entry in enumerate(table) if len(entry) == 1}
    window = [by_byte[b] for b in data]
    assert decode_many([window]) == with_tokenizer(tokenizer)([window])


def test_checking_the_table_leaves_little_resident(
    model: ModelRef, tokenizer: openvino_genai.Tokenizer
) -> None:
    """The check decodes every token with the tokenizer, which keeps its padded batch buffer:
    batched with the longer probe, that held 128 MiB for SmolLM2's vocabulary."""

    def resident_mib() -> int:
        status = Path("/proc/self/status").read_text()
        return int(status.split("VmRSS:")[1].split()[0]) // 1024

    tokenizer.decode([[1]], skip_special_tokens=True)  # its first call allocates anyway
    before = resident_mib()
    decoder(tokenizer, model)
    assert resident_mib() - before < 40
