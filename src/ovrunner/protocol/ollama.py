"""Ollama API wire models, named as Ollama's own API documentation and `ollama` client name
them. Unknown fields and unknown `options` are ignored, as Ollama ignores them."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ovrunner.protocol.openai import MAX_MESSAGES, MAX_SEED, MAX_STOP, MAX_TOOLS, MIN_SEED, ChatTool

_Open = ConfigDict(extra="allow", allow_inf_nan=False)


class Options(BaseModel):
    """The options ovrunner honours; the others Ollama knows (num_ctx, num_thread,
    mirostat, ...) are accepted and ignored (`docs/dialects.md`)."""

    model_config = _Open
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    top_k: int | None = Field(None, ge=0, le=2**31 - 1)
    min_p: float | None = Field(None, ge=0, le=1)
    seed: int | None = Field(None, ge=MIN_SEED, le=MAX_SEED)
    stop: list[str] | None = Field(None, max_length=MAX_STOP)
    # -1: until the model stops (or the context is full); -2: fill the context.
    num_predict: int | None = Field(None, ge=-2, le=2**31 - 1)
    repeat_penalty: float | None = Field(None, gt=0, le=10)
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    ignore_eos: bool = False  # ovrunner's extension, as on chat completions


class ToolCallFunction(BaseModel):
    model_config = _Open
    name: str = Field(max_length=64)
    arguments: dict[str, Any] = Field(default_factory=dict)


class ToolCall(BaseModel):
    model_config = _Open
    function: ToolCallFunction


class ChatMessage(BaseModel):
    model_config = _Open
    role: Literal["system", "user", "assistant", "tool"]
    content: str = ""
    thinking: str | None = None  # an earlier turn's thinking: not shown to the model again
    images: list[str] | None = Field(None, max_length=0)  # text models only: a 400 otherwise
    tool_calls: list[ToolCall] | None = Field(None, max_length=MAX_TOOLS)
    tool_name: str | None = None


# `format`: "json" for any JSON object, or a JSON schema.
Format = Literal["json", ""] | dict[str, Any]
KeepAlive = str | float | None


class ChatRequest(BaseModel):
    model_config = _Open
    model: str
    messages: list[ChatMessage] = Field(default_factory=list, max_length=MAX_MESSAGES)
    tools: list[ChatTool] | None = Field(None, max_length=MAX_TOOLS)
    format: Format | None = None
    options: Options = Field(default_factory=Options)
    stream: bool = True
    keep_alive: KeepAlive = None
    think: bool | Literal["low", "medium", "high"] | None = None
    logprobs: bool = False
    top_logprobs: int = Field(0, ge=0, le=20)


class GenerateRequest(BaseModel):
    model_config = _Open
    model: str
    prompt: str = ""
    system: str | None = None
    raw: bool = False
    format: Format | None = None
    options: Options = Field(default_factory=Options)
    stream: bool = True
    keep_alive: KeepAlive = None
    images: list[str] | None = Field(None, max_length=0)
    suffix: str | None = Field(None, max_length=0)  # fill-in-the-middle: not offered
    think: bool | Literal["low", "medium", "high"] | None = None
    logprobs: bool = False
    top_logprobs: int = Field(0, ge=0, le=20)


class ModelRequest(BaseModel):
    """`/api/show` and `/api/delete`: Ollama's clients send `model` (older ones `name`)."""

    model_config = _Open
    model: str | None = None
    name: str | None = None

    @property
    def id(self) -> str | None:
        return self.model or self.name


class PullRequest(ModelRequest):
    stream: bool = True
    insecure: bool = False


class EmbedRequest(BaseModel):
    """`/api/embed`; Ollama cuts an over-long input to the window unless `truncate` is false."""

    model_config = _Open
    model: str
    input: str | list[str]
    truncate: bool = True
    dimensions: int | None = Field(None, ge=1)
    keep_alive: str | float | None = None
    options: Options | None = None


class EmbeddingsRequest(BaseModel):
    """`/api/embeddings`, the older route: one `prompt`, one `embedding`."""

    model_config = _Open
    model: str
    prompt: str
    keep_alive: str | float | None = None
    options: Options | None = None
