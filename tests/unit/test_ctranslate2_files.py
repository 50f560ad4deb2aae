"""CTranslate2's model.bin layout, read without ctranslate2: a small file written here in
that layout (version 6) is read back; other specs and versions are refused by name."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest

from ovrunner.engines.whisper.ctranslate2_files import (
    CTranslate2FormatError,
    is_ctranslate2_whisper,
    read,
)


def _string(text: str) -> bytes:
    data = text.encode() + b"\0"
    return struct.pack("<H", len(data)) + data


def _write(directory: Path, variables: dict[str, np.ndarray], *, spec: str = "WhisperSpec",
           version: int = 6, vocabulary: int = 6) -> Path:  # fmt: skip
    ids = {np.dtype(np.float32): 0, np.dtype(np.int8): 1, np.dtype(np.int16): 2,
           np.dtype(np.float16): 4}  # fmt: skip
    out = struct.pack("<I", version) + _string(spec) + struct.pack("<II", 3, len(variables))
    for name, value in variables.items():
        out += _string(name) + struct.pack("<B", value.ndim)
        out += b"".join(struct.pack("<I", d) for d in value.shape)
        out += struct.pack("<BI", ids[value.dtype], value.nbytes) + value.tobytes()
    out += (
        struct.pack("<I", 1)
        + _string("decoder/projection/weight")
        + _string("decoder/embeddings/weight")
    )
    directory.mkdir()
    (directory / "model.bin").write_bytes(out)
    (directory / "config.json").write_text(json.dumps({"lang_ids": [4]}))
    (directory / "tokenizer.json").write_text("{}")
    (directory / "vocabulary.txt").write_text("\n".join(f"t{i}" for i in range(vocabulary)) + "\n")
    return directory


def _tiny() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    weights = {
        "encoder/num_heads": np.array(2, np.int16),
        "encoder/conv1/weight": rng.standard_normal((8, 4, 3)).astype(np.float16),
        "encoder/position_encodings/encodings": np.zeros((10, 8), np.float16),
        "decoder/position_encodings/encodings": np.zeros((5, 8), np.float16),
        "decoder/embeddings/weight": rng.standard_normal((6, 8)).astype(np.float16),
    }
    for stack in ("encoder", "decoder"):
        weights[f"{stack}/layer_0/ffn/linear_0/weight"] = np.ones((16, 8), np.float32)
    return weights


def test_a_model_bin_is_read_back_with_its_shapes_and_aliases(tmp_path: Path) -> None:
    weights = _tiny()
    directory = _write(tmp_path / "m", weights)
    assert is_ctranslate2_whisper(directory)
    model = read(directory)
    for name, value in weights.items():
        assert (
            np.array_equal(model.weights[name], value) and model.weights[name].dtype == value.dtype
        )
    assert model.weights["decoder/projection/weight"] is model.weights["decoder/embeddings/weight"]
    dims = model.dims
    assert (dims.mel_bins, dims.width, dims.heads, dims.encoder_layers, dims.decoder_layers,
            dims.audio_positions, dims.text_positions, dims.vocab_size) == (4, 8, 2, 1, 1, 10, 5, 6)  # fmt: skip


def test_another_spec_or_version_is_refused(tmp_path: Path) -> None:
    other = _write(tmp_path / "other", _tiny(), spec="TransformerSpec")
    assert not is_ctranslate2_whisper(other)
    with pytest.raises(CTranslate2FormatError, match="TransformerSpec"):
        read(other)
    with pytest.raises(CTranslate2FormatError, match="binary version 2"):
        read(_write(tmp_path / "old", _tiny(), version=2))


def test_a_vocabulary_that_does_not_match_the_embedding_is_refused(tmp_path: Path) -> None:
    with pytest.raises(CTranslate2FormatError, match="vocabulary.txt has 5 tokens"):
        read(_write(tmp_path / "m", _tiny(), vocabulary=5))
