"""The Ollama API (`/api/...`), translated onto the one generation path and the store.

Chat and generate stream NDJSON by default, as Ollama does; errors are `{"error": "..."}`
with the same status codes as everywhere else. Durations are in nanoseconds.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import aclosing
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from ovrunner import __version__, hub
from ovrunner.engines.base import GenerationRequest, ModelRef, SamplingParams, TokenLogprob
from ovrunner.engines.registry import EngineRegistry
from ovrunner.errors import ModelNotFoundError, UnsupportedParameterError
from ovrunner.lifecycle import Lifecycle, parse_keep_alive
from ovrunner.protocol.ollama import (
    ChatMessage,
    ChatRequest,
    Format,
    GenerateRequest,
    ModelRequest,
    PullRequest,
)
from ovrunner.routes import answers
from ovrunner.routes.body import parse_body
from ovrunner.routes.chat_tools import function_tool, unique_names
from ovrunner.routes.serving import Generation, start_generation
from ovrunner.settings import Settings
from ovrunner.store import ModelStore, validate_model_id
from ovrunner.streaming import ndjson_response
from ovrunner.tools.spec import ToolSpec

# -- requests ---------------------------------------------------------------------------------


def sampling(body: ChatRequest | GenerateRequest) -> SamplingParams:
    options, predict = body.options, body.options.num_predict
    if body.top_logprobs:
        raise UnsupportedParameterError(
            "top_logprobs > 0 is not supported: this engine reports only the sampled token's "
            "log probability",
            param="top_logprobs",
        )
    return SamplingParams(
        logprobs=body.logprobs,
        max_tokens=predict if predict is not None and predict > 0 else None,
        temperature=options.temperature,
        top_p=options.top_p,
        top_k=options.top_k,
        min_p=options.min_p,
        seed=options.seed,
        stop=tuple(options.stop or ()),
        repetition_penalty=options.repeat_penalty,
        presence_penalty=options.presence_penalty,
        frequency_penalty=options.frequency_penalty,
        ignore_eos=options.ignore_eos,
        json_schema=_json_schema(body.format),
    )


def _json_schema(format: Format | None) -> str | None:
    if not format:
        return None
    return json.dumps({"type": "object"} if format == "json" else format)


def template_messages(messages: list[ChatMessage]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i, message in enumerate(messages):
        turn: dict[str, Any] = {"role": message.role, "content": message.content}
        if message.tool_calls:
            turn["tool_calls"] = [
                {"id": f"call_{i}_{j}", "type": "function",
                 "function": {"name": c.function.name,
                              "arguments": json.dumps(c.function.arguments, ensure_ascii=False)}}
                for j, c in enumerate(message.tool_calls)
            ]  # fmt: skip
        if message.role == "tool":
            turn["tool_call_id"] = message.tool_name or ""
            if message.tool_name:
                turn["name"] = message.tool_name
        out.append(turn)
    return out


def _tool_spec(body: ChatRequest) -> ToolSpec | None:
    if not body.tools:
        return None
    tools = tuple(
        function_tool(t.function.name, t.function.description, t.function.parameters,
                      f"tools[{i}].function.parameters")
        for i, t in enumerate(body.tools)
    )  # fmt: skip
    unique_names(tools, "tools")
    return ToolSpec(tools)  # Ollama has no tool_choice: the model decides


def _keep_alive(value: str | float | None) -> float | None:
    return None if value is None else parse_keep_alive(value)


# -- answers ----------------------------------------------------------------------------------


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


class _Clock:
    """Ollama's durations: the whole request, the load and prefill (to the first token) and
    the generation after it, in nanoseconds."""

    def __init__(self) -> None:
        self.started = time.perf_counter_ns()
        self.first = self.started

    def first_token(self) -> None:
        self.first = time.perf_counter_ns()

    def stats(self, generation: Generation) -> dict[str, Any]:
        now = time.perf_counter_ns()
        usage = generation.tally.usage()
        return {"total_duration": now - self.started, "load_duration": 0,
                "prompt_eval_count": usage.prompt_tokens,
                "prompt_eval_duration": self.first - self.started,
                "eval_count": usage.completion_tokens, "eval_duration": now - self.first}  # fmt: skip


def _logprobs(logprobs: Sequence[TokenLogprob]) -> list[dict[str, Any]]:
    return [{"token": t.token, "logprob": t.logprob, "bytes": list(t.token.encode())}
            for t in logprobs]  # fmt: skip


def _calls(calls: list[tuple[str, str, str]]) -> list[dict[str, Any]]:
    out = []
    for _, name, arguments in calls:
        try:
            parsed = json.loads(arguments)
        except json.JSONDecodeError:  # cut short by num_predict
            parsed = {}
        out.append({"function": {"name": name, "arguments": parsed}})
    return out


async def _answer(request: Request, model: str, generation: Generation, clock: _Clock,
                  *, stream: bool, key: str) -> Response:  # fmt: skip
    """Chat (`key` "message") or generate (`key` "response"), streamed or whole."""
    if stream:
        lines = _lines(model, generation, clock, key)
        return ndjson_response(lines, on_close=generation.aclose)
    result = await answers.collect_whole(request, generation, 1)
    choice = result.choices[0]
    body: dict[str, Any] = {"model": model, "created_at": _now()}
    if key == "message":
        message: dict[str, Any] = {"role": "assistant", "content": choice.text}
        if choice.reasoning:
            message["thinking"] = choice.reasoning
        if choice.calls:
            message["tool_calls"] = _calls(choice.tool_calls())
        body["message"] = message
    else:
        body["response"] = choice.text
        if choice.reasoning:
            body["thinking"] = choice.reasoning
    if choice.logprobs:
        body["logprobs"] = _logprobs(choice.logprobs)
    body.update(done=True, done_reason="length" if choice.finish_reason == "length" else "stop",
                **clock.stats(generation))  # fmt: skip
    return JSONResponse(body)


async def _lines(model: str, generation: Generation, clock: _Clock,
                 key: str) -> AsyncIterator[dict[str, Any]]:  # fmt: skip
    collected = answers.CollectedChoice()
    finish = None
    async with aclosing(generation.deltas) as deltas:
        async for delta in deltas:
            collected.add(delta)
            finish = delta.finish_reason.value if delta.finish_reason else finish
            if not (delta.text or delta.reasoning or delta.logprobs):
                continue
            line: dict[str, Any] = {"model": model, "created_at": _now()}
            if key == "message":
                line["message"] = {"role": "assistant", "content": delta.text}
                if delta.reasoning:
                    line["message"]["thinking"] = delta.reasoning
            else:
                line["response"] = delta.text
                if delta.reasoning:
                    line["thinking"] = delta.reasoning
            if delta.logprobs:
                line["logprobs"] = _logprobs(delta.logprobs)
            yield {**line, "done": False}
    if collected.calls:  # Ollama sends each call whole, not in fragments
        message = {"role": "assistant", "content": "", "tool_calls": _calls(collected.tool_calls())}
        yield {"model": model, "created_at": _now(), "message": message, "done": False}
    last: dict[str, Any] = {"model": model, "created_at": _now()}
    if key == "message":
        last["message"] = {"role": "assistant", "content": ""}
    else:
        last["response"] = ""
    yield {**last, "done": True, "done_reason": "length" if finish == "length" else "stop",
           **clock.stats(generation)}  # fmt: skip


async def chat(request: Request) -> Response:
    body = await parse_body(request, ChatRequest)
    clock = _Clock()
    if not body.messages:  # Ollama's way to load a model
        return await _load_only(request, body.model, body.keep_alive, key="message")
    generation = GenerationRequest(messages=template_messages(body.messages),
                                   sampling=sampling(body),
                                   tools=_tool_spec(body))  # fmt: skip
    started = await start_generation(request, body.model, generation,
                                     keep_alive=_keep_alive(body.keep_alive))  # fmt: skip
    clock.first_token()
    return await _answer(request, body.model, started, clock, stream=body.stream, key="message")


async def generate(request: Request) -> Response:
    body = await parse_body(request, GenerateRequest)
    clock = _Clock()
    if not body.prompt:  # Ollama's way to load a model
        return await _load_only(request, body.model, body.keep_alive, key="response")
    if body.raw:
        generation = GenerationRequest(prompt=body.prompt,
                                       sampling=sampling(body))  # fmt: skip
    else:  # Ollama templates a prompt as one user turn, after the system prompt if any
        turns = [{"role": "system", "content": body.system}] if body.system else []
        turns.append({"role": "user", "content": body.prompt})
        generation = GenerationRequest(messages=turns, sampling=sampling(body))
    started = await start_generation(request, body.model, generation,
                                     keep_alive=_keep_alive(body.keep_alive))  # fmt: skip
    clock.first_token()
    return await _answer(request, body.model, started, clock, stream=body.stream, key="response")


async def _load_only(request: Request, model: str, keep_alive: str | float | None,
                     *, key: str) -> Response:  # fmt: skip
    lifecycle: Lifecycle = request.app.state.lifecycle
    lifecycle.resolve(model)
    lease = await lifecycle.acquire(model, keep_alive=_keep_alive(keep_alive))
    lease.release()
    empty: Any = {"role": "assistant", "content": ""} if key == "message" else ""
    return JSONResponse({"model": model, "created_at": _now(), key: empty, "done": True,
                         "done_reason": "load"})  # fmt: skip


# -- models -----------------------------------------------------------------------------------


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
    info = registry.get(model.engine).describe(model)
    architecture = info.architecture or "unknown"
    return JSONResponse({
        "modelfile": "", "parameters": "", "template": "",
        "details": _details(request, model),
        "model_info": {"general.architecture": architecture,
                       f"{architecture}.context_length": info.context_window},
        # Every model calls tools here: through its template, or the fallback prompt.
        "capabilities": ["completion", "tools"],
        "modified_at": _entry(request, model_id)["modified_at"],
    })  # fmt: skip


async def ps(request: Request) -> JSONResponse:
    lifecycle: Lifecycle = request.app.state.lifecycle
    models = []
    for slot in lifecycle.slots():
        if slot.runner is None:
            continue
        expires = slot.expires_at if slot.expires_at is not None else time.time() + 10**8
        models.append({"name": slot.model.id, "model": slot.model.id,
                       "size": slot.memory_bytes or 0, "size_vram": 0,
                       "details": _details(request, slot.model),
                       "expires_at": datetime.fromtimestamp(expires, UTC).isoformat()})  # fmt: skip
    return JSONResponse({"models": models})


async def version(request: Request) -> JSONResponse:
    return JSONResponse({"version": __version__})


async def delete(request: Request) -> Response:
    body = await parse_body(request, ModelRequest)
    store: ModelStore = request.app.state.store
    model_id = _known(store, body.id)
    request.app.state.lifecycle.unload_model(model_id)
    await asyncio.to_thread(store.remove, model_id)
    return Response(status_code=200)


async def pull(request: Request) -> Response:
    """Pulls `org/repo` (or `org/repo:file.gguf`) from the Hugging Face Hub into the store."""
    body = await parse_body(request, PullRequest)
    settings: Settings = request.app.state.settings
    store: ModelStore = request.app.state.store
    registry: EngineRegistry = request.app.state.registry
    repo, _, tag = (body.id or "").partition(":")
    filename = tag if tag.endswith(".gguf") else None
    name = validate_model_id(repo)

    def run() -> None:
        hub.pull(store, repo, model_id=name, filename=filename, engine="openvino",
                 endpoint=settings.hf_endpoint,
                 context_window=registry.context_window_of("openvino"))  # fmt: skip

    if not body.stream:
        await asyncio.to_thread(run)
        return JSONResponse({"status": "success"})

    async def progress() -> AsyncIterator[dict[str, Any]]:
        yield {"status": "pulling manifest"}
        await asyncio.to_thread(run)  # the Hub client reports no progress we could pass on
        yield {"status": "verifying sha256 digest"}
        yield {"status": "success"}

    return ndjson_response(progress())


def _known(store: ModelStore, model_id: str | None) -> str:
    if not model_id or model_id not in store.list_ids():
        raise ModelNotFoundError(f"model {model_id!r} not found", param="model")
    return model_id


def routes() -> list[BaseRoute]:
    return [
        Route("/api/version", version, methods=["GET"]),
        Route("/api/tags", tags, methods=["GET"]),
        Route("/api/show", show, methods=["POST"]),
        Route("/api/ps", ps, methods=["GET"]),
        Route("/api/chat", chat, methods=["POST"]),
        Route("/api/generate", generate, methods=["POST"]),
        Route("/api/pull", pull, methods=["POST"]),
        Route("/api/delete", delete, methods=["DELETE"]),
    ]
