"""The engine contract: what every compute backend offers, in the spirit of Docker Model
Runner's `Backend`.

An `Engine` is a kind of backend (`openvino`, `openvino-npu`); it loads a stored model into a
`Runner`, one model resident on one device. Engines never import HTTP code: they raise
`ovrunner.errors` subclasses and the HTTP layer renders them.
"""

from __future__ import annotations

import abc
import functools
import importlib.metadata
import json
from collections.abc import AsyncGenerator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from ovrunner.engines.stats import RunnerStats
from ovrunner.errors import InvalidValueError, UnsupportedParameterError, WrongModeError
from ovrunner.tools.formats import ChatFormat
from ovrunner.tools.spec import CallConstraint, ToolCallDelta, ToolSpec


class EngineStatus(StrEnum):
    RUNNING = "running"
    ERROR = "error"
    NOT_INSTALLED = "not_installed"
    INSTALLING = "installing"


class Mode(StrEnum):
    """What a model does; a request for another mode is a 400 that says what the model is."""

    COMPLETION = "completion"  # chat and text completion
    EMBEDDING = "embedding"  # text to vectors
    RERANKING = "reranking"  # (query, documents) to relevance scores
    TRANSCRIPTION = "transcription"  # speech to text (and translation into English)


class ModelFormat(StrEnum):
    GGUF = "gguf"
    OPENVINO_IR = "openvino-ir"


class FinishReason(StrEnum):
    STOP = "stop"
    LENGTH = "length"
    TOOL_CALLS = "tool_calls"  # set when parsing finds calls (`tools.output`), not by engines


@dataclass(frozen=True)
class EngineState:
    status: EngineStatus
    detail: str = ""


@dataclass(frozen=True)
class ModelRef:
    """A stored model as an engine sees it: where its files are and what they are."""

    id: str
    path: Path  # the GGUF file, or the IR directory
    format: ModelFormat
    engine: str
    # The family its tool calls are parsed as (`tools.formats`), when its chat template
    # does not tell: the manifest's `tool_format`.
    tool_format: str | None = None
    mode: Mode = Mode.COMPLETION
    # Assisted decoding, from the manifest (or a job preset, for prompt lookup): candidate
    # tokens from n-grams of the prompt, or from a smaller draft model that the model checks.
    prompt_lookup: bool = False
    draft: ModelRef | None = None

    @property
    def decoding(self) -> str:
        """`plain`, `prompt_lookup`, or `draft:<model id>`."""
        if self.prompt_lookup:
            return "prompt_lookup"
        return "plain" if self.draft is None else f"draft:{self.draft.id}"


@dataclass(frozen=True)
class ModelInfo:
    """What an engine can tell about a model without loading its weights."""

    id: str
    context_window: int
    architecture: str | None = None
    # The width of an embedding model's vectors.
    dimensions: int | None = None


class ConstraintKind(StrEnum):
    JSON_SCHEMA = "json_schema"
    REGEX = "regex"
    GRAMMAR = "grammar"  # EBNF as xgrammar reads it; llama.cpp's GBNF is one


@dataclass(frozen=True)
class OutputConstraint:
    """What the whole answer must match, and the request field it came in (for errors)."""

    kind: ConstraintKind
    text: str  # the schema serialized, the expression, or the grammar
    param: str = "response_format"

    @classmethod
    def json_schema(cls, schema: Any, param: str = "response_format") -> OutputConstraint:
        text = schema if isinstance(schema, str) else json.dumps(schema)
        return cls(ConstraintKind.JSON_SCHEMA, text, param)

    @classmethod
    def choice(cls, options: Sequence[str], param: str) -> OutputConstraint:
        """Exactly one of `options`, as vLLM's `guided_choice`: a grammar of their literals
        (JSON's string escapes are the grammar's)."""
        literals = " | ".join(json.dumps(option, ensure_ascii=False) for option in options)
        return cls(ConstraintKind.GRAMMAR, f"root ::= {literals}", param)


