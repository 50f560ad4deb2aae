"""The model store over HTTP: list, pull, import and delete."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from ovrunner import conversion, hub
from ovrunner.conversion import ConversionStatus, OnProgress
from ovrunner.engines.base import ModelRef
from ovrunner.engines.registry import EngineRegistry
from ovrunner.errors import InvalidValueError
from ovrunner.lifecycle import Lifecycle
from ovrunner.protocol.store import ImportRequest, PullRequest
from ovrunner.routes.body import parse_body
from ovrunner.settings import Settings
from ovrunner.store import ModelStore, validate_model_id
from ovrunner.streaming import ndjson_response


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


async def pull_model(request: Request) -> Response:
    body = await parse_body(request, PullRequest)
    settings: Settings = request.app.state.settings
    store: ModelStore = request.app.state.store
    registry: EngineRegistry = request.app.state.registry
    repo_id, _ = hub.parse_reference(body.repo)
    name = validate_model_id(body.name or repo_id)

    def work(on_progress: OnProgress) -> ModelRef:
        return hub.pull(
            store, body.repo, model_id=name, filename=body.file, engine=body.engine,
            endpoint=settings.hf_endpoint, revision=body.revision,
            weight_format=body.weight_format or settings.weight_format,
            context_window=registry.context_window_of(body.engine), on_progress=on_progress,
        )  # fmt: skip

    return await _added(request, work, stream=body.stream)


async def import_model(request: Request) -> Response:
    body = await parse_body(request, ImportRequest)
    settings: Settings = request.app.state.settings
    store: ModelStore = request.app.state.store
    registry: EngineRegistry = request.app.state.registry
    try:
        path = Path(body.path).expanduser()
    except RuntimeError:  # `~someone` with no such user
        raise InvalidValueError(f"cannot expand the path {body.path!r}: no such home directory",
                                param="path") from None  # fmt: skip
    name = validate_model_id(body.name or path.stem)

    def work(on_progress: OnProgress) -> ModelRef:
        return conversion.add_model(
            store, path, name, engine=body.engine, source=f"import:{path}",
            weight_format=body.weight_format or settings.weight_format,
            context_window=registry.context_window_of(body.engine), on_progress=on_progress,
        )  # fmt: skip

    return await _added(request, work, stream=body.stream)


async def _added(
    request: Request, work: Callable[[OnProgress], ModelRef], *, stream: bool
) -> Response:
    """The stored model's summary (201); with `stream`, one NDJSON line per conversion step
    (`{"status", "stage", "done", "total"}`) and the summary last. What fails before the
    conversion starts (a bad reference, an unsupported model) keeps its own status."""
    updates = conversion.with_progress(work)
    first = await anext(updates)
    if not stream:
        last = first
        async for last in updates:  # noqa: B007 - the model comes last
            pass
        return JSONResponse(_summary(request, last.id), status_code=201)

    async def lines() -> AsyncIterator[dict[str, Any]]:
        for item in [first]:
            yield _line(request, item)
        async for item in updates:
            yield _line(request, item)

    return ndjson_response(lines())


def _line(request: Request, item: ConversionStatus | ModelRef) -> dict[str, Any]:
    if isinstance(item, ConversionStatus):
        return {"status": item.describe(), **asdict(item)}
    return {"status": "success", "model": _summary(request, item.id)}


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
