"""What a model's own files say about it, read without loading any weights."""

from __future__ import annotations

import json
import struct
from collections.abc import Collection
from pathlib import Path
from typing import BinaryIO

from ovrunner.engines import encoder_files
from ovrunner.engines.base import Mode, ModelFormat, ModelInfo, ModelRef
from ovrunner.engines.whisper import files as whisper_files
from ovrunner.errors import ModelLoadFailedError

IR_XML = "openvino_model.xml"
IR_BIN = "openvino_model.bin"
TOKENIZER_XML = "openvino_tokenizer.xml"
DETOKENIZER_XML = "openvino_detokenizer.xml"
TOKENIZER_FILES = (TOKENIZER_XML, "openvino_tokenizer.bin",
                   DETOKENIZER_XML, "openvino_detokenizer.bin")  # fmt: skip


def describe(model: ModelRef) -> ModelInfo:
    if model.mode is Mode.EMBEDDING:
        config = encoder_files.embedding_config(model.path)
        return ModelInfo(model.id, config.window, "embedding", dimensions=config.dimensions)
    if model.mode is Mode.RERANKING:
        return ModelInfo(model.id, encoder_files.encoder_window(model.path), "cross-encoder")
    if model.mode is Mode.TRANSCRIPTION:
        return ModelInfo(model.id, whisper_files.text_window(model.path), "whisper")
    if model.format is ModelFormat.GGUF:
        return _describe_gguf(model)
    return _describe_ir(model)


def _describe_gguf(model: ModelRef) -> ModelInfo:
    try:
        metadata = read_gguf_metadata(model.path)
        architecture = str(metadata["general.architecture"])
        context = int(metadata[f"{architecture}.context_length"])  # type: ignore[arg-type]
    except (OSError, KeyError, ValueError, struct.error) as exc:
        raise ModelLoadFailedError(
            f"{model.path.name} is not a readable GGUF model: {exc}"
        ) from exc
    return ModelInfo(model.id, context, architecture)


def _describe_ir(model: ModelRef) -> ModelInfo:
    config_path = model.path / "config.json"
    try:
        config = json.loads(config_path.read_text())
        context = int(config["max_position_embeddings"])
    except (OSError, KeyError, ValueError) as exc:
        raise ModelLoadFailedError(
            f"{model.id}: cannot read the context window from {config_path.name}: {exc}"
        ) from exc
    return ModelInfo(model.id, context, config.get("model_type"))


# What a model's `generation_config.json` may set for requests that leave it unset, as vLLM
# reads it (`do_sample: false`, Hugging Face's greedy, makes the temperature 0).
SAMPLING_DEFAULTS = ("temperature", "top_p", "top_k", "min_p", "repetition_penalty")


def generation_defaults(model: ModelRef) -> dict[str, float]:
    """The sampling defaults its authors ship in the model's `generation_config.json` (an IR
    directory has one; a GGUF carries none)."""
    directory = model.path if model.format is ModelFormat.OPENVINO_IR else model.path.parent
    try:
        config = json.loads((directory / "generation_config.json").read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(config, dict):
        return {}
    found = {key: float(value) for key in SAMPLING_DEFAULTS
             if isinstance(value := config.get(key), int | float) and not isinstance(value, bool)}  # fmt: skip
    if config.get("do_sample") is False:
        found["temperature"] = 0.0
    return found


def converted_ir_dir(model: ModelRef) -> Path | None:
    """The IR an earlier load saved beside a GGUF model, if it is complete."""
    directory = model.path.parent
    if (directory / IR_XML).is_file() and (directory / IR_BIN).is_file():
        return directory
    return None


def has_tokenizer_ir(directory: Path) -> bool:
    """Whether `directory` holds a complete tokenizer and detokenizer IR."""
    return all((directory / name).is_file() for name in TOKENIZER_FILES)


# -- GGUF header ---------------------------------------------------------------------------
# The `gguf` package's reader maps every tensor and array (about 3 s for SmolLM2's 49k-token
# vocabulary); describing a model needs only the scalar keys, so this reads the key-value
# header and skips the arrays nobody asked for without building them.

_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?",
            10: "<Q", 11: "<q", 12: "<d"}  # fmt: skip
_STRING, _ARRAY = 8, 9
ScalarValue = int | float | bool | str | None
GgufValue = ScalarValue | list[int] | list[float] | list[bool] | list[str]

# The vocabulary: the tokenizer model ("gpt2", "llama", ...) is a scalar, these two arrays.
TOKENS = "tokenizer.ggml.tokens"
TOKEN_TYPES = "tokenizer.ggml.token_type"


def read_gguf_metadata(path: Path, arrays: Collection[str] = ()) -> dict[str, GgufValue]:
    """Metadata of a GGUF file: every scalar, and the arrays named in `arrays` (the other
    arrays are skipped and map to None)."""
    with path.open("rb") as f:
        if f.read(4) != b"GGUF":
            raise ValueError("no GGUF magic number")
        (version,) = struct.unpack("<I", f.read(4))
        if version < 2:
            raise ValueError(f"GGUF version {version} is too old")
        _tensor_count, kv_count = struct.unpack("<QQ", f.read(16))
        metadata: dict[str, GgufValue] = {}
        for _ in range(kv_count):
            key = _read_string(f)
            (value_type,) = struct.unpack("<I", f.read(4))
            if value_type == _ARRAY:
                metadata[key] = _read_array(f, keep=key in arrays)
            else:
                metadata[key] = _read_scalar(f, value_type)
        return metadata


def _read_string(f: BinaryIO) -> str:
    (length,) = struct.unpack("<Q", f.read(8))
    return f.read(length).decode("utf-8", errors="replace")


def _read_scalar(f: BinaryIO, value_type: int) -> ScalarValue:
    if value_type == _STRING:
        return _read_string(f)
    fmt = _SCALARS[value_type]
    return struct.unpack(fmt, f.read(struct.calcsize(fmt)))[0]


def _read_array(f: BinaryIO, *, keep: bool) -> GgufValue:
    element_type, count = struct.unpack("<IQ", f.read(12))
    if element_type == _STRING:
        if keep:
            return [_read_string(f) for _ in range(count)]
        for _ in range(count):
            (length,) = struct.unpack("<Q", f.read(8))
            f.seek(length, 1)
        return None
    if element_type == _ARRAY:
        raise ValueError("nested GGUF arrays are not supported")
    fmt = _SCALARS[element_type]
    size = struct.calcsize(fmt) * count
    if not keep:
        f.seek(size, 1)
        return None
    return list(struct.unpack(f"<{count}{fmt[1]}", f.read(size)))
