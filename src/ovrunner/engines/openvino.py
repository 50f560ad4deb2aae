"""The `openvino` engine: OpenVINO GenAI continuous batching on CPU or GPU.

Each loaded model is one `ContinuousBatchingPipeline` with prefix caching, stepped in its own
engine process (see `stepping`), so concurrent requests share every step and the server's
event loop never waits for one. Chat requests are templated here with the model's own chat
template; raw completions are tokenized as they are.
OpenVINO exceptions become `ovrunner.errors` inside this module and nowhere else.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ovrunner.engines import model_files
from ovrunner.engines.base import (
    Engine,
    EngineState,
    EngineStatus,
    GenerationDelta,
    GenerationRequest,
    LoadConfig,
    ModelFormat,
    ModelInfo,
    ModelRef,
    Runner,
)
from ovrunner.engines.choices import RequestChoices, coalesce, publish_step
from ovrunner.engines.detokenize import DecodeMany
from ovrunner.engines.engine_process import BatchJob, EngineProcess, StepUpdate
from ovrunner.engines.generation import (
    decoder,
    encode,
    generation_config,
    import_genai,
    render_prompt,
)
from ovrunner.engines.stepping import Ready
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


# What an OpenVINO engine installs: openvino-genai brings the other two.
OPENVINO_DISTRIBUTIONS = ("openvino", "openvino-genai", "openvino-tokenizers")


class OpenVINOEngine(Engine):
    name = "openvino"
    distributions = OPENVINO_DISTRIBUTIONS

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
        spec = PipelineSpec(model, config.device, config.kv_cache_gb, config.cache_dir)
        level = logging.getLevelName(logging.getLogger().getEffectiveLevel())
        process = EngineProcess(open_pipeline, spec, name=model.id, log_level=level)
        try:
            # The server's own tokenizer (templating, encoding, decoding) builds while the
            # engine process opens the pipeline. One thread: its small calls gain nothing
            # from a second one, which would only spin on the core the pipeline steps on.
            tokenizer = genai.Tokenizer(str(model.path), INFERENCE_NUM_THREADS=1)
            decode_many = decoder(tokenizer, model)
            ready = process.wait_ready()
        except BaseException as exc:
            process.close()
            if isinstance(exc, ModelLoadFailedError):
                raise
            raise ModelLoadFailedError(f"could not load model {model.id!r}: {exc}") from exc
        return OpenVINORunner(model, info, process, tokenizer, decode_many, ready, config)


@dataclass(frozen=True)
class PipelineSpec:
    """What the engine process needs to open a model's pipeline (it crosses a pickle)."""

    model: ModelRef
    device: str
    kv_cache_gb: int
    cache_dir: Path | None


def open_pipeline(spec: PipelineSpec) -> Any:
    """Open a `ContinuousBatchingPipeline` with prefix caching; runs in the engine process."""
    genai = import_genai()
    scheduler = genai.SchedulerConfig()
    scheduler.enable_prefix_caching = True
    scheduler.cache_size = spec.kv_cache_gb
    properties: dict[str, Any] = {}
    if spec.cache_dir is not None:
        spec.cache_dir.mkdir(parents=True, exist_ok=True)
        properties["CACHE_DIR"] = str(spec.cache_dir)

    def construct(source: str, tokenizer: Any, props: dict[str, Any]) -> Any:
        if tokenizer is None:
            return genai.ContinuousBatchingPipeline(source, scheduler, spec.device, props)
        return genai.ContinuousBatchingPipeline(source, tokenizer, scheduler, spec.device, **props)

    return open_model(genai, spec.model, properties, construct)


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


class OpenVINORunner(Runner):
    engine_name = OpenVINOEngine.name
    structured_output = True

    def __init__(self, model: ModelRef, info: ModelInfo, process: EngineProcess, tokenizer: Any,
                 decode_many: DecodeMany, ready: Ready, config: LoadConfig):  # fmt: skip
        self.model_id = model.id
        self.model_path = model.path
        self.device = config.device
        self.context_window = info.context_window
        self._genai = import_genai()
        self._tokenizer = tokenizer
        self._decode_many = decode_many
        # The pipeline's end-of-sequence ids, for checking requests before they are sent.
        self._defaults = ready
        self._max_queue = config.max_queue
        self._admitted = 0  # running plus waiting; touched on the event loop only
        self._process = process
        process.attach(self._on_updates)

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
        # The engine process builds the same config; building it here too turns a bad
        # request into a 400 before it is sent.
        generation_config(self._genai, self._defaults, sampling, prompt_tokens, self.context_window)
        if self._admitted >= self._max_queue:
            raise QueueFullError(
                f"model {self.model_id!r} has {self._admitted} requests running or waiting; "
                "try again shortly"
            )
        self._admitted += 1
        job = None
        finished = False
        try:
            job = self._process.submit(
                prompt.data,
                sampling,
                self.context_window,
                RequestChoices(prompt_tokens, sampling.n),
            )
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
                self._process.cancel(job)

    def _on_updates(self, items: list[tuple[BatchJob, StepUpdate]]) -> None:
        publish_step(items, self._decode_many)

    @property
    def failure(self) -> Exception | None:
        return self._process.failure

    def stats(self) -> dict[str, Any]:
        loop = self._process.stats
        return {
            "admitted": self._admitted,
            "running": loop.running,
            "waiting": max(0, self._admitted - loop.running),
            "steps": loop.steps,
            "max_batch": loop.max_batch,
            "cache_usage": loop.cache_usage,
            "kv_cache_bytes": loop.kv_cache_bytes,
            "pipeline_busy": loop.pipeline_busy,
            "engine_pid": self._process.pid,
        }

    def close(self) -> None:
        self._process.close()
