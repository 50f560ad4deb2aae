"""The Ollama API (`/api/...`): chat and generate, translated onto the one generation path;
the model routes are in `ollama_models.py`.

Chat and generate stream NDJSON by default, as Ollama does; errors are `{"error": "..."}`
with the same status codes as everywhere else. Durations are in nanoseconds.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import aclosing
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from ovrunner.engines.base import GenerationRequest, OutputConstraint, SamplingParams, TokenLogprob
from ovrunner.errors import UnsupportedParameterError
from ovrunner.lifecycle import Lifecycle, parse_keep_alive
from ovrunner.protocol.embeddings import EmbeddingCreateRequest
from ovrunner.protocol.ollama import (
    ChatMessage,
    ChatRequest,
    EmbeddingsRequest,
    EmbedRequest,
    Format,
    GenerateRequest,
)
from ovrunner.routes import answers, embeddings, ollama_models
from ovrunner.routes.body import parse_body
from ovrunner.routes.chat_tools import function_tool, unique_names
from ovrunner.routes.serving import Generation, start_generation
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
        constraint=_constraint(body.format),
    )


def _constraint(format: Format | None) -> OutputConstraint | None:
    if not format:
        return None
    return OutputConstraint.json_schema(
        {"type": "object"} if format == "json" else format, "format"
    )


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
    body = _piece(model, key, choice.text, choice.reasoning, choice.logprobs)
    if choice.calls:
        body["message"]["tool_calls"] = _calls(choice.tool_calls())
    body.update(done=True, done_reason="length" if choice.finish_reason == "length" else "stop",
                **clock.stats(generation))  # fmt: skip
    return JSONResponse(body)


def _piece(model: str, key: str, text: str, reasoning: str | None,
           logprobs: Sequence[TokenLogprob]) -> dict[str, Any]:  # fmt: skip
    """An answer or a piece of one: chat's `message` or generate's `response`."""
    piece: dict[str, Any] = {"model": model, "created_at": _now()}
    if key == "message":
        piece["message"] = {"role": "assistant", "content": text}
        if reasoning:
            piece["message"]["thinking"] = reasoning
    else:
        piece["response"] = text
        if reasoning:
            piece["thinking"] = reasoning
    if logprobs:
        piece["logprobs"] = _logprobs(logprobs)
    return piece


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
            line = _piece(model, key, delta.text, delta.reasoning, delta.logprobs)
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
                                   sampling=sampling(body), tools=_tool_spec(body),
                                   thinking=_thinking(body.think))  # fmt: skip
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
        generation = GenerationRequest(messages=turns, sampling=sampling(body),
                                       thinking=_thinking(body.think))  # fmt: skip
    started = await start_generation(request, body.model, generation,
                                     keep_alive=_keep_alive(body.keep_alive))  # fmt: skip
    clock.first_token()
    return await _answer(request, body.model, started, clock, stream=body.stream, key="response")


def _thinking(think: bool | str | None) -> bool | None:
    """Ollama's `think` as the template's `enable_thinking`: a level (low, medium, high)
    asks for thinking; a template without the switch ignores it."""
    return None if think is None else think is not False


async def _load_only(request: Request, model: str, keep_alive: str | float | None,
                     *, key: str) -> Response:  # fmt: skip
    lifecycle: Lifecycle = request.app.state.lifecycle
    lifecycle.resolve(model)
    lease = await lifecycle.acquire(model, keep_alive=_keep_alive(keep_alive))
    lease.release()
    empty: Any = {"role": "assistant", "content": ""} if key == "message" else ""
    return JSONResponse({"model": model, "created_at": _now(), key: empty, "done": True,
                         "done_reason": "load"})  # fmt: skip


async def embed(request: Request) -> Response:
    body = await parse_body(request, EmbedRequest)
    clock = _Clock()
    wanted = EmbeddingCreateRequest(model=body.model, input=body.input, truncate=body.truncate,
                                    dimensions=body.dimensions)  # fmt: skip
    result = await embeddings.embed(request, wanted, keep_alive=_keep_alive(body.keep_alive))
    return JSONResponse({"model": body.model, "embeddings": result.vectors,
                         "total_duration": time.perf_counter_ns() - clock.started,
                         "load_duration": 0, "prompt_eval_count": result.prompt_tokens})  # fmt: skip


async def legacy_embeddings(request: Request) -> Response:
    body = await parse_body(request, EmbeddingsRequest)
    # As Ollama's older route does, an over-long prompt is cut to the window.
    wanted = EmbeddingCreateRequest(model=body.model, input=body.prompt, truncate=True)
    result = await embeddings.embed(request, wanted, keep_alive=_keep_alive(body.keep_alive))
    return JSONResponse({"embedding": result.vectors[0]})


def routes() -> list[BaseRoute]:
    return [
        Route("/api/version", ollama_models.version, methods=["GET"]),
        Route("/api/tags", ollama_models.tags, methods=["GET"]),
        Route("/api/show", ollama_models.show, methods=["POST"]),
        Route("/api/ps", ollama_models.ps, methods=["GET"]),
        Route("/api/chat", chat, methods=["POST"]),
        Route("/api/generate", generate, methods=["POST"]),
        Route("/api/embed", embed, methods=["POST"]),
        Route("/api/embeddings", legacy_embeddings, methods=["POST"]),
        Route("/api/pull", ollama_models.pull, methods=["POST"]),
        Route("/api/delete", ollama_models.delete, methods=["DELETE"]),
    ]
