"""OpenAI wire models (pydantic v2), named as the official `openai` SDK names them.

Requests accept unknown fields and ignore them, as OpenAI-compatible servers do; values out of
range are refused (400 with the field as `param`). NaN and infinities are refused everywhere.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Finite = ConfigDict(extra="allow", allow_inf_nan=False)
MAX_MESSAGES = 1024
MAX_STOP = 16
# Token counts beyond any context window, yet within what the engine's binding takes.
MAX_TOKEN_COUNT = 2**31 - 1
# Seeds: OpenAI's are signed 64-bit; the engine's are unsigned 64-bit, so a negative seed is
# taken as its two's complement (the same seed always means the same stream).
MIN_SEED, MAX_SEED = -(2**63), 2**64 - 1


class _Request(BaseModel):
    model_config = Finite


class TextContentPart(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: Literal["text"]
    text: str


# OpenAI's own bounds on tools: names of 64 characters, 128 tools a request.
MAX_TOOLS = 128
FUNCTION_NAME = r"^[a-zA-Z0-9_.-]{1,64}$"


class FunctionCall(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str = Field(max_length=64)
    arguments: str


class ToolCall(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: str = Field(max_length=256)
    type: Literal["function"] = "function"
    function: FunctionCall


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")
    # `function` is the deprecated name of a `tool` turn (its `name` says which function).
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[TextContentPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = Field(None, max_length=MAX_TOOLS)
    tool_call_id: str | None = Field(None, max_length=256)
    function_call: FunctionCall | None = None  # deprecated: one call of an assistant turn

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)

    def for_template(self) -> dict[str, Any]:
        """The message as a chat template expects it. OpenAI's `developer` role is its new
        name for `system`, which is the only one the templates of open models know."""
        role = {"developer": "system", "function": "tool"}.get(self.role, self.role)
        message: dict[str, Any] = {"role": role, "content": self.text()}
        calls = self.tool_calls or []
        if self.function_call is not None:
            calls = [ToolCall(id=f"call_{len(calls)}", function=self.function_call)]
        if calls:
            message["tool_calls"] = [
                c.model_dump(include={"id", "type", "function"}) for c in calls
            ]
        if role == "tool":
            message["tool_call_id"] = self.tool_call_id or self.name or ""
            if self.name:
                message["name"] = self.name
        return message


class FunctionDefinition(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str = Field(pattern=FUNCTION_NAME)
    description: str | None = None  # bounded by the body cap only, as clients need
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class ChatTool(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: Literal["function"]
    function: FunctionDefinition


class NamedFunction(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str


class NamedToolChoice(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: Literal["function"]
    function: NamedFunction


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")
    include_usage: bool = False


class JsonSchemaFormat(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)
    name: str = "response"
    schema_: dict[str, Any] = Field(default_factory=dict, alias="schema")
    strict: bool | None = None


class ResponseFormat(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None


# Choices a `guided_choice` may list, and how long each may be.
MAX_CHOICES = 1024


class StructuredOutputs(BaseModel):
    """vLLM's `structured_outputs`: one of a JSON schema, a regex, a choice, a grammar. Any
    other member is refused by name (each would change what the answer may be)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    json_: dict[str, Any] | str | None = Field(None, alias="json")
    regex: str | None = None
    choice: list[str] | None = Field(None, min_length=1, max_length=MAX_CHOICES)
    grammar: str | None = None
    json_object: bool | None = None
    backend: str | None = None  # which compiler: only ever xgrammar here, the answer is alike


class _SamplingFields(_Request):
    model: str
    max_tokens: int | None = Field(None, ge=1, le=MAX_TOKEN_COUNT)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    n: int = Field(1, ge=1, le=8)
    # The bound is on the list: one stop string may be as long as a client needs.
    stop: str | Annotated[list[str], Field(max_length=MAX_STOP)] | None = None
    seed: int | None = Field(None, ge=MIN_SEED, le=MAX_SEED)
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = None
    # Sampling extensions sent through the SDK's `extra_body`, named as vLLM and llama.cpp do.
    top_k: int | None = Field(None, ge=0, le=MAX_TOKEN_COUNT)
    min_p: float | None = Field(None, ge=0, le=1)
    repetition_penalty: float | None = Field(None, gt=0, le=10)
    min_tokens: int | None = Field(None, ge=0, le=MAX_TOKEN_COUNT)
    ignore_eos: bool = False
    # Refused when it biases anything (`routes/openai.py`): the engine has no logit bias.
    logit_bias: dict[str, float] | None = None
    # How long the model stays loaded after this request, as Ollama spells it ("5m", 0, -1).
    keep_alive: str | float | None = None
    # What the answer must match, as vLLM (`guided_*`, `structured_outputs`) and llama.cpp
    # (`grammar`, `json_schema`) name it: honoured, one a request (`routes/constraints.py`).
    guided_json: dict[str, Any] | str | None = None
    guided_regex: str | None = None
    guided_choice: list[str] | None = Field(None, min_length=1, max_length=MAX_CHOICES)
    guided_grammar: str | None = None
    structured_outputs: StructuredOutputs | None = None
    grammar: str | None = None
    json_schema: dict[str, Any] | None = None
    # vLLM's whitespace rule inside guided JSON: refused, the compiler has its own.
    guided_whitespace_pattern: str | None = None

    def stop_list(self) -> tuple[str, ...]:
        if self.stop is None:
            return ()
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)

    @property
    def include_usage(self) -> bool:
        return self.stream_options is not None and self.stream_options.include_usage

    @property
    def token_limit(self) -> int | None:
        return self.max_tokens


