"""The weight formats of a converted model, and NNCF's compression into them.

`auto` keeps at least the bits each weight had in its source, and was chosen by measuring
speed and quality on the published Qwen GGUFs (docs/models.md): on the CPU it is int8 per
channel for every weight, which came out within 0.2% of the original's perplexity and faster
than every int4 layout tried (a 4-bit GGUF re-quantized to int4 loses 8-10% of perplexity,
since its weights were rounded twice, and OpenVINO's int4 kernels decoded slower here). The NPU
plugin wants symmetric, channel-wise int4 for LLM weights, so `auto` on the `openvino-npu`
engine means that. `int4` is there for a machine short of memory: asymmetric, in groups.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping
from enum import StrEnum
from typing import Any

log = logging.getLogger(__name__)


class WeightFormat(StrEnum):
    AUTO = "auto"
    INT4 = "int4"
    INT8 = "int8"
    F16 = "f16"


# int4 groups of 32 weights with their own scale and zero point: the block layout of the
# 4-bit GGUF types (Q4_0, Q4_1, Q4_K's sub-blocks), and measured closer to them than larger
# groups (docs/models.md).
INT4_GROUP = 32
# Operations whose constant input is a weight NNCF compresses.
_WEIGHTED = ("MatMul", "Gather")
# What lies between a weight constant and its operation in an uncompressed IR.
_PASS_THROUGH = ("Convert", "Reshape", "Transpose")


def weight_names(model: Any) -> dict[str, str]:
    """Each weighted operation's name -> the name of the constant it reads its weight from."""
    found = {}
    for op in model.get_ops():
        if op.get_type_name() not in _WEIGHTED:
            continue
        for value in op.input_values():
            node = value.get_node()
            while node.get_type_name() in _PASS_THROUGH:
                node = node.input_value(0).get_node()
            if node.get_type_name() == "Constant" and len(node.get_output_shape(0)) == 2:
                found[op.get_friendly_name()] = node.get_friendly_name()
    return found


def plan(model: Any, weight_format: WeightFormat, engine: str) -> dict[str, str]:
    """Each weighted operation's name -> the format its weight gets ("int4", "int8", "f16")."""
    names = weight_names(model)
    if weight_format is WeightFormat.AUTO:
        npu = engine == "openvino-npu"
        return dict.fromkeys(names, WeightFormat.INT4.value if npu else WeightFormat.INT8.value)
    return dict.fromkeys(names, weight_format.value)


def compress(model: Any, chosen: Mapping[str, str], engine: str) -> Any:
    """Compress the weights of `model` as `chosen` says, with NNCF (data-free)."""
    import nncf

    int4 = [op for op, fmt in chosen.items() if fmt == WeightFormat.INT4.value]
    int8 = [op for op, fmt in chosen.items() if fmt == WeightFormat.INT8.value]
    if int4:
        npu = engine == "openvino-npu"
        model = nncf.compress_weights(
            model,
            mode=nncf.CompressWeightsMode.INT4_SYM if npu else nncf.CompressWeightsMode.INT4_ASYM,
            group_size=-1 if npu else INT4_GROUP,
            ratio=1.0,
            all_layers=True,
            ignored_scope=nncf.IgnoredScope(names=[op for op in chosen if op not in int4],
                                            validate=False),
        )  # fmt: skip
    if int8:
        model = nncf.compress_weights(
            model,
            mode=nncf.CompressWeightsMode.INT8_ASYM,
            ignored_scope=nncf.IgnoredScope(names=[op for op in chosen if op not in int8],
                                            validate=False),
        )  # fmt: skip
    log.info("compressed weights: %s", dict(Counter(chosen.values())))
    return model
