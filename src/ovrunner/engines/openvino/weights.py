"""The weight formats of a converted model, and NNCF's compression into them.

`auto` keeps at least the bits the GGUF stored, and was chosen by measuring speed and quality
on the published Qwen GGUFs (docs/models.md). A GGUF mostly (by parameters) of 4-bit tensors
(Q4_0, Q4_1, Q4_K, and the 2- and 3-bit types) keeps those in int4, asymmetric groups of 32,
the block of the 4-bit GGUF types, and its other tensors in symmetric int8 per channel. That
re-quantization is not exact (an int4 zero point is an integer, a Q4_K block's offset is not):
+2.5% perplexity on the mostly-Q4_K 1.5B, against 4.7% for int4 everywhere and -0.1% for int8
everywhere; where the CPU has VNNI its decode step is 1.2x faster than in int8. Any other GGUF
(mostly Q5_0, Q5_K, Q6_K, Q8_0, F16) is int8 throughout, its few 4-bit tensors included: the
0.5B Q4_K_M (12 Q4_K tensors of 169) scored the same either way (+0.5%), and all-int8 weights
let the CPU quantize activations in groups of 128 (`tuning.py`), which int4 groups of 32
forbid: served at 0.90 / 3.04 / 2.70 times llama-server at 1 / 8 / 16 streams, against the
mix's 0.85 / 2.44 / 2.57. Symmetric int8 because a zero point costs the CPU kernel one more
operation per weight it decompresses. The NPU plugin wants symmetric, channel-wise int4 for
LLM weights, so `auto` on the `openvino-npu` engine means that. `int4` is every weight in
int4 (a machine short of memory).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any
from xml.etree import ElementTree


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


@dataclass(frozen=True)
class SourceWeight:
    """One weight matrix as the GGUF stored it."""

    bits: float  # a weight, its block's scales included
    parameters: int


def resolve(weight_format: WeightFormat, engine: str) -> WeightFormat:
    """What `auto` means on `engine`: int8 on the CPU engine (a mostly-4-bit source's 4-bit
    tensors kept in int4 by `compress`), int4 for the NPU."""
    if weight_format is not WeightFormat.AUTO:
        return weight_format
    return WeightFormat.INT4 if engine == "openvino-npu" else WeightFormat.INT8


def compress(
    model: Any,
    weight_format: WeightFormat,
    engine: str,
    source: dict[str, SourceWeight] | None = None,
) -> Any:
    """Every weight of `model` in `weight_format` (resolved), with NNCF, data-free; f16 is
    left to the IR's own saving. `source` (weight constant name -> the GGUF's matrix) makes
    int8 keep a mostly-4-bit source's 4-bit tensors in int4 (`auto` on the CPU)."""
    import nncf

    if weight_format is WeightFormat.INT8:
        if four_bit := _kept_in_int4(source):
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


def describe(weight_format: WeightFormat, source: dict[str, SourceWeight] | None = None) -> str:
    """What `compress` makes of the weights, for the conversion's progress."""
    if weight_format is WeightFormat.INT8 and _kept_in_int4(source):
        return "int4 and int8, as the GGUF stored each tensor"
    return weight_format.value


def _kept_in_int4(source: dict[str, SourceWeight] | None) -> set[str]:
    """The 4-bit tensors of a source whose parameters are mostly in 4-bit tensors; none of
    any other."""
    source = source or {}
    four_bit = {name for name, weight in source.items() if weight.bits <= INT4_SOURCE_BITS}
    share = sum(source[name].parameters for name in four_bit)
    return four_bit if 2 * share > sum(w.parameters for w in source.values()) else set()


def channel_wise_int8(ir_xml: Path) -> bool:
    """Whether every compressed weight of the IR is 8-bit with one scale per output channel:
    no 4-bit type, no groups (a group shows as a third dimension of the weight constant)."""
    found = False
    for _, element in ElementTree.iterparse(ir_xml):
        if element.tag != "layer" or element.get("type") != "Const":
            continue
        data = element.find("data")
        if data is None:
            continue
        kind = data.get("element_type", "")
        shape = [d for d in data.get("shape", "").split(",") if d.strip()]
        if kind in ("u4", "i4", "nf4", "f4e2m1", "u2"):
            return False
        if kind in ("u8", "i8") and len(shape) >= 2:
            if len(shape) > 2 and int(shape[-1]) > 1:
                return False
            found = True
    return found


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
