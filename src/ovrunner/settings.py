"""One settings model. Each setting has one name through every layer: the field `max_queue`
is the flag `--max-queue`, the variable `OVRUNNER_MAX_QUEUE` and the TOML key `max_queue`.
Precedence: flags, then environment, then the TOML file (`--config` / `OVRUNNER_CONFIG`),
then the defaults below.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

DEFAULT_PORT = 18820


def default_store_dir() -> Path:
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "ovrunner"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="OVRUNNER_", extra="forbid")

    host: str = Field("127.0.0.1", description="Address to bind; loopback by default.")
    port: int = Field(DEFAULT_PORT, ge=0, le=65535, description="TCP port to listen on.")
    uds: Path | None = Field(
        None, description="Serve on this Unix domain socket instead of host and port."
    )
    model: str = Field("smollm2-135m", description="The default model: served and reported.")
    only: bool = Field(
        False, description="Serve only `model`; requests for any other model get 421."
    )
    preload: bool = Field(False, description="Load the default model at start-up.")
    store_dir: Path = Field(
        default_factory=default_store_dir, description="Where models and caches are kept."
    )
    state_dir: Path | None = Field(
        None,
        description="Where this process writes: OpenVINO's compile cache and the default "
        "Responses database. Unset: the store directory while it is writable; beside a "
        "read-only store (replicas sharing one volume), a directory of the process's own under "
        "the system's temporary directory, gone with it.",
    )
    device: str = Field("CPU", description="OpenVINO device for the `openvino` engine.")
    kv_cache_gb: float | None = Field(
        None,
        gt=0,
        description="KV-cache size per runner, in GB; unset: room for two of the model's "
        "context windows (at least 16,384 tokens), within 40 percent of the memory available when "
        "the runner loads.",
    )
    inference_precision: Literal["auto", "f32", "bf16", "f16"] = Field(
        "auto",
        description="Precision the `openvino` engine computes in; `auto`: f32 on CPU (measured "
        "as fast or faster than bf16), the device's own choice elsewhere.",
    )
    kv_cache_precision: Literal["auto", "u8", "u4", "f16", "bf16", "f32"] = Field(
        "auto", description="KV-cache precision; `auto`: the device's own (u8 on CPU)."
    )
    dynamic_quantization_group_size: int | None = Field(
        None,
        ge=0,
        multiple_of=16,
        description="Group size in which the CPU engine quantizes activations to int8 for "
        "its matmuls on int8 and int4 weights (`DYNAMIC_QUANTIZATION_GROUP_SIZE`); 0 turns it "
        "off: one stream about 1.1x faster on int8 weights, eight streams 2.5x slower "
        "(docs/benchmarks.md). Unset: 128 where every compressed weight is int8 per channel "
        "(measured faster at 1 to 16 streams), else the plugin's default (32).",
    )
    engine_threads: int = Field(
        0, ge=0, description="Threads of each engine's inference; 0: every core."
    )
    max_batched_tokens: int | None = Field(
        None,
        ge=16,
        description="Tokens one engine step may process, prompts and new tokens together; "
        "unset: the engine's default (256 on OpenVINO).",
    )
    admission_window_ms: float = Field(
        0,
        ge=0,
        le=100,
        description="How long an idle engine woken by a request waits for more before its "
        "first step, so a burst prefills together.",
    )
    max_queue: int = Field(
        64, ge=1, description="Requests admitted per runner (running plus waiting)."
    )
    crash_limit: int = Field(
        3,
        ge=1,
        description="Engine failures within `crash_window_s` after which a runner "
        "stops restarting its engine (503 until unloaded).",
    )
    crash_window_s: float = Field(
        60, gt=0, description="The window in which `crash_limit` failures stop the restarts."
    )
    log_level: str = Field("info", description="Logging level.")
    api_key: SecretStr | None = Field(
        None, description="Bearer key every route but /healthz requires; needed off loopback."
    )
    api_key_file: Path | None = Field(None, description="A file holding the API key.")
    max_body_bytes: int = Field(1 << 20, ge=1024, description="Largest request body (413).")
    metrics_open: bool = Field(
        False,
        description="With an API key set, serve /metrics without it (counts only, never "
        "content), for scrapers that send no key.",
    )
    allowed_hosts: list[str] = Field(
        default_factory=list,
        description="Host names answered besides the bind address and loopback names, while "
        "no API key is set (others get 403: DNS rebinding).",
    )
    cors_origins: list[str] = Field(
        default_factory=list,
        description="Origins whose web pages may call the API from a browser (CORS); none "
        "by default.",
    )
    header_timeout_s: float = Field(
        10,
        gt=0,
        description="A connection whose request headers have not all arrived this "
        "long after it opened (or after its last request) is closed: slow clients.",
    )
    body_timeout_s: float = Field(
        30,
        gt=0,
        description="A request body that stalls this long between two chunks is "
        "dropped with its connection.",
    )
    keep_alive_timeout_s: float = Field(
        5, gt=0, description="An idle kept-alive connection is closed after this long."
    )
    max_connections: int | None = Field(
        None,
        ge=1,
        description="Open connections beyond which a new one is closed at once; "
        "unset: what the process's file-descriptor limit leaves room for (limit - 512).",
    )
    shutdown_grace_s: float = Field(
        30, ge=0, description="On SIGTERM, how long in-flight requests may finish."
    )
    keep_alive: str = Field(
        "5m", description="How long an idle runner stays loaded: 30s, 5m, 1h; -1 forever; 0 unload."
    )
    model_keep_alive: dict[str, str] = Field(
        default_factory=dict, description="Keep-alive per model id, overriding `keep_alive`."
    )
    memory_budget_gb: float | None = Field(
        None,
        gt=0,
        description="RAM for loaded models; loading beyond it unloads the least recently used "
        "idle runner. Unset: no budget.",
    )
    # The bounded NPU engine and the worker jobs.
    responses_db: str | None = Field(
        None,
        description="Where Responses API answers are kept: unset, SQLite in the state directory (`state_dir`); "
        "sqlite:///PATH; postgresql://USER@HOST/DB (shared by replicas); memory (lost at exit).",
        pattern=r"^(postgres(ql)?://.*|sqlite:///.+|memory)$",
        repr=False,  # a URL may carry a password
    )
    responses_kept: int = Field(
        256,
        ge=0,
        description="Responses API answers kept for previous_response_id and "
        "GET /v1/responses/{id}; the oldest go first. 0 keeps none.",
    )
    responses_kept_mb: int = Field(
        64,
        ge=1,
        description="Space the kept Responses API answers may take together, in MB of JSON.",
    )
    responses_kept_days: float = Field(
        30, gt=0, description="A kept Responses API answer older than this is forgotten."
    )
    embedding_max_inputs: int = Field(
        2048,
        ge=1,
        le=4096,
        description="Inputs per /v1/embeddings request, and documents per /v1/rerank request.",
    )
    embedding_max_tokens: int = Field(
        300_000,
        ge=1,
        description="Tokens per /v1/embeddings or /v1/rerank request, all inputs together.",
    )
    audio_max_bytes: int = Field(
        25 * 1024 * 1024,
        ge=1024,
        description="Largest audio file /v1/audio/transcriptions and translations take (413), "
        "as OpenAI's 25 MB.",
    )
    transcription_beams: int = Field(
        5,
        ge=1,
        le=8,
        description="Beam search width of a transcription at temperature 0 (1: greedy; a "
        "streamed transcription is always greedy).",
    )
    audio_max_seconds: float = Field(
        1800,
        gt=0,
        description="Longest audio per transcription, checked before it is decoded (400).",
    )
    reasoning_format: Literal["separate", "inline"] = Field(
        "separate",
        description="A reasoning model's thinking: `separate` puts it in `reasoning_content`; "
        "`inline` leaves it in the content, tags and all.",
    )
    npu_model: str | None = Field(
        None, description="The one model the `openvino-npu` engine serves; `model` if unset."
    )
    npu_device: str = Field(
        "NPU", description="Device of the `openvino-npu` engine (CPU runs it anywhere)."
    )
    npu_max_prompt_len: int = Field(
        1024, ge=16, description="Prompt cap of the `openvino-npu` engine, in tokens."
    )
    npu_min_response_len: int = Field(
        64, ge=1, description="MIN_RESPONSE_LEN compiled into the NPU pipeline."
    )
    npu_busy_path: Path = Field(
        Path("/sys/class/accel/accel0/device/npu_busy_time_us"),
        description="The NPU busy-time counter in sysfs.",
    )
    busy_counter: Literal["auto", "cpu", "npu"] = Field(
        "auto",
        description="Counter that verifies worker jobs: `auto` follows the job's device "
        "(NPU: sysfs, otherwise process CPU time).",
    )
    weight_format: Literal["auto", "int4", "int8", "f16"] = Field(
        "auto",
        description="What a GGUF's weights become at import or pull (docs/models.md); `auto`: "
        "at least the GGUF's bits (a mostly 4-bit GGUF's 4-bit tensors int4 in groups of 32, "
        "every other weight symmetric int8 per channel), and on the `openvino-npu` engine "
        "symmetric channel-wise int4, as the NPU wants.",
    )
    hf_endpoint: str | None = Field(
        None, description="Hugging Face Hub endpoint for pulls (a mirror); the hub if unset."
    )
    jobs_file: Path | None = Field(
        None, description="A TOML file of worker job presets, added to the built-in ones."
    )

    def resolved_api_key(self) -> str | None:
        if self.api_key is not None:
            return self.api_key.get_secret_value() or None
        if self.api_key_file is not None:
            return self.api_key_file.read_text().strip() or None
        return None

    @property
    def bind(self) -> str:
        return f"unix:{self.uds}" if self.uds is not None else f"{self.host}:{self.port}"

    @property
    def compile_cache_dir(self) -> Path:
        return (self.state_dir or self.store_dir) / "compile-cache"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls))


def load_settings(config_file: Path | None = None, **flags: Any) -> Settings:
    """Settings from flags (None means not given), the environment and a TOML file."""
    given = {name: value for name, value in flags.items() if value is not None}
    path = config_file or os.environ.get("OVRUNNER_CONFIG")
    if path is None:
        return Settings(**given)

    toml_file = Path(path)

    class FileSettings(Settings):
        model_config = SettingsConfigDict(toml_file=toml_file)

    return FileSettings(**given)
