"""The `openvino` engine: OpenVINO GenAI continuous batching on CPU or GPU.

Each loaded model is one `ContinuousBatchingPipeline` with prefix caching, driven by a
`SteppingLoop` thread, so concurrent requests share every step. Chat requests are templated
here with the model's own chat template; raw completions are tokenized as they are.
OpenVINO exceptions become `ovrunner.errors` inside this module and nowhere else.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator
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
    SamplingParams,
)
from ovrunner.engines.choices import RequestChoices, coalesce, publish_step
from ovrunner.engines.stepping import BatchJob, SteppingLoop, StepUpdate
from ovrunner.errors import (
    ContextLengthExceededError,
    EngineUnavailableError,
    InvalidRequestError,
    ModelLoadFailedError,
    QueueFullError,
)

log = logging.getLogger(__name__)

# Sampling defaults for parameters a request leaves out, as llama.cpp's server and Ollama
# choose them: OpenAI's own default (temperature 1, no truncation) makes small local models
# ramble. Temperature 0 means greedy decoding.
DEFAULT_TEMPERATURE = 0.8
DEFAULT_TOP_K = 40
DEFAULT_TOP_P = 0.95
DEFAULT_MIN_P = 0.05


def import_genai() -> Any:
    """Import openvino_genai, turning an import failure into an engine error."""
    try:
        import openvino_genai
    except ImportError as exc:  # pragma: no cover - exercised only without the wheel
        raise EngineUnavailableError(f"openvino-genai is not installed: {exc}") from exc
    return openvino_genai


def available_devices() -> list[str]:
    import openvino

    return list(openvino.Core().available_devices)


def require_device(device: str) -> None:
    """Fail with a clear error when `device` (CPU, GPU, GPU.1, NPU) is not on this machine."""
    family = device.split(".")[0].upper()
    devices = available_devices()
    if not any(d == device or d.split(".")[0] == family for d in devices):
        raise EngineUnavailableError(
            f"device {device} is not available on this machine (available: {', '.join(devices)})"
        )


class OpenVINOEngine(Engine):
    name = "openvino"

    def install(self) -> None:
        import_genai()

    def status(self) -> EngineState:
        try:
            genai = import_genai()
            devices = available_devices()
        except Exception as exc:
            return EngineState(EngineStatus.NOT_INSTALLED, str(exc))
        return EngineState(
            EngineStatus.RUNNING,
            f"openvino-genai {genai.__version__.split('-')[0]}; devices: {', '.join(devices)}",
        )

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
        try:
            pipeline = _open_pipeline(genai, model, scheduler, config.device, properties)
        except Exception as exc:
            raise ModelLoadFailedError(f"could not load model {model.id!r}: {exc}") from exc
        return OpenVINORunner(model, info, pipeline, config)


def _open_pipeline(
    genai: Any, model: ModelRef, scheduler: Any, device: str, properties: dict[str, Any]
) -> Any:
    if model.format is ModelFormat.OPENVINO_IR:
        return genai.ContinuousBatchingPipeline(str(model.path), scheduler, device, properties)
    ir_dir = model_files.converted_ir_dir(model)
    if ir_dir is not None:
        # The IR written by an earlier load; the tokenizer still comes from the GGUF, whose
        # conversion OpenVINO GenAI does not save.
        try:
            tokenizer = genai.Tokenizer(str(model.path))
            return genai.ContinuousBatchingPipeline(
                str(ir_dir), tokenizer, scheduler, device, **properties
            )
        except Exception:
            log.warning("the saved IR of %s did not load; converting the GGUF again", model.id)
    # The first load converts the GGUF and saves the IR beside it, in the model store.
    return genai.ContinuousBatchingPipeline(
        str(model.path), scheduler, device, {**properties, "enable_save_ov_model": True}
    )


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
        """The exact text the model sees: the chat template applied once, or the raw prompt."""
        if request.prompt is not None:
            return request.prompt
        try:
            return str(
                self._tokenizer.apply_chat_template(
                    list(request.messages or []), add_generation_prompt=True
                )
            )
        except Exception as exc:
            raise InvalidRequestError(
                f"the model's chat template rejected these messages: {exc}", param="messages"
            ) from exc

    def encode(self, request: GenerationRequest) -> Any:
        """Token ids for the request: a chat-templated prompt already holds its special
        tokens, a raw prompt gets the tokenizer's own (BOS where the model wants one)."""
        text = self.render_prompt(request)
        add_special = request.prompt is not None
        return self._tokenizer.encode(text, add_special_tokens=add_special).input_ids

    def _generation_config(self, sampling: SamplingParams, prompt_tokens: int) -> Any:
        room = self.context_window - prompt_tokens
        if sampling.max_tokens is not None and sampling.max_tokens > room:
            raise ContextLengthExceededError(
                f"This model's maximum context length is {self.context_window} tokens. "
                f"However, you requested {prompt_tokens + sampling.max_tokens} tokens "
                f"({prompt_tokens} in the prompt, {sampling.max_tokens} for the completion).",
                param="max_tokens",
            )
        if room < 1:
            raise ContextLengthExceededError(
                f"This model's maximum context length is {self.context_window} tokens, "
                f"and the prompt alone has {prompt_tokens}.",
                param="messages",
            )
        config = self._genai.GenerationConfig()
        config.eos_token_id = self._defaults.eos_token_id
        config.stop_token_ids = self._defaults.stop_token_ids
        config.apply_chat_template = False
        config.max_new_tokens = sampling.max_tokens if sampling.max_tokens is not None else room
        temperature = DEFAULT_TEMPERATURE if sampling.temperature is None else sampling.temperature
        if temperature > 0:
            config.do_sample = True
            config.temperature = temperature
            config.top_p = DEFAULT_TOP_P if sampling.top_p is None else sampling.top_p
            config.top_k = DEFAULT_TOP_K if sampling.top_k is None else sampling.top_k
            config.min_p = DEFAULT_MIN_P if sampling.min_p is None else sampling.min_p
            config.rng_seed = random.getrandbits(31) if sampling.seed is None else sampling.seed
            config.num_return_sequences = sampling.n
        if sampling.stop:
            config.stop_strings = set(sampling.stop)
            config.include_stop_str_in_output = False
        if sampling.presence_penalty is not None:
            config.presence_penalty = sampling.presence_penalty
        if sampling.frequency_penalty is not None:
            config.frequency_penalty = sampling.frequency_penalty
        if sampling.repetition_penalty is not None:
            config.repetition_penalty = sampling.repetition_penalty
        if sampling.min_tokens is not None:
            config.min_new_tokens = sampling.min_tokens
        config.ignore_eos = sampling.ignore_eos
        if sampling.logprobs:
            # The sampled token's log probability; OpenVINO GenAI gives no alternatives.
            config.logprobs = 1
        if sampling.json_schema is not None:
            config.structured_output_config = self._genai.StructuredOutputConfig(
                json_schema=sampling.json_schema
            )
        try:
            config.validate()
        except Exception as exc:
            raise InvalidRequestError(f"invalid generation parameters: {exc}") from exc
        return config

    # -- generation --------------------------------------------------------------------------

    async def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationDelta]:
        sampling = request.sampling
        if sampling.n > 1 and sampling.temperature == 0:
            raise InvalidRequestError("n > 1 needs temperature > 0", param="n")
        prompt = await asyncio.to_thread(self.encode, request)
        prompt_tokens = int(prompt.shape[1])
        config = self._generation_config(sampling, prompt_tokens)
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
