"""Wire models of the experimental worker routes (`/exp/v1/worker/...`)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ovrunner.protocol.openai import Usage


class WorkerRequest(BaseModel):
    # Unknown fields are ignored, as on the OpenAI routes; the bounds are checked by the job.
    model_config = ConfigDict(extra="allow", allow_inf_nan=False)

    job: str | None = None
    input: str
    max_new_tokens: int | None = None


class Timing(BaseModel):
    load: float
    initial_load: float | None
    generate: float
    total: float


class WorkerResponse(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    model: str
    device: str
    job: str
    text: str
    json_: Any = Field(None, alias="json")
    timing_ms: Timing
    busy_counter: str
    busy_delta_us: int
    busy_before_us: int
    busy_after_us: int
    # Present only when the job ran on an NPU, named as the original worker contract names them.
    npu_busy_delta_us: int | None = None
    npu_busy_before_us: int | None = None
    npu_busy_after_us: int | None = None
    cache_dir: str | None = None
    # Tokens of the job's prompt (its instructions and input, templated) and answer.
    usage: Usage | None = None

    def body(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, exclude_none=False, exclude=self._absent())

    def _absent(self) -> set[str]:
        npu = {"npu_busy_delta_us", "npu_busy_before_us", "npu_busy_after_us"}
        return npu if self.npu_busy_delta_us is None else set()
