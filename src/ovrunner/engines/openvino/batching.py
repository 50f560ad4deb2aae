"""The `openvino` engine: OpenVINO GenAI continuous batching on CPU or GPU.

Each loaded model is one `ContinuousBatchingPipeline` with prefix caching, stepped in its own
engine process (see `engine_main`), so concurrent requests share every step and the server's
event loop never waits for one. Chat requests are templated here with the model's own chat
template; raw completions are tokenized as they are.
OpenVINO exceptions become `ovrunner.errors` inside this module and nowhere else.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
import threading
from collections.abc import AsyncGenerator, Callable
from dataclasses import replace
from typing import Any

import numpy

from ovrunner.engines import model_files
from ovrunner.engines.base import (
    EngineState,
    GenerationDelta,
    GenerationRequest,
    LoadConfig,
    Mode,
    ModelInfo,
    ModelRef,
    Runner,
    SamplingParams,
)
from ovrunner.engines.decoding.choices import RequestChoices, coalesce, publish_step
from ovrunner.engines.decoding.detokenize import DecodeMany
from ovrunner.engines.openvino.common import (
    CrashWindow,
    OpenVINOFamily,
    cache_properties,
    mend_tokenizer,
    open_tokenizer,
    openvino_status,
    require_device,
    tokenizer_dir,
)
from ovrunner.engines.openvino.encoders import load_encoder
from ovrunner.engines.openvino.engine_client import EngineProcess, InFlight, InFlightUpdate, post
from ovrunner.engines.openvino.engine_main import Ready, Submit
from ovrunner.engines.openvino.generation import (
    decoder,
    encode,
    generation_config,
    import_genai,
    read_chat_format,
    render_prompt,
    with_model_defaults,
    with_tool_constraint,
)
from ovrunner.engines.openvino.pipeline import PipelineSpec, open_pipeline
from ovrunner.engines.openvino.tuning import (
    assist_for,
)
from ovrunner.engines.stats import BatchingStats
from ovrunner.errors import (
    EngineError,
    ModelLoadFailedError,
    OvrunnerError,
)

log = logging.getLogger(__name__)


class OpenVINOEngine(OpenVINOFamily):
    name = "openvino"
    modes = (Mode.COMPLETION, Mode.EMBEDDING, Mode.RERANKING, Mode.TRANSCRIPTION)

    def status(self) -> EngineState:
        return openvino_status()

    def load(self, model: ModelRef, config: LoadConfig) -> Runner:
        genai = import_genai()
        require_device(config.device)
        if model.mode is Mode.TRANSCRIPTION:
            from ovrunner.engines.whisper.runner import load_whisper

            return load_whisper(model, config, cache_properties(config.cache_dir, config.device))
        if model.mode is not Mode.COMPLETION:
            # f32: on a bf16-capable CPU the default (bf16) moved vectors by up to 5e-3 at
            # the same speed (docs/benchmarks.md), and stored vectors should not depend on
            # the machine that made them.
            properties = {**cache_properties(config.cache_dir, config.device),
                          "INFERENCE_PRECISION_HINT": "f32"}  # fmt: skip
            return load_encoder(model, config, properties)
        info = self.describe(model)
        mend_tokenizer(tokenizer_dir(model))
        spec = PipelineSpec(model, config.device, config.kv_cache_gb, config.cache_dir,
                            config.tuning, info.context_window)  # fmt: skip
        level = logging.getLevelName(logging.getLogger().getEffectiveLevel())

        window = config.tuning.admission_window_ms / 1000

        def start_process() -> tuple[EngineProcess, Ready]:
            process = EngineProcess(open_pipeline, spec, name=model.id, log_level=level,
                                    admission_window_s=window)  # fmt: skip
            try:
                return process, process.wait_ready()
            except BaseException:
                process.close()
                raise

        process = EngineProcess(open_pipeline, spec, name=model.id, log_level=level,
                                admission_window_s=window)  # fmt: skip
        try:
            # The server's own tokenizer (templating, encoding, decoding) builds while the
            # engine process opens the pipeline. One thread: its small calls gain nothing
            # from a second one, which would only spin on the core the pipeline steps on.
            tokenizer = open_tokenizer(genai, model, info.context_window, INFERENCE_NUM_THREADS=1)
            decode_many = decoder(tokenizer, model)
            ready = process.wait_ready()
        except ModelLoadFailedError:
            process.close()
            raise
        except (RuntimeError, OSError) as exc:  # the tokenizer or byte table could not load
            process.close()
            raise ModelLoadFailedError(f"could not load model {model.id!r}: {exc}") from exc
        except BaseException:
            process.close()  # an interrupt: no engine process outlives the load
            raise
        return OpenVINORunner(model, info, start_process, tokenizer, decode_many, config,
                              started=(process, ready))  # fmt: skip


# A request in flight through this many engine failures is failed, not resumed again.
STRIKE_LIMIT = 2

StartProcess = Callable[[], tuple[EngineProcess, Ready]]  # blocking


class OpenVINORunner(Runner):
    """A model on the `openvino` engine, stepped in an engine process.

    If that process dies or its pipeline fails, the runner starts a new one and resubmits
    every request in flight with its prompt plus the tokens it already generated, so each
    stream goes on where it stopped (its counts and `max_tokens` carry over). Not resumed, and
    ended with the error instead: requests of n > 1 and with structured output (their state
    cannot be rebuilt), the request the failed step blames (see `engine_main.StepFailed`), and a
    request in flight through `STRIKE_LIMIT` failures. `LoadConfig.crash_limit` failures
    within its `crash_window_s` end the restarts: `failure` then holds a `CrashLoopError`.
    """

    engine_name = OpenVINOEngine.name
    capabilities = OpenVINOEngine.capabilities

    def __init__(self, model: ModelRef, info: ModelInfo, start_process: StartProcess,
                 tokenizer: Any, decode_many: DecodeMany, config: LoadConfig,
                 started: tuple[EngineProcess, Ready] | None = None):  # fmt: skip
        self.model_id = model.id
        self.model_path = model.path
        self.device = config.device
        self.context_window = info.context_window
        self._assist = assist_for(model)
        self._decoding = model.decoding
        self._sampling_defaults = model_files.generation_defaults(model)
        self._genai = import_genai()
        self._tokenizer = tokenizer
        self.chat_format = read_chat_format(tokenizer, model.tool_format)
        self._decode_many = decode_many
        self._start_process = start_process
        self._admitted = 0  # in flight here (the bound is the lifecycle's); event loop only
        self._ids = itertools.count()
        self._crashes = CrashWindow(config.crash_limit, config.crash_window_s)
        self.restarts = 0
        self._restarting: asyncio.Future[None] | None = None
        # A process found dead off the event loop, to restart at the next request.
        self._restart_owed: EngineProcess | None = None
        # Restart and unload own the engine process in turn: `close` (from any thread) and a
        # restart installing its new process take this lock, and a closed runner installs none.
        self._owner = threading.Lock()
        self._closed = False
        self._failure: OvrunnerError | None = None
        process, ready = started or start_process()
        self._use(process, ready)

    def _use(self, process: EngineProcess, ready: Ready) -> None:
        # The pipeline's end-of-sequence ids, for checking requests before they are sent.
        self._defaults = ready
        self._process = process
        process.attach(self._on_updates, functools.partial(self._on_failure, process))

    # -- prompt preparation ------------------------------------------------------------------

    def render_prompt(self, request: GenerationRequest) -> str:
        return render_prompt(self._tokenizer, request, self.chat_format)

    def encode(self, request: GenerationRequest) -> Any:
        return encode(self._tokenizer, request, self.chat_format)

    async def count_prompt_tokens(self, request: GenerationRequest) -> int:
        return int((await asyncio.to_thread(self.encode, request)).shape[1])

    # -- generation --------------------------------------------------------------------------

    async def generate(self, request: GenerationRequest) -> AsyncGenerator[GenerationDelta, None]:
        sampling = with_model_defaults(
            with_tool_constraint(request, self.chat_format), self._sampling_defaults
        )
        prompt = await asyncio.to_thread(self.encode, request)
        prompt_tokens = int(prompt.shape[1])
        # The engine process builds the same config; building it here too turns a bad
        # request into a 400 before it is sent.
        generation_config(self._genai, self._defaults, sampling, prompt_tokens,
                          self.context_window, self._assist)  # fmt: skip
        self._admitted += 1
        submit = Submit(next(self._ids), prompt.data, sampling, self.context_window, self._assist)
        job = InFlight(
            submit, asyncio.get_running_loop(), RequestChoices(prompt_tokens, sampling.n)
        )
        finished = False
        try:
            await self._send(job)
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
            if not finished:
                job.cancelled = True
                self._process.cancel(job)

    async def _send(self, job: InFlight) -> None:
        """Submit `job`, first waiting for a restart in progress (or one owed)."""
        while True:
            owed, self._restart_owed = self._restart_owed, None
            if owed is self._process and self._restarting is None and self._failure is None:
                self._restarting = asyncio.get_running_loop().create_task(self._restart([]))
            if self._restarting is not None:
                await asyncio.shield(self._restarting)
                continue
            if self.failure is not None:
                raise self.failure
            if self._closed:
                raise EngineError("the runner was unloaded")
            if self._restarting is None:  # else `failure` found the process dead just now
                self._process.submit(job)
                return

    def _on_updates(self, items: list[tuple[InFlight, InFlightUpdate]]) -> None:
        publish_step(items, self._decode_many)

    # -- recovery ----------------------------------------------------------------------------

    def _on_failure(
        self,
        process: EngineProcess,
        jobs: list[InFlight],
        error: EngineError,
        suspects: tuple[int, ...] | None,
    ) -> None:
        """`process` failed holding `jobs`: restart it and resume what can be. Only the
        current process is restarted, once: a report from one already replaced (it came late,
        or twice) must not restart, and so close, the live one."""
        if process is not self._process or self._restarting is not None:
            self._end(jobs, error)
            return
        loop_error = self._crashes.record(f"the engine of {self.model_id!r}", error.message)
        if loop_error is not None:
            self._failure = loop_error
            self._end(jobs, loop_error)
            return
        # The step's newcomers are to blame only when some requests were there before them.
        blamed = set(suspects or ()) if len(set(suspects or ())) < len(jobs) else set()
        resumed: list[InFlight] = []
        for job in jobs:
            job.strikes += 1
            if job.request_id in blamed:
                self._end([job], EngineError(f"this request failed the engine: {error.message}"))
            elif not resumable(job.submit.sampling):
                self._end([job], EngineError(
                    f"{error.message}; this request (n > 1 or constrained output) cannot be "
                    "resumed on a new engine"))  # fmt: skip
            elif job.strikes >= STRIKE_LIMIT:
                self._end([job], EngineError(
                    f"{error.message}; this request was in flight at {job.strikes} engine "
                    "failures and is not resumed again"))  # fmt: skip
            else:
                resumed.append(job)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # found dead off the event loop: restart at the next request
            self._end(resumed, error)
            self._restart_owed = process
            return
        self._restarting = loop.create_task(self._restart(resumed))

    async def _restart(self, jobs: list[InFlight]) -> None:
        old = self._process
        try:
            await asyncio.to_thread(old.close)
            process, ready = await asyncio.to_thread(self._start_process)
        except OvrunnerError as exc:
            self._restarting = None
            self._failure = exc
            self._end(jobs, exc)
            return
        with self._owner:
            installed = not self._closed
            if installed:
                self._use(process, ready)
            # Cleared with the new process in place: never a moment with neither.
            self._restarting = None
        if not installed:  # unloaded while the new process opened: it is nobody's
            await asyncio.to_thread(process.close)
            self._end(jobs, EngineError("the runner was unloaded while its engine restarted"))
            return
        self.restarts += 1
        log.warning("restarted the engine process of %s; resuming %d requests",
                    self.model_id, len(jobs))  # fmt: skip
        for job in jobs:
            if not job.cancelled:
                self._resume(job)

    def _resume(self, job: InFlight) -> None:
        """Send `job` again: its prompt plus what it generated, for what is left of it."""
        choices = job.choices
        generated = choices.generated_ids()
        sampling = job.submit.sampling
        left = None if sampling.max_tokens is None else sampling.max_tokens - len(generated)
        if left is not None and left <= 0:  # every token arrived, only the end did not
            post([(job, InFlightUpdate([], finished=True))], self._on_updates)
            return
        choices.rebind()
        prompt = numpy.concatenate(
            [job.submit.prompt_ids, numpy.asarray([generated], dtype=job.submit.prompt_ids.dtype)],
            axis=1,
        )
        job.submit = replace(
            job.submit,
            request_id=next(self._ids),
            prompt_ids=prompt,
            sampling=replace(
                sampling,
                max_tokens=left,
                min_tokens=None
                if sampling.min_tokens is None
                else max(0, sampling.min_tokens - len(generated)),
            ),  # fmt: skip
        )
        self._process.submit(job)

    def _end(self, jobs: list[InFlight], error: OvrunnerError) -> None:
        post(
            [(job, InFlightUpdate([], finished=True, error=error)) for job in jobs],
            self._on_updates,
        )

    @property
    def failure(self) -> Exception | None:
        if self._failure is None and self._restarting is None:
            self._process.failure  # noqa: B018 - finds an engine that died idle; restarts it
        return self._failure

    def stats(self) -> BatchingStats:
        engine = self._process.stats
        return BatchingStats(
            admitted=self._admitted,
            running=engine.running,
            waiting=max(0, self._admitted - engine.running),
            steps=engine.steps,
            max_batch=engine.max_batch,
            cache_usage=engine.cache_usage,
            kv_cache_bytes=engine.kv_cache_bytes,
            pipeline_busy=engine.pipeline_busy,
            engine_pid=self._process.pid,
            restarts=self.restarts,
            restarting=self._restarting is not None,
            decoding=self._decoding,
            assisted_steps=engine.assisted_steps,
            assisted_tokens=engine.assisted_tokens,
            assisted_proposed=engine.assisted_proposed,
        )

    def close(self) -> None:
        with self._owner:
            self._closed = True
            process = self._process
        process.close()


def resumable(sampling: SamplingParams) -> bool:
    """Whether a request can go on from its generated tokens on a new pipeline: one choice,
    and no grammar whose state would have to be rebuilt."""
    return sampling.n == 1 and not sampling.constrained
