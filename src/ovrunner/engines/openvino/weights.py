"""The weight formats of a converted model, and NNCF's compression into them.

`auto` keeps each weight in as many bits as the GGUF stored it, tensor by tensor, and was
chosen by measuring speed and quality on the published Qwen GGUFs (docs/models.md): a tensor
of 5 bits a weight or more (Q5_0, Q5_K, Q6_K, Q8_0, F16) becomes symmetric int8 per channel; a
4-bit one (Q4_0, Q4_1, Q4_K, and the 2- and 3-bit types) becomes int4 in asymmetric groups of
32, the block of the 4-bit GGUF types. That re-quantization is not exact (an int4 zero point is
an integer, a Q4_K block's offset is not): +2.5% perplexity on the mostly-Q4_K 1.5B, against
7-10% when 5-bit weights are squeezed to int4 too, and -0.1% to +0.5% with int8 everywhere;
where the CPU has VNNI, the 1.5B's decode step is 1.2x faster than in int8. Symmetric int8
because a zero point costs the CPU kernel one more operation per weight it decompresses.
The NPU plugin wants symmetric, channel-wise int4 for LLM weights, so `auto` on the
`openvino-npu` engine means that. `int4` is every weight in int4 (a machine short of memory).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class WeightFormat(StrEnum):
    AUTO = "auto"
    INT4 = "int4"
    INT8 = "int8"
    F16 = "f16"


# A GGUF tensor stored in at most this many bits a weight (its scales included) is int4 under
# `auto`: Q4_0 and Q4_K are 4.5, Q4_1 5.0; Q5_0 and Q5_K are 5.5.
INT4_SOURCE_BITS = 5.0

# int4 groups of 32 weights with their own scale and zero point: the block layout of the
# 4-bit GGUF types (Q4_0, Q4_1, Q4_K's sub-blocks), and measured closer to them than larger
# groups (docs/models.md).
INT4_GROUP = 32


def resolve(weight_format: WeightFormat, engine: str) -> WeightFormat:
    """What `auto` means on `engine`: int8 on the CPU engine (the source's 4-bit tensors kept
    in int4 by `compress`), int4 for the NPU."""
    if weight_format is not WeightFormat.AUTO:
        return weight_format
    return WeightFormat.INT4 if engine == "openvino-npu" else WeightFormat.INT8


def compress(
    model: Any,
    weight_format: WeightFormat,
    engine: str,
    source_bits: dict[str, float] | None = None,
) -> Any:
    """Every weight of `model` in `weight_format` (resolved), with NNCF, data-free; f16 is
    left to the IR's own saving. `source_bits` (weight constant name -> bits a weight in the
    source) makes int8 keep the source's 4-bit tensors in int4 (`auto` on the CPU)."""
    import nncf

    if weight_format is WeightFormat.INT8:
        if four_bit := _four_bit(source_bits):
            model = nncf.compress_weights(
                model, mode=nncf.CompressWeightsMode.INT4_ASYM, group_size=INT4_GROUP, ratio=1.0,
                all_layers=True, ignored_scope=nncf.IgnoredScope(names=_ops_not_reading(model, four_bit)),
            )  # fmt: skip
        # Already compressed weights are left as they are.
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


def describe(weight_format: WeightFormat, source_bits: dict[str, float] | None = None) -> str:
    """What `compress` makes of the weights, for the conversion's progress."""
    if weight_format is WeightFormat.INT8 and _four_bit(source_bits):
        return "int4 and int8, as the GGUF stored each tensor"
    return weight_format.value


def _four_bit(source_bits: dict[str, float] | None) -> set[str]:
    return {name for name, bits in (source_bits or {}).items() if bits <= INT4_SOURCE_BITS}


def _ops_not_reading(model: Any, constants: set[str]) -> list[str]:
    """Names of the matmuls and gathers of `model` whose weight is none of `constants`."""
    names = []
    for op in model.get_ordered_ops():
        if op.get_type_name() not in ("MatMul", "Gather"):
            continue
        source = op.input_value(0 if op.get_type_name() == "Gather" else 1).get_node()
        while source.get_type_name() == "Convert":  # f16 weights are read through a Convert
            source = source.input_value(0).get_node()
        if source.get_friendly_name() not in constants:
            names.append(op.get_friendly_name())
    return names
