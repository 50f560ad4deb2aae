"""OpenAI's Responses API (`/v1/responses`), translated onto the one generation path.

One builder (`_Output`) turns the engine's deltas into the response's output items and the
stream's events, so a whole answer is exactly what its stream ends with. Answers with
`store` (the default) are kept in the bounded `ResponseStore` for `previous_response_id`.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from ovrunner.engines.base import GenerationDelta, GenerationRequest, SamplingParams
from ovrunner.errors import (
    Dialect,
    InvalidValueError,
    NotFoundError,
    OvrunnerError,
    UnsupportedParameterError,
)
from ovrunner.protocol.responses import (
    FunctionCallItem,
    FunctionCallOutputItem,
    InputItem,
    MessageItem,
    NamedFunctionChoice,
    ResponseCreateParams,
)
from ovrunner.response_store import ResponseStore
from ovrunner.routes.answers import unless_disconnected
from ovrunner.routes.body import parse_body
from ovrunner.routes.chat_tools import function_tool, unique_names
from ovrunner.routes.serving import Generation, start_generation
from ovrunner.streaming import sse_response
from ovrunner.tools.spec import ToolChoice, ToolSpec

Item = dict[str, Any]


def _id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


# -- requests ---------------------------------------------------------------------------------


def input_items(body: ResponseCreateParams, store: ResponseStore) -> list[Item]:
    """The whole conversation as items: the previous response's input and output, then
    this request's input."""
    items: list[Item] = []
    if body.previous_response_id is not None:
        previous = store.get(body.previous_response_id)
        if previous is None:
            raise NotFoundError(
                f"no stored response {body.previous_response_id!r} (answers are kept in "
                "memory, a bounded number of them, until the server restarts)",
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
        dumped.setdefault("id", _id("msg" if isinstance(item, MessageItem) else "fc"))
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
            entry = {"id": call.call_id, "type": "function",
                     "function": {"name": call.name, "arguments": call.arguments}}  # fmt: skip
            last = out[-1] if out else None
            if last is not None and last["role"] == "assistant" and "tool_calls" in last:
                last["tool_calls"].append(entry)
            else:
                out.append({"role": "assistant", "content": "", "tool_calls": [entry]})
        elif kind == "function_call_output":
            result = FunctionCallOutputItem.model_validate(raw)
            out.append({"role": "tool", "tool_call_id": result.call_id, "content": result.output})
    return out


def _tool_spec(body: ResponseCreateParams) -> ToolSpec | None:
    choice = body.tool_choice
    if not body.tools:
        if choice not in (None, "none", "auto"):
            raise InvalidValueError("tool_choice names a tool, but the request has no tools",
                                    param="tool_choice")  # fmt: skip
        return None
    tools = tuple(
        function_tool(t.name, t.description, t.parameters, f"tools[{i}].parameters")
        for i, t in enumerate(body.tools)
    )
    names = unique_names(tools, "tools")
    function = None
    if isinstance(choice, NamedFunctionChoice):
        if choice.name not in names:
            raise InvalidValueError(f"tool_choice names {choice.name!r}, which is not in tools",
                                    param="tool_choice")  # fmt: skip
        function, mode = choice.name, ToolChoice.REQUIRED
    else:
        mode = ToolChoice(choice or "auto")
    return ToolSpec(tools, mode, function, body.parallel_tool_calls)


def _json_schema(body: ResponseCreateParams, tools: ToolSpec | None) -> str | None:
    format = body.text.format if body.text is not None else None
    if format is None or format.type == "text":
        return None
    if tools is not None and tools.calling:
        raise UnsupportedParameterError(
            "text.format cannot be combined with tool calls: send tool_choice none",
            param="text.format",
        )
    if format.type == "json_object":
        return json.dumps({"type": "object"})
    if format.schema_ is None:
        raise InvalidValueError("text.format json_schema needs a schema", param="text.format")
    return json.dumps(format.schema_)


def generation_request(body: ResponseCreateParams, items: list[Item]) -> GenerationRequest:
    tools = _tool_spec(body)
    sampling = SamplingParams(
        max_tokens=body.max_output_tokens, temperature=body.temperature, top_p=body.top_p,
        top_k=body.top_k, min_p=body.min_p, seed=body.seed, ignore_eos=body.ignore_eos,
        json_schema=_json_schema(body, tools),
    )  # fmt: skip
    return GenerationRequest(messages=template_messages(body.instructions, items),
                             sampling=sampling, tools=tools)  # fmt: skip


# -- answers ----------------------------------------------------------------------------------


class _Output:
    """The output items of one response, grown from deltas, with the events that grow them."""

    def __init__(self, body: ResponseCreateParams, response_id: str) -> None:
        self.response: dict[str, Any] = {
            "id": response_id, "object": "response", "created_at": int(time.time()),
            "status": "in_progress", "model": body.model, "output": [], "error": None,
            "incomplete_details": None, "instructions": body.instructions,
            "max_output_tokens": body.max_output_tokens, "temperature": body.temperature,
            "top_p": body.top_p, "parallel_tool_calls": body.parallel_tool_calls,
            "tool_choice": body.tool_choice if isinstance(body.tool_choice, str | None)
            else body.tool_choice.model_dump(),
            "tools": [t.model_dump(exclude_none=True) for t in body.tools or []],
            "text": body.text.model_dump(by_alias=True, exclude_none=True) if body.text
            else {"format": {"type": "text"}},
            "previous_response_id": body.previous_response_id, "store": body.store,
            "metadata": body.metadata or {}, "truncation": "disabled", "usage": None,
        }  # fmt: skip
        self._sequence = 0
        self._open: Item | None = None  # the item receiving text now
        self._calls: dict[int, Item] = {}

    def event(self, kind: str, **fields: Any) -> str:
        event = {"type": kind, "sequence_number": self._sequence, **fields}
        self._sequence += 1
        return json.dumps(event, ensure_ascii=False)

    def begin(self) -> list[str]:
        return [self.event("response.created", response=self.response),
                self.event("response.in_progress", response=self.response)]  # fmt: skip

    def add(self, delta: GenerationDelta) -> list[str]:
        events: list[str] = []
        if delta.reasoning:
            events += self._text("reasoning", delta.reasoning)
        if delta.text:
            events += self._text("message", delta.text)
        for call in delta.tool_calls:
            if call.id is not None:
                events += self._close()
                item = {"type": "function_call", "id": _id("fc"), "call_id": call.id,
                        "name": call.name or "", "arguments": "", "status": "in_progress"}  # fmt: skip
                self._calls[call.index] = item
                events += self._add_item(item)
            item = self._calls[call.index]
            if call.arguments:
                item["arguments"] += call.arguments
                events.append(self.event("response.function_call_arguments.delta",
                                         item_id=item["id"], output_index=self._index(item),
                                         delta=call.arguments))  # fmt: skip
        return events

    def _index(self, item: Item) -> int:
        return next(i for i, it in enumerate(self.response["output"]) if it is item)

    def _add_item(self, item: Item) -> list[str]:
        self.response["output"].append(item)
        return [self.event("response.output_item.added", output_index=self._index(item),
                           item=dict(item, content=list(item.get("content", [])))
                           if "content" in item else dict(item))]  # fmt: skip

    def _text(self, kind: str, text: str) -> list[str]:
        events: list[str] = []
        if self._open is None or self._open["type"] != kind:
            events += self._close()
            if kind == "message":
                self._open = {"type": "message", "id": _id("msg"), "status": "in_progress",
                              "role": "assistant", "content": []}  # fmt: skip
                part = {"type": "output_text", "text": "", "annotations": []}
            else:
                self._open = {"type": "reasoning", "id": _id("rs"), "summary": [], "content": []}
                part = {"type": "reasoning_text", "text": ""}
            events += self._add_item(self._open)
            self._open["content"].append(part)
            events.append(self.event("response.content_part.added", item_id=self._open["id"],
                                     output_index=self._index(self._open), content_index=0,
                                     part=dict(part)))  # fmt: skip
        item = self._open
        assert item is not None
        item["content"][0]["text"] += text
        name = (
            "response.output_text.delta" if kind == "message" else "response.reasoning_text.delta"
        )
        extra: dict[str, Any] = {"logprobs": []} if kind == "message" else {}
        events.append(self.event(name, item_id=item["id"], output_index=self._index(item),
                                 content_index=0, delta=text, **extra))  # fmt: skip
        return events

    def _close(self, status: str = "completed") -> list[str]:
        item, self._open = self._open, None
        if item is None:
            return []
        index, part = self._index(item), item["content"][0]
        done = (
            "response.output_text.done"
            if item["type"] == "message"
            else "response.reasoning_text.done"
        )
        extra: dict[str, Any] = {"logprobs": []} if item["type"] == "message" else {}
        if item["type"] == "message":
            item["status"] = status
        return [
            self.event(done, item_id=item["id"], output_index=index, content_index=0,
                       text=part["text"], **extra),
            self.event("response.content_part.done", item_id=item["id"], output_index=index,
                       content_index=0, part=part),
            self.event("response.output_item.done", output_index=index, item=item),
        ]  # fmt: skip

    def finish(self, finish_reason: str | None, generation: Generation) -> list[str]:
        status = "incomplete" if finish_reason == "length" else "completed"
        events = self._close(status)
        for item in self._calls.values():
            item["status"] = status
            index = self._index(item)
            events += [self.event("response.function_call_arguments.done", item_id=item["id"],
                                  output_index=index, name=item["name"],
                                  arguments=item["arguments"]),
                       self.event("response.output_item.done", output_index=index, item=item)]  # fmt: skip
        usage = generation.tally.usage()
        self.response["usage"] = {
            "input_tokens": usage.prompt_tokens, "output_tokens": usage.completion_tokens,
            "total_tokens": usage.total_tokens, "input_tokens_details": {"cached_tokens": 0},
            "output_tokens_details": {"reasoning_tokens": 0},
        }  # fmt: skip
        if finish_reason == "length":
            self.response["status"] = "incomplete"
            self.response["incomplete_details"] = {"reason": "max_output_tokens"}
            return [*events, self.event("response.incomplete", response=self.response)]
        self.response["status"] = "completed"
        return [*events, self.event("response.completed", response=self.response)]

    def fail(self, error: OvrunnerError) -> list[str]:
        self.response["status"] = "failed"
        self.response["error"] = {"code": error.code, "message": error.message}
        return [self.event("response.failed", response=self.response)]


async def _run(output: _Output, generation: Generation, *, streamed: bool) -> AsyncIterator[str]:
    """Every event of the response, from `response.created` to its end. In a stream a
    failure is an event of it (the status is sent already); otherwise it is raised."""
    for event in output.begin():
        yield event
    finish = None
    try:
        async with aclosing(generation.deltas) as deltas:
            async for delta in deltas:
                finish = delta.finish_reason.value if delta.finish_reason else finish
                for event in output.add(delta):
                    yield event
    except OvrunnerError as exc:
        if not streamed:
            raise
        for event in output.fail(exc):
            yield event
        return
    for event in output.finish(finish, generation):
        yield event


async def create_response(request: Request) -> Response:
    body = await parse_body(request, ResponseCreateParams)
    store: ResponseStore = request.app.state.responses
    items = input_items(body, store)
    started = await start_generation(request, body.model, generation_request(body, items))
    output = _Output(body, _id("resp"))

    async def events() -> AsyncIterator[str]:
        async for event in _run(output, started, streamed=body.stream):
            yield event
        if body.store and output.response["status"] != "failed":
            store.put(output.response, items)

    if body.stream:
        grace = request.app.state.settings.shutdown_grace_s
        return sse_response(events(), grace, on_close=started.aclose, dialect=Dialect.RESPONSES)

    async def whole() -> None:
        async for _ in events():
            pass

    try:
        await unless_disconnected(request, whole())
    finally:
        await started.aclose()
    return JSONResponse(output.response)


def _stored(request: Request) -> tuple[ResponseStore, str]:
    store: ResponseStore = request.app.state.responses
    response_id = request.path_params["response_id"]
    if store.get(response_id) is None:
        raise NotFoundError(f"no stored response {response_id!r}", param="response_id")
    return store, response_id


async def retrieve_response(request: Request) -> JSONResponse:
    store, response_id = _stored(request)
    entry = store.get(response_id)
    assert entry is not None
    return JSONResponse(entry.response)


async def delete_response(request: Request) -> JSONResponse:
    store, response_id = _stored(request)
    store.delete(response_id)
    return JSONResponse({"id": response_id, "object": "response", "deleted": True})


async def list_input_items(request: Request) -> JSONResponse:
    store, response_id = _stored(request)
    entry = store.get(response_id)
    assert entry is not None
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
