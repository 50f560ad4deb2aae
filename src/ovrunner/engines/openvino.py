"""The `openvino` engine: OpenVINO GenAI continuous batching on CPU or GPU.

Each loaded model is one `ContinuousBatchingPipeline` with prefix caching, driven by a
`SteppingLoop` thread, so concurrent requests share every step. Chat requests are templated
here with the model's own chat template; raw completions are tokenized as they are.
OpenVINO exceptions become `ovrunner.errors` inside this module and nowhere else.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from ovrunner.engines import model_files
from ovrunner.engines.base import (
    Engine,
    EngineState,
    EngineStatus,
    FinishReason,
    GenerationDelta,
    GenerationRequest,
    LoadConfig,
    ModelFormat,
    ModelInfo,
    ModelRef,
    Runner,
)
from ovrunner.engines.choices import RequestChoices, coalesce, publish_step
from ovrunner.engines.generation import encode, generation_config, import_genai, render_prompt
from ovrunner.engines.stepping import BatchJob, SteppingLoop, StepUpdate
from ovrunner.errors import (
    EngineUnavailableError,
    ModelLoadFailedError,
    QueueFullError,
)

log = logging.getLogger(__name__)

# Builds a pipeline from a model file or IR directory, an optional tokenizer and properties.
Construct = Callable[[str, Any, dict[str, Any]], Any]

@functools.cache
def available_devices() -> tuple[str, ...]:
    """OpenVINO's devices, asked once: creating a Core costs 2-40 ms, and /healthz, engine
    status and every worker job ask. A device plugged in later needs a restart."""
    import openvino

    return tuple(openvino.Core().available_devices)


def require_device(device: str) -> None:
    """Fail with a clear error when `device` (CPU, GPU, GPU.1, NPU) is not on this machine."""
    family = device.split(".")[0].upper()
    devices = available_devices()
    if not any(d == device or d.split(".")[0] == family for d in devices):
        raise EngineUnavailableError(
            f"device {device} is not available on this machine (available: {', '.join(devices)})"
        )


def openvino_status(device: str | None = None, detail: str = "") -> EngineState:
    """Running with the OpenVINO GenAI version and devices; not installed when it does not
    import; error when `device` (if given) is absent."""
    try:
        genai = import_genai()
        devices = available_devices()
    except Exception as exc:
        return EngineState(EngineStatus.NOT_INSTALLED, str(exc))
    if device is not None:
        try:
            require_device(device)
        except EngineUnavailableError as exc:
            return EngineState(EngineStatus.ERROR, exc.message)
    version = genai.__version__.split("-")[0]
    return EngineState(EngineStatus.RUNNING,
                       f"openvino-genai {version}; devices: {', '.join(devices)}{detail}")  # fmt: skip


class OpenVINOEngine(Engine):
    name = "openvino"

    def install(self) -> None:
        import_genai()

    def status(self) -> EngineState:
        return openvino_status()

    def describe(self, model: ModelRef) -> ModelInfo:
        return model_files.describe(model)

    def load(self, model: ModelRef, config: LoadConfig) -> Runner:
        genai = import_genai()
        require_device(config.device)
        info = self.describe(model)
        scheduler = genai.SchedulerConfig()
        scheduler.enable_prefix_caching = True
        scheduler.cache_size = config.kv_cache_gb
        properties: dict[str, Any] = {}
        if config.cache_dir is not None:
            config.cache_dir.mkdir(parents=True, exist_ok=True)
            properties["CACHE_DIR"] = str(config.cache_dir)
        def construct(source: str, tokenizer: Any, props: dict[str, Any]) -> Any:
            if tokenizer is None:
                return genai.ContinuousBatchingPipeline(source, scheduler, config.device, props)
            return genai.ContinuousBatchingPipeline(
                source, tokenizer, scheduler, config.device, **props
            )

        try:
            pipeline = open_model(genai, model, properties, construct)
        except Exception as exc:
            raise ModelLoadFailedError(f"could not load model {model.id!r}: {exc}") from exc
        return OpenVINORunner(model, info, pipeline, config)


def open_model(
    genai: Any, model: ModelRef, properties: dict[str, Any], construct: Construct
) -> Any:
    """Open `model` with `construct(source, tokenizer, properties)`, preferring a saved IR.

    A GGUF is converted at every load unless an IR was saved beside it; the first load saves
    one (in the model store). The tokenizer still comes from the GGUF, because OpenVINO GenAI
    does not save its conversion.
    """
    if model.format is ModelFormat.OPENVINO_IR:
        return construct(str(model.path), None, properties)
    ir_dir = model_files.converted_ir_dir(model)
    if ir_dir is not None:
        try:
            return construct(str(ir_dir), genai.Tokenizer(str(model.path)), properties)
        except Exception:
            log.warning("the saved IR of %s did not load; converting the GGUF again", model.id)
    return construct(str(model.path), None, {**properties, "enable_save_ov_model": True})


def _finish_reason_of(output: Any) -> str | None:
    name = output.finish_reason.name
    return {"STOP": FinishReason.STOP, "LENGTH": FinishReason.LENGTH}.get(name)


def _is_finished(handle: Any) -> bool:
    return handle.get_status().name != "RUNNING"


def _read_metrics(pipeline: Any) -> tuple[float, int]:
    metrics = pipeline.get_metrics()
    return float(metrics.cache_usage), int(metrics.kv_cache_size_in_bytes)


class OpenVINORunner(Runner):
    engine_name = OpenVINOEngine.name
    structured_output = True

    def __init__(self, model: ModelRef, info: ModelInfo, pipeline: Any, config: LoadConfig):
        self.model_id = model.id
        self.model_path = model.path
        self.device = config.device
        self.context_window = info.context_window
        self._genai = import_genai()
        self._tokenizer = pipeline.get_tokenizer()
        self._defaults = pipeline.get_config()
        self._max_queue = config.max_queue
        self._admitted = 0  # running plus waiting; touched on the event loop only
        self._loop = SteppingLoop(
            pipeline,
            name=model.id,
            on_updates=self._on_updates,
            finish_reason_of=_finish_reason_of,
            is_finished=_is_finished,
            read_metrics=_read_metrics,
        )

    # -- prompt preparation ------------------------------------------------------------------

    def render_prompt(self, request: GenerationRequest) -> str:
        return render_prompt(self._tokenizer, request)

    def encode(self, request: GenerationRequest) -> Any:
        return encode(self._tokenizer, request)

    # -- generation --------------------------------------------------------------------------

    async def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationDelta]:
        sampling = request.sampling
        prompt = await asyncio.to_thread(self.encode, request)
        prompt_tokens = int(prompt.shape[1])
        config = generation_config(
            self._genai, self._defaults, sampling, prompt_tokens, self.context_window
        )
        if self._admitted >= self._max_queue:
            raise QueueFullError(
                f"model {self.model_id!r} has {self._admitted} requests running or waiting; "
                "try again shortly"
            )
        self._admitted += 1
        job = None
        finished = False
        try:
            job = self._loop.submit(prompt, config, RequestChoices(prompt_tokens, sampling.n))
            while not finished:
                items = [await job.outbox.get()]
                while not job.outbox.empty():
                    items.append(job.outbox.get_nowait())
                deltas: list[GenerationDelta] = []
                for item in items:
                    if isinstance(item, Exception):
                        raise item
                    finished = finished or item.finished
                    deltas.extend(item.deltas)
                for delta in coalesce(deltas):
                    yield delta
        finally:
            self._admitted -= 1
            if job is not None and not finished:
                self._loop.cancel(job)

    def _on_updates(self, items: list[tuple[BatchJob, StepUpdate]]) -> None:
        publish_step(items, self._decode_many)

    def _decode_many(self, windows: list[list[int]]) -> list[str]:
        return list(self._tokenizer.decode(windows, skip_special_tokens=True))

    @property
    def failure(self) -> Exception | None:
        return self._loop.failure

    def stats(self) -> dict[str, Any]:
        loop = self._loop.stats
        return {
            "admitted": self._admitted,
            "running": loop.running,
            "waiting": max(0, self._admitted - loop.running),
            "steps": loop.steps,
            "max_batch": loop.max_batch,
            "cache_usage": loop.cache_usage,
            "kv_cache_bytes": loop.kv_cache_bytes,
            "pipeline_busy": loop.pipeline_busy,
        }

    def close(self) -> None:
        self._loop.close()
