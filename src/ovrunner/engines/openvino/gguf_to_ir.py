"""A GGUF file becomes OpenVINO's own compressed IR, once, at import or pull.

OpenVINO GenAI's GGUF reader builds the graph of llama, qwen2 and qwen3 models, but reads only
F16, Q8_0 and Q4_0/Q4_1 weights: a Q5_0 or K-quant tensor fails at the first load, and its
K-quants come out as f16. So every tensor is first dequantized with the `gguf` package, which
reads every published type, into an F16 GGUF; the reader builds the graph from that; NNCF
compresses the weights to the target format (`weights.py`). The directory it leaves (model,
tokenizer and detokenizer IR, `config.json`, `generation_config.json`) is what every later load
opens: no GGUF is read again.

It runs in a process of its own, `python -m ovrunner.engines.openvino.gguf_to_ir SRC TARGET`,
which prints its progress as JSON lines (`conversion.py` reads them): the gigabytes it touches
go back to the system when it ends, and the server can stop it.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ovrunner.engines.openvino.tokenizer_ir import untruncate
from ovrunner.engines.openvino.weights import (
    SourceWeight,
    WeightFormat,
    compress,
    describe,
    resolve,
)
from ovrunner.errors import UnsupportedModelError

# What OpenVINO GenAI's GGUF reader builds a graph for (2026.4).
SUPPORTED_ARCHITECTURES = ("llama", "qwen2", "qwen3")
# GGUF tensor names (llama.cpp's) -> the names OpenVINO GenAI's reader gives the weights.
IR_NAMES = {"token_embd": "model.embed_tokens", "output": "lm_head"}
IR_LAYER_NAMES = {"attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj",
                  "attn_v": "self_attn.v_proj", "attn_output": "self_attn.o_proj",
                  "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj"}  # fmt: skip
# Peak memory of a conversion per parameter: the F16 copy, the graph the reader builds and
# NNCF's work on it (measured: 4.9 GB for the 0.5B Qwen, 494M parameters).
BYTES_PER_PARAMETER = 10


@dataclass(frozen=True)
class GgufSummary:
    architecture: str
    context_window: int
    parameters: int
    tensor_types: dict[str, int]  # GGML type name -> how many tensors have it
    file_type: str  # what the GGUF says it is, such as "MOSTLY_Q4_K_M"

    @property
    def required_memory(self) -> int:
        return self.parameters * BYTES_PER_PARAMETER


def inspect_gguf(path: Path) -> GgufSummary:
    """What the file holds, refused with a 400 naming it when it cannot be converted: an
    architecture the reader does not build, or a weight type the `gguf` package cannot read."""
    import gguf

    try:
        reader = gguf.GGUFReader(path)
        architecture = str(reader.fields["general.architecture"].contents())
    except (OSError, ValueError, KeyError) as exc:
        raise UnsupportedModelError(f"{path.name} is not a readable GGUF file: {exc}") from exc
    if architecture not in SUPPORTED_ARCHITECTURES:
        raise UnsupportedModelError(
            f"{path.name} is a {architecture!r} model; OpenVINO GenAI runs the architectures "
            f"{', '.join(SUPPORTED_ARCHITECTURES)} from GGUF. Use an OpenVINO IR of this model "
            "instead (an `OpenVINO/...-ov` repository), or a model of a supported architecture",
            param="path",
        )
    types = Counter(t.tensor_type.name for t in reader.tensors)
    unreadable = sorted(name for name in types if not _dequantizable(name))
    if unreadable:
        raise UnsupportedModelError(
            f"{path.name} holds weights of type {', '.join(unreadable)}, which cannot be "
            "converted here; pick a file of the same model in another quantization "
            "(Q8_0, Q6_K, Q5_K_M, Q4_K_M, ... all convert)",
            param="path",
        )
    context = reader.fields.get(f"{architecture}.context_length")
    file_type = reader.fields.get("general.file_type")
    return GgufSummary(
        architecture=architecture,
        context_window=int(context.contents()) if context is not None else 0,
        parameters=sum(int(t.n_elements) for t in reader.tensors),
        tensor_types=dict(types),
        file_type=_file_type_name(int(file_type.contents())) if file_type is not None else "",
    )


def _dequantizable(type_name: str) -> bool:
    import gguf
    import numpy as np

    qtype = gguf.GGMLQuantizationType[type_name]
    if qtype in (gguf.GGMLQuantizationType.F32, gguf.GGMLQuantizationType.F16):
        return True
    _, size = gguf.GGML_QUANT_SIZES[qtype]
    try:
        gguf.quants.dequantize(np.zeros((1, size), dtype=np.uint8), qtype)
    except (NotImplementedError, ValueError, KeyError):
        return False
    return True


def _file_type_name(value: int) -> str:
    import gguf

    try:
        return gguf.LlamaFileType(value).name
    except ValueError:
        return str(value)


def source_weights(path: Path) -> dict[str, SourceWeight]:
    """Each matrix of the GGUF (its bits a weight and size), by its name in the IR."""
    import gguf

    weights = {}
    for tensor in gguf.GGUFReader(path).tensors:
        parts = tensor.name.split(".")  # blk.N.attn_q.weight, or output.weight
        if parts[0] == "blk" and len(parts) == 4 and parts[2] in IR_LAYER_NAMES:
            name = f"model.layers[{parts[1]}].{IR_LAYER_NAMES[parts[2]]}.weight"
        elif len(parts) == 2 and parts[0] in IR_NAMES:
            name = f"{IR_NAMES[parts[0]]}.weight"
        else:
            continue
        block, size = gguf.GGML_QUANT_SIZES[tensor.tensor_type]
        weights[name] = SourceWeight(bits=size * 8 / block, parameters=int(tensor.n_elements))
    return weights


class Progress:
    """One JSON line per step on stdout, read by `conversion.py`."""

    def __init__(self) -> None:
        self.started = time.monotonic()

    def __call__(self, stage: str, done: int = 0, total: int = 0, **extra: Any) -> None:
        line = {"stage": stage, "done": done, "total": total,
                "elapsed_s": round(time.monotonic() - self.started, 1), **extra}  # fmt: skip
        print(json.dumps(line), flush=True)


def dequantize_to_f16(source: Path, target: Path, progress: Progress) -> None:
    """Rewrite `source` with every matrix as F16 and every vector as F32 (what the GenAI
    reader takes), metadata unchanged; tensor by tensor, so memory holds one at a time."""
    import gguf
    import numpy as np

    reader = gguf.GGUFReader(source)
    architecture = str(reader.fields["general.architecture"].contents())
    writer = gguf.GGUFWriter(target, architecture, use_temp_file=False)
    for name, field in reader.fields.items():
        if name.startswith("GGUF.") or name == "general.architecture":
            continue
        value = field.contents()
        if name == "general.file_type":
            value = int(gguf.LlamaFileType.MOSTLY_F16)
        sub_type = field.types[1] if field.types[0] == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(name, value, field.types[0], sub_type=sub_type)

    def as_float(tensor: Any) -> np.ndarray:
        values = gguf.quants.dequantize(tensor.data, tensor.tensor_type)
        return values.astype(np.float16 if values.ndim >= 2 else np.float32)

    for tensor in reader.tensors:
        shape = [int(d) for d in reversed(tensor.shape)]
        dtype = np.float16 if len(shape) >= 2 else np.float32
        nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
        writer.add_tensor_info(tensor.name, shape, np.dtype(dtype), nbytes)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    for i, tensor in enumerate(reader.tensors):
        writer.write_tensor_data(as_float(tensor))
        progress("dequantize", i + 1, len(reader.tensors))
    writer.close()


def convert(source: Path, target: Path, weight_format: WeightFormat, engine: str) -> None:
    """Write the compressed IR of the GGUF `source` into the new directory `target`."""
    import openvino
    import openvino_genai

    progress = Progress()
    summary = inspect_gguf(source)
    work = target.parent / f"{target.name}.work"
    work.mkdir(parents=True)
    try:
        f16 = work / "model.gguf"
        dequantize_to_f16(source, f16, progress)
        progress("build")
        # The reader saves the graph and the tokenizer IR beside the file it read.
        pipeline = openvino_genai.LLMPipeline(str(f16), "CPU", enable_save_ov_model=True)
        del pipeline
        gc.collect()
        f16.unlink()
        untruncate(work)  # the reader's tokenizer cuts prompts at 8,192 tokens
        model = openvino.Core().read_model(work / "openvino_model.xml")
        weights = resolve(weight_format, engine)
        # `auto` follows the source's bits (weights.py); an explicit format is every weight's.
        stored = source_weights(source) if weight_format is WeightFormat.AUTO else None
        progress("compress", weights=describe(weights, stored))
        model = compress(model, weights, engine, stored)
        target.mkdir()
        progress("save")
        openvino.save_model(model, target / "openvino_model.xml",
                            compress_to_fp16=weights is WeightFormat.F16)  # fmt: skip
        for name in ("openvino_tokenizer", "openvino_detokenizer"):
            for suffix in (".xml", ".bin"):
                shutil.copyfile(work / f"{name}{suffix}", target / f"{name}{suffix}")
        _write_configs(source, target, summary)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    progress("done", weights=describe(weights, stored))


def _write_configs(source: Path, target: Path, summary: GgufSummary) -> None:
    """The Hugging Face configs an OpenVINO IR repository carries, from the GGUF's metadata:
    the context window (`config.json`) and the generation defaults and stop tokens."""
    import gguf

    fields = gguf.GGUFReader(source).fields

    def value(key: str) -> Any:
        field = fields.get(key)
        return field.contents() if field is not None else None

    config = {"model_type": summary.architecture,
              "max_position_embeddings": summary.context_window,
              "bos_token_id": value("tokenizer.ggml.bos_token_id"),
              "eos_token_id": value("tokenizer.ggml.eos_token_id"),
              "converted_from": {"format": "gguf", "file_type": summary.file_type,
                                 "tensor_types": summary.tensor_types}}  # fmt: skip
    (target / "config.json").write_text(json.dumps(config, indent=2))
    generation = {k: v for k, v in (("bos_token_id", config["bos_token_id"]),
                                    ("eos_token_id", config["eos_token_id"])) if v is not None}  # fmt: skip
    (target / "generation_config.json").write_text(json.dumps(generation, indent=2))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Convert a GGUF file to compressed OpenVINO IR")
    parser.add_argument("source", type=Path)
    parser.add_argument("target", type=Path)
    parser.add_argument("--weight-format", type=WeightFormat, default=WeightFormat.AUTO)
    parser.add_argument("--engine", default="openvino")
    args = parser.parse_args(argv)
    # NNCF's own progress bars and telemetry: the caller shows progress, nothing phones home.
    os.environ.setdefault("NNCF_DISABLE_TELEMETRY", "1")
    convert(args.source, args.target, args.weight_format, args.engine)
    return 0


if __name__ == "__main__":
    sys.exit(main())
