"""OpenAI's Responses API (`/v1/responses`), translated onto the one generation path.

One builder (`ResponseOutput`) turns the engine's deltas into the response's output items and the
stream's events, so a whole answer is exactly what its stream ends with. Answers with
`store` (the default) are kept in the Responses store (`response_store`, a database) for
`previous_response_id`, committed before the answer's last byte is sent.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from ovrunner.engines.base import GenerationRequest, OutputConstraint, SamplingParams
from ovrunner.errors import (
    Dialect,
    InvalidValueError,
    NotFoundError,
    OvrunnerError,
    UnsupportedParameterError,
)
from ovrunner.protocol.openai import thinking_for
from ovrunner.protocol.responses import (
    CustomToolCallItem,
    CustomToolCallOutputItem,
    FunctionCallItem,
    FunctionCallOutputItem,
    InputItem,
    MessageItem,
    NamedFunctionChoice,
    ResponseCreateParams,
)
from ovrunner.response_store import ResponseStore, StoredResponse
from ovrunner.routes.body import parse_body
from ovrunner.routes.response_events import Item, ResponseOutput, new_id
from ovrunner.routes.response_tools import ResponseTools, custom_arguments
from ovrunner.routes.serving import Generation, start_generation, unless_disconnected
from ovrunner.streaming import sse_response
from ovrunner.tools.spec import ToolChoice, ToolSpec

# -- requests ---------------------------------------------------------------------------------


async def input_items(body: ResponseCreateParams, store: ResponseStore) -> list[Item]:
    """The whole conversation as items: the previous response's input and output, then
    this request's input."""
    items: list[Item] = []
    if body.previous_response_id is not None:
        previous = await store.get(body.previous_response_id)
        if previous is None:
            raise NotFoundError(
                f"no stored response {body.previous_response_id!r} (a bounded number of "
                "answers are kept, for `responses_kept_days`; `store: false` keeps none)",
                param="previous_response_id",
            )
        items += previous.input_items + previous.response["output"]
    given: list[InputItem] = (
        [MessageItem(role="user", content=body.input)]
        if isinstance(body.input, str)
        else body.input
    )
    for item in given:
        dumped = item.model_dump(exclude_none=True)
        dumped.setdefault("id", new_id("msg" if isinstance(item, MessageItem) else "fc"))
        items.append(dumped)
    return items


def template_messages(instructions: str | None, items: list[Item]) -> list[dict[str, Any]]:
    """Items as the chat templates' messages: calls join their assistant turn, results
    become `tool` turns; reasoning items are not shown to the model again."""
    out: list[dict[str, Any]] = (
        [{"role": "system", "content": instructions}] if instructions else []
    )
    for raw in items:
        kind = raw.get("type", "message")
        if kind == "message":
            item = MessageItem.model_validate(raw)
            role = "system" if item.role == "developer" else item.role
            out.append({"role": role, "content": item.text()})
        elif kind == "function_call":
            call = FunctionCallItem.model_validate(raw)
            _join_call(out, {"id": call.call_id, "type": "function",
                             "function": {"name": call.name, "arguments": call.arguments}})  # fmt: skip
        elif kind == "custom_tool_call":
            custom = CustomToolCallItem.model_validate(raw)
            _join_call(out, {"id": custom.call_id, "type": "function",
                             "function": {"name": custom.name,
                                          "arguments": custom_arguments(custom.input)}})  # fmt: skip
        elif kind == "function_call_output":
            result = FunctionCallOutputItem.model_validate(raw)
            out.append({"role": "tool", "tool_call_id": result.call_id, "content": result.output})
        elif kind == "custom_tool_call_output":
            output = CustomToolCallOutputItem.model_validate(raw)
            out.append({"role": "tool", "tool_call_id": output.call_id, "content": output.output})
    return out


def _join_call(out: list[dict[str, Any]], entry: dict[str, Any]) -> None:
    """A call joins the assistant turn before it, or starts one."""
    last = out[-1] if out else None
    if last is not None and last["role"] == "assistant" and "tool_calls" in last:
        last["tool_calls"].append(entry)
    else:
        out.append({"role": "assistant", "content": "", "tool_calls": [entry]})


def _tool_spec(body: ResponseCreateParams) -> ToolSpec | None:
    choice = body.tool_choice
    if not body.tools:
        if choice not in (None, "none", "auto"):
            raise InvalidValueError("tool_choice names a tool, but the request has no tools",
                                    param="tool_choice")  # fmt: skip
        return None
    tools = ResponseTools.of(body).functions
    if not tools:  # only hosted tools, which a local server does not run
        return None
    names = [tool.name for tool in tools]
    function = None
    if isinstance(choice, NamedFunctionChoice):
        if choice.name not in names:
            raise InvalidValueError(f"tool_choice names {choice.name!r}, which is not in tools",
                                    param="tool_choice")  # fmt: skip
        function, mode = choice.name, ToolChoice.REQUIRED
    else:
        mode = ToolChoice(choice or "auto")
    return ToolSpec(tools, mode, function, body.parallel_tool_calls)