@dataclass(frozen=True)
class SamplingParams:
    """Engine-neutral generation settings. `None` means the engine's default."""

    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    min_p: float | None = None
    seed: int | None = None
    n: int = 1
    stop: tuple[str, ...] = ()
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    repetition_penalty: float | None = None
    min_tokens: int | None = None
    ignore_eos: bool = False
    # What the output must match (structured output): a JSON schema, a regex, a grammar.
    constraint: OutputConstraint | None = None
    # Report the log probability of each generated token.
    logprobs: bool = False
    # Leave the stop string that ended the answer in its text, so a front end can tell
    # which one it was (Anthropic's `stop_sequence`) and cut it off itself.
    keep_stop: bool = False
    # Structural tags that constrain tool calls (built by the runner from `ToolSpec`).
    tool_calls: CallConstraint | None = None

    @property
    def constrained(self) -> bool:
        """Whether a grammar shapes the output (its state is the pipeline's)."""
        return self.constraint is not None or self.tool_calls is not None


@dataclass(frozen=True)
class GenerationRequest:
    """Either a raw `prompt` (never templated) or chat `messages` (templated by the engine)."""

    prompt: str | None = None
    messages: Sequence[dict[str, Any]] | None = None
    sampling: SamplingParams = field(default_factory=SamplingParams)
    # The tools offered to the model, for chat `messages` only.
    tools: ToolSpec | None = None
    # Whether a reasoning model should think first (its template's `enable_thinking`); None:
    # the model's own default. Templates that know no such switch ignore it.
    thinking: bool | None = None
    # Further variables for the chat template (a client's `chat_template_kwargs`).
    template_kwargs: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        if (self.prompt is None) == (self.messages is None):
            raise ValueError("a GenerationRequest needs exactly one of prompt or messages")


@dataclass(frozen=True)
class TokenLogprob:
    """One generated token, as text, with its log probability."""

    token: str
    logprob: float


@dataclass(frozen=True)
class GenerationDelta:
    """New output for one choice. Counts are running totals for that choice; `logprobs`
    covers the tokens this delta adds, when the request asked for them."""

    index: int
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: FinishReason | None = None
    logprobs: tuple[TokenLogprob, ...] = ()
    # Filled in from `text` on the server's side when the request has tools or the model
    # reasons (`tools.output`); `text` is then the content alone.
    reasoning: str = ""
    tool_calls: tuple[ToolCallDelta, ...] = ()


@dataclass(frozen=True)
class Capabilities:
    """What an engine's runners can do, declared once by the engine and checked once, before
    any runner is leased (`Engine.validate`): a request asking for more is a 400 naming the
    field. The prompt cap needs the prompt's tokens, so the runner applies it after encoding."""

    max_n: int = 8
    logprobs: bool = True
    structured_output: bool = True
    # A hard cap on new tokens beyond the context window (the NPU's), and on prompt tokens.
    max_new_tokens: int | None = None
    max_prompt_tokens: int | None = None

    def check(self, request: GenerationRequest, engine: str) -> None:
        sampling = request.sampling
        if sampling.n > self.max_n:
            raise UnsupportedParameterError(
                f"the engine {engine!r} generates at most {self.max_n} choice(s)", param="n"
            )
        if sampling.logprobs and not self.logprobs:
            raise UnsupportedParameterError(
                f"the engine {engine!r} does not report logprobs", param="logprobs"
            )
        if sampling.constraint is not None and not self.structured_output:
            param = sampling.constraint.param
            raise UnsupportedParameterError(
                f"the engine {engine!r} cannot enforce {param}", param=param
            )
        if request.tools is not None and request.tools.calling and not self.structured_output:
            raise UnsupportedParameterError(
                f"the engine {engine!r} cannot constrain tool calls (send tool_choice: none, "
                "or use another engine)",
                param="tools",
            )
        cap = self.max_new_tokens
        if cap is not None and sampling.max_tokens is not None and sampling.max_tokens > cap:
            raise InvalidValueError(
                f"max_tokens is {sampling.max_tokens}; the engine {engine!r} has a hard "
                f"maximum of {cap}",
                param="max_tokens",
            )


@dataclass(frozen=True)
class EmbeddingRequest:
    """Texts (or token ids of the model's own tokenizer) to embed. An input longer than the
    model's window is refused unless `truncate` asks to cut it to the window; a request of
    more than `max_tokens` tokens in all is refused."""

    texts: tuple[str, ...] = ()
    token_ids: tuple[tuple[int, ...], ...] | None = None
    truncate: bool = False
    max_tokens: int | None = None
    # The vectors' width, where the model allows another than its own.
    dimensions: int | None = None


