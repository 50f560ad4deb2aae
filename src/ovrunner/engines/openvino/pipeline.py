"""The continuous-batching pipeline the engine process opens: one model's pipeline with
prefix caching, its speed settings and, where the model asks for it, assisted decoding."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ovrunner.engines.base import EngineTuning, ModelFormat, ModelRef
from ovrunner.engines.model_files import IR_BIN, IR_XML
from ovrunner.engines.openvino import kv_cache
from ovrunner.engines.openvino.common import (
    cache_properties,
    draft_ir_dir,
    ir_dir_of,
    open_model,
)
from ovrunner.engines.openvino.generation import import_genai
from ovrunner.engines.openvino.tuning import assist_for, configure_scheduler, device_properties
from ovrunner.engines.openvino.weight_pages import shedding
from ovrunner.host_memory import available_memory


@dataclass(frozen=True)
class PipelineSpec:
    """What the engine process needs to open a model's pipeline (it crosses a pickle)."""

    model: ModelRef
    device: str
    kv_cache_gb: float | None  # None: sized from the window and the memory available
    cache_dir: Path | None
    tuning: EngineTuning = EngineTuning()
    context_window: int = 0


def kv_cache_plan(spec: PipelineSpec) -> kv_cache.KvCachePlan | None:
    """The cache for the model's window, or None for a graph whose cache cannot be read."""
    ir_dir = ir_dir_of(spec.model)
    if ir_dir is not None and (ir_dir / IR_XML).is_file():
        elements = kv_cache.elements_per_token(ir_dir / IR_XML)
    elif spec.model.format is ModelFormat.GGUF:  # its first load: the graph is built from it
        elements = kv_cache.elements_per_token_gguf(spec.model.path)
    else:
        elements = 0
    if not elements:
        return None
    return kv_cache.plan(elements=elements, window=spec.context_window, device=spec.device,
                         precision=spec.tuning.kv_cache_precision, size_gb=spec.kv_cache_gb,
                         available=available_memory())  # fmt: skip


def open_pipeline(spec: PipelineSpec) -> Any:
    """Open a `ContinuousBatchingPipeline` with prefix caching; runs in the engine process."""
    genai = import_genai()
    scheduler = genai.SchedulerConfig()
    scheduler.enable_prefix_caching = True
    planned = kv_cache_plan(spec)
    if planned is not None:
        scheduler.num_kv_blocks = planned.blocks
    else:  # whole gigabytes, the pipeline's own unit
        scheduler.cache_size = math.ceil(spec.kv_cache_gb or 1)
    configure_scheduler(scheduler, spec.tuning)
    device = device_properties(spec.tuning, spec.device, ir_dir_of(spec.model))
    properties = {**cache_properties(spec.cache_dir, spec.device), **device}
    weight_dirs = [ir_dir_of(spec.model)]
    if spec.model.prompt_lookup:
        properties["prompt_lookup"] = True
    elif spec.model.draft is not None:
        draft_dir = draft_ir_dir(genai, spec.model.draft)
        weight_dirs.append(draft_dir)
        draft = device_properties(spec.tuning, spec.device, draft_dir)
        properties["draft_model"] = genai.draft_model(str(draft_dir), spec.device, **draft)

    def construct(source: str, tokenizer: Any, props: dict[str, Any]) -> Any:
        if tokenizer is None:
            return genai.ContinuousBatchingPipeline(source, scheduler, spec.device, props)
        return genai.ContinuousBatchingPipeline(source, tokenizer, scheduler, spec.device, **props)

    pipeline = open_model(genai, spec.model, properties, construct)
    warm_up(genai, pipeline, spec, [d / IR_BIN for d in weight_dirs if d is not None])
    return pipeline


# Two tokens, not one: see `engine_main.PADDED_MAX_NEW_TOKENS` (a request ending at its first
# token leaves the prefix cache unlike a fresh prefill).
WARM_UP_TOKENS = 2


def warm_up(genai: Any, pipeline: Any, spec: PipelineSpec, weight_files: list[Path]) -> None:
    """Run the first inference now, while the weight file's pages are shed (`weight_pages`):
    the CPU plugin repacks the weights on it, so the first request does not wait for that
    (0.4 s on the 0.5B Qwen, 2.8 s on the 1.5B) and the process does not keep a second copy."""
    config = genai.GenerationConfig()
    config.max_new_tokens = WARM_UP_TOKENS
    assist = assist_for(spec.model)
    if assist is not None:
        assist.apply(config)
    with shedding(weight_files):
        pipeline.generate(["Hello"], [config])
