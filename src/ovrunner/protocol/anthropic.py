"""Anthropic Messages wire models, named as the `anthropic` SDK names them.

Requests accept unknown fields and ignore them (as Anthropic-compatible servers do); values
out of range are a 400 in Anthropic's error shape.
"""

from __future__ import annotations

import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ovrunner.protocol.openai import (
    FUNCTION_NAME,
    MAX_MESSAGES,
    MAX_SEED,
    MAX_STOP,
    MAX_TOKEN_COUNT,
    MAX_TOOLS,
    MIN_SEED,
)

_Open = ConfigDict(extra="allow")


class TextBlock(BaseModel):
    model_config = _Open
    type: Literal["text"]
    text: str


class ToolUseBlock(BaseModel):
    model_config = _Open
    type: Literal["tool_use"]
    id: str = Field(max_length=256)
    name: str = Field(max_length=64)
    input: dict[str, Any]


class ToolResultBlock(BaseModel):
    model_config = _Open
    type: Literal["tool_result"]
    tool_use_id: str = Field(max_length=256)
    content: str | list[TextBlock] = ""
    is_error: bool = False

    def text(self) -> str:
        return (
            self.content if isinstance(self.content, str) else "".join(b.text for b in self.content)
        )


class ThinkingBlock(BaseModel):
    """An earlier turn's thinking, sent back by clients: not shown to the model again."""

    model_config = _Open
    type: Literal["thinking", "redacted_thinking"]


InputBlock = TextBlock | ToolUseBlock | ToolResultBlock | ThinkingBlock


class MessageParam(BaseModel):
    model_config = _Open
    # `system` is not Anthropic's own, but Claude Code sends such turns to every model that is
    # not Claude (system reminders mid-conversation), with no setting to stop it.
    role: Literal["user", "assistant", "system"]
    content: str | list[InputBlock] = Field(min_length=0)


class Tool(BaseModel):
    model_config = _Open
    name: str = Field(pattern=FUNCTION_NAME)
    description: str | None = None  # as long as clients write them (Claude Code's: 18,780)
    input_schema: dict[str, Any]
    type: Literal["custom"] | None = None


class ToolChoice(BaseModel):
    model_config = _Open
    type: Literal["auto", "any", "tool", "none"]
    name: str | None = None
    disable_parallel_tool_use: bool = False


class ThinkingConfig(BaseModel):
    model_config = _Open
    type: Literal["enabled", "disabled", "adaptive"]


class OutputFormat(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)
    type: Literal["json_schema"]
    schema_: dict[str, Any] = Field(alias="schema")


class OutputConfig(BaseModel):
    """Structured output; `effort` only steers thinking, which a local model does its way."""

    model_config = _Open
    format: OutputFormat | None = None
    effort: str | None = None


class MessageCreateParams(BaseModel):
    model_config = ConfigDict(extra="allow", allow_inf_nan=False)
    model: str
    max_tokens: int = Field(ge=1, le=MAX_TOKEN_COUNT)
    messages: list[MessageParam] = Field(min_length=1, max_length=MAX_MESSAGES)
    system: str | list[TextBlock] | None = None
    stop_sequences: list[str] | None = Field(None, max_length=MAX_STOP)
    temperature: float | None = Field(None, ge=0, le=1)
    top_p: float | None = Field(None, gt=0, le=1)
    top_k: int | None = Field(None, ge=0, le=MAX_TOKEN_COUNT)
    metadata: dict[str, Any] | None = None  # user_id: accepted, nothing to do with it here
    stream: bool = False
    tools: list[Tool] | None = Field(None, max_length=MAX_TOOLS)
    tool_choice: ToolChoice | None = None
    thinking: ThinkingConfig | None = None
    output_config: OutputConfig | None = None
    # Sampling extensions (`extra_body`), as on chat completions; newer `anthropic` SDKs
    # send `temperature`, `top_p` and `top_k` this way too.
    seed: int | None = Field(None, ge=MIN_SEED, le=MAX_SEED)
    min_p: float | None = Field(None, ge=0, le=1)
    repetition_penalty: float | None = Field(None, gt=0, le=10)
    ignore_eos: bool = False

    def system_text(self) -> str | None:
        return system_text(self.system)


class CountTokensParams(BaseModel):
    model_config = _Open
    model: str
    messages: list[MessageParam] = Field(min_length=1, max_length=MAX_MESSAGES)
    system: str | list[TextBlock] | None = None
    tools: list[Tool] | None = Field(None, max_length=MAX_TOOLS)

    def system_text(self) -> str | None:
        return system_text(self.system)


def system_text(system: str | list[TextBlock] | None) -> str | None:
    if system is None:
        return None
    return system if isinstance(system, str) else "".join(b.text for b in system)


# -- responses --------------------------------------------------------------------------------


def new_message_id() -> str:
    return f"msg_{uuid.uuid4().hex[:24]}"


class Usage(BaseModel):
    input_tokens: int
    output_tokens: int


class OutputText(BaseModel):
    type: Literal["text"] = "text"
    text: str


class OutputToolUse(BaseModel):
    type: Literal["tool_use"] = "tool_use"
    id: str
    name: str
    input: dict[str, Any]


class OutputThinking(BaseModel):
    type: Literal["thinking"] = "thinking"
    thinking: str
    signature: str = ""  # nothing signs a local model's thinking


OutputBlock = OutputText | OutputToolUse | OutputThinking
StopReason = Literal["end_turn", "max_tokens", "stop_sequence", "tool_use"]


class Message(BaseModel):
    id: str
    type: Literal["message"] = "message"
    role: Literal["assistant"] = "assistant"
    model: str
    content: list[OutputBlock]
    stop_reason: StopReason | None = None
    stop_sequence: str | None = None
    usage: Usage


class MessageStart(BaseModel):
    type: Literal["message_start"] = "message_start"
    message: Message


class Ping(BaseModel):
    type: Literal["ping"] = "ping"


class ContentBlockStart(BaseModel):
    type: Literal["content_block_start"] = "content_block_start"
    index: int
    content_block: OutputBlock


class TextDelta(BaseModel):
    type: Literal["text_delta"] = "text_delta"
    text: str


class InputJsonDelta(BaseModel):
    type: Literal["input_json_delta"] = "input_json_delta"
    partial_json: str


class ThinkingDelta(BaseModel):
    type: Literal["thinking_delta"] = "thinking_delta"
    thinking: str


class ContentBlockDelta(BaseModel):
    type: Literal["content_block_delta"] = "content_block_delta"
    index: int
    delta: TextDelta | InputJsonDelta | ThinkingDelta


class ContentBlockStop(BaseModel):
    type: Literal["content_block_stop"] = "content_block_stop"
    index: int


class MessageDeltaBody(BaseModel):
    stop_reason: StopReason | None
    stop_sequence: str | None = None


class DeltaUsage(BaseModel):
    output_tokens: int


class MessageDelta(BaseModel):
    type: Literal["message_delta"] = "message_delta"
    delta: MessageDeltaBody
    usage: DeltaUsage


class MessageStop(BaseModel):
    type: Literal["message_stop"] = "message_stop"


class TokenCount(BaseModel):
    input_tokens: int
