"""Anthropic's Messages API (`/v1/messages`, `/v1/messages/count_tokens`), translated onto
the one generation path: the same validation, admission, cancellation and tool calling as
chat completions, with Anthropic's request, answer, stream events and error shape."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ovrunner.engines.base import GenerationRequest, OutputConstraint, SamplingParams
from ovrunner.errors import Dialect, InvalidValueError, UnsupportedParameterError
from ovrunner.lifecycle import Lifecycle
from ovrunner.protocol.anthropic import (
    ContentBlockDelta,
    ContentBlockStart,
    ContentBlockStop,
    CountTokensParams,
    DeltaUsage,
    InputJsonDelta,
    Message,
    MessageCreateParams,
    MessageDelta,
    MessageDeltaBody,
    MessageParam,
    MessageStart,
    MessageStop,
    OutputBlock,
    OutputText,
    OutputThinking,
    OutputToolUse,
    Ping,
    StopReason,
    TextDelta,
    ThinkingDelta,
    TokenCount,
    Tool,
    ToolResultBlock,
    ToolUseBlock,
    Usage,
    new_message_id,
)
from ovrunner.protocol.anthropic import (
    ToolChoice as AnthropicToolChoice,
)
from ovrunner.routes import answers
from ovrunner.routes.body import parse_body
from ovrunner.routes.chat_tools import function_tool, unique_names
from ovrunner.routes.serving import Generation, start_generation
from ovrunner.streaming import sse_response
from ovrunner.tools.spec import ToolChoice, ToolSpec
from ovrunner.tools.text import held_prefix

_STOP_REASONS: dict[str | None, StopReason] = {
    "length": "max_tokens", "tool_calls": "tool_use", "stop": "end_turn", None: "end_turn",
}  # fmt: skip


# -- requests ---------------------------------------------------------------------------------


def template_messages(system: str | None, messages: list[MessageParam]) -> list[dict[str, Any]]:
    """Anthropic turns as the chat templates' messages: `tool_use` blocks become the
    assistant's `tool_calls`, `tool_result` blocks `tool` turns, a `system` turn (Claude
    Code's, anywhere in the conversation) a system message where it stands; thinking is not
    resent."""
    out: list[dict[str, Any]] = [{"role": "system", "content": system}] if system else []
    for i, message in enumerate(messages):
        if isinstance(message.content, str):
            out.append({"role": message.role, "content": message.content})
            continue
        texts, calls, results = [], [], []
        for j, block in enumerate(message.content):
            wrong_turn = (isinstance(block, ToolUseBlock) and message.role != "assistant") or (
                isinstance(block, ToolResultBlock) and message.role != "user"
            )
            if wrong_turn:
                raise InvalidValueError(
                    f"a {block.type} block cannot be in a {message.role} turn",
                    param=f"messages[{i}].content[{j}]",
                )
            if isinstance(block, ToolUseBlock):
                arguments = json.dumps(block.input, ensure_ascii=False)
                calls.append({"id": block.id, "type": "function",
                              "function": {"name": block.name, "arguments": arguments}})  # fmt: skip
            elif isinstance(block, ToolResultBlock):
                results.append({"role": "tool", "tool_call_id": block.tool_use_id,
                                "content": block.text()})  # fmt: skip
            elif block.type == "text":
                texts.append(block.text)
        if message.role == "system":
            out.append({"role": "system", "content": "".join(texts)})
        elif message.role == "assistant":
            turn: dict[str, Any] = {"role": "assistant", "content": "".join(texts)}
            if calls:
                turn["tool_calls"] = calls
            out.append(turn)
        else:
            out.extend(results)
            if texts or not results:
                out.append({"role": "user", "content": "".join(texts)})
    return out


def tool_spec(tools: list[Tool] | None, choice: AnthropicToolChoice | None) -> ToolSpec | None:
    if not tools:
        if choice is not None and choice.type in ("any", "tool"):
            raise InvalidValueError("tool_choice needs tools", param="tool_choice")
        return None
    offered = tuple(
        function_tool(t.name, t.description, t.input_schema, f"tools[{i}].input_schema")
        for i, t in enumerate(tools)
    )
    names = unique_names(offered, "tools")
    kind = choice.type if choice is not None else "auto"
    function = None
    if kind == "tool":
        if choice is None or choice.name not in names:
            raise InvalidValueError(
                f"tool_choice names the tool {getattr(choice, 'name', None)!r}, which is not "
                f"in tools ({', '.join(names)})",
                param="tool_choice.name",
            )
        function = choice.name
    mode = {"auto": ToolChoice.AUTO, "any": ToolChoice.REQUIRED, "tool": ToolChoice.REQUIRED,
            "none": ToolChoice.NONE}[kind]  # fmt: skip
    parallel = not (choice is not None and choice.disable_parallel_tool_use)
    return ToolSpec(offered, mode, function, parallel)


def generation_request(body: MessageCreateParams) -> GenerationRequest:
    output_format = body.output_config.format if body.output_config else None
    tools = tool_spec(body.tools, body.tool_choice)
    if output_format is not None and tools is not None and tools.calling:
        raise UnsupportedParameterError(
            "output_config.format cannot be combined with tool use: send tool_choice none",
            param="output_config.format",
        )
    sampling = SamplingParams(
        constraint=None
        if output_format is None
        else OutputConstraint.json_schema(output_format.schema_, "output_config.format"),
        max_tokens=body.max_tokens,
        temperature=body.temperature,
        top_p=body.top_p,
        top_k=body.top_k,
        min_p=body.min_p,
        seed=body.seed,
        repetition_penalty=body.repetition_penalty,
        ignore_eos=body.ignore_eos,
        stop=tuple(body.stop_sequences or ()),
        keep_stop=bool(body.stop_sequences),
    )
    return GenerationRequest(
        messages=template_messages(body.system_text(), body.messages),
        sampling=sampling,
        tools=tools,
        # Honoured by a reasoning model's template (`enable_thinking`), whose thinking then
        # arrives as thinking blocks; a model that does not think is not changed by it.
        thinking=None if body.thinking is None else body.thinking.type != "disabled",
    )


# -- stop sequences ---------------------------------------------------------------------------


class StopSequenceCut:
    """Cuts the stop sequence that ended the answer off its text and says which it was.

    The engine leaves the matched stop string in the text (`keep_stop`), since Anthropic
    reports it; text that could be the start of one is held until the next text decides.
    """

    def __init__(self, stops: list[str] | None) -> None:
        self._stops = [s for s in stops or () if s]
        self._buffer = ""
        self.matched: str | None = None

    def feed(self, text: str) -> str:
        if not self._stops or self.matched is not None:
            return "" if self.matched is not None else text
        self._buffer += text
        found = [(self._buffer.find(s), s) for s in self._stops if s in self._buffer]
        if found:
            at, self.matched = min(found)
            out, self._buffer = self._buffer[:at], ""
            return out
        held = max(held_prefix(self._buffer, s) for s in self._stops)
        out = self._buffer[: len(self._buffer) - held]
        self._buffer = self._buffer[len(out) :]
        return out

    def finish(self) -> str:
        rest, self._buffer = self._buffer, ""
        return "" if self.matched is not None else rest


def stop_reason(finish: str | None, cut: StopSequenceCut) -> StopReason:
    if cut.matched is not None and finish != "tool_calls":
        return "stop_sequence"
    return _STOP_REASONS.get(finish, "end_turn")


# -- answers ----------------------------------------------------------------------------------


def _json(model: BaseModel) -> Response:
    return Response(model.model_dump_json(), media_type="application/json")


async def create_message(request: Request) -> Response:
    body = await parse_body(request, MessageCreateParams)
    started = await start_generation(request, body.model, generation_request(body))
    message_id = new_message_id()
    if body.stream:
        grace = request.app.state.settings.shutdown_grace_s
        return sse_response(_events(body, started, message_id), grace,
                            on_close=started.aclose, dialect=Dialect.ANTHROPIC)  # fmt: skip
    result = await answers.collect_whole(request, started, 1)
    choice = result.choices[0]
    cut = StopSequenceCut(body.stop_sequences)
    text = cut.feed(choice.text) + cut.finish()
    content: list[OutputBlock] = []
    if choice.reasoning:
        content.append(OutputThinking(thinking=choice.reasoning))
    if text:
        content.append(OutputText(text=text))
    for call_id, name, arguments in choice.tool_calls():
        content.append(OutputToolUse(id=call_id, name=name, input=_tool_input(arguments)))
    usage = Usage(input_tokens=result.usage.prompt_tokens,
                  output_tokens=result.usage.completion_tokens)  # fmt: skip
    return _json(Message(id=message_id, model=body.model, content=content,
                         stop_reason=stop_reason(choice.finish_reason, cut),
                         stop_sequence=cut.matched, usage=usage))  # fmt: skip


def _tool_input(arguments: str) -> dict[str, Any]:
    """A call's arguments as an object; a call cut short by `max_tokens` keeps its text."""
    try:
        value = json.loads(arguments)
    except json.JSONDecodeError:
        return {"_incomplete_arguments": arguments}
    return value if isinstance(value, dict) else {"value": value}


