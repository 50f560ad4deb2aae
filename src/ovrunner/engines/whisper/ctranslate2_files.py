"""A Whisper model in CTranslate2's format, read with numpy alone (no `ctranslate2`).

Faster-whisper's models are published this way: `model.bin` (every weight, named as
CTranslate2's `WhisperSpec` names them), `config.json` (alignment heads, language token ids,
suppressed tokens), `tokenizer.json` and `vocabulary.txt` (every token id, the timestamp tokens
included). `model.bin` is CTranslate2's binary layout, version 6: a header, then each variable
as (name, rank, dims, dtype, byte count, bytes), then aliases (the output projection is the
token embedding).
"""

from __future__ import annotations

import json
import mmap
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

MODEL_BIN = "model.bin"
FILES = (MODEL_BIN, "config.json", "tokenizer.json", "vocabulary.txt")
SPEC_NAME = "WhisperSpec"
# CTranslate2's DataType ids.
_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}
_SUPPORTED_VERSIONS = (5, 6)


class CTranslate2FormatError(ValueError):
    """The files are not a Whisper model in CTranslate2's format this reader knows."""


@dataclass(frozen=True)
class WhisperDims:
    """The shape of the network, read from its weights."""

    mel_bins: int
    width: int
    heads: int
    encoder_layers: int
    decoder_layers: int
    audio_positions: int  # encoder frames after the stride-2 convolution (1500)
    text_positions: int  # the decoder's window (448)
    vocab_size: int


@dataclass(frozen=True)
class CTranslate2Whisper:
    weights: dict[str, np.ndarray]  # read-only views into the mapped file
    dims: WhisperDims
    config: dict  # CTranslate2's config.json
    vocabulary: list[str]  # token by id

    def layer(self, stack: str, index: int, name: str) -> np.ndarray:
        return self.weights[f"{stack}/layer_{index}/{name}"]


def is_ctranslate2_whisper(directory: Path) -> bool:
    """Whether `directory` holds CTranslate2's files with a `WhisperSpec` model."""
    if not all((directory / name).is_file() for name in FILES):
        return False
    try:
        with (directory / MODEL_BIN).open("rb") as f:
            header = f.read(64)
        _version, offset = struct.unpack_from("<I", header, 0)[0], 4
        (length,) = struct.unpack_from("<H", header, offset)
        return header[offset + 2 : offset + 1 + length].decode() == SPEC_NAME
    except (OSError, struct.error, UnicodeDecodeError):
        return False


def read(directory: Path) -> CTranslate2Whisper:
    """Every weight of the model in `directory` (mapped, not copied), and its configuration."""
    try:
        with (directory / MODEL_BIN).open("rb") as f:
            data = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        weights = _read_variables(memoryview(data))
        config = json.loads((directory / "config.json").read_text())
        vocabulary = (directory / "vocabulary.txt").read_text(encoding="utf-8").split("\n")
    except (OSError, struct.error, UnicodeDecodeError, KeyError) as exc:
        raise CTranslate2FormatError(f"cannot read {directory.name}: {exc}") from exc
    if vocabulary and vocabulary[-1] == "":
        vocabulary.pop()
    dims = _dims(weights)
    if len(vocabulary) != dims.vocab_size:
        raise CTranslate2FormatError(
            f"vocabulary.txt has {len(vocabulary)} tokens and the embedding {dims.vocab_size}"
        )
    return CTranslate2Whisper(weights, dims, config, vocabulary)


def _read_variables(buffer: memoryview) -> dict[str, np.ndarray]:
    offset = 0

    def unpack(fmt: str) -> int:
        nonlocal offset
        (value,) = struct.unpack_from(fmt, buffer, offset)
        offset += struct.calcsize(fmt)
        return int(value)

    def string() -> str:
        nonlocal offset
        length = unpack("<H")  # the terminating NUL included
        value = bytes(buffer[offset : offset + length - 1]).decode("utf-8")
        offset += length
        return value

    version = unpack("<I")
    if version not in _SUPPORTED_VERSIONS:
        raise CTranslate2FormatError(f"model.bin is CTranslate2 binary version {version}")
    if (spec := string()) != SPEC_NAME:
        raise CTranslate2FormatError(f"model.bin holds a {spec}, not a {SPEC_NAME}")
    unpack("<I")  # the spec's revision
    weights: dict[str, np.ndarray] = {}
    for _ in range(unpack("<I")):
        name = string()
        shape = [unpack("<I") for _ in range(unpack("<B"))]
        dtype_id, size = unpack("<B"), unpack("<I")
        if dtype_id not in _DTYPES:
            raise CTranslate2FormatError(f"{name} has data type {dtype_id}, which is not read")
        array = np.frombuffer(buffer[offset : offset + size], dtype=_DTYPES[dtype_id])
        weights[name] = array.reshape(shape)
        offset += size
    for _ in range(unpack("<I")):
        alias, target = string(), string()
        weights[alias] = weights[target]
    return weights


def _dims(weights: dict[str, np.ndarray]) -> WhisperDims:
    def count(stack: str) -> int:
        return sum(1 for name in weights if name.startswith(f"{stack}/layer_")
                   and name.endswith("/ffn/linear_0/weight"))  # fmt: skip

    try:
        embedding = weights["decoder/embeddings/weight"]
        return WhisperDims(
            mel_bins=int(weights["encoder/conv1/weight"].shape[1]),
            width=int(embedding.shape[1]),
            heads=int(weights["encoder/num_heads"]),
            encoder_layers=count("encoder"),
            decoder_layers=count("decoder"),
            audio_positions=int(weights["encoder/position_encodings/encodings"].shape[0]),
            text_positions=int(weights["decoder/position_encodings/encodings"].shape[0]),
            vocab_size=int(embedding.shape[0]),
        )
    except KeyError as exc:
        raise CTranslate2FormatError(f"model.bin has no {exc.args[0]}") from exc
