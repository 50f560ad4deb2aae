from __future__ import annotations

from pathlib import Path

import gguf
import pytest

from ovrunner.engines.base import ModelFormat, ModelRef
from ovrunner.engines.model_files import describe, read_gguf_metadata
from ovrunner.errors import ModelLoadFailedError


def test_header_reader_agrees_with_the_gguf_package(tiny_gguf: Path) -> None:
    ours = read_gguf_metadata(tiny_gguf)
    reference = gguf.GGUFReader(str(tiny_gguf))
    for key in ("general.architecture", "llama.context_length", "llama.block_count",
                "tokenizer.ggml.eos_token_id", "tokenizer.chat_template"):  # fmt: skip
        assert ours[key] == reference.fields[key].contents(), key
    assert ours["tokenizer.ggml.tokens"] is None  # arrays are skipped, not built


def test_named_arrays_are_read(tiny_gguf: Path) -> None:
    keys = ("tokenizer.ggml.tokens", "tokenizer.ggml.token_type")
    ours = read_gguf_metadata(tiny_gguf, arrays=keys)
    reference = gguf.GGUFReader(str(tiny_gguf))
    for key in keys:
        assert ours[key] == reference.fields[key].contents(), key
    assert ours["tokenizer.ggml.merges"] is None


def test_describe_ir_reads_config_json(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(
        '{"max_position_embeddings": 4096, "model_type": "qwen2"}'
    )
    info = describe(ModelRef("q", tmp_path, ModelFormat.OPENVINO_IR, "openvino"))
    assert (info.context_window, info.architecture) == (4096, "qwen2")


def test_describe_rejects_a_file_that_is_not_gguf(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.gguf"
    bogus.write_bytes(b"not a model")
    with pytest.raises(ModelLoadFailedError, match="not a readable GGUF"):
        describe(ModelRef("b", bogus, ModelFormat.GGUF, "openvino"))