@dataclass(frozen=True)
class Embeddings:
    vectors: list[list[float]]  # one per input, in order
    prompt_tokens: int


@dataclass(frozen=True)
class RerankRequest:
    query: str
    documents: tuple[str, ...]
    truncate: bool = False
    max_tokens: int | None = None


@dataclass(frozen=True)
class RerankScores:
    scores: list[float]  # one per document, in the documents' order
    prompt_tokens: int


@dataclass(frozen=True)
class TranscriptionRequest:
    """Speech to text: 16 kHz mono samples, and how to decode them."""

    samples: Any  # numpy float32 array, 16 kHz mono
    task: str = "transcribe"  # or "translate" (into English)
    language: str | None = None  # an ISO 639-1 code; None: detected from the audio
    prompt: str | None = None  # earlier text or spellings, as Whisper's initial prompt
    temperature: float = 0.0
    beams: int = 1  # beam search width at temperature 0 (1: greedy)
    word_timestamps: bool = False
    segment_timestamps: bool = False
    stream: bool = False  # send the text as it is decoded (`TranscriptDelta`s)


@dataclass(frozen=True)
class TranscriptSegment:
    start: float  # seconds from the start of the audio
    end: float
    text: str


@dataclass(frozen=True)
class TranscriptWord:
    word: str
    start: float
    end: float


@dataclass(frozen=True)
class Transcript:
    text: str
    language: str | None  # the ISO 639-1 code spoken (given, or detected)
    duration: float  # seconds of audio
    segments: tuple[TranscriptSegment, ...] = ()
    words: tuple[TranscriptWord, ...] = ()


@dataclass(frozen=True)
class TranscriptDelta:
    """Text as the decoder produces it, while a transcription streams."""

    text: str


@dataclass(frozen=True)
class EngineTuning:
    """Engine settings that change speed, not answers (`auto`: the engine's measured choice)."""

    inference_precision: str = "auto"
    kv_cache_precision: str = "auto"
    # Activation quantization for compressed weights: None the plugin's choice, 0 off.
    dynamic_quantization_group_size: int | None = None
    threads: int = 0  # 0: the device plugin's choice (every core)
    max_batched_tokens: int | None = None  # tokens one step may process; None: the engine's
    # How long an idle engine woken by a request waits for more before its first step.
    admission_window_ms: float = 0.0


@dataclass(frozen=True)
class LoadConfig:
    device: str = "CPU"
    # KV-cache size in GB for continuous batching, bounding the cache's memory; None: sized
    # from the model's window and the memory available (`engines/openvino/kv_cache.py`).
    kv_cache_gb: float | None = None
    max_queue: int = 64
    cache_dir: Path | None = None
    # An engine that fails this many times within the window is not restarted again.
    crash_limit: int = 3
    crash_window_s: float = 60.0
    tuning: EngineTuning = EngineTuning()


