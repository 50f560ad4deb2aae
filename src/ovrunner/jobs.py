"""Worker job presets and their bounds, and running one job with busy-counter verification.

A preset is a bounded generation recipe: its prompt, its token caps, its output kind and the
engine it runs on. The built-in presets live in `configs/jobs.toml` inside the package; an
operator's `jobs_file` adds presets or replaces one by name.
"""

from __future__ import annotations

import json
import time
import tomllib
from contextlib import aclosing
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ovrunner.busy import BusyCounter
from ovrunner.engines.base import (
    GenerationRequest,
    OutputConstraint,
    Runner,
    SamplingParams,
    is_npu,
)
from ovrunner.engines.openvino.common import available_devices
from ovrunner.errors import (
    BusyCounterNotMovedError,
    InvalidValueError,
)

if TYPE_CHECKING:
    from ovrunner.settings import Settings

MAX_INPUT_CHARS = 6000
HARD_MAX_NEW_TOKENS = 256


class JobPreset(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    instructions: str = ""
    prompt: str = "{input}"
    default_max_new_tokens: int = Field(ge=1, le=HARD_MAX_NEW_TOKENS)
    max_new_tokens: int = Field(HARD_MAX_NEW_TOKENS, ge=1, le=HARD_MAX_NEW_TOKENS)
    output: Literal["text", "json"] = "text"
    json_schema: dict[str, Any] | None = Field(None, alias="schema")
    # For text jobs: keep the first line only, and at most this many words (a title).
    # Small models preface answers ("Here's a title:"); constraining the grammar instead
    # made them glue words together.
    single_line: bool = False
    max_words: int | None = Field(None, ge=1)
    engine: Literal["auto", "openvino", "openvino-npu"] = "auto"
    model: str | None = None
    temperature: float = Field(0.0, ge=0, le=2)
    # Decode with prompt lookup (on the model's prompt-lookup runner): for jobs whose answer
    # copies spans of their input. The `openvino` engine only; elsewhere it runs plainly.
    prompt_lookup: bool = False
    aliases: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _consistent(self) -> JobPreset:
        if self.default_max_new_tokens > self.max_new_tokens:
            raise ValueError("default_max_new_tokens is above max_new_tokens")
        if "{input}" not in self.prompt:
            raise ValueError("prompt must contain {input}")
        return self

    def messages(self, text: str) -> list[dict[str, str]]:
        messages = [{"role": "system", "content": self.instructions}] if self.instructions else []
        # str.replace, not str.format: the input may contain braces.
        return [*messages, {"role": "user", "content": self.prompt.replace("{input}", text)}]


class JobPresets:
    def __init__(self, presets: list[JobPreset]) -> None:
        self._by_name: dict[str, JobPreset] = {}
        self._aliases: dict[str, str] = {}
        for preset in presets:
            self._by_name[preset.name] = preset
            for alias in preset.aliases:
                self._aliases[alias] = preset.name

    @classmethod
    def load(cls, extra_file: Path | None = None) -> JobPresets:
        """The built-in presets, then those of `extra_file` (a preset of the same name wins)."""
        builtin = resources.files("ovrunner").joinpath("configs/jobs.toml").read_text()
        presets = {p.name: p for p in _parse(tomllib.loads(builtin), "built-in presets")}
        if extra_file is not None:
            with extra_file.open("rb") as f:
                presets.update((p.name, p) for p in _parse(tomllib.load(f), str(extra_file)))
        return cls(list(presets.values()))

    def names(self) -> list[str]:
        return sorted(self._by_name)

    def get(self, name: str) -> JobPreset:
        preset = self._by_name.get(self._aliases.get(name, name))
        if preset is None:
            raise InvalidValueError(
                f"unknown job {name!r}; jobs are {', '.join(self.names())}", param="job"
            )
        return preset


def _parse(document: dict[str, Any], origin: str) -> list[JobPreset]:
    try:
        return [JobPreset(name=name, **fields) for name, fields in document["jobs"].items()]
    except (KeyError, TypeError, ValidationError) as exc:
        raise ValueError(f"invalid job presets in {origin}: {exc}") from exc


def check_bounds(preset: JobPreset, text: str, max_new_tokens: int | None) -> int:
    """The job's token budget; a 400 when the input or the budget is out of bounds."""
    if not text.strip():
        raise InvalidValueError("input must be a non-empty string", param="input")
    if len(text) > MAX_INPUT_CHARS:
        raise InvalidValueError(
            f"input has {len(text)} characters; the maximum is {MAX_INPUT_CHARS}", param="input"
        )
    if max_new_tokens is None:
        return preset.default_max_new_tokens
    if not 1 <= max_new_tokens <= preset.max_new_tokens:
        raise InvalidValueError(
            f"max_new_tokens must be between 1 and {preset.max_new_tokens}",
            param="max_new_tokens",
        )
    return max_new_tokens


@dataclass(frozen=True)
class BusyReading:
    counter: str
    before_us: int
    after_us: int

    @property
    def delta_us(self) -> int:
        return self.after_us - self.before_us


@dataclass(frozen=True)
class JobResult:
    text: str
    parsed: Any  # the JSON object for JSON jobs, None when it does not parse
    generate_ms: float
    busy: BusyReading
    prompt_tokens: int = 0
    completion_tokens: int = 0


async def run_job(
    preset: JobPreset, runner: Runner, text: str, max_new_tokens: int, counter: BusyCounter
) -> JobResult:
    """Generate the job's answer, reading `counter` immediately before and after.

    JSON jobs are constrained to their schema where the runner enforces structured output;
    elsewhere the text is parsed and `parsed` is None when it does not parse.
    """
    constraint = None
    if preset.output == "json" and runner.capabilities.structured_output:
        constraint = OutputConstraint.json_schema(preset.json_schema or {"type": "object"}, "job")
    sampling = SamplingParams(
        max_tokens=max_new_tokens, temperature=preset.temperature, constraint=constraint
    )
    request = GenerationRequest(messages=preset.messages(text), sampling=sampling)
    deltas = runner.generate(request)
    parts: list[str] = []
    last = None
    before = counter.read_us()
    started = time.perf_counter()
    async with aclosing(deltas):
        async for delta in deltas:
            parts.append(delta.text)
            last = delta
    generate_ms = (time.perf_counter() - started) * 1000
    busy = BusyReading(counter.name, before, counter.read_us())
    answer = shape_text(preset, "".join(parts))
    parsed = _parse_json(answer) if preset.output == "json" else None
    counts = (last.prompt_tokens, last.completion_tokens) if last is not None else (0, 0)
    return JobResult(answer, parsed, generate_ms, busy, *counts)


def shape_text(preset: JobPreset, text: str) -> str:
    """Apply a text preset's shape: its first non-empty line, unquoted, within max_words."""
    text = text.strip()
    if preset.output != "text":
        return text
    if preset.single_line:
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        text = _unquote(lines[0] if lines else "")
        label, sep, rest = text.partition(":")
        if sep and rest.strip() and label.strip().lower() in {"title", "subject"}:
            text = _unquote(rest)
    if preset.max_words is not None:
        text = " ".join(text.split()[: preset.max_words])
    return text


def _unquote(text: str) -> str:
    return text.strip().strip("\"'*#` ").strip()


def _parse_json(text: str) -> Any:
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def verify_busy(busy: BusyReading) -> BusyCounterNotMovedError | None:
    if busy.delta_us > 0:
        return None
    return BusyCounterNotMovedError(
        f"the busy counter {busy.counter} did not move during the generation "
        f"({busy.before_us} -> {busy.after_us}): the work did not run where it claims"
    )


# -- where a job runs ---------------------------------------------------------------------


def npu_present() -> bool:
    return any(is_npu(d) for d in available_devices())


def default_job_device(settings: Settings) -> str:
    """The device `auto` jobs run on: the NPU engine's where an NPU is present."""
    return settings.npu_device if npu_present() else settings.device


def job_target(preset: JobPreset, settings: Settings) -> tuple[str, str]:
    """The engine and model a job runs on. `auto` prefers the NPU engine where an NPU is
    present, and otherwise runs the default model on the `openvino` engine."""
    engine = preset.engine
    if engine == "auto":
        engine = "openvino-npu" if npu_present() else "openvino"
    if preset.model is not None:
        return engine, preset.model
    if engine == "openvino-npu":
        return engine, settings.npu_model or settings.model
    return engine, settings.model


def preloaded_runners(presets: JobPresets, settings: Settings) -> list[str]:
    """The engines whose runner of the default model `--preload` loads, so that no first chat
    or job waits: `openvino` first, and the NPU engine where a job of the default model runs
    there. A job's prompt-lookup runner is not among them: it is a second copy of the weights
    (OpenVINO GenAI compiles a lookup pipeline of its own), so it loads on the first job that
    asks for it and leaves with its keep-alive (SPEC section 18)."""
    wanted = {"openvino"}
    for name in presets.names():
        engine, model = job_target(presets.get(name), settings)
        if model == settings.model:
            wanted.add(engine)
    return sorted(wanted, key=lambda engine: (engine != "openvino", engine))
