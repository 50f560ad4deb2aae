"""Operations routes: health, engine status and loaded runners."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from ovrunner.engines.registry import EngineRegistry
from ovrunner.lifecycle import Lifecycle
from ovrunner.settings import Settings
from ovrunner.store import ModelStore


async def healthz(request: Request) -> JSONResponse:
    settings: Settings = request.app.state.settings
    store: ModelStore = request.app.state.store
    lifecycle: Lifecycle = request.app.state.lifecycle
    try:
        model_path = str(store.get(settings.model).path)
    except Exception:
        model_path = None
    cache_dir = settings.compile_cache_dir
    return JSONResponse(
        {
            "ok": True,
            "model": settings.model,
            "model_path": model_path,
            "device": settings.device,
            "cache_dir": str(cache_dir),
            "cache_exists": cache_dir.is_dir(),
            "loaded": lifecycle.is_loaded(settings.model),
            "initial_load_ms": lifecycle.initial_load_ms,
            "bind": f"{settings.host}:{settings.port}",
        }
    )


async def engines_status(request: Request) -> JSONResponse:
    registry: EngineRegistry = request.app.state.registry
    engines = []
    for engine in registry:
        state = engine.status()
        engines.append({"name": engine.name, "status": state.status, "detail": state.detail,
                        "modes": list(engine.modes)})  # fmt: skip
    return JSONResponse({"engines": engines})


async def engines_ps(request: Request) -> JSONResponse:
    lifecycle: Lifecycle = request.app.state.lifecycle
    runners = []
    for slot in lifecycle.slots():
        runner = slot.runner
        runners.append(
            {
                "model": slot.model.id,
                "engine": slot.model.engine,
                "device": runner.device if runner else None,
                "state": slot.state,
                "since": slot.since,
                "load_ms": slot.load_ms,
                "stats": runner.stats() if runner else None,
            }
        )
    return JSONResponse({"runners": runners})


def routes() -> list[BaseRoute]:
    return [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/engines/status", engines_status, methods=["GET"]),
        Route("/engines/ps", engines_ps, methods=["GET"]),
    ]