ReasoningEffort = Literal["none", "minimal", "low", "medium", "high"]


def thinking_for(effort: ReasoningEffort | None) -> bool | None:
    """OpenAI's reasoning effort as a thinking switch: `none` turns thinking off."""
    return None if effort is None else effort != "none"


class ChatCompletionRequest(_SamplingFields):
    messages: list[ChatMessage] = Field(min_length=1, max_length=MAX_MESSAGES)
    max_completion_tokens: int | None = Field(None, ge=1, le=MAX_TOKEN_COUNT)
    response_format: ResponseFormat | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = Field(None, ge=0, le=20)
    tools: list[ChatTool] | None = Field(None, max_length=MAX_TOOLS)
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: bool = True
    # The deprecated spelling of the same: `functions` and `function_call`.
    functions: list[FunctionDefinition] | None = Field(None, max_length=MAX_TOOLS)
    function_call: Literal["none", "auto"] | NamedFunction | None = None
    # Reasoning: OpenAI's effort, and the variables vLLM and llama.cpp hand the chat template
    # (`extra_body`; Qwen 3's `enable_thinking` above all).
    reasoning_effort: ReasoningEffort | None = None
    chat_template_kwargs: dict[str, Any] | None = Field(None, max_length=32)

    @property
    def token_limit(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens


class CompletionRequest(_SamplingFields):
    # A single prompt; OpenAI's batched prompts (lists) are refused with a clear 400.
    prompt: str
    echo: bool = False
    logprobs: int | None = Field(None, ge=0, le=5)
    suffix: str | None = None


# -- responses -------------------------------------------------------------------------------


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def now() -> int:
    return int(time.time())


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class Model(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str
    architecture: str | None = None
    # ovrunner's: completion (chat and text), embedding or reranking.
    mode: str = "completion"
    # The tokens a request may hold, prompt and answer together (its input, for an encoder);
    # `max_model_len` is the same number under vLLM's name, which agents and routers read.
    context_window: int | None = None
    max_model_len: int | None = None


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Model]


class TopLogprob(BaseModel):
    token: str
    logprob: float
    bytes: list[int] | None = None


class ChatCompletionTokenLogprob(TopLogprob):
    # Always empty: the engine reports the sampled token only (top_logprobs > 0 is a 400).
    top_logprobs: list[TopLogprob] = Field(default_factory=list)


class ChoiceLogprobs(BaseModel):
    content: list[ChatCompletionTokenLogprob] | None = None
    refusal: None = None


class CompletionLogprobs(BaseModel):
    tokens: list[str]
    token_logprobs: list[float]
    top_logprobs: None = None
    text_offset: list[int]


class CompletionChoice(BaseModel):
    index: int
    text: str
    finish_reason: str | None
    logprobs: CompletionLogprobs | None = None


class Completion(BaseModel):
    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: Usage | None = None


def _only_when_set() -> Any:
    """A field that only some answers have, left out of the others as OpenAI leaves it out:
    a plain chat's chunks stay as small as they were."""
    return Field(None, exclude_if=lambda value: value is None)


class ChatCompletionMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str | None
    reasoning_content: str | None = _only_when_set()
    tool_calls: list[ToolCall] | None = _only_when_set()


class ChatCompletionChoice(BaseModel):
    index: int
    message: ChatCompletionMessage
    finish_reason: str | None
    logprobs: ChoiceLogprobs | None = None


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatCompletionChoice]
    usage: Usage


class ChoiceDeltaFunctionCall(BaseModel):
    name: str | None = _only_when_set()
    arguments: str = ""


class ChoiceDeltaToolCall(BaseModel):
    index: int
    id: str | None = _only_when_set()
    type: Literal["function"] | None = _only_when_set()
    function: ChoiceDeltaFunctionCall


class ChoiceDelta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None
    reasoning_content: str | None = _only_when_set()
    tool_calls: list[ChoiceDeltaToolCall] | None = _only_when_set()


class ChatCompletionChunkChoice(BaseModel):
    index: int
    delta: ChoiceDelta
    finish_reason: str | None = None
    logprobs: ChoiceLogprobs | None = None


class ChatCompletionChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChatCompletionChunkChoice]
    usage: Usage | None = None


class ContentChunkTemplate:
    """The JSON of a one-choice content chunk, without building a model per token.

    A stream sends one such chunk per token, so the fixed part (id, created, model) is
    serialized once and only the text is escaped per token. The output is byte-identical to
    `ChatCompletionChunk(...).model_dump_json()` (a unit test holds it to that).
    """

    def __init__(self, completion_id: str, created: int, model: str) -> None:
        fixed = ChatCompletionChunk(id=completion_id, created=created, model=model, choices=[])
        head, _, _ = fixed.model_dump_json().partition('"choices":[]')
        self._head = head + '"choices":[{"index":'

    def render(self, index: int, text: str, finish_reason: str | None) -> str:
        content = json.dumps(text, ensure_ascii=False) if text else "null"
        reason = "null" if finish_reason is None else f'"{finish_reason}"'
        return (
            f'{self._head}{index},"delta":{{"role":null,"content":{content}}},'
            f'"finish_reason":{reason},"logprobs":null}}],"usage":null}}'
        )
