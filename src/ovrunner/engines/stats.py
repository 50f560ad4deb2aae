"""What runners report of themselves at a point in time: `/engines/ps` and the metrics read
it. Every runner reports `RunnerStats`; each engine family extends it with its own counters."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RunnerStats:
    """What every runner reports at a point in time (`/engines/ps`, the metrics); engines
    extend it with their own counters."""

    admitted: int  # requests inside the runner: running, or waiting their turn
    running: int
    waiting: int


@dataclass(frozen=True)
class BatchingStats(RunnerStats):
    """The continuous-batching runner's, from its engine process's last report."""

    steps: int
    max_batch: int
    cache_usage: float
    kv_cache_bytes: int
    pipeline_busy: bool
    engine_pid: int | None
    restarts: int
    restarting: bool
    # Assisted decoding (prompt lookup, a draft model): its steps that yielded tokens, the
    # tokens they yielded, and the candidates proposed. `plain` runners leave them at 0.
    decoding: str = "plain"
    assisted_steps: int = 0
    assisted_tokens: int = 0
    assisted_proposed: int = 0


@dataclass(frozen=True)
class NpuStats(RunnerStats):
    max_prompt_len: int
    max_new_tokens: int
