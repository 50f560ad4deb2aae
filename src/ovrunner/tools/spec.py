"""What a request offers the model (its tools and how it may use them), what the engine is
asked to enforce (a `CallConstraint`), and what parsing the answer yields (`ToolCallDelta`).

All are plain frozen dataclasses: they cross into the engine process with the request.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class ToolChoice(StrEnum):
    NONE = "none"  # the model answers in text; the tools are not shown to it
    AUTO = "auto"  # text or calls; a call, once opened, is constrained to a tool's schema
    REQUIRED = "required"  # at least one call, from the first token on


@dataclass(frozen=True)
class FunctionTool:
    name: str
    description: str | None = None
    # The JSON schema of the arguments, serialized; an empty object schema when none given.
    parameters: str = '{"type": "object"}'

    def as_openai(self) -> dict[str, Any]:
        """The tool as chat templates (and OpenAI) spell it."""
        function: dict[str, Any] = {"name": self.name, "parameters": json.loads(self.parameters)}
        if self.description:
            function["description"] = self.description
        return {"type": "function", "function": function}


@dataclass(frozen=True)
class ToolSpec:
    """The tools of a request and the client's `tool_choice` / `parallel_tool_calls`."""

    tools: tuple[FunctionTool, ...]
    choice: ToolChoice = ToolChoice.AUTO
    # A named function: the model must call this one (`choice` is then REQUIRED).
    function: str | None = None
    parallel: bool = True

    @property
    def calling(self) -> bool:
        return self.choice is not ToolChoice.NONE and bool(self.tools)

    def callable_tools(self) -> tuple[FunctionTool, ...]:
        if self.function is None:
            return self.tools
        return tuple(t for t in self.tools if t.name == self.function)


@dataclass(frozen=True)
class TaggedSchema:
    """One way to write a call: `begin`, then JSON valid against `schema`, then `end`."""

    begin: str
    schema: str
    end: str


@dataclass(frozen=True)
class CallConstraint:
    """Structural tags for the engine's grammar. With `calls_only` the answer is one or more
    of `tags`, back to back, and nothing else; otherwise free text until one of `triggers`,
    then one of `tags` in full. `stop_after_first` ends the answer after one call."""

    triggers: tuple[str, ...]
    tags: tuple[TaggedSchema, ...]
    calls_only: bool
    stop_after_first: bool
    # Free text up to this marker comes first: the thinking a template has opened.
    after: str | None = None


@dataclass(frozen=True)
class ToolCallDelta:
    """New output of one tool call: its first delta has `id` and `name`; the `arguments`
    fragments of all its deltas, joined, are the call's arguments as a JSON string."""

    index: int
    arguments: str = ""
    id: str | None = None
    name: str | None = None


def new_call_id() -> str:
    return f"call_{secrets.token_hex(12)}"
