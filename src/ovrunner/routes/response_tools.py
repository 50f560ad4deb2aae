"""The Responses API's tool types as the model sees them, and its calls as the client reads
them: `function` tools as they are; a `namespace`'s tools offered under their own names (a call
names its namespace); a `custom` tool as a function of one string, `input` (its call is a
`custom_tool_call` carrying that text; a regex format constrains it, a Lark grammar is shown
to the model but cannot be enforced here); hosted tools (`web_search`, ...) are OpenAI's
servers' to run, and a local server runs none, so they are not offered (docs/dialects.md)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from ovrunner.errors import InvalidValueError
from ovrunner.protocol.responses import (
    CustomToolParam,
    FunctionToolParam,
    HostedToolParam,
    NamespaceToolParam,
    ResponseCreateParams,
)
from ovrunner.routes.chat_tools import function_tool, unique_names
from ovrunner.tools.spec import FunctionTool

CUSTOM_INPUT = "input"  # the one argument a custom tool's function takes


@dataclass(frozen=True)
class ResponseTools:
    """The functions the model is offered, and how each call is reported."""

    functions: tuple[FunctionTool, ...] = ()
    custom: frozenset[str] = frozenset()  # names whose calls are `custom_tool_call`s
    namespaces: dict[str, str] = field(default_factory=dict)  # tool name -> its namespace
    hosted: tuple[str, ...] = ()  # the hosted tools asked for, none of them offered

    @classmethod
    def of(cls, body: ResponseCreateParams) -> ResponseTools:
        functions: list[FunctionTool] = []
        custom: set[str] = set()
        namespaces: dict[str, str] = {}
        hosted: list[str] = []
        for i, tool in enumerate(body.tools or []):
            if isinstance(tool, HostedToolParam):
                hosted.append(tool.type)
                continue
            inner = tool.tools if isinstance(tool, NamespaceToolParam) else [tool]
            for j, member in enumerate(inner):
                param = f"tools[{i}]" + (f".tools[{j}]" if tool is not member else "")
                functions.append(_function(member, param))
                if isinstance(member, CustomToolParam):
                    custom.add(member.name)
                if isinstance(tool, NamespaceToolParam):
                    namespaces[member.name] = tool.name
        unique_names(functions, "tools")
        return cls(tuple(functions), frozenset(custom), namespaces, tuple(hosted))

    def call_item(self, call_id: str, name: str, item_id: str) -> dict[str, Any]:
        """The output item a call starts as; its arguments or input grow after."""
        if name in self.custom:
            return {"type": "custom_tool_call", "id": item_id, "call_id": call_id,
                    "name": name, "input": "", "status": "in_progress"}  # fmt: skip
        item = {"type": "function_call", "id": item_id, "call_id": call_id, "name": name,
                "arguments": "", "status": "in_progress"}  # fmt: skip
        if name in self.namespaces:
            item["namespace"] = self.namespaces[name]
        return item


def _function(tool: FunctionToolParam | CustomToolParam, param: str) -> FunctionTool:
    if isinstance(tool, FunctionToolParam):
        return function_tool(tool.name, tool.description, tool.parameters, f"{param}.parameters")
    text: dict[str, Any] = {"type": "string", "description": "the tool's input, as free text"}
    description = tool.description or ""
    format = tool.format
    if format is not None and format.type == "grammar":
        if not format.definition:
            raise InvalidValueError("a grammar format needs its definition",
                                    param=f"{param}.format.definition")  # fmt: skip
        if format.syntax == "regex":
            text["pattern"] = format.definition  # enforced wherever calls are constrained
        else:
            description += f"\n\nThe input must follow this Lark grammar:\n{format.definition}"
    schema = {"type": "object", "properties": {CUSTOM_INPUT: text}, "required": [CUSTOM_INPUT],
              "additionalProperties": False}  # fmt: skip
    return function_tool(tool.name, description or None, schema, param)


def custom_input(arguments: str) -> str:
    """A custom tool's input from the arguments its function was called with."""
    try:
        value = json.loads(arguments, strict=False)  # raw newlines: a pattern lets them through
    except json.JSONDecodeError:
        return arguments
    if isinstance(value, dict) and isinstance(value.get(CUSTOM_INPUT), str):
        return value[CUSTOM_INPUT]
    return arguments


def custom_arguments(text: str) -> str:
    """The arguments a custom tool's call is shown to the model with again."""
    return json.dumps({CUSTOM_INPUT: text}, ensure_ascii=False)
