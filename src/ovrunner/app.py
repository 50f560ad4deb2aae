"""`create_app`: the single wiring point. Everything the handlers use hangs on `app.state`."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse

from ovrunner.engines.base import LoadConfig
from ovrunner.engines.openvino import OpenVINOEngine
from ovrunner.engines.openvino_npu import NpuLimits, OpenVINONpuEngine
from ovrunner.engines.registry import EngineRegistry
from ovrunner.errors import MethodNotAllowedError, NotFoundError, OvrunnerError
from ovrunner.jobs import JobPresets
from ovrunner.lifecycle import Lifecycle
from ovrunner.routes import openai, ops, worker
from ovrunner.settings import Settings
from ovrunner.store import ModelStore

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


def create_app(settings: Settings, registry: EngineRegistry | None = None) -> Starlette:
    registry = registry or default_registry(settings)
    store = ModelStore(settings.store_dir)
    load_config = LoadConfig(
        device=settings.device,
        kv_cache_gb=settings.kv_cache_gb,
        max_queue=settings.max_queue,
        cache_dir=settings.compile_cache_dir,
    )
    lifecycle = Lifecycle(
        store, registry, load_config, only_model=settings.model if settings.only else None
    )

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if settings.preload:
            await lifecycle.runner_for(settings.model)
        try:
            yield
        finally:
            await lifecycle.close()

    app = Starlette(
        routes=[*openai.routes(), *worker.routes(), *ops.routes()],
        exception_handlers={
            OvrunnerError: _ovrunner_error,
            HTTPException: _http_error,
            Exception: _unexpected_error,
        },
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.registry = registry
    app.state.store = store
    app.state.lifecycle = lifecycle
    app.state.jobs = JobPresets.load(settings.jobs_file)
    return app


def error_response(error: OvrunnerError) -> JSONResponse:
    return JSONResponse(error.to_body(), status_code=error.status_code, headers=error.headers())


async def _ovrunner_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, OvrunnerError)
    return error_response(exc)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        return error_response(NotFoundError(f"no route for {request.method} {request.url.path}"))
    if exc.status_code == 405:
        return error_response(
            MethodNotAllowedError(f"{request.method} is not allowed on {request.url.path}")
        )
    error = OvrunnerError(str(exc.detail))
    return JSONResponse(error.to_body(), status_code=exc.status_code)


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return error_response(OvrunnerError("internal server error"))
