"""The worker routes: bounded job presets with busy-counter verification.

Served under `/exp/v1/worker/...` and, for clients of the original worker contract, under
`/v1/worker/...`. A job whose device busy counter did not move is a 503 that still carries
the generation, plus the error object.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from ovrunner.busy import NpuSysfsCounter, counter_for
from ovrunner.errors import InvalidRequestError
from ovrunner.jobs import JobPresets, JobResult, check_bounds, job_target, run_job, verify_busy
from ovrunner.lifecycle import Lifecycle
from ovrunner.protocol.openai import Usage
from ovrunner.protocol.worker import Timing, WorkerRequest, WorkerResponse
from ovrunner.routes.body import parse_body
from ovrunner.routes.serving import unless_disconnected
from ovrunner.settings import Settings


async def _generate(request: Request, job: str | None) -> Response:
    started = time.perf_counter()
    body = await parse_body(request, WorkerRequest)
    settings: Settings = request.app.state.settings
    presets: JobPresets = request.app.state.jobs
    lifecycle: Lifecycle = request.app.state.lifecycle
    job = job or body.job
    if job is None:
        raise InvalidRequestError("missing required parameter 'job'", param="job")
    preset = presets.get(job)
    max_new_tokens = check_bounds(preset, body.input, body.max_new_tokens)
    engine, model = job_target(preset, settings)
    # Prompt lookup is the continuous-batching engine's; the NPU engine runs the job plainly.
    lookup = preset.prompt_lookup and engine == "openvino"
    lease = await lifecycle.acquire(model, engine=engine, prompt_lookup=lookup)
    runner = lease.runner
    loaded = time.perf_counter()
    try:
        counter = counter_for(runner.device, settings.npu_busy_path, settings.busy_counter)
        # A client that hangs up cancels its job, as on the OpenAI routes.
        result = await unless_disconnected(
            request, run_job(preset, runner, body.input, max_new_tokens, counter)
        )
    finally:
        lease.release()
    request.app.state.metrics.observe_usage(model, result.prompt_tokens, result.completion_tokens)
    busy = result.busy
    timing = Timing(
        load=round((loaded - started) * 1000, 2),
        initial_load=lifecycle.initial_load_ms,
        generate=round(result.generate_ms, 2),
        total=round((time.perf_counter() - started) * 1000, 2),
    )
    response = _response(settings, model, runner.device, preset.name, result, timing,
                         npu=counter.name == NpuSysfsCounter.name)  # fmt: skip
    error = verify_busy(busy)
    if error is not None:
        return JSONResponse({**response.body(), **error.to_body()},
                            status_code=error.status_code, headers=error.headers())  # fmt: skip
    return JSONResponse(response.body())


def _response(settings: Settings, model: str, device: str, job: str, result: JobResult,
              timing: Timing, *, npu: bool) -> WorkerResponse:  # fmt: skip
    """The worker response of a finished job, with its busy-counter readings."""
    busy = result.busy
    return WorkerResponse(
        model=model,
        device=device,
        job=job,
        text=result.text,
        json=result.parsed,
        timing_ms=timing,
        busy_counter=busy.counter,
        busy_delta_us=busy.delta_us,
        busy_before_us=busy.before_us,
        busy_after_us=busy.after_us,
        npu_busy_delta_us=busy.delta_us if npu else None,
        npu_busy_before_us=busy.before_us if npu else None,
        npu_busy_after_us=busy.after_us if npu else None,
        cache_dir=str(settings.compile_cache_dir),
        usage=Usage(
            prompt_tokens=result.prompt_tokens,
            completion_tokens=result.completion_tokens,
            total_tokens=result.prompt_tokens + result.completion_tokens,
        ),
    )


def _handler(job: str | None) -> Callable[[Request], Awaitable[Response]]:
    async def handler(request: Request) -> Response:
        return await _generate(request, job)

    return handler


def routes() -> list[BaseRoute]:
    table = [
        ("/v1/worker/generate", None),
        ("/v1/worker/extract-memory-candidates", "memory_candidate"),
        ("/v1/worker/condense-notification", "notification"),
    ]
    return [
        Route(prefix + path, _handler(job), methods=["POST"])
        for prefix in ("/exp", "")
        for path, job in table
    ]
