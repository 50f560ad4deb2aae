"""The weight formats of a converted model, and NNCF's compression into them.

`auto` never squeezes a quantized GGUF below the 8 bits its Q8_0/Q6_K/Q5 tensors need, and was
chosen by measuring speed and quality on the published Qwen GGUFs (docs/models.md): on the
CPU it is symmetric int8 per channel for every weight, within 0.4% of the original's
perplexity. Symmetric because a zero point costs the CPU kernel one more operation per weight
it decompresses: one decode step of the 0.5B took 10% less time than with asymmetric int8
(bench.fc_kernels, bench.real_models). Every int4 layout tried lost 7-10% of perplexity (a
4-bit GGUF re-quantized to int4 is rounded twice) and decoded no faster, since without VNNI
the CPU's int4 decompression, not memory, sets the pace. The NPU
plugin wants symmetric, channel-wise int4 for LLM weights, so `auto` on the `openvino-npu`
engine means that. `int4` is there for a machine short of memory: asymmetric, in groups.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class WeightFormat(StrEnum):
    AUTO = "auto"
    INT4 = "int4"
    INT8 = "int8"
    F16 = "f16"


# int4 groups of 32 weights with their own scale and zero point: the block layout of the
# 4-bit GGUF types (Q4_0, Q4_1, Q4_K's sub-blocks), and measured closer to them than larger
# groups (docs/models.md).
INT4_GROUP = 32


def resolve(weight_format: WeightFormat, engine: str) -> WeightFormat:
    """What `auto` means on `engine`: int8 on the CPU engine, int4 for the NPU."""
    if weight_format is not WeightFormat.AUTO:
        return weight_format
    return WeightFormat.INT4 if engine == "openvino-npu" else WeightFormat.INT8


def compress(model: Any, weight_format: WeightFormat, engine: str) -> Any:
    """Every weight of `model` in `weight_format` (resolved), with NNCF, data-free; f16 is
    left to the IR's own saving."""
    import nncf

    if weight_format is WeightFormat.INT8:
        return nncf.compress_weights(model, mode=nncf.CompressWeightsMode.INT8_SYM)
    if weight_format is WeightFormat.INT4:
        npu = engine == "openvino-npu"
        return nncf.compress_weights(
            model,
            mode=nncf.CompressWeightsMode.INT4_SYM if npu else nncf.CompressWeightsMode.INT4_ASYM,
            group_size=-1 if npu else INT4_GROUP,
            ratio=1.0,
            all_layers=True,  # embeddings and the output head too
        )
    return model
