"""Operations routes: health, engine status and loaded runners."""

from __future__ import annotations

import dataclasses

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from ovrunner.busy import counter_for
from ovrunner.engines.registry import EngineRegistry
from ovrunner.errors import NotReadyError, OvrunnerError
from ovrunner.jobs import MAX_INPUT_CHARS, default_job_device
from ovrunner.lifecycle import Lifecycle
from ovrunner.protocol.ops import UnloadRequest, UnloadResponse
from ovrunner.routes.body import parse_body
from ovrunner.settings import Settings
from ovrunner.store import ModelStore


async def healthz(request: Request) -> JSONResponse:
    settings: Settings = request.app.state.settings
    store: ModelStore = request.app.state.store
    lifecycle: Lifecycle = request.app.state.lifecycle
    try:
        model_path = str(store.get(settings.model).path)
    except Exception:  # noqa: BLE001 - health answers even when the default model is broken
        model_path = None
    cache_dir = settings.compile_cache_dir
    # The counter of the device that worker jobs run on by default.
    device = default_job_device(settings)
    counter = counter_for(device, settings.npu_busy_path, settings.busy_counter)
    try:
        busy_time_us: int | None = counter.read_us()
    except OvrunnerError:
        busy_time_us = None
    return JSONResponse(
        {
            "ok": True,
            "model": settings.model,
            "model_path": model_path,
            "device": device,
            "cache_dir": str(cache_dir),
            "cache_exists": cache_dir.is_dir(),
            "loaded": lifecycle.is_loaded(settings.model),
            "initial_load_ms": lifecycle.initial_load_ms,
            "busy_counter": counter.name,
            "busy_time_us": busy_time_us,
            "max_input_chars": MAX_INPUT_CHARS,
            "jobs": request.app.state.jobs.names(),
            "bind": settings.bind,
        }
    )


async def livez(request: Request) -> JSONResponse:
    """Liveness: the process answers; a probe that fails restarts it."""
    return JSONResponse({"status": "alive"})


async def readyz(request: Request) -> JSONResponse:
    """Readiness: 503 with `Retry-After` while the server should get no new traffic (the
    default model not loaded yet under `--preload`, draining after SIGTERM, its queue full)."""
    settings: Settings = request.app.state.settings
    lifecycle: Lifecycle = request.app.state.lifecycle
    if request.app.state.drain.draining:
        raise NotReadyError("draining: the server is shutting down")
    if settings.preload and not lifecycle.is_loaded(settings.model):
        raise NotReadyError(f"the default model {settings.model!r} is loading", retry_after_s=5)
    for slot in lifecycle.slots():
        if slot.model.id == settings.model and slot.runner is not None:
            if slot.runner.stats().admitted >= settings.max_queue:
                raise NotReadyError(f"the queue of {settings.model!r} is full")
    return JSONResponse({"status": "ready"})


async def engines_status(request: Request) -> JSONResponse:
    registry: EngineRegistry = request.app.state.registry
    engines = []
    lifecycle: Lifecycle = request.app.state.lifecycle
    for engine in registry:
        state = engine.status()
        # Runners of this engine whose pipeline failed for good (a crash loop, say).
        failed = [{"model": slot.model.id, "error": str(slot.runner.failure)}
                  for slot in lifecycle.slots()
                  if slot.engine == engine.name and slot.runner and slot.runner.failure]  # fmt: skip
        engines.append({"name": engine.name, "status": state.status, "detail": state.detail,
                        "modes": list(engine.modes), "disk_usage_bytes": engine.disk_usage(),
                        "failed_runners": failed})  # fmt: skip
    return JSONResponse({"engines": engines})


async def engines_ps(request: Request) -> JSONResponse:
    lifecycle: Lifecycle = request.app.state.lifecycle
    runners = []
    for slot in lifecycle.slots():
        runner = slot.runner
        stats = runner.stats() if runner else None
        runners.append(
            {
                "model": slot.model.id,
                "engine": slot.engine,
                "decoding": slot.model.decoding,
                "device": runner.device if runner else None,
                "state": slot.state,
                "error": str(runner.failure) if runner and runner.failure else None,
                "since": slot.since,
                "load_ms": slot.load_ms,
                "in_use": slot.leases,
                "keep_alive_s": None if slot.keep_alive < 0 else slot.keep_alive,
                "expires_at": slot.expires_at,
                "memory_bytes": slot.memory_bytes,
                "holds": slot.holdings(stats),
                "stats": dataclasses.asdict(stats) if stats is not None else None,
            }
        )
    return JSONResponse({"runners": runners})


async def unload(request: Request) -> JSONResponse:
    """Unload runners now (also how a runner in a crash loop is given a fresh start)."""
    body = await parse_body(request, UnloadRequest)
    lifecycle: Lifecycle = request.app.state.lifecycle
    models = {slot.model.id for slot in lifecycle.slots()} if body.all else set(body.models)
    count = sum(lifecycle.unload_model(model_id) for model_id in sorted(models))
    return JSONResponse(UnloadResponse(unloaded_runners=count).model_dump())


async def metrics(request: Request) -> Response:
    registry = request.app.state.metrics.registry
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


def routes() -> list[BaseRoute]:
    return [
        Route("/metrics", metrics, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/livez", livez, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/engines/status", engines_status, methods=["GET"]),
        Route("/engines/ps", engines_ps, methods=["GET"]),
        Route("/engines/unload", unload, methods=["POST"]),
    ]
