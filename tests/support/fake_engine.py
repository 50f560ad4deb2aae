"""A fake engine for failure injection only: it fails on demand, where a real one cannot be
made to. Every other test uses the real OpenVINO pipeline."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator

from ovrunner.engines.base import (
    Engine,
    EngineState,
    EngineStatus,
    FinishReason,
    GenerationDelta,
    GenerationRequest,
    LoadConfig,
    ModelInfo,
    ModelRef,
    Runner,
)
from ovrunner.engines.stats import RunnerStats
from ovrunner.errors import EngineError

FAIL = "FAIL-MIDSTREAM"


class FakeRunner(Runner):
    engine_name = "fake"
    device = "CPU"

    def __init__(self, model_id: str) -> None:
        self.model_id = model_id
        self.active = 0

    async def generate(self, request: GenerationRequest) -> AsyncGenerator[GenerationDelta, None]:
        text = request.prompt or str(request.messages)
        self.active += 1
        try:
            for i in range(6):
                await asyncio.sleep(0.01)
                if FAIL in text and i == 2:
                    raise EngineError("injected failure")
                reason = FinishReason.LENGTH if i == 5 else None
                yield GenerationDelta(0, f"t{i} ", 3, i + 1, reason)
        finally:
            self.active -= 1

    def stats(self) -> RunnerStats:
        return RunnerStats(admitted=self.active, running=self.active, waiting=0)

    def close(self) -> None:
        pass


class FakeEngine(Engine):
    name = "fake"

    def install(self) -> None:
        pass

    def status(self) -> EngineState:
        return EngineState(EngineStatus.RUNNING, "fake engine for failure injection")

    def describe(self, model: ModelRef) -> ModelInfo:
        return ModelInfo(model.id, 512)

    def load(self, model: ModelRef, config: LoadConfig) -> Runner:
        return FakeRunner(model.id)
