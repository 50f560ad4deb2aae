"""The OpenAI routes: models and chat completions (also under `/engines/{engine}/v1`)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ovrunner.engines.base import (
    GenerationDelta,
    GenerationRequest,
    ModelRef,
    Runner,
    SamplingParams,
)
from ovrunner.errors import ModelNotFoundError, UnsupportedParameterError
from ovrunner.lifecycle import Lifecycle
from ovrunner.protocol.openai import (
    ChatCompletion,
    ChatCompletionChoice,
    ChatCompletionChunk,
    ChatCompletionChunkChoice,
    ChatCompletionMessage,
    ChatCompletionRequest,
    ChoiceDelta,
    Completion,
    CompletionChoice,
    CompletionRequest,
    ContentChunkTemplate,
    Model,
    ModelList,
    ResponseFormat,
    Usage,
    new_id,
    now,
)
from ovrunner.routes.body import parse_body
from ovrunner.store import ModelStore
from ovrunner.streaming import sse_response

OWNER = "ovrunner"


def _json(model: Model | ModelList | ChatCompletion | Completion) -> Response:
    return Response(model.model_dump_json(), media_type="application/json")


async def list_models(request: Request) -> Response:
    store: ModelStore = request.app.state.store
    engine = request.path_params.get("engine")
    models = []
    for model_id in store.list_ids():
        model = store.get(model_id)
        if engine is None or model.engine == engine:
            models.append(_model_object(request, model))
    return _json(ModelList(data=models))


async def retrieve_model(request: Request) -> Response:
    store: ModelStore = request.app.state.store
    model_id = request.path_params["model"]
    if model_id not in store.list_ids():
        raise ModelNotFoundError(f"The model {model_id!r} does not exist", param="model")
    return _json(_model_object(request, store.get(model_id)))


def _model_object(request: Request, model: ModelRef) -> Model:
    store: ModelStore = request.app.state.store
    engine = request.app.state.registry.get(model.engine)
    try:
        architecture = engine.describe(model).architecture
    except Exception:
        architecture = None
    return Model(id=model.id, created=store.created(model.id), owned_by=OWNER,
                 architecture=architecture)  # fmt: skip


def _sampling(
    body: ChatCompletionRequest | CompletionRequest, response_format: ResponseFormat | None = None
) -> SamplingParams:
    if body.logprobs:
        raise UnsupportedParameterError(
            "logprobs are not supported by this engine yet", param="logprobs"
        )
    return SamplingParams(
        max_tokens=body.token_limit,
        temperature=body.temperature,
        top_p=body.top_p,
        top_k=body.top_k,
        min_p=body.min_p,
        seed=body.seed,
        n=body.n,
        stop=body.stop_list(),
        presence_penalty=body.presence_penalty,
        frequency_penalty=body.frequency_penalty,
        repetition_penalty=body.repetition_penalty,
        min_tokens=body.min_tokens,
        ignore_eos=body.ignore_eos,
        json_schema=_json_schema(response_format),
    )


def _json_schema(response_format: ResponseFormat | None) -> str | None:
    if response_format is None or response_format.type == "text":
        return None
    if response_format.type == "json_object":
        return json.dumps({"type": "object"})
    if response_format.json_schema is None:
        raise UnsupportedParameterError(
            "response_format json_schema needs a json_schema object", param="response_format"
        )
    return json.dumps(response_format.json_schema.schema_)


async def _start(runner: Runner, request: GenerationRequest) -> AsyncIterator[GenerationDelta]:
    """Start generating and wait for the first delta, so that validation, admission and
    load failures are raised here, before any response has begun, with their real status."""
    deltas = runner.generate(request)
    try:
        first = await anext(deltas)
    except StopAsyncIteration:
        first = None

    async def chained() -> AsyncIterator[GenerationDelta]:
        async with aclosing(deltas):
            if first is not None:
                yield first
            async for delta in deltas:
                yield delta

    return chained()


async def create_chat_completion(request: Request) -> Response:
    body = await parse_body(request, ChatCompletionRequest)
    lifecycle: Lifecycle = request.app.state.lifecycle
    runner = await lifecycle.runner_for(body.model, engine=request.path_params.get("engine"))
    messages = [{"role": m.role, "content": m.text()} for m in body.messages]
    generation = GenerationRequest(
        messages=messages, sampling=_sampling(body, body.response_format)
    )
    deltas = await _start(runner, generation)
    completion_id, created = new_id("chatcmpl"), now()
    if body.stream:
        return sse_response(_chat_chunks(body, deltas, completion_id, created))
    result = await _collect(deltas, body.n)
    choices = [
        ChatCompletionChoice(index=i, message=ChatCompletionMessage(content=text),
                             finish_reason=result.finish[i])  # fmt: skip
        for i, text in enumerate(result.texts)
    ]
    return _json(ChatCompletion(id=completion_id, created=created, model=body.model,
                                choices=choices, usage=result.usage))  # fmt: skip


async def create_completion(request: Request) -> Response:
    body = await parse_body(request, CompletionRequest)
    if body.echo or body.suffix:
        raise UnsupportedParameterError(
            "echo and suffix are not supported", param="echo" if body.echo else "suffix"
        )
    lifecycle: Lifecycle = request.app.state.lifecycle
    runner = await lifecycle.runner_for(body.model, engine=request.path_params.get("engine"))
    generation = GenerationRequest(prompt=body.prompt, sampling=_sampling(body))
    deltas = await _start(runner, generation)
    completion_id, created = new_id("cmpl"), now()
    if body.stream:
        return sse_response(_completion_chunks(body, deltas, completion_id, created))
    result = await _collect(deltas, body.n)
    choices = [
        CompletionChoice(index=i, text=text, finish_reason=result.finish[i])
        for i, text in enumerate(result.texts)
    ]
    return _json(Completion(id=completion_id, created=created, model=body.model,
                            choices=choices, usage=result.usage))  # fmt: skip


@dataclass
class _Collected:
    texts: list[str]
    finish: list[str | None]
    usage: Usage


async def _collect(deltas: AsyncIterator[GenerationDelta], n: int) -> _Collected:
    """A whole non-streamed answer: the text and finish reason of each of `n` choices."""
    parts: list[list[str]] = [[] for _ in range(n)]
    finish: list[str | None] = [None] * n
    tally = _UsageTally()
    async with aclosing(deltas):
        async for delta in deltas:
            parts[tally.add(delta).index].append(delta.text)
            if delta.finish_reason is not None:
                finish[delta.index] = delta.finish_reason.value
    return _Collected(["".join(p) for p in parts], finish, tally.usage())


async def _completion_chunks(
    body: CompletionRequest,
    deltas: AsyncIterator[GenerationDelta],
    completion_id: str,
    created: int,
) -> AsyncIterator[Completion]:
    tally = _UsageTally()
    async with aclosing(deltas):
        async for delta in deltas:
            tally.add(delta)
            finish_reason = delta.finish_reason.value if delta.finish_reason else None
            choice = CompletionChoice(index=delta.index, text=delta.text, finish_reason=finish_reason)
            yield Completion(id=completion_id, created=created, model=body.model, choices=[choice])
    if body.include_usage:
        yield Completion(id=completion_id, created=created, model=body.model, choices=[],
                         usage=tally.usage())  # fmt: skip


async def _chat_chunks(
    body: ChatCompletionRequest,
    deltas: AsyncIterator[GenerationDelta],
    completion_id: str,
    created: int,
) -> AsyncIterator[ChatCompletionChunk | str]:
    def chunk(choices: list[ChatCompletionChunkChoice], usage: Usage | None = None):
        return ChatCompletionChunk(
            id=completion_id, created=created, model=body.model, choices=choices, usage=usage
        )

    yield chunk(
        [
            ChatCompletionChunkChoice(index=i, delta=ChoiceDelta(role="assistant", content=""))
            for i in range(body.n)
        ]
    )
    template = ContentChunkTemplate(completion_id, created, body.model)
    tally = _UsageTally()
    async with aclosing(deltas):
        async for delta in deltas:
            tally.add(delta)
            finish_reason = delta.finish_reason.value if delta.finish_reason else None
            yield template.render(delta.index, delta.text, finish_reason)
    if body.include_usage:
        yield chunk([], tally.usage())


class _UsageTally:
    """Token usage of a request, from the running counts its deltas carry."""

    def __init__(self) -> None:
        self._prompt_tokens = 0
        self._completion_tokens: dict[int, int] = {}

    def add(self, delta: GenerationDelta) -> GenerationDelta:
        self._prompt_tokens = delta.prompt_tokens
        self._completion_tokens[delta.index] = delta.completion_tokens
        return delta

    def usage(self) -> Usage:
        completion = sum(self._completion_tokens.values())
        return Usage(prompt_tokens=self._prompt_tokens, completion_tokens=completion,
                     total_tokens=self._prompt_tokens + completion)  # fmt: skip


def routes() -> list[BaseRoute]:
    table = [
        ("/models", list_models, ["GET"]),
        ("/models/{model:path}", retrieve_model, ["GET"]),
        ("/chat/completions", create_chat_completion, ["POST"]),
        ("/completions", create_completion, ["POST"]),
    ]
    return [
        Route(prefix + path, endpoint, methods=methods)
        for prefix in ("/v1", "/engines/{engine}/v1")
        for path, endpoint, methods in table
    ]
