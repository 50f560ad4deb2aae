"""The model store over HTTP: list, pull, import and delete."""

from __future__ import annotations

import asyncio
from pathlib import Path

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from ovrunner import hub
from ovrunner.engines.registry import EngineRegistry
from ovrunner.errors import InvalidValueError
from ovrunner.lifecycle import Lifecycle
from ovrunner.protocol.store import ImportRequest, PullRequest
from ovrunner.routes.body import parse_body
from ovrunner.settings import Settings
from ovrunner.store import ModelStore, validate_model_id


def _summary(request: Request, model_id: str) -> dict[str, object]:
    store: ModelStore = request.app.state.store
    registry: EngineRegistry = request.app.state.registry
    engine = store.get(model_id).engine
    reader = registry.context_window_of(engine) if engine in registry else (lambda _: 0)
    summary = store.summary(model_id, reader)
    summary["loaded"] = request.app.state.lifecycle.is_loaded(model_id)
    return summary


async def list_store(request: Request) -> JSONResponse:
    store: ModelStore = request.app.state.store
    return JSONResponse({"models": [_summary(request, m) for m in store.list_ids()]})


async def pull_model(request: Request) -> JSONResponse:
    body = await parse_body(request, PullRequest)
    settings: Settings = request.app.state.settings
    store: ModelStore = request.app.state.store
    registry: EngineRegistry = request.app.state.registry
    name = validate_model_id(body.name or body.repo)
    model = await asyncio.to_thread(
        hub.pull, store, body.repo, model_id=name, filename=body.file, engine=body.engine,
        endpoint=settings.hf_endpoint, revision=body.revision,
        context_window=registry.context_window_of(body.engine),
    )  # fmt: skip
    return JSONResponse(_summary(request, model.id), status_code=201)


async def import_model(request: Request) -> JSONResponse:
    body = await parse_body(request, ImportRequest)
    store: ModelStore = request.app.state.store
    registry: EngineRegistry = request.app.state.registry
    try:
        path = Path(body.path).expanduser()
    except RuntimeError:  # `~someone` with no such user
        raise InvalidValueError(f"cannot expand the path {body.path!r}: no such home directory",
                                param="path") from None  # fmt: skip
    name = validate_model_id(body.name or path.stem)
    model = await asyncio.to_thread(
        store.add, path, name, engine=body.engine, source=f"import:{path}",
        context_window=registry.context_window_of(body.engine),
    )  # fmt: skip
    return JSONResponse(_summary(request, model.id), status_code=201)


async def delete_model(request: Request) -> JSONResponse:
    store: ModelStore = request.app.state.store
    lifecycle: Lifecycle = request.app.state.lifecycle
    model_id = request.path_params["model"]
    lifecycle.unload_model(model_id)
    await asyncio.to_thread(store.remove, model_id)
    return JSONResponse({"id": model_id, "object": "model", "deleted": True})


def routes() -> list[BaseRoute]:
    return [
        Route("/models", list_store, methods=["GET"]),
        Route("/models/pull", pull_model, methods=["POST"]),
        Route("/models/import", import_model, methods=["POST"]),
        Route("/models/{model:path}", delete_model, methods=["DELETE"]),
        Route("/v1/models/{model:path}", delete_model, methods=["DELETE"]),
    ]
