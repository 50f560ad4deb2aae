"""`create_app`: the single wiring point. Everything the handlers use hangs on `app.state`."""

from __future__ import annotations

import asyncio
import atexit
import logging
import shutil
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from ovrunner.busy import BusyCounter, NpuSysfsCounter, ProcessCpuCounter
from ovrunner.draining import Drain, DrainGuard
from ovrunner.engines.base import EngineTuning, LoadConfig
from ovrunner.engines.openvino.batching import OpenVINOEngine
from ovrunner.engines.openvino.grammar import shared_schema_check
from ovrunner.engines.openvino.npu import NpuLimits, OpenVINONpuEngine
from ovrunner.engines.registry import EngineRegistry
from ovrunner.errors import (
    Dialect,
    MethodNotAllowedError,
    NotFoundError,
    OvrunnerError,
    error_body,
)
from ovrunner.jobs import JobPresets, preloaded_runners
from ovrunner.lifecycle import Lifecycle, parse_keep_alive
from ovrunner.metrics import AccessLog, Metrics
from ovrunner.openapi import openapi_json
from ovrunner.response_store import Bounds, open_response_store
from ovrunner.routes import (
    anthropic,
    audio,
    embeddings,
    models,
    ollama,
    openai,
    ops,
    responses,
    web,
    worker,
)
from ovrunner.security import ApiKeyGuard, BodyLimit, HostGuard, encoder_body_bytes
from ovrunner.settings import Settings
from ovrunner.store import ModelStore, writable

log = logging.getLogger(__name__)


def default_registry(settings: Settings) -> EngineRegistry:
    npu = OpenVINONpuEngine(
        settings.npu_model or settings.model,
        device=settings.npu_device,
        limits=NpuLimits(
            max_prompt_len=settings.npu_max_prompt_len,
            min_response_len=settings.npu_min_response_len,
        ),
    )
    return EngineRegistry([OpenVINOEngine(), npu])


async def _preload(lifecycle: Lifecycle, settings: Settings, jobs: JobPresets) -> None:
    """Load the default model's runner on each engine its chat and jobs use, so no first
    request waits for a load (a prompt-lookup runner loads on first use: `preloaded_runners`)."""
    for engine in preloaded_runners(jobs, settings):
        try:
            await lifecycle.runner_for(settings.model, engine=engine)
        except OvrunnerError as exc:
            # A broken model must not keep the server (and its other models) down: the
            # error is reported now and again to each request for that model.
            log.error("preloading %s on %s failed: %s", settings.model, engine, exc.message)
            return


def load_config(settings: Settings) -> LoadConfig:
    """How the engines load models, from the settings."""
    return LoadConfig(
        device=settings.device,
        kv_cache_gb=settings.kv_cache_gb,
        max_queue=settings.max_queue,
        crash_limit=settings.crash_limit,
        crash_window_s=settings.crash_window_s,
        cache_dir=settings.compile_cache_dir,
        tuning=EngineTuning(
            inference_precision=settings.inference_precision,
            kv_cache_precision=settings.kv_cache_precision,
            dynamic_quantization_group_size=settings.dynamic_quantization_group_size,
            threads=settings.engine_threads,
            max_batched_tokens=settings.max_batched_tokens,
            admission_window_ms=settings.admission_window_ms,
        ),
    )


def with_state_dir(settings: Settings) -> Settings:
    """The settings with `state_dir` decided: the store while it is writable, else a private
    temporary directory, removed at exit (a serving process must not write into a store that
    other replicas read)."""
    if settings.state_dir is not None:
        return settings
    if writable(settings.store_dir):
        return settings.model_copy(update={"state_dir": settings.store_dir})
    private = Path(tempfile.mkdtemp(prefix="ovrunner-state-"))
    atexit.register(shutil.rmtree, private, ignore_errors=True)
    log.warning("the store %s is read-only: this process writes under %s (set state_dir to "
                "keep its compile cache and Responses database)", settings.store_dir, private)  # fmt: skip
    return settings.model_copy(update={"state_dir": private})


