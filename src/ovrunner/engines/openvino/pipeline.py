"""The continuous-batching pipeline the engine process opens: one model's pipeline with
prefix caching, its speed settings and, where the model asks for it, assisted decoding."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ovrunner.engines.base import EngineTuning, ModelRef
from ovrunner.engines.openvino.common import (
    cache_properties,
    draft_ir_dir,
    ir_dir_of,
    open_model,
)
from ovrunner.engines.openvino.generation import import_genai
from ovrunner.engines.openvino.tuning import configure_scheduler, device_properties


@dataclass(frozen=True)
class PipelineSpec:
    """What the engine process needs to open a model's pipeline (it crosses a pickle)."""

    model: ModelRef
    device: str
    kv_cache_gb: int
    cache_dir: Path | None
    tuning: EngineTuning = EngineTuning()


def open_pipeline(spec: PipelineSpec) -> Any:
    """Open a `ContinuousBatchingPipeline` with prefix caching; runs in the engine process."""
    genai = import_genai()
    scheduler = genai.SchedulerConfig()
    scheduler.enable_prefix_caching = True
    scheduler.cache_size = spec.kv_cache_gb
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
