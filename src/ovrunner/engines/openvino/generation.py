"""From engine-neutral `SamplingParams` to an OpenVINO GenAI `GenerationConfig`.

Shared by both OpenVINO engines, so a request means the same on CPU, GPU and NPU. The
context check lives here too: it needs the prompt's token count and the model's window.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from ovrunner.engines.base import GenerationRequest, ModelFormat, ModelRef, SamplingParams
from ovrunner.engines.decoding.byte_vocab import fast_decoder
from ovrunner.engines.decoding.detokenize import DecodeMany
from ovrunner.engines.openvino.tuning import Assist
from ovrunner.errors import (
    ContextLengthExceededError,
    EngineUnavailableError,
    InvalidRequestError,
    InvalidValueError,
    ModelLoadFailedError,
)
from ovrunner.tools.formats import FORMATS, ChatFormat, detect
from ovrunner.tools.prompting import template_input
from ovrunner.tools.spec import CallConstraint

# Sampling defaults for parameters a request leaves out, as llama.cpp's server and Ollama
# choose them: OpenAI's own default (temperature 1, no truncation) makes small local models
# ramble. Temperature 0 means greedy decoding.
DEFAULT_TEMPERATURE = 0.8
DEFAULT_TOP_K = 40
DEFAULT_TOP_P = 0.95
DEFAULT_MIN_P = 0.05


def import_genai() -> Any:
    """Import openvino_genai, turning an import failure into an engine error."""
    try:
        import openvino_genai
    except ImportError as exc:  # pragma: no cover - exercised only without the wheel
        raise EngineUnavailableError(f"openvino-genai is not installed: {exc}") from exc
    return openvino_genai


def check_context(sampling: SamplingParams, prompt_tokens: int, context_window: int) -> int:
    """Room left for the completion; 400 `context_length_exceeded` when there is none, or
    less than `min_tokens` asks for.

    A `max_tokens` beyond the room is not an error: it is a bound, and the window bounds the
    answer further (it ends with finish reason `length`), as llama.cpp's server and Ollama
    do. Agents send large fixed values (Claude Code 32,000, whatever the model's window): an
    error would cost each of their requests a round trip, or stop those that do not retry.
    """
    room = context_window - prompt_tokens
    if room < 1:
        raise ContextLengthExceededError.for_prompt(prompt_tokens, None, context_window,
                                                    param="messages")  # fmt: skip
    if sampling.min_tokens is not None and sampling.min_tokens > room:
        raise ContextLengthExceededError.for_prompt(
            prompt_tokens, sampling.min_tokens, context_window, param="min_tokens"
        )
    return room


def generation_config(
    genai: Any,
    defaults: Any,
    sampling: SamplingParams,
    prompt_tokens: int,
    context_window: int,
    assist: Assist | None = None,
) -> Any:
    """The config for one request. `defaults` is the pipeline's own config (EOS ids);
    `assist` what an assisted pipeline (prompt lookup, a draft model) needs of each request.

    With no `max_tokens` the completion may run to the end of the context window.
    """
    room = check_context(sampling, prompt_tokens, context_window)
    config = genai.GenerationConfig()
    config.eos_token_id = defaults.eos_token_id
    config.stop_token_ids = defaults.stop_token_ids
    # Prompts reach the pipeline as token ids, already templated where they are chat.
    config.apply_chat_template = False
    config.max_new_tokens = room if sampling.max_tokens is None else min(sampling.max_tokens, room)
    _apply_sampling(config, sampling)
    if sampling.stop:
        config.stop_strings = set(sampling.stop)
        config.include_stop_str_in_output = sampling.keep_stop
    if sampling.min_tokens is not None:
        config.min_new_tokens = sampling.min_tokens
    config.ignore_eos = sampling.ignore_eos
    if sampling.logprobs:
        # The sampled token's log probability; OpenVINO GenAI gives no alternatives.
        config.logprobs = 1
    if sampling.constraint is not None:
        config.structured_output_config = genai.StructuredOutputConfig(
            **{sampling.constraint.kind.value: sampling.constraint.text}
        )
    elif sampling.tool_calls is not None:
        config.structured_output_config = structural_tags(genai, sampling.tool_calls)
    if assist is not None:
        if sampling.n > 1:  # the assisted pipelines generate one sequence per request
            raise InvalidRequestError(
                "n > 1 is not available on this model: it decodes with prompt lookup or a "
                "draft model, which generate one choice per request",
                param="n",
            )
        assist.apply(config)
    try:
        config.validate()
    except RuntimeError as exc:  # the binding's C++ check, on this request's values
        raise InvalidRequestError(f"invalid generation parameters: {exc}") from exc
    return config


def _apply_sampling(config: Any, sampling: SamplingParams) -> None:
    """How tokens are drawn: greedy, or sampled with the request's (or the default) knobs,
    and the penalties."""
    temperature = DEFAULT_TEMPERATURE if sampling.temperature is None else sampling.temperature
    if temperature > 0:
        config.do_sample = True
        config.temperature = temperature
        config.top_p = DEFAULT_TOP_P if sampling.top_p is None else sampling.top_p
        config.top_k = DEFAULT_TOP_K if sampling.top_k is None else sampling.top_k
        config.min_p = DEFAULT_MIN_P if sampling.min_p is None else sampling.min_p
        # The binding takes unsigned 64-bit seeds: a negative one is its two's complement.
        config.rng_seed = random.getrandbits(31) if sampling.seed is None else sampling.seed % 2**64
        config.num_return_sequences = sampling.n
    elif sampling.n > 1:
        raise InvalidRequestError("n > 1 needs temperature > 0", param="n")
    if sampling.presence_penalty is not None:
        config.presence_penalty = sampling.presence_penalty
    if sampling.frequency_penalty is not None:
        config.frequency_penalty = sampling.frequency_penalty
    if sampling.repetition_penalty is not None:
        config.repetition_penalty = sampling.repetition_penalty


def structural_tags(genai: Any, constraint: CallConstraint) -> Any:
    """OpenVINO GenAI's structural tags for a tool-call constraint (xgrammar enforces them)."""
    tags = genai.StructuredOutputConfig
    choices = [tags.Tag(t.begin, tags.JSONSchema(t.schema), t.end) for t in constraint.tags]
    if constraint.calls_only:
        calls = tags.TagsWithSeparator(choices, "", at_least_one=True,
                                       stop_after_first=constraint.stop_after_first)  # fmt: skip
    else:
        calls = tags.TriggeredTags(list(constraint.triggers), choices, at_least_one=False,
                                   stop_after_first=constraint.stop_after_first)  # fmt: skip
    if constraint.after is not None:
        calls = tags.Concat(tags.Tag("", tags.AnyText(), constraint.after), calls)
    config = tags()
    config.structural_tags_config = calls
    return config


def with_tool_constraint(request: GenerationRequest, chat: ChatFormat) -> SamplingParams:
    """The request's sampling, with its tool calls constrained in the model's own format."""
    if request.tools is None or not request.tools.calling:
        return request.sampling
    return replace(request.sampling, tool_calls=chat.constraint(request.tools))


def with_model_defaults(sampling: SamplingParams, defaults: Mapping[str, float]) -> SamplingParams:
    """`sampling` with what it leaves unset taken from the model's own generation defaults
    (`model_files.generation_defaults`); what the request sets always wins."""
    unset: dict[str, Any] = {k: v for k, v in defaults.items() if getattr(sampling, k) is None}
    if "top_k" in unset:
        unset["top_k"] = int(unset["top_k"])
    return replace(sampling, **unset) if unset else sampling


def read_chat_format(tokenizer: Any, tool_format: str | None = None) -> ChatFormat:
    """The model's way with tools and reasoning, from its chat template (and the family its
    manifest names, if any)."""
    if tool_format is not None and tool_format not in FORMATS:
        raise ModelLoadFailedError(
            f"the manifest's tool_format {tool_format!r} is not one of {', '.join(FORMATS)}"
        )
    template = str(tokenizer.chat_template or "")
    try:
        opening = str(tokenizer.apply_chat_template([{"role": "user", "content": "x"}],
                                                    add_generation_prompt=True))  # fmt: skip
    except RuntimeError:
        opening = ""
    return detect(template, opening, tool_format)


def render_prompt(tokenizer: Any, request: GenerationRequest, chat: ChatFormat) -> str:
    """The exact text the model sees: the chat template applied once, or the raw prompt."""
    if request.prompt is not None:
        return request.prompt
    messages, tools = template_input(request.messages or [], request.tools, chat)
    extra = dict(request.template_kwargs or {})
    if request.thinking is not None:
        extra.setdefault("enable_thinking", request.thinking)
    try:
        return str(tokenizer.apply_chat_template(messages, add_generation_prompt=True,
                                                 tools=tools, extra_context=extra))  # fmt: skip
    except RuntimeError as exc:  # the template's own refusal (raise_exception) or its failure
        raise InvalidRequestError(
            f"the model's chat template rejected these messages: {exc}", param="messages"
        ) from exc


def encode(tokenizer: Any, request: GenerationRequest, chat: ChatFormat) -> Any:
    """Token ids for the request: a chat-templated prompt already holds its special tokens,
    a raw prompt gets the tokenizer's own (BOS where the model wants one)."""
    text = render_prompt(tokenizer, request, chat)
    ids = tokenizer.encode(text, add_special_tokens=request.prompt is not None).input_ids
    if ids.shape[1] == 0:  # the pipeline would fail its own `prompt_len > 0` check
        raise InvalidValueError("the prompt is empty: it has no tokens", param="prompt")
    return ids


def decoder(tokenizer: Any, model: ModelRef) -> DecodeMany:
    """How a runner turns token windows into text (special tokens skipped): a byte table
    built from a GGUF's vocabulary where it decodes exactly like the tokenizer, since the
    tokenizer costs ~50 times as much a call; otherwise the tokenizer itself."""

    def with_tokenizer(windows: list[list[int]]) -> list[str]:
        return list(tokenizer.decode(windows, skip_special_tokens=True))

    if model.format is not ModelFormat.GGUF:
        return with_tokenizer

    def token_ids(text: str) -> list[int]:
        return [int(i) for i in tokenizer.encode(text, add_special_tokens=False).input_ids.data[0]]

    return fast_decoder(model.path, with_tokenizer, token_ids)