def create_app(settings: Settings, registry: EngineRegistry | None = None) -> Starlette:
    settings = with_state_dir(settings)
    registry = registry or default_registry(settings)
    store = ModelStore(settings.store_dir, settings.state_dir)
    metrics = Metrics()
    drain = Drain(settings.shutdown_grace_s)
    lifecycle = Lifecycle(
        store,
        registry,
        load_config(settings),
        only_model=settings.model if settings.only else None,
        keep_alive=parse_keep_alive(settings.keep_alive),
        model_keep_alive={m: parse_keep_alive(v) for m, v in settings.model_keep_alive.items()},
        memory_budget_bytes=(
            None if settings.memory_budget_gb is None else int(settings.memory_budget_gb * 2**30)
        ),
        on_load=metrics.observe_load,
    )
    metrics.watch(lifecycle, lambda: busy_counters(settings))

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if settings.preload:
            await _preload(lifecycle, settings, app.state.jobs)
            # The schema check builds its pipeline now rather than at the first schema, but
            # after the model: on two cores, building both at once delayed ready by ~1 s.
            warm_up = asyncio.create_task(asyncio.to_thread(shared_schema_check().warm_up))
        try:
            yield
        finally:
            await lifecycle.close()
            await app.state.responses.close()
            if settings.preload:
                await warm_up

    app = Starlette(
        routes=_routes(),
        exception_handlers={
            OvrunnerError: _ovrunner_error,
            HTTPException: _http_error,
            Exception: _unexpected_error,
        },
        lifespan=lifespan,
        middleware=_middleware(settings, metrics, drain),
    )
    app.state.settings = settings
    app.state.drain = drain
    app.state.registry = registry
    app.state.store = store
    app.state.lifecycle = lifecycle
    app.state.metrics = metrics
    app.state.jobs = JobPresets.load(settings.jobs_file)
    app.state.responses = open_response_store(
        settings.responses_db,
        settings.state_dir or settings.store_dir,
        Bounds(settings.responses_kept, settings.responses_kept_mb << 20,
               settings.responses_kept_days * 86400),
    )  # fmt: skip
    return app


def _routes() -> list[BaseRoute]:
    return [
        *models.routes(),
        *openai.routes(),
        *embeddings.routes(),
        *audio.routes(),
        *anthropic.routes(),
        *ollama.routes(),
        *responses.routes(),
        *worker.routes(),
        *ops.routes(),
        Route("/openapi.json", openapi_json, methods=["GET"]),
        *web.routes(),
    ]


def _middleware(settings: Settings, metrics: Metrics, drain: Drain) -> list[Middleware]:
    # Outermost first: every request is logged and counted, refused ones included.
    stack = [Middleware(AccessLog, metrics=metrics), Middleware(DrainGuard, drain=drain)]
    if settings.cors_origins:
        stack.append(Middleware(CORSMiddleware, allow_origins=settings.cors_origins,
                                allow_methods=["*"], allow_headers=["*"]))  # fmt: skip
    api_key = settings.resolved_api_key()
    if api_key:
        stack.append(Middleware(ApiKeyGuard, api_key=api_key,
                                metrics_open=settings.metrics_open))  # fmt: skip
    elif settings.uds is None:  # a browser cannot reach a socket file
        stack.append(Middleware(HostGuard, bind_host=settings.host,
                                allowed_hosts=settings.allowed_hosts))  # fmt: skip
    encoder_bytes = encoder_body_bytes(settings.embedding_max_inputs, settings.embedding_max_tokens)
    stack.append(Middleware(BodyLimit, max_bytes=settings.max_body_bytes,
                            encoder_bytes=encoder_bytes, audio_bytes=settings.audio_max_bytes))  # fmt: skip
    return stack


def busy_counters(settings: Settings) -> list[BusyCounter]:
    """The counters /metrics reports: the CPU's always, the NPU's where it can be read."""
    counters: list[BusyCounter] = [ProcessCpuCounter()]
    if settings.npu_busy_path.exists():
        counters.append(NpuSysfsCounter(settings.npu_busy_path))
    return counters


def error_response(error: OvrunnerError, path: str = "/") -> JSONResponse:
    """The error in the shape of the dialect the path belongs to (OpenAI's by default)."""
    return JSONResponse(error_body(error, Dialect.of(path)), status_code=error.status_code,
                        headers=error.headers())  # fmt: skip


async def _ovrunner_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, OvrunnerError)
    return error_response(exc, request.url.path)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    path = request.url.path
    if exc.status_code == 404:
        return error_response(NotFoundError(f"no route for {request.method} {path}"), path)
    if exc.status_code == 405:
        return error_response(
            MethodNotAllowedError(f"{request.method} is not allowed on {path}"), path
        )
    error = OvrunnerError(str(exc.detail))
    return JSONResponse(error_body(error, Dialect.of(path)), status_code=exc.status_code)


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return error_response(OvrunnerError("internal server error"), request.url.path)
