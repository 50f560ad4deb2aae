"""The continuous-batching pipeline the engine process opens: one model's pipeline with
prefix caching, its speed settings and, where the model asks for it, assisted decoding."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ovrunner.engines.base import EngineTuning, ModelFormat, ModelRef
from ovrunner.engines.model_files import IR_XML
from ovrunner.engines.openvino import kv_cache
from ovrunner.engines.openvino.common import (
    cache_properties,
    draft_ir_dir,
    ir_dir_of,
    open_model,
)
from ovrunner.engines.openvino.generation import import_genai
from ovrunner.engines.openvino.tuning import configure_scheduler, device_properties
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
    properties = {**cache_properties(spec.cache_dir), **device}
    if spec.model.prompt_lookup:
        properties["prompt_lookup"] = True
    elif spec.model.draft is not None:
        draft_dir = draft_ir_dir(genai, spec.model.draft)
        draft = device_properties(spec.tuning, spec.device, draft_dir)
        properties["draft_model"] = genai.draft_model(str(draft_dir), spec.device, **draft)

    def construct(source: str, tokenizer: Any, props: dict[str, Any]) -> Any:
        if tokenizer is None:
            return genai.ContinuousBatchingPipeline(source, scheduler, spec.device, props)
        return genai.ContinuousBatchingPipeline(source, tokenizer, scheduler, spec.device, **props)

    return open_model(genai, spec.model, properties, construct)