def _constraint(body: ResponseCreateParams, tools: ToolSpec | None) -> OutputConstraint | None:
    format = body.text.format if body.text is not None else None
    if format is None or format.type == "text":
        return None
    if tools is not None and tools.calling:
        raise UnsupportedParameterError(
            "text.format cannot be combined with tool calls: send tool_choice none",
            param="text.format",
        )
    if format.type == "json_object":
        return OutputConstraint.json_schema({"type": "object"}, "text.format")
    if format.schema_ is None:
        raise InvalidValueError("text.format json_schema needs a schema", param="text.format")
    return OutputConstraint.json_schema(format.schema_, "text.format")


def generation_request(body: ResponseCreateParams, items: list[Item]) -> GenerationRequest:
    tools = _tool_spec(body)
    sampling = SamplingParams(
        max_tokens=body.max_output_tokens, temperature=body.temperature, top_p=body.top_p,
        top_k=body.top_k, min_p=body.min_p, seed=body.seed, ignore_eos=body.ignore_eos,
        constraint=_constraint(body, tools),
    )  # fmt: skip
    effort = body.reasoning.effort if body.reasoning is not None else None
    return GenerationRequest(messages=template_messages(body.instructions, items),
                             sampling=sampling, tools=tools, thinking=thinking_for(effort),
                             template_kwargs={"reasoning_effort": effort} if effort else None)  # fmt: skip


# -- answers ----------------------------------------------------------------------------------


async def _run(
    output: ResponseOutput,
    generation: Generation,
    *,
    streamed: bool,
    keep: Callable[[], Awaitable[None]] | None,
) -> AsyncIterator[str]:
    """Every event of the response, from `response.created` to its end. In a stream a
    failure is an event of it (the status is sent already); otherwise it is raised. `keep`
    stores the finished answer before its last events are sent: once a client has the whole
    answer, it is stored, whatever happens to this process next."""
    for event in output.begin():
        yield event
    finish = None
    try:
        async with aclosing(generation.deltas) as deltas:
            async for delta in deltas:
                finish = delta.finish_reason.value if delta.finish_reason else finish
                for event in output.add(delta):
                    yield event
        last = output.finish(finish, generation)
        if keep is not None:
            await keep()
    except OvrunnerError as exc:
        if not streamed:
            raise
        for event in output.fail(exc):
            yield event
        return
    for event in last:
        yield event


async def create_response(request: Request) -> Response:
    body = await parse_body(request, ResponseCreateParams)
    store: ResponseStore = request.app.state.responses
    items = await input_items(body, store)
    started = await start_generation(request, body.model, generation_request(body, items))
    output = ResponseOutput(body, new_id("resp"))

    async def keep() -> None:
        await store.put(output.response, items)

    events = _run(output, started, streamed=body.stream, keep=keep if body.store else None)
    if body.stream:
        grace = request.app.state.settings.shutdown_grace_s
        return sse_response(events, grace, on_close=started.aclose, dialect=Dialect.RESPONSES)

    async def whole() -> None:
        async for _ in events:
            pass

    try:
        await unless_disconnected(request, whole())
    finally:
        await started.aclose()
    return JSONResponse(output.response)


async def _stored(request: Request) -> tuple[ResponseStore, str, StoredResponse]:
    store: ResponseStore = request.app.state.responses
    response_id = request.path_params["response_id"]
    entry = await store.get(response_id)
    if entry is None:
        raise NotFoundError(f"no stored response {response_id!r}", param="response_id")
    return store, response_id, entry


async def retrieve_response(request: Request) -> JSONResponse:
    _, _, entry = await _stored(request)
    return JSONResponse(entry.response)


async def delete_response(request: Request) -> JSONResponse:
    store, response_id, _ = await _stored(request)
    await store.delete(response_id)
    return JSONResponse({"id": response_id, "object": "response", "deleted": True})


async def list_input_items(request: Request) -> JSONResponse:
    _, _, entry = await _stored(request)
    # Newest first unless asked otherwise, as OpenAI lists them.
    ascending = request.query_params.get("order", "desc") == "asc"
    data = entry.input_items if ascending else entry.input_items[::-1]
    return JSONResponse({"object": "list", "data": data, "has_more": False,
                         "first_id": data[0]["id"] if data else None,
                         "last_id": data[-1]["id"] if data else None})  # fmt: skip


def routes() -> list[BaseRoute]:
    return [
        Route("/v1/responses", create_response, methods=["POST"]),
        Route("/v1/responses/{response_id}", retrieve_response, methods=["GET"]),
        Route("/v1/responses/{response_id}", delete_response, methods=["DELETE"]),
        Route("/v1/responses/{response_id}/input_items", list_input_items, methods=["GET"]),
    ]
