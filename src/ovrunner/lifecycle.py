"""Runner lifecycle: which models are loaded, loading them once, and unloading them.

This is the only module with loading policy. Concurrent requests for a model that is still
loading wait for that one load instead of starting their own.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from enum import StrEnum

from ovrunner.engines.base import LoadConfig, ModelRef, Runner
from ovrunner.engines.registry import EngineRegistry
from ovrunner.errors import ModelNotServedError
from ovrunner.store import ModelStore

log = logging.getLogger(__name__)


class RunnerState(StrEnum):
    LOADING = "loading"
    READY = "ready"


@dataclass
class RunnerSlot:
    model: ModelRef
    engine: str
    state: RunnerState = RunnerState.LOADING
    since: float = field(default_factory=time.time)
    load_ms: float | None = None
    runner: Runner | None = None
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    error: Exception | None = None


class Lifecycle:
    def __init__(
        self,
        store: ModelStore,
        registry: EngineRegistry,
        load_config: LoadConfig,
        *,
        only_model: str | None = None,
    ) -> None:
        self._store = store
        self._registry = registry
        self._load_config = load_config
        self._only_model = only_model
        self._slots: dict[tuple[str, str], RunnerSlot] = {}  # by (engine, model id)
        self.initial_load_ms: float | None = None

    def resolve(self, model_id: str, *, engine: str | None = None) -> tuple[ModelRef, str]:
        """The stored model and the engine to run it on; 421 when this runner, or the
        engine the request is pinned to, does not serve it."""
        model = self._store.get(model_id)
        if self._only_model is not None and model_id != self._only_model:
            raise ModelNotServedError(
                f"this runner serves only {self._only_model!r}, not {model_id!r}", param="model"
            )
        engine_name = engine or model.engine
        if not self._registry.get(engine_name).serves(model):
            raise ModelNotServedError(
                f"the engine {engine_name!r} does not serve the model {model_id!r}",
                param="model",
            )
        return model, engine_name

    async def runner_for(self, model_id: str, *, engine: str | None = None) -> Runner:
        """The model's runner on `engine` (the model's own engine by default), loading it
        first if needed; concurrent callers wait for the same load."""
        model, engine_name = self.resolve(model_id, engine=engine)
        key = (engine_name, model.id)
        slot = self._slots.get(key)
        if slot is None or slot.error is not None:
            slot = self._slots[key] = RunnerSlot(model, engine_name)
            asyncio.create_task(self._load(slot))
        await slot.ready.wait()
        if slot.error is not None:
            raise slot.error
        assert slot.runner is not None
        return slot.runner

    async def _load(self, slot: RunnerSlot) -> None:
        engine = self._registry.get(slot.engine)
        started = time.perf_counter()
        try:
            slot.runner = await asyncio.to_thread(engine.load, slot.model, self._load_config)
        except Exception as exc:
            log.error("loading %s failed: %s", slot.model.id, exc)
            slot.error = exc
            self._slots.pop((slot.engine, slot.model.id), None)
        else:
            slot.load_ms = (time.perf_counter() - started) * 1000
            if self.initial_load_ms is None:
                self.initial_load_ms = slot.load_ms
            slot.state = RunnerState.READY
            slot.since = time.time()
            log.info("loaded %s on %s in %.0f ms", slot.model.id, engine.name, slot.load_ms)
        finally:
            slot.ready.set()

    def slots(self) -> list[RunnerSlot]:
        return list(self._slots.values())

    def is_loaded(self, model_id: str) -> bool:
        return any(
            slot.model.id == model_id and slot.state is RunnerState.READY
            for slot in self._slots.values()
        )

    async def close(self) -> None:
        slots, self._slots = list(self._slots.values()), {}
        for slot in slots:
            if slot.runner is not None:
                await asyncio.to_thread(slot.runner.close)
