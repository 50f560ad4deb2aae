"""How the `openvino` engine's pipeline is set up for speed: the device's properties, the
scheduler's batch budget, and assisted decoding (prompt lookup, a draft model).

Each `auto` choice below was measured side by side on the machines this project runs on
(docs/benchmarks.md, "Engine settings"); an operator's setting overrides it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ovrunner.engines.base import EngineTuning, ModelRef

# Prompt lookup: candidates proposed per step, from n-grams of up to this size found in the
# prompt. 8 and 4 were the fastest of (3, 2), (5, 3), (8, 4), (10, 5) on a summary job.
LOOKUP_ASSISTANT_TOKENS = 8
LOOKUP_MAX_NGRAM = 4
# A draft model's candidates per step. 3, not OpenVINO GenAI's default 5: Qwen2.5-Coder-0.5B
# drafting for the 1.5B on two cores, 3 was as fast as 5 on code and 1.2x faster on prose,
# where fewer candidates are accepted and each rejected one cost a draft step (docs/benchmarks.md).
DRAFT_ASSISTANT_TOKENS = 3


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


def device_properties(tuning: EngineTuning, device: str) -> dict[str, Any]:
    """OpenVINO properties for the pipeline's main model on `device`.

    `auto` precision is f32 on CPU: where the plugin would pick bf16 (CPUs with AVX-512 BF16
    or AMX) f32 decoded as fast or faster in every measurement, and elsewhere f32 is the
    plugin's own default. On other devices the plugin chooses.
    """
    properties: dict[str, Any] = {}
    precision = tuning.inference_precision
    if precision == "auto":
        precision = "f32" if device.split(".")[0].upper() == "CPU" else ""
    if precision:
        properties["INFERENCE_PRECISION_HINT"] = precision
    if tuning.kv_cache_precision != "auto":
        properties["KV_CACHE_PRECISION"] = tuning.kv_cache_precision
    if tuning.dynamic_quantization_group_size is not None:
        properties["DYNAMIC_QUANTIZATION_GROUP_SIZE"] = tuning.dynamic_quantization_group_size
    if tuning.threads:
        properties["INFERENCE_NUM_THREADS"] = tuning.threads
    return properties


def configure_scheduler(scheduler: Any, tuning: EngineTuning) -> None:
    if tuning.max_batched_tokens is not None:
        scheduler.max_num_batched_tokens = tuning.max_batched_tokens
