"""A chat request's tools, from OpenAI's wire shape (and its deprecated `functions`) to the
engine-neutral `ToolSpec`, refusing with a 400 what cannot be honoured; and the answer's
calls back into OpenAI's shape."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from ovrunner.errors import InvalidValueError
from ovrunner.protocol.openai import (
    ChatCompletionRequest,
    ChatTool,
    ChoiceDeltaFunctionCall,
    ChoiceDeltaToolCall,
    FunctionCall,
    FunctionDefinition,
    NamedFunction,
    NamedToolChoice,
    ToolCall,
)
from ovrunner.tools.spec import FunctionTool, ToolCallDelta, ToolChoice, ToolSpec


def tool_spec(body: ChatCompletionRequest) -> ToolSpec | None:
    """The request's tools and how the model may use them; None when it has none."""
    if body.tools is not None and body.functions is not None:
        raise InvalidValueError("send tools or the deprecated functions, not both",
                                param="functions")  # fmt: skip
    deprecated = body.functions is not None or body.function_call is not None
    definitions, param = _definitions(body)
    choice_param = "function_call" if deprecated else "tool_choice"
    choice = body.function_call if deprecated else body.tool_choice
    if not definitions:
        if choice not in (None, "none", "auto"):
            raise InvalidValueError(f"{choice_param} names a tool, but the request has no tools",
                                    param=choice_param)  # fmt: skip
        return None
    tools = tuple(
        function_tool(d.name, d.description, d.parameters, _parameters_param(param, i))
        for i, d in enumerate(definitions)
    )
    names = unique_names(tools, param)
    function = None
    if isinstance(choice, NamedToolChoice | NamedFunction):
        function = choice.function.name if isinstance(choice, NamedToolChoice) else choice.name
        if function not in names:
            raise InvalidValueError(
                f"{choice_param} names the function {function!r}, which is not in {param} "
                f"({', '.join(names)})",
                param=choice_param,
            )
        mode = ToolChoice.REQUIRED
    else:
        mode = ToolChoice(choice or "auto")
    return ToolSpec(tools, mode, function, parallel=body.parallel_tool_calls and not deprecated)


def _definitions(body: ChatCompletionRequest) -> tuple[Sequence[FunctionDefinition], str]:
    if body.functions is not None:
        return body.functions, "functions"
    tools: list[ChatTool] = body.tools or []
    return [t.function for t in tools], "tools"


def _parameters_param(param: str, index: int) -> str:
    if param == "tools":
        return f"{param}[{index}].function.parameters"
    return f"{param}[{index}].parameters"


def function_tool(
    name: str, description: str | None, schema: dict[str, Any] | None, param: str
) -> FunctionTool:
    """A tool of any dialect; its schema must describe an object (the arguments)."""
    if schema is None or schema == {}:
        schema = {"type": "object", "properties": {}}
    elif schema.get("type", "object") != "object":
        raise InvalidValueError(
            f"the parameters of {name!r} must be a JSON schema of type object", param=param
        )
    return FunctionTool(name, description, json.dumps(schema))


def unique_names(tools: Sequence[FunctionTool], param: str) -> list[str]:
    names = [t.name for t in tools]
    duplicate = next((n for n in names if names.count(n) > 1), None)
    if duplicate is not None:
        raise InvalidValueError(f"two tools are named {duplicate!r}", param=param)
    return names


def message_calls(calls: Sequence[tuple[str, str, str]]) -> list[ToolCall] | None:
    """The calls of a whole answer, each `(id, name, arguments)`."""
    if not calls:
        return None
    return [ToolCall(id=i, function=FunctionCall(name=n, arguments=a)) for i, n, a in calls]


def delta_calls(calls: Sequence[ToolCallDelta]) -> list[ChoiceDeltaToolCall] | None:
    """Streamed call fragments: the first of a call has its id, type and name."""
    if not calls:
        return None
    return [
        ChoiceDeltaToolCall(
            index=c.index,
            id=c.id,
            type="function" if c.id is not None else None,
            function=ChoiceDeltaFunctionCall(name=c.name, arguments=c.arguments),
        )
        for c in calls
    ]
