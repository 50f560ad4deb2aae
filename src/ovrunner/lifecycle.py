"""Runner lifecycle: loading, keep-alive and eviction. The only module with that policy.

- A model loads on first use (or at start with `--preload`); concurrent requests for a model
  that is loading wait for that one load. A failed load is reported to its waiters and the
  next request tries again.
- Work holds a `Lease` on its runner; a runner admits `max_queue` leases (running plus
  waiting, the only admission bound), and one more is a 429. When the last lease is
  released the runner's keep-alive
  starts: `-1` keeps it forever, `0` unloads it at once, otherwise it unloads after that many
  idle seconds.
- Loading a model that does not fit the memory budget first unloads the least recently used
  idle runners; if busy runners alone fill the budget, the load is refused with a 503.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from enum import StrEnum

from ovrunner.engines.base import LoadConfig, ModelRef, Runner
from ovrunner.engines.registry import EngineRegistry
from ovrunner.engines.stats import RunnerStats
from ovrunner.errors import (
    BackendMismatchError,
    CrashLoopError,
    InsufficientMemoryError,
    InvalidValueError,
    ModelNotServedError,
    QueueFullError,
)
from ovrunner.host_memory import resident_bytes
from ovrunner.store import ModelStore

log = logging.getLogger(__name__)

FOREVER = -1.0


def parse_keep_alive(value: str | float) -> float:
    """Seconds from a keep-alive as Ollama spells it: a number of seconds, or a duration such
    as "30s", "5m", "1h"; any negative value means forever."""
    if isinstance(value, bool):
        raise InvalidValueError("keep_alive must be a duration", param="keep_alive")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        text = value.strip().lower()
        units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
        unit = next((u for u in ("ms", "s", "m", "h") if text.endswith(u)), "")
        try:
            seconds = float(text[: len(text) - len(unit)]) * units.get(unit, 1)
        except ValueError:
            raise InvalidValueError(
                f"keep_alive {value!r} is not a duration like 30s, 5m or -1", param="keep_alive"
            ) from None
    return FOREVER if seconds < 0 else seconds


# A model's runner on an engine; a model's prompt-lookup runner (for the jobs that copy
# their input) is a runner of its own.
SlotKey = tuple[str, str, bool]


class RunnerState(StrEnum):
    LOADING = "loading"
    READY = "ready"
    ERROR = "error"  # the runner's pipeline died; the next request loads it again


@dataclass(eq=False)
class RunnerSlot:
    model: ModelRef
    engine: str
    memory_bytes: int
    keep_alive: float
    loaded: bool = False
    since: float = field(default_factory=time.time)
    load_ms: float | None = None
    runner: Runner | None = None
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    error: Exception | None = None
    leases: int = 0
    last_used: float = field(default_factory=time.monotonic)
    expires_at: float | None = None  # wall-clock time of the keep-alive deadline
    _timer: asyncio.TimerHandle | None = None

    @property
    def state(self) -> RunnerState:
        if self.runner is not None and self.runner.failure is not None:
            return RunnerState.ERROR
        return RunnerState.READY if self.loaded else RunnerState.LOADING

    @property
    def key(self) -> SlotKey:
        return (self.engine, self.model.id, self.model.prompt_lookup)

    def holdings(self, stats: RunnerStats | None) -> dict[str, int | None]:
        """What the runner holds in memory, from its `stats` (None before it is up): its
        weights (the files it loads), the KV cache its pipeline reserved, and the resident set
        of its engine process (None where it runs in the server's own, as the NPU engine's)."""
        pid = getattr(stats, "engine_pid", None)
        return {"weights_bytes": self.memory_bytes,
                "kv_cache_bytes": getattr(stats, "kv_cache_bytes", None),
                "process_resident_bytes": resident_bytes(pid) if pid else None}  # fmt: skip


class Lease:
    """A runner held for one piece of work; `release()` (idempotent) starts its keep-alive."""

    def __init__(self, slot: RunnerSlot, on_release: Callable[[RunnerSlot], None]) -> None:
        assert slot.runner is not None
        self.runner: Runner = slot.runner
        self._slot = slot
        self._on_release: Callable[[RunnerSlot], None] | None = on_release

    def release(self) -> None:
        if self._on_release is not None:
            on_release, self._on_release = self._on_release, None
            on_release(self._slot)


class Lifecycle:
    def __init__(
        self,
        store: ModelStore,
        registry: EngineRegistry,
        load_config: LoadConfig,
        *,
        only_model: str | None = None,
        keep_alive: float = 300.0,
        model_keep_alive: dict[str, float] | None = None,
        memory_budget_bytes: int | None = None,
        on_load: Callable[[str, float], None] | None = None,
    ) -> None:
        self._store = store
        self._registry = registry
        self._load_config = load_config
        self._only_model = only_model
        self._keep_alive = keep_alive
        self._model_keep_alive = model_keep_alive or {}
        self._budget = memory_budget_bytes
        self._on_load = on_load
        self._slots: dict[SlotKey, RunnerSlot] = {}
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
        if engine is None and model.engine not in self._registry:
            raise BackendMismatchError(
                f"the model {model_id!r} is stored for engine {model.engine!r}, "
                "which this server does not have"
            )
        runs_on = self._registry.get(engine_name)
        if not runs_on.serves(model):
            raise ModelNotServedError(
                f"the engine {engine_name!r} does not serve the model {model_id!r}",
                param="model",
            )
        if model.format not in runs_on.formats:
            raise BackendMismatchError(
                f"the model {model_id!r} is {model.format.value}; the engine {engine_name!r} "
                f"loads {', '.join(f.value for f in runs_on.formats)}"
            )
        return model, engine_name

    async def acquire(
        self,
        model_id: str,
        *,
        engine: str | None = None,
        keep_alive: float | None = None,
        prompt_lookup: bool = False,
    ) -> Lease:
        """A lease on the model's runner on `engine` (the model's own by default), loading it
        first if needed. `keep_alive` (seconds) replaces the runner's keep-alive.
        `prompt_lookup` asks for the model's runner that decodes with prompt lookup."""
        model, engine_name = self.resolve(model_id, engine=engine)
        if prompt_lookup and not model.prompt_lookup:
            model = replace(model, prompt_lookup=True, draft=None)
        key = (engine_name, model.id, model.prompt_lookup)
        slot = self._slots.get(key)
        failure = slot.runner.failure if slot is not None and slot.runner is not None else None
        if isinstance(failure, CrashLoopError) and time.monotonic() < failure.retry_at:
            raise failure  # no reload storm: it waits for an unload or the end of the window
        if slot is not None and failure is not None:
            log.warning("the runner of %s failed (%s); loading it again", model.id, failure)
            self._unload(slot)
            slot = None
        if slot is None or slot.error is not None:
            # An embedded model's files built on first use (an IR conversion), before its
            # memory is estimated from them.
            await asyncio.to_thread(self._store.materialize, model)
            slot = self._slots.get(key) or slot
        if slot is None or slot.error is not None:
            slot = RunnerSlot(
                model,
                engine_name,
                self._registry.get(engine_name).required_memory(model),
                self._model_keep_alive.get(model.id, self._keep_alive),
            )
            self._make_room(slot)
            self._slots[slot.key] = slot
            asyncio.create_task(self._load(slot))
        if slot.leases >= self._load_config.max_queue:
            raise QueueFullError(
                f"model {model.id!r} has {slot.leases} requests running or waiting; "
                "try again shortly"
            )
        if keep_alive is not None:
            slot.keep_alive = keep_alive
        slot.leases += 1
        self._cancel_expiry(slot)
        try:
            await slot.ready.wait()
        except BaseException:
            self._release(slot)
            raise
        if slot.error is not None:
            slot.leases -= 1
            raise slot.error
        return Lease(slot, self._release)

    async def runner_for(
        self, model_id: str, *, engine: str | None = None, prompt_lookup: bool = False
    ) -> Runner:
        """Load the model (if needed) and return its runner without holding it."""
        lease = await self.acquire(model_id, engine=engine, prompt_lookup=prompt_lookup)
        lease.release()
        return lease.runner

    # -- loading and unloading -------------------------------------------------------------

    def _make_room(self, incoming: RunnerSlot) -> None:
        if self._budget is None:
            return
        used = sum(s.memory_bytes for s in self._slots.values())
        idle = sorted(
            (s for s in self._slots.values() if s.leases == 0 and s.state is RunnerState.READY),
            key=lambda s: s.last_used,
        )
        while used + incoming.memory_bytes > self._budget and idle:
            victim = idle.pop(0)
            log.info("unloading %s to make room for %s", victim.model.id, incoming.model.id)
            used -= victim.memory_bytes
            self._unload(victim)
        if used + incoming.memory_bytes > self._budget:
            raise InsufficientMemoryError(
                f"the model {incoming.model.id!r} needs about {incoming.memory_bytes >> 20} MiB; "
                f"busy runners use {used >> 20} MiB of the {self._budget >> 20} MiB budget"
            )

    async def _load(self, slot: RunnerSlot) -> None:
        engine = self._registry.get(slot.engine)
        started = time.perf_counter()
        try:
            slot.runner = await asyncio.to_thread(engine.load, slot.model, self._load_config)
        except Exception as exc:  # noqa: BLE001 - kept on the slot and raised to each waiter
            log.error("loading %s failed: %s", slot.model.id, exc)
            slot.error = exc
            if self._slots.get(slot.key) is slot:
                del self._slots[slot.key]
        else:
            slot.load_ms = (time.perf_counter() - started) * 1000
            if self.initial_load_ms is None:
                self.initial_load_ms = slot.load_ms
            slot.loaded = True
            slot.since = time.time()
            log.info("loaded %s on %s in %.0f ms", slot.model.id, engine.name, slot.load_ms)
            if self._on_load is not None:
                self._on_load(slot.model.id, slot.load_ms / 1000)
        finally:
            slot.ready.set()

    def _release(self, slot: RunnerSlot) -> None:
        slot.leases -= 1
        slot.last_used = time.monotonic()
        if slot.leases > 0 or slot.state is not RunnerState.READY:
            return
        if slot.keep_alive == 0:
            self._unload(slot)
        elif slot.keep_alive > 0:
            slot.expires_at = time.time() + slot.keep_alive
            slot._timer = asyncio.get_running_loop().call_later(slot.keep_alive, self._expire, slot)

    def _cancel_expiry(self, slot: RunnerSlot) -> None:
        if slot._timer is not None:
            slot._timer.cancel()
            slot._timer = None
        slot.expires_at = None

    def _expire(self, slot: RunnerSlot) -> None:
        slot._timer = None
        if slot.leases == 0 and self._slots.get(slot.key) is slot:
            log.info("keep-alive of %s expired; unloading", slot.model.id)
            self._unload(slot)

    def _unload(self, slot: RunnerSlot) -> None:
        self._cancel_expiry(slot)
        if self._slots.get(slot.key) is slot:
            del self._slots[slot.key]
        if slot.runner is not None:
            runner, slot.runner = slot.runner, None
            # Closing waits for the engine process to exit: not on the event loop.
            asyncio.get_running_loop().run_in_executor(None, runner.close)

    def unload_model(self, model_id: str) -> int:
        """Unload every runner of `model_id` (before the store deletes it, or on request);
        requests still running on them end with an error. Returns how many there were."""
        slots = [s for s in self._slots.values() if s.model.id == model_id]
        for slot in slots:
            self._unload(slot)
        return len(slots)

    # -- status ----------------------------------------------------------------------------

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
            self._cancel_expiry(slot)
            if slot.runner is not None:
                await asyncio.to_thread(slot.runner.close)
