"""The Ollama API's model routes (`/api/tags`, `show`, `ps`, `version`, `pull`, `delete`)
over the store and the lifecycle."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ovrunner import __version__, conversion, hub
from ovrunner.conversion import ConversionStatus, OnProgress
from ovrunner.engines.base import Mode, ModelRef
from ovrunner.engines.registry import EngineRegistry
from ovrunner.errors import ModelNotFoundError
from ovrunner.lifecycle import Lifecycle
from ovrunner.protocol.ollama import ModelRequest, PullRequest
from ovrunner.routes.body import parse_body
from ovrunner.settings import Settings
from ovrunner.store import ModelStore, validate_model_id
from ovrunner.streaming import ndjson_response


def _details(request: Request, model: ModelRef) -> dict[str, Any]:
    registry: EngineRegistry = request.app.state.registry
    try:
        architecture = registry.get(model.engine).describe(model).architecture or ""
    except Exception:  # noqa: BLE001 - a listing never fails on one unreadable model
        architecture = ""
    return {"format": model.format.value, "family": architecture,
            "families": [architecture] if architecture else None,
            "parameter_size": "", "quantization_level": ""}  # fmt: skip


def _entry(request: Request, model_id: str) -> dict[str, Any]:
    store: ModelStore = request.app.state.store
    model = store.get(model_id)
    summary = store.summary(model_id, lambda _: 0)
    modified = datetime.fromtimestamp(store.created(model_id), UTC).isoformat()
    return {"name": model_id, "model": model_id, "modified_at": modified,
            "size": summary["size_bytes"], "details": _details(request, model)}  # fmt: skip


async def tags(request: Request) -> JSONResponse:
    store: ModelStore = request.app.state.store
    return JSONResponse({"models": [_entry(request, m) for m in store.list_ids()]})


async def show(request: Request) -> JSONResponse:
    body = await parse_body(request, ModelRequest)
    store: ModelStore = request.app.state.store
    registry: EngineRegistry = request.app.state.registry
    model_id = _known(store, body.id)
    model = store.get(model_id)
    await asyncio.to_thread(store.materialize, model)  # an embedded model's files, if not yet
    info = registry.get(model.engine).describe(model)
    architecture = info.architecture or "unknown"
    # Every chat model calls tools here: through its template, or the fallback prompt.
    capabilities = {Mode.COMPLETION: ["completion", "tools"], Mode.EMBEDDING: ["embedding"]}
    return JSONResponse({
        "modelfile": "", "parameters": "", "template": "",
        "details": _details(request, model),
        "model_info": {"general.architecture": architecture,
                       f"{architecture}.context_length": info.context_window},
        "capabilities": capabilities.get(model.mode, []),
        "modified_at": _entry(request, model_id)["modified_at"],
    })  # fmt: skip


async def ps(request: Request) -> JSONResponse:
    """Loaded models, one entry each (a model's plain and prompt-lookup runners together:
    their memory summed, the later keep-alive deadline)."""
    lifecycle: Lifecycle = request.app.state.lifecycle
    models: dict[str, dict[str, Any]] = {}
    for slot in lifecycle.slots():
        if slot.runner is None:
            continue
        expires = slot.expires_at if slot.expires_at is not None else time.time() + 10**8
        entry = models.get(slot.model.id)
        if entry is None:
            models[slot.model.id] = {"name": slot.model.id, "model": slot.model.id,
                                     "size": slot.memory_bytes or 0, "size_vram": 0,
                                     "details": _details(request, slot.model), "_expires": expires}  # fmt: skip
            continue
        entry["size"] += slot.memory_bytes or 0
        entry["_expires"] = max(entry["_expires"], expires)
    for entry in models.values():
        entry["expires_at"] = datetime.fromtimestamp(entry.pop("_expires"), UTC).isoformat()
    return JSONResponse({"models": list(models.values())})


# The Ollama release whose API this one serves, as clients read `version`: Codex's `--oss`
# mode needs 0.13.4 or newer (Ollama's `/v1/responses`, which ovrunner has), and refused
# ovrunner's own 0.1.0. No higher than that: a client may gate newer features on it.
OLLAMA_API_VERSION = "0.13.4"


async def version(request: Request) -> JSONResponse:
    return JSONResponse({"version": OLLAMA_API_VERSION, "ovrunner": __version__})


async def delete(request: Request) -> Response:
    body = await parse_body(request, ModelRequest)
    store: ModelStore = request.app.state.store
    model_id = _known(store, body.id)
    request.app.state.lifecycle.unload_model(model_id)
    await asyncio.to_thread(store.remove, model_id)
    return Response(status_code=200)


async def pull(request: Request) -> Response:
    """Pulls `org/repo`, `hf.co/org/repo:Q4_K_M` or `org/repo:file.gguf` from the Hugging
    Face Hub into the store, converting a GGUF (Ollama's status lines, conversion steps too)."""
    body = await parse_body(request, PullRequest)
    settings: Settings = request.app.state.settings
    store: ModelStore = request.app.state.store
    registry: EngineRegistry = request.app.state.registry
    reference = body.id or ""
    name = validate_model_id(hub.parse_reference(reference)[0])

    def work(on_progress: OnProgress) -> ModelRef:
        return hub.pull(store, reference, model_id=name, engine="openvino",
                        endpoint=settings.hf_endpoint, weight_format=settings.weight_format,
                        context_window=registry.context_window_of("openvino"),
                        on_progress=on_progress)  # fmt: skip

    updates = conversion.with_progress(work)
    if not body.stream:
        async for _ in updates:
            pass
        return JSONResponse({"status": "success"})

    async def progress() -> AsyncIterator[dict[str, Any]]:
        yield {"status": "pulling manifest"}
        async for item in updates:
            if isinstance(item, ConversionStatus):
                yield {"status": item.describe(), "total": item.total, "completed": item.done}
        yield {"status": "verifying sha256 digest"}
        yield {"status": "success"}

    return ndjson_response(progress())


def _known(store: ModelStore, model_id: str | None) -> str:
    if not model_id or model_id not in store.list_ids():
        raise ModelNotFoundError(f"model {model_id!r} not found", param="model")
    return model_id
