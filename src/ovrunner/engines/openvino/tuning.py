"""How the `openvino` engine's pipeline is set up for speed: the device's properties, the
scheduler's batch budget, and assisted decoding (prompt lookup, a draft model).

Each `auto` choice below was measured side by side on the machines this project runs on
(docs/benchmarks.md, "Engine settings"); an operator's setting overrides it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ovrunner.engines.base import EngineTuning, ModelRef
from ovrunner.engines.model_files import IR_XML
from ovrunner.engines.openvino.weights import channel_wise_int8

# Prompt lookup: candidates proposed per step, from n-grams of up to this size found in the
# prompt. 8 and 4 were the fastest of (3, 2), (5, 3), (8, 4), (10, 5) on a summary job.
LOOKUP_ASSISTANT_TOKENS = 8
LOOKUP_MAX_NGRAM = 4
# A draft model's candidates per step. 3, not OpenVINO GenAI's default 5: Qwen2.5-Coder-0.5B
# drafting for the 1.5B on two cores, 3 was as fast as 5 on code and 1.2x faster on prose,
# where fewer candidates are accepted and each rejected one cost a draft step (docs/benchmarks.md).
DRAFT_ASSISTANT_TOKENS = 3
# The CPU quantizes activations to int8 in groups (its default 32) to multiply compressed
# weights with integer dot products. Over weights that are all int8 per channel, groups of 128
# served the 0.5B Qwen 1.06x faster at one stream and 1.08x / 1.28x at 8 / 16 streams, with
# the same perplexity; int4 groups of 32 cannot use them (a group must hold whole activation
# groups), and over channel-wise int4 they made one stream 1.15x slower (docs/benchmarks.md).
CHANNEL_WISE_INT8_ACTIVATION_GROUP = 128


@dataclass(frozen=True)
class Assist:
    """What every request of an assisted pipeline carries (the pipeline refuses any without)."""

    num_assistant_tokens: int
    max_ngram_size: int = 0  # prompt lookup only

    def apply(self, config: Any) -> None:
        config.num_assistant_tokens = self.num_assistant_tokens
        if self.max_ngram_size:
            config.max_ngram_size = self.max_ngram_size


def assist_for(model: ModelRef) -> Assist | None:
    if model.prompt_lookup:
        return Assist(LOOKUP_ASSISTANT_TOKENS, LOOKUP_MAX_NGRAM)
    if model.draft is not None:
        return Assist(DRAFT_ASSISTANT_TOKENS)
    return None


def device_properties(
    tuning: EngineTuning, device: str, ir_dir: Path | None = None
) -> dict[str, Any]:
    """OpenVINO properties for the model whose IR is in `ir_dir` (if known) on `device`.

    `auto` precision is f32 on CPU: where the plugin would pick bf16 (CPUs with AVX-512 BF16
    or AMX) f32 decoded as fast or faster in every measurement, and elsewhere f32 is the
    plugin's own default. On other devices the plugin chooses. Unless the operator set it, the
    CPU's activation groups are `CHANNEL_WISE_INT8_ACTIVATION_GROUP` for an IR whose weights
    are all int8 per channel, the plugin's default otherwise.
    """
    properties: dict[str, Any] = {}
    cpu = device.split(".")[0].upper() == "CPU"
    precision = tuning.inference_precision
    if precision == "auto":
        precision = "f32" if cpu else ""
    if precision:
        properties["INFERENCE_PRECISION_HINT"] = precision
    if tuning.kv_cache_precision != "auto":
        properties["KV_CACHE_PRECISION"] = tuning.kv_cache_precision
    group = tuning.dynamic_quantization_group_size
    if group is None and cpu and ir_dir is not None and channel_wise_int8(ir_dir / IR_XML):
        group = CHANNEL_WISE_INT8_ACTIVATION_GROUP
    if group is not None:
        properties["DYNAMIC_QUANTIZATION_GROUP_SIZE"] = group
    if tuning.threads:
        properties["INFERENCE_NUM_THREADS"] = tuning.threads
    return properties


def configure_scheduler(scheduler: Any, tuning: EngineTuning) -> None:
    if tuning.max_batched_tokens is not None:
        scheduler.max_num_batched_tokens = tuning.max_batched_tokens