class Runner(abc.ABC):
    """One model resident on one engine and device.

    `generate` is an async generator. Validation failures (prompt too long, unsupported
    parameter) and admission failures (queue full) are raised before the first delta, so a
    caller that awaits the first delta before answering keeps their real status. Closing the
    iterator early (``aclose()``, or leaving an ``async with aclosing(...)`` block) cancels the
    generation in the engine promptly. Engine failures during generation raise `EngineError`.
    """

    model_id: str
    engine_name: str
    device: str
    mode: Mode = Mode.COMPLETION
    # Its engine's, so that work holding only the runner (a worker job) can ask.
    capabilities: Capabilities = Capabilities(structured_output=False)
    # How its chat template deals with tools and reasoning (read from the model at load).
    chat_format: ChatFormat = ChatFormat()

    # A runner implements the method of its mode; the routes check the mode before leasing
    # (`routes.serving.require_mode`), so the defaults below are reached only by a bug.
    def generate(self, request: GenerationRequest) -> AsyncGenerator[GenerationDelta, None]:
        raise self._wrong_mode(Mode.COMPLETION)

    async def embed(self, request: EmbeddingRequest) -> Embeddings:
        raise self._wrong_mode(Mode.EMBEDDING)

    async def rerank(self, request: RerankRequest) -> RerankScores:
        raise self._wrong_mode(Mode.RERANKING)

    def transcribe(
        self, request: TranscriptionRequest
    ) -> AsyncGenerator[TranscriptDelta | Transcript, None]:
        """Deltas of text as they are decoded, then the whole `Transcript` last. Closing
        the iterator early cancels the work."""
        raise self._wrong_mode(Mode.TRANSCRIPTION)

    def _wrong_mode(self, wanted: Mode) -> WrongModeError:
        return WrongModeError(self.model_id, self.mode, wanted)

    async def count_prompt_tokens(self, request: GenerationRequest) -> int:
        """How many tokens `request`'s prompt is, as `generate` would build it."""
        raise UnsupportedParameterError(
            f"the engine {self.engine_name!r} cannot count tokens", param="model"
        )

    @property
    def failure(self) -> Exception | None:
        """Why the runner can no longer generate (its pipeline died), or None while healthy.
        The lifecycle replaces a failed runner on the next request."""
        return None

    @abc.abstractmethod
    def stats(self) -> RunnerStats:
        """Point-in-time counters: running and waiting requests, and the engine's own."""

    @abc.abstractmethod
    def close(self) -> None:
        """Stop the runner and free its model. Pending generations end with `EngineError`."""


class Engine(abc.ABC):
    """A compute backend. `install`, `status` and `describe` never load model weights."""

    name: str
    capabilities: Capabilities = Capabilities()
    # The modes its runners serve: a model of another mode is not served (421).
    modes: tuple[Mode, ...] = (Mode.COMPLETION,)
    formats: tuple[ModelFormat, ...] = (ModelFormat.GGUF, ModelFormat.OPENVINO_IR)
    # The Python distributions that make up the engine's installation (its `disk_usage`).
    distributions: tuple[str, ...] = ()

    @abc.abstractmethod
    def install(self) -> None:
        """Make sure the engine's libraries are importable. Idempotent.

        Raises `EngineUnavailableError` with the import error when they are not.
        """

    @abc.abstractmethod
    def status(self) -> EngineState: ...

    def serves(self, model: ModelRef) -> bool:
        """Whether this engine runs `model`; a request pinned to an engine that does not
        serve the model it names gets 421."""
        return model.engine == self.name and model.mode in self.modes

    @abc.abstractmethod
    def describe(self, model: ModelRef) -> ModelInfo:
        """Read the model's trained context window from its own files, without loading it."""

    def required_memory(self, model: ModelRef) -> int:
        """Bytes of RAM the loaded model needs, estimated from its files on disk."""
        path = model.path
        files = [p for p in path.rglob("*") if p.is_file()] if path.is_dir() else [path]
        return sum(p.stat().st_size for p in files)

    def disk_usage(self) -> int:
        """Bytes the engine's own installation takes on disk, models not included; 0 for
        what is not installed."""
        return sum(installed_size(name) for name in self.distributions)

    async def validate(self, request: GenerationRequest) -> None:
        """Refuse, with a 400, what this engine cannot do or would accept and then fail on;
        called before any runner is leased, so it must not need one."""
        self.capabilities.check(request, self.name)

    @abc.abstractmethod
    def load(self, model: ModelRef, config: LoadConfig) -> Runner:
        """Load `model` and return its runner. Blocking: call it from a worker thread.

        Raises `ModelLoadFailedError`, or `EngineUnavailableError` when the device is absent.
        """


def is_npu(device: str) -> bool:
    """Whether an OpenVINO device name (NPU, NPU.0) is a neural processing unit."""
    return device.split(".")[0].upper() == "NPU"


@functools.cache
def installed_size(distribution: str) -> int:
    """Bytes of the files an installed distribution recorded (its RECORD); 0 when it is not
    installed. Asked once per process: the installation does not change while it runs."""
    try:
        files = importlib.metadata.files(distribution) or []
    except importlib.metadata.PackageNotFoundError:
        return 0
    return sum(f.size or 0 for f in files)
