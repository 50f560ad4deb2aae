"""The `openvino-npu` engine: a bounded, serialized `LLMPipeline` for one model.

An NPU is shared with other work (speech, embeddings) and compiles a static graph for a fixed
prompt length, so this engine is deliberately small: one configured model (any other is a
421), one generation at a time (a lock), a hard prompt cap (a longer prompt is a 400
`prompt_too_long`, never truncated) and a hard cap on new tokens. The device is a setting, so
the same engine runs on CPU in tests; the NPU-only compiler properties are passed only when
the device is an NPU.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, Sequence
from contextlib import aclosing
from dataclasses import dataclass, replace
from typing import Any

from ovrunner.engines import model_files
from ovrunner.engines.base import (
    Capabilities,
    EngineState,
    FinishReason,
    GenerationDelta,
    GenerationRequest,
    LoadConfig,
    ModelInfo,
    ModelRef,
    Runner,
    is_npu,
)
from ovrunner.engines.decoding.detokenize import IncrementalDetokenizer
from ovrunner.engines.openvino.common import (
    OpenVINOFamily,
    cache_properties,
    open_model,
    open_tokenizer,
    openvino_status,
    require_device,
)
from ovrunner.engines.openvino.generation import (
    decoder,
    encode,
    generation_config,
    import_genai,
    read_chat_format,
    with_model_defaults,
)
from ovrunner.engines.stats import NpuStats
from ovrunner.errors import (
    EngineError,
    ModelLoadFailedError,
    PromptTooLongError,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class NpuLimits:
    max_prompt_len: int = 1024
    min_response_len: int = 64
    max_new_tokens: int = 256


class OpenVINONpuEngine(OpenVINOFamily):
    name = "openvino-npu"

    def __init__(self, model_id: str, *, device: str = "NPU", limits: NpuLimits = NpuLimits()):
        self.model_id = model_id
        self.device = device
        self.limits = limits
        # Structured output is enforced by the sampler on the host, whatever the device.
        self.capabilities = Capabilities(max_n=1, logprobs=False,
                                         max_new_tokens=limits.max_new_tokens,
                                         max_prompt_tokens=limits.max_prompt_len)  # fmt: skip

    def status(self) -> EngineState:
        return openvino_status(self.device, f"; device {self.device}; serves {self.model_id}")

    def serves(self, model: ModelRef) -> bool:
        return model.id == self.model_id and model.mode in self.modes

    def load(self, model: ModelRef, config: LoadConfig) -> Runner:
        genai = import_genai()
        require_device(self.device)
        info = self.describe(model)
        properties: dict[str, Any] = {}
        if is_npu(self.device):
            properties.update(
                MAX_PROMPT_LEN=self.limits.max_prompt_len,
                MIN_RESPONSE_LEN=self.limits.min_response_len,
                PREFILL_HINT="DYNAMIC",
                GENERATE_HINT="FAST_COMPILE",
            )
        else:
            # Elsewhere LLMPipeline would pick its continuous-batching backend, which stays
            # "running" after a cancelled generation and refuses the next one; the stateful
            # SDPA backend behaves like the NPU's own pipeline.
            properties["ATTENTION_BACKEND"] = "SDPA"
        properties.update(cache_properties(config.cache_dir, self.device))

        def construct(source: str, tokenizer: Any, props: dict[str, Any]) -> Any:
            if tokenizer is None:
                return genai.LLMPipeline(source, self.device, **props)
            return genai.LLMPipeline(source, tokenizer, self.device, **props)

        try:
            # Opened first: it mends a saved tokenizer IR before the pipeline reads it.
            tokenizer = open_tokenizer(genai, model, info.context_window)
            pipeline = open_model(genai, model, properties, construct)
        except ModelLoadFailedError:
            raise
        except Exception as exc:
            raise ModelLoadFailedError(f"could not load model {model.id!r}: {exc}") from exc
        return NpuRunner(model, info, pipeline, tokenizer, self.device, self.limits,
                         self.capabilities)  # fmt: skip


class _TokenStream:
    """Token ids from the pipeline's streamer thread to the event loop. Setting `cancelled`
    stops the generation at its next token."""

    def __init__(self, genai: Any, loop: asyncio.AbstractEventLoop) -> None:
        self.queue: asyncio.Queue[list[int]] = asyncio.Queue()
        self.cancelled = False
        running, cancel = genai.StreamingStatus.RUNNING, genai.StreamingStatus.CANCEL
        stream = self

        class Streamer(genai.StreamerBase):
            def write(self, token: int | list[int]) -> Any:
                ids = list(token) if isinstance(token, list) else [int(token)]
                loop.call_soon_threadsafe(stream.queue.put_nowait, ids)
                return cancel if stream.cancelled else running

            def end(self) -> None:
                pass

        self.streamer = Streamer()

    def drain(self) -> list[int]:
        ids: list[int] = []
        while not self.queue.empty():
            ids += self.queue.get_nowait()
        return ids


def _finish_reason(result: Any, at_limit: bool) -> FinishReason:
    reasons = list(getattr(result, "finish_reasons", None) or [])
    if reasons and reasons[0].name == "LENGTH":
        return FinishReason.LENGTH
    if reasons and reasons[0].name == "STOP":
        return FinishReason.STOP
    return FinishReason.LENGTH if at_limit else FinishReason.STOP


class NpuRunner(Runner):
    engine_name = OpenVINONpuEngine.name

    def __init__(
        self,
        model: ModelRef,
        info: ModelInfo,
        pipeline: Any,
        tokenizer: Any,
        device: str,
        limits: NpuLimits,
        capabilities: Capabilities,
    ) -> None:
        self.model_id = model.id
        self.model_path = model.path
        self.device = device
        self.context_window = info.context_window
        self.limits = limits
        self._genai = import_genai()
        self._pipeline = pipeline
        # Not the pipeline's own: one built from a GGUF cuts prompts (`tokenizer_ir`).
        self._tokenizer = tokenizer
        self.chat_format = read_chat_format(self._tokenizer, model.tool_format)
        self._decode_many = decoder(self._tokenizer, model)
        self._defaults = pipeline.get_generation_config()
        self._sampling_defaults = model_files.generation_defaults(model)
        self._lock = asyncio.Lock()  # the device runs one generation at a time
        self.capabilities = capabilities
        self._admitted = 0
        self._generating = False

    async def count_prompt_tokens(self, request: GenerationRequest) -> int:
        prompt = await asyncio.to_thread(encode, self._tokenizer, request, self.chat_format)
        return int(prompt.shape[1])

    async def generate(self, request: GenerationRequest) -> AsyncGenerator[GenerationDelta, None]:
        prompt = await asyncio.to_thread(encode, self._tokenizer, request, self.chat_format)
        prompt_tokens = int(prompt.shape[1])
        if prompt_tokens > self.limits.max_prompt_len:
            raise PromptTooLongError(
                f"the prompt has {prompt_tokens} tokens; this engine's prompt cap is "
                f"{self.limits.max_prompt_len} (prompts are never truncated)",
                param="messages" if request.messages is not None else "prompt",
            )
        sampling = with_model_defaults(request.sampling, self._sampling_defaults)
        if sampling.max_tokens is None:
            room = self.context_window - prompt_tokens
            sampling = replace(sampling, max_tokens=max(1, min(self.limits.max_new_tokens, room)))
        config = generation_config(
            self._genai, self._defaults, sampling, prompt_tokens, self.context_window
        )
        self._admitted += 1
        try:
            async with self._lock, aclosing(self._run(prompt, prompt_tokens, config)) as deltas:
                # aclosing: a closed stream must stop the pipeline before the lock is freed.
                async for delta in deltas:
                    yield delta
        finally:
            self._admitted -= 1

    async def _run(
        self, prompt: Any, prompt_tokens: int, config: Any
    ) -> AsyncGenerator[GenerationDelta, None]:
        stream = _TokenStream(self._genai, asyncio.get_running_loop())
        self._generating = True
        work = asyncio.ensure_future(
            asyncio.to_thread(self._pipeline.generate, prompt, config, stream.streamer)
        )
        detokenizer = IncrementalDetokenizer()
        decode = self._decode
        try:
            while True:
                getter = asyncio.ensure_future(stream.queue.get())
                await asyncio.wait({getter, work}, return_when=asyncio.FIRST_COMPLETED)
                if not getter.done():
                    getter.cancel()
                    break
                ids = getter.result() + stream.drain()
                text = detokenizer.push(ids, decode)
                if text:
                    yield GenerationDelta(0, text, prompt_tokens, detokenizer.token_count)
            try:
                result = await work
            except Exception as exc:
                raise EngineError(f"the engine failed while generating: {exc}") from exc
            text = detokenizer.push(stream.drain(), decode, final=True)
            generated = detokenizer.token_count
            reason = _finish_reason(result, generated >= config.max_new_tokens)
            yield GenerationDelta(0, text, prompt_tokens, generated, reason)
        finally:
            # Closing the iterator cancels at the next token; the lock is held until the
            # pipeline has really stopped, so generations never overlap on the device.
            stream.cancelled = True
            with contextlib.suppress(Exception):
                await asyncio.shield(work)
            self._generating = False

    def _decode(self, ids: Sequence[int]) -> str:
        return self._decode_many([list(ids)])[0]

    def stats(self) -> NpuStats:
        return NpuStats(
            admitted=self._admitted,
            running=int(self._generating),
            waiting=max(0, self._admitted - int(self._generating)),
            max_prompt_len=self.limits.max_prompt_len,
            max_new_tokens=self.limits.max_new_tokens,
        )

    def close(self) -> None:
        self._pipeline = None
