"""The OpenAI routes: models and chat completions (also under `/engines/{engine}/v1`)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ovrunner.engines.base import GenerationRequest, ModelRef, OutputConstraint, SamplingParams
from ovrunner.errors import InvalidValueError, ModelNotFoundError, UnsupportedParameterError
from ovrunner.lifecycle import parse_keep_alive
from ovrunner.protocol.openai import (
    ChatCompletion,
    ChatCompletionChoice,
    ChatCompletionMessage,
    ChatCompletionRequest,
    Completion,
    CompletionChoice,
    CompletionRequest,
    Model,
    ModelList,
    new_id,
    now,
    thinking_for,
)
from ovrunner.routes import answers
from ovrunner.routes.body import parse_body
from ovrunner.routes.chat_tools import message_calls, tool_spec
from ovrunner.routes.constraints import output_constraint
from ovrunner.routes.serving import start_generation
from ovrunner.store import ModelStore

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
        info = engine.describe(model)
        architecture, window = info.architecture, info.context_window
    except Exception:  # noqa: BLE001 - a model list never fails on one unreadable model
        architecture, window = None, None
    return Model(id=model.id, created=store.created(model.id), owned_by=OWNER,
                 architecture=architecture, mode=model.mode.value, context_window=window,
                 max_model_len=window)  # fmt: skip


# What a chat template is rendered with already: a client's variable must not replace it.
_TEMPLATE_OWN = frozenset({"messages", "tools", "add_generation_prompt", "bos_token", "eos_token"})


def _template_kwargs(body: ChatCompletionRequest) -> dict[str, Any] | None:
    """`chat_template_kwargs`, and `reasoning_effort` as templates that read it (gpt-oss's)
    take it."""
    kwargs = dict(body.chat_template_kwargs or {})
    for key in kwargs:
        if key in _TEMPLATE_OWN:
            raise InvalidValueError(f"{key!r} is the chat template's own variable",
                                    param=f"chat_template_kwargs.{key}")  # fmt: skip
    if body.reasoning_effort is not None:
        kwargs.setdefault("reasoning_effort", body.reasoning_effort)
    return kwargs or None


def _sampling(
    body: ChatCompletionRequest | CompletionRequest,
    *,
    logprobs: bool,
    constraint: OutputConstraint | None,
) -> SamplingParams:
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
        constraint=constraint,
        logprobs=logprobs,
    )


def _refuse_logit_bias(body: ChatCompletionRequest | CompletionRequest) -> None:
    if body.logit_bias:
        raise UnsupportedParameterError(
            "logit_bias is not supported: OpenVINO GenAI has no per-token bias (to keep "
            "generating past the end of text, send ignore_eos: true)",
            param="logit_bias",
        )


def _keep_alive(body: ChatCompletionRequest | CompletionRequest) -> float | None:
    return None if body.keep_alive is None else parse_keep_alive(body.keep_alive)


async def create_chat_completion(request: Request) -> Response:
    body = await parse_body(request, ChatCompletionRequest)
    _refuse_logit_bias(body)
    if body.top_logprobs:
        raise UnsupportedParameterError(
            "top_logprobs > 0 is not supported: this engine reports only the sampled token's "
            "log probability",
            param="top_logprobs",
        )
    constraint, tools = output_constraint(body), tool_spec(body)
    if constraint is not None and tools is not None and tools.calling:
        raise UnsupportedParameterError(
            f"{constraint.param} cannot be combined with tool calls: send tool_choice none, or "
            "describe the answer's shape as a tool",
            param=constraint.param,
        )
    generation = GenerationRequest(
        messages=[m.for_template() for m in body.messages],
        sampling=_sampling(body, logprobs=bool(body.logprobs), constraint=constraint),
        tools=tools,
        thinking=thinking_for(body.reasoning_effort),
        template_kwargs=_template_kwargs(body),
    )
    started = await start_generation(request, body.model, generation,
                                     keep_alive=_keep_alive(body))  # fmt: skip
    completion_id, created = new_id("chatcmpl"), now()
    if body.stream:
        return answers.streamed(request, started,
                                answers.chat_chunks(body, started, completion_id, created))  # fmt: skip
    result = await answers.collect_whole(request, started, body.n)
    choices = [
        ChatCompletionChoice(
            index=i,
            message=ChatCompletionMessage(
                content=choice.text if choice.text or not choice.calls else None,
                reasoning_content=choice.reasoning,
                tool_calls=message_calls(choice.tool_calls()),
            ),
            finish_reason=choice.finish_reason,
            logprobs=answers.chat_logprobs(choice.logprobs) if body.logprobs else None,
        )
        for i, choice in enumerate(result.choices)
    ]
    return _json(ChatCompletion(id=completion_id, created=created, model=body.model,
                                choices=choices, usage=result.usage))  # fmt: skip


async def create_completion(request: Request) -> Response:
    body = await parse_body(request, CompletionRequest)
    _refuse_logit_bias(body)
    if body.echo or body.suffix:
        raise UnsupportedParameterError(
            "echo and suffix are not supported", param="echo" if body.echo else "suffix"
        )
    if body.logprobs:
        raise UnsupportedParameterError(
            "logprobs > 0 is not supported: this engine reports only the sampled token's "
            "log probability (send logprobs: 0)",
            param="logprobs",
        )
    sampling = _sampling(body, logprobs=body.logprobs is not None,
                         constraint=output_constraint(body))  # fmt: skip
    generation = GenerationRequest(prompt=body.prompt, sampling=sampling)
    started = await start_generation(request, body.model, generation,
                                     keep_alive=_keep_alive(body))  # fmt: skip
    completion_id, created = new_id("cmpl"), now()
    if body.stream:
        return answers.streamed(request, started,
                                answers.completion_chunks(body, started, completion_id, created))  # fmt: skip
    result = await answers.collect_whole(request, started, body.n)
    choices = [
        CompletionChoice(
            index=i,
            text=choice.text,
            finish_reason=choice.finish_reason,
            logprobs=(
                answers.completion_logprobs(choice.logprobs) if body.logprobs is not None else None
            ),  # fmt: skip
        )
        for i, choice in enumerate(result.choices)
    ]
    return _json(Completion(id=completion_id, created=created, model=body.model,
                            choices=choices, usage=result.usage))  # fmt: skip


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