class _Blocks:
    """The content blocks of a streamed message: one open at a time, in order."""

    def __init__(self) -> None:
        self.index = -1
        self.kind: str | None = None

    def open(self, block: OutputBlock) -> list[BaseModel]:
        events: list[BaseModel] = self.close()
        self.index += 1
        self.kind = block.type
        events.append(ContentBlockStart(index=self.index, content_block=block))
        return events

    def close(self) -> list[BaseModel]:
        if self.kind is None:
            return []
        self.kind = None
        return [ContentBlockStop(index=self.index)]

    def delta(self, kind: str, delta: TextDelta | ThinkingDelta) -> list[BaseModel]:
        events = [] if self.kind == kind else self.open(
            OutputText(text="") if kind == "text" else OutputThinking(thinking="")
        )  # fmt: skip
        return [*events, ContentBlockDelta(index=self.index, delta=delta)]


async def _events(body: MessageCreateParams, generation: Generation,
                  message_id: str) -> AsyncIterator[BaseModel]:  # fmt: skip
    usage = Usage(input_tokens=generation.prompt_tokens, output_tokens=0)
    yield MessageStart(message=Message(id=message_id, model=body.model, content=[], usage=usage))
    yield Ping()
    blocks, cut = _Blocks(), StopSequenceCut(body.stop_sequences)
    finish: str | None = None
    async with aclosing(generation.deltas) as deltas:
        async for delta in deltas:
            events: list[BaseModel] = []
            if delta.reasoning:
                events += blocks.delta("thinking", ThinkingDelta(thinking=delta.reasoning))
            text = cut.feed(delta.text)
            if delta.finish_reason is not None:
                text += cut.finish()
                finish = delta.finish_reason.value
            if text:
                events += blocks.delta("text", TextDelta(text=text))
            for call in delta.tool_calls:
                if call.id is not None:
                    events += blocks.open(OutputToolUse(id=call.id, name=call.name or "", input={}))
                if call.arguments:
                    delta_json = InputJsonDelta(partial_json=call.arguments)
                    events.append(ContentBlockDelta(index=blocks.index, delta=delta_json))
            for event in events:
                yield event
    for event in blocks.close():
        yield event
    yield MessageDelta(
        delta=MessageDeltaBody(stop_reason=stop_reason(finish, cut), stop_sequence=cut.matched),
        usage=DeltaUsage(output_tokens=generation.tally.usage().completion_tokens),
    )
    yield MessageStop()


async def count_tokens(request: Request) -> Response:
    body = await parse_body(request, CountTokensParams)
    generation = GenerationRequest(
        messages=template_messages(body.system_text(), body.messages),
        tools=tool_spec(body.tools, None),
    )
    lifecycle: Lifecycle = request.app.state.lifecycle
    lifecycle.resolve(body.model)
    lease = await lifecycle.acquire(body.model)
    try:
        tokens = await lease.runner.count_prompt_tokens(generation)
    finally:
        lease.release()
    return _json(TokenCount(input_tokens=tokens))


def routes() -> list[BaseRoute]:
    return [
        Route("/v1/messages", create_message, methods=["POST"]),
        Route("/v1/messages/count_tokens", count_tokens, methods=["POST"]),
    ]
