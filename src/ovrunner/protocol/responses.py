"""OpenAI Responses API request models, named as the `openai` SDK names them. The answers
(the response object and its stream events) are built in `routes/responses.py`."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ovrunner.protocol.openai import (
    FUNCTION_NAME,
    MAX_MESSAGES,
    MAX_TOKEN_COUNT,
    MAX_TOOLS,
    ReasoningEffort,
)

_Open = ConfigDict(extra="allow", allow_inf_nan=False)


class InputText(BaseModel):
    model_config = _Open
    # `output_text` appears when a client sends an earlier answer back as input.
    type: Literal["input_text", "output_text"]
    text: str


class MessageItem(BaseModel):
    model_config = _Open
    type: Literal["message"] = "message"
    role: Literal["user", "assistant", "system", "developer"]
    content: str | list[InputText]
    id: str | None = None

    def text(self) -> str:
        return (
            self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)
        )


class FunctionCallItem(BaseModel):
    model_config = _Open
    type: Literal["function_call"]
    call_id: str = Field(max_length=256)
    name: str = Field(max_length=64)
    arguments: str
    id: str | None = None


class FunctionCallOutputItem(BaseModel):
    model_config = _Open
    type: Literal["function_call_output"]
    call_id: str = Field(max_length=256)
    output: str
    id: str | None = None


class CustomToolCallItem(BaseModel):
    """A call of a `custom` tool: free-form `input`, not JSON arguments."""

    model_config = _Open
    type: Literal["custom_tool_call"]
    call_id: str = Field(max_length=256)
    name: str = Field(max_length=64)
    input: str
    id: str | None = None


class CustomToolCallOutputItem(BaseModel):
    model_config = _Open
    type: Literal["custom_tool_call_output"]
    call_id: str = Field(max_length=256)
    output: str
    id: str | None = None


class ReasoningItem(BaseModel):
    """An earlier answer's reasoning sent back: not shown to the model again."""

    model_config = _Open
    type: Literal["reasoning"]


InputItem = (
    FunctionCallItem
    | FunctionCallOutputItem
    | CustomToolCallItem
    | CustomToolCallOutputItem
    | ReasoningItem
    | MessageItem
)


class FunctionToolParam(BaseModel):
    model_config = _Open
    type: Literal["function"]
    name: str = Field(pattern=FUNCTION_NAME)
    description: str | None = None  # bounded by the body cap only, as clients need
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class CustomToolFormat(BaseModel):
    model_config = _Open
    type: Literal["text", "grammar"]
    syntax: Literal["lark", "regex"] | None = None
    definition: str | None = None


class CustomToolParam(BaseModel):
    """A tool whose input is free-form text (Codex's `apply_patch`), optionally a grammar's."""

    model_config = _Open
    type: Literal["custom"]
    name: str = Field(pattern=FUNCTION_NAME)
    description: str | None = None
    format: CustomToolFormat | None = None


class NamespaceToolParam(BaseModel):
    """A group of tools under one name (Codex's sub-agent and MCP tools)."""

    model_config = _Open
    type: Literal["namespace"]
    name: str = Field(pattern=FUNCTION_NAME)
    description: str | None = None
    tools: list[FunctionToolParam | CustomToolParam] = Field(max_length=MAX_TOOLS)


# Tools OpenAI's servers run themselves; a local server has none of them (docs/dialects.md).
HOSTED_TOOLS = ("web_search", "web_search_preview", "file_search", "code_interpreter",
                "image_generation", "computer_use_preview", "mcp", "tool_search")  # fmt: skip


class HostedToolParam(BaseModel):
    model_config = _Open
    type: Literal[
        "web_search", "web_search_preview", "file_search", "code_interpreter",
        "image_generation", "computer_use_preview", "mcp", "tool_search",
    ]  # fmt: skip


ToolParam = Annotated[
    FunctionToolParam | CustomToolParam | NamespaceToolParam | HostedToolParam,
    Field(discriminator="type"),
]


class NamedFunctionChoice(BaseModel):
    model_config = _Open
    type: Literal["function", "custom"]  # a custom tool is named as Codex names it
    name: str


class TextFormat(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)
    type: Literal["text", "json_object", "json_schema"]
    name: str | None = None
    schema_: dict[str, Any] | None = Field(None, alias="schema")
    strict: bool | None = None


class TextConfig(BaseModel):
    model_config = _Open
    format: TextFormat | None = None


class ReasoningParam(BaseModel):
    model_config = _Open
    effort: ReasoningEffort | None = None  # `summary`: accepted; thinking comes whole


class ResponseCreateParams(BaseModel):
    model_config = _Open
    model: str
    # The bound is on the items: a text input is as long as the body cap lets it be.
    input: str | Annotated[list[InputItem], Field(max_length=MAX_MESSAGES)]
    instructions: str | None = None
    max_output_tokens: int | None = Field(None, ge=1, le=MAX_TOKEN_COUNT)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    text: TextConfig | None = None
    stream: bool = False
    store: bool = True
    previous_response_id: str | None = Field(None, max_length=256)
    tools: list[ToolParam] | None = Field(None, max_length=MAX_TOOLS)
    tool_choice: Literal["none", "auto", "required"] | NamedFunctionChoice | None = None
    parallel_tool_calls: bool = True
    metadata: dict[str, str] | None = Field(None, max_length=16)
    truncation: Literal["disabled"] | None = None  # "auto" would cut the input: refused
    reasoning: ReasoningParam | None = None
    # Sampling extensions (`extra_body`), as on chat completions.
    top_k: int | None = Field(None, ge=0, le=MAX_TOKEN_COUNT)
    min_p: float | None = Field(None, ge=0, le=1)
    seed: int | None = None
    ignore_eos: bool = False
