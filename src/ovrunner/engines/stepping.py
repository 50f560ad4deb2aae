"""The stepping loop: one thread that owns a continuous-batching pipeline.

OpenVINO GenAI's `ContinuousBatchingPipeline` batches every unfinished request into each
`step()`. This module gives that pipeline exactly one owner thread, which admits new requests,
cancels abandoned ones, steps, reads every handle once per step and hands the new tokens to
the asyncio loop in a single callback per step (not one per token). `step()` releases the GIL,
so the event loop keeps serving HTTP while the pipeline computes.

Only the stepping thread touches the pipeline and its handles; the event loop talks to it
through a command queue, and hears back through `loop.call_soon_threadsafe`.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ovrunner.errors import EngineError

log = logging.getLogger(__name__)

# How often the stepping thread refreshes the pipeline's cache metrics.
_METRICS_INTERVAL_S = 0.5


@dataclass(frozen=True)
class SequenceOutput:
    """New tokens for one sequence of a request since the last update."""

    sequence_id: int
    token_ids: list[int]
    finish_reason: str | None  # "stop" / "length" once that sequence has finished
    log_probs: list[float] | None = None  # one per token, when the request asked for them


@dataclass(frozen=True)
class StepUpdate:
    outputs: list[SequenceOutput]
    finished: bool
    error: EngineError | None = None


@dataclass(eq=False)
class BatchJob:
    """One request in the loop. `context` and `outbox` belong to the event loop: the
    `on_updates` hook keeps its per-request state in `context` and its results in `outbox`."""

    request_id: int
    prompt: Any  # an openvino.Tensor of input ids
    config: Any  # an openvino_genai.GenerationConfig
    loop: asyncio.AbstractEventLoop
    context: Any = None
    outbox: asyncio.Queue[Any] = field(default_factory=asyncio.Queue)
    handle: Any = None  # owned by the stepping thread
    wants_log_probs: bool = False
    submitted_at: float = field(default_factory=time.monotonic)


OnUpdates = Callable[[list[tuple[BatchJob, StepUpdate]]], None]


@dataclass
class LoopStats:
    steps: int = 0
    running: int = 0
    # The most requests that received tokens from one step: > 1 shows real batching.
    max_batch: int = 0
    cache_usage: float = 0.0
    kv_cache_bytes: int = 0
    # Whether the pipeline itself still holds unfinished requests (cancelled ones included).
    pipeline_busy: bool = False


class _Cancel:
    __slots__ = ("job",)

    def __init__(self, job: BatchJob) -> None:
        self.job = job


_CLOSE = object()


class SteppingLoop:
    """Drives `pipeline` from one thread; `submit` and `cancel` are called from the event loop.

    After each step, `on_updates` runs once on the event loop with every request that
    advanced or finished in that step. `finish_reason_of` maps the pipeline's per-sequence
    finish reason to "stop", "length" or None (still running); `is_finished` tells whether a
    handle's request has left the pipeline.
    """

    def __init__(
        self,
        pipeline: Any,
        *,
        name: str,
        on_updates: OnUpdates,
        finish_reason_of: Callable[[Any], str | None],
        is_finished: Callable[[Any], bool],
        read_metrics: Callable[[Any], tuple[float, int]] | None = None,
    ) -> None:
        self._pipeline = pipeline
        self._on_updates = on_updates
        self._finish_reason_of = finish_reason_of
        self._is_finished = is_finished
        self._read_metrics = read_metrics
        self._commands: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._active: dict[int, BatchJob] = {}
        self._ids = itertools.count()
        self._metrics_at = 0.0
        self.stats = LoopStats()
        self.failure: EngineError | None = None
        self._thread = threading.Thread(target=self._run, name=f"ovrunner-step-{name}", daemon=True)
        self._thread.start()

    # -- event-loop side -------------------------------------------------------------------

    def submit(self, prompt: Any, config: Any, context: Any = None) -> BatchJob:
        if self.failure is not None:
            raise self.failure
        job = BatchJob(next(self._ids), prompt, config, asyncio.get_running_loop(), context)
        job.wants_log_probs = bool(getattr(config, "logprobs", 0))
        self._commands.put(job)
        return job

    def cancel(self, job: BatchJob) -> None:
        self._commands.put(_Cancel(job))

    def close(self, timeout: float = 10.0) -> None:
        self._commands.put(_CLOSE)
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    # -- stepping thread ---------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while self._apply_commands(block=not self._has_work()):
                if not self._has_work():
                    continue
                try:
                    self._pipeline.step()
                except Exception as exc:  # the pipeline is unusable after a failed step
                    log.exception("pipeline step failed")
                    self.failure = EngineError(f"the engine failed while generating: {exc}")
                    self._fail_all(self.failure)
                    return
                self._publish()
        finally:
            self._fail_all(EngineError("the runner was unloaded"))
            self._pipeline = None

    def _has_work(self) -> bool:
        # Cancelled requests leave the pipeline on its next step, so step until it is empty.
        self.stats.pipeline_busy = self._pipeline.has_non_finished_requests()
        return bool(self._active) or self.stats.pipeline_busy

    def _apply_commands(self, *, block: bool) -> bool:
        """Apply queued commands; return False when the loop must stop."""
        try:
            command = self._commands.get(block=block)
        except queue.Empty:
            return True
        while True:
            if command is _CLOSE:
                return False
            if isinstance(command, _Cancel):
                self._cancel(command.job)
            else:
                assert isinstance(command, BatchJob)
                self._admit(command)
            try:
                command = self._commands.get_nowait()
            except queue.Empty:
                return True

    def _admit(self, job: BatchJob) -> None:
        try:
            job.handle = self._pipeline.add_request(job.request_id, job.prompt, job.config)
        except Exception as exc:
            error = EngineError(f"the engine refused the request: {exc}")
            self._post([(job, StepUpdate([], finished=True, error=error))])
            return
        self._active[job.request_id] = job

    def _cancel(self, job: BatchJob) -> None:
        if self._active.pop(job.request_id, None) is not None:
            job.handle.cancel()
        job.handle = None

    def _publish(self) -> None:
        batch: list[tuple[BatchJob, StepUpdate]] = []
        advanced = 0
        for request_id, job in list(self._active.items()):
            handle = job.handle
            finished = self._is_finished(handle)
            outputs = []
            if handle.can_read():
                for sequence_id, output in handle.read().items():
                    outputs.append(
                        SequenceOutput(
                            sequence_id,
                            list(output.generated_ids),
                            self._finish_reason_of(output),
                            list(output.generated_log_probs) if job.wants_log_probs else None,
                        )
                    )
            if outputs:
                advanced += 1
            if finished:
                del self._active[request_id]
                job.handle = None
            if outputs or finished:
                batch.append((job, StepUpdate(outputs, finished)))
        self.stats.steps += 1
        self.stats.running = len(self._active)
        self.stats.max_batch = max(self.stats.max_batch, advanced)
        self._refresh_metrics()
        if batch:
            self._post(batch)

    def _refresh_metrics(self) -> None:
        now = time.monotonic()
        if self._read_metrics is None or now - self._metrics_at < _METRICS_INTERVAL_S:
            return
        self._metrics_at = now
        self.stats.cache_usage, self.stats.kv_cache_bytes = self._read_metrics(self._pipeline)

    def _fail_all(self, error: EngineError) -> None:
        jobs = list(self._active.values())
        self._active.clear()
        self._post([(job, StepUpdate([], finished=True, error=error)) for job in jobs])

    def _post(self, batch: list[tuple[BatchJob, StepUpdate]]) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[BatchJob, StepUpdate]]] = {}
        for job, update in batch:
            by_loop.setdefault(job.loop, []).append((job, update))
        for loop, items in by_loop.items():
            try:
                loop.call_soon_threadsafe(self._on_updates, items)
            except RuntimeError:  # the loop has closed; nobody is listening
                pass
