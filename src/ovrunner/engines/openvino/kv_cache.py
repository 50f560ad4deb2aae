"""How large a continuous-batching pipeline's KV cache is: sized from the model's context
window and the memory available, unless the operator set a size (`kv_cache_gb`).

The pipeline reserves the cache when it opens and touches its pages as tokens fill it, and
with prefix caching on it keeps finished requests' blocks until the cache is full: the size is
the bound on what the cache may come to hold, not what a runner holds on an idle day.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

# Room for this many whole windows: one request of the full window, and as much again for
# the other streams and the prefix cache. llama-server's default holds one window for all its
# slots; vLLM takes most of the device's memory.
KV_WINDOWS = 2
# ... but at least this many tokens, so many streams of a small-window model fit at once.
KV_MIN_TOKENS = 16_384
# ... and at most this share of the memory available when the runner loads.
KV_MEMORY_SHARE = 0.4
# Tokens per KV block in OpenVINO GenAI's paged cache (measured here on CPU: 10 blocks of
# the 0.5B Qwen in f16 report 3,932,160 bytes, 32 tokens of 12,288 bytes each).
BLOCK_TOKENS = {"CPU": 32}
DEFAULT_BLOCK_TOKENS = 16  # GPU
# Bytes an element takes at each KV precision: u8 and u4 carry per-group scales besides,
# counted at their u8 upper bound; `auto` is counted as f16, what the CPU chose here.
ELEMENT_BYTES = {"u4": 1.25, "u8": 1.25, "f16": 2, "bf16": 2, "auto": 2, "f32": 4}


@dataclass(frozen=True)
class KvCachePlan:
    blocks: int
    tokens: int
    bytes: int  # the estimate; the pipeline reports the exact size once open


def elements_per_token(ir_xml: Path) -> int:
    """Key and value elements one token stores over all layers: the sum over the model's
    KV-cache variables (`[batch, kv heads, tokens, head size]` each) of heads x head size."""
    import openvino as ov

    model = ov.Core().read_model(str(ir_xml))
    total = 0
    for op in model.get_ops():
        if op.get_type_name() != "ReadValue":
            continue
        shape = op.get_output_partial_shape(0)
        if shape.rank.is_static and shape.rank.get_length() == 4 and shape[1].is_static \
                and shape[3].is_static:  # fmt: skip
            total += shape[1].get_length() * shape[3].get_length()
    return total


def elements_per_token_gguf(path: Path) -> int:
    """The same, from a GGUF's metadata, for a first load that builds the graph from it."""
    import gguf

    fields = gguf.GGUFReader(path).fields

    def value(key: str, default: int = 0) -> int:
        field = fields.get(key)
        if field is None:
            return default
        contents = field.contents()
        return int(max(contents) if isinstance(contents, list) else contents)

    arch = str(fields["general.architecture"].contents())
    heads = value(f"{arch}.attention.head_count")
    kv_heads = value(f"{arch}.attention.head_count_kv", heads)
    key = value(f"{arch}.attention.key_length", value(f"{arch}.embedding_length") // max(heads, 1))
    return (
        value(f"{arch}.block_count")
        * kv_heads
        * (key + value(f"{arch}.attention.value_length", key))
    )


def plan(
    *,
    elements: int,
    window: int,
    device: str,
    precision: str,
    size_gb: float | None,
    available: int | None,
) -> KvCachePlan:
    """The cache for a model storing `elements` per token with a `window`-token context:
    `size_gb` if the operator set it, else `KV_WINDOWS` windows (at least `KV_MIN_TOKENS`)
    within `KV_MEMORY_SHARE` of the `available` memory."""
    per_token = max(1.0, elements * ELEMENT_BYTES.get(precision, 2))
    block = BLOCK_TOKENS.get(device.split(".")[0].upper(), DEFAULT_BLOCK_TOKENS)
    if size_gb is not None:
        tokens = int(size_gb * 2**30 / per_token)
    else:
        tokens = max(KV_WINDOWS * window, KV_MIN_TOKENS)
        if available is not None:
            room = int(available * KV_MEMORY_SHARE / per_token)
            if room < window:
                log.warning("the KV cache holds %d tokens, less than the model's window of %d: "
                            "%d bytes of memory available; set kv_cache_gb to choose",
                            room, window, available)  # fmt: skip
            tokens = min(tokens, room)
    blocks = max(1, math.ceil(tokens / block))
    return KvCachePlan(blocks, blocks * block, int(blocks * block * per_token))
