"""The stepping loop: the engine process that owns a continuous-batching pipeline.

OpenVINO GenAI's `ContinuousBatchingPipeline` batches every unfinished request into each
`step()`. Its Python binding holds the GIL for the whole step (measured: a thread sleeping
0.5 ms got one turn per 11 ms step), so a stepping *thread* froze the server's event loop
for every step: each socket write and each new request waited for the step in progress.
The pipeline therefore lives in its own process, with its own GIL, running `serve`:

    server (writer thread) --Submit / Cancel-->  engine process: admit, step, read handles
    server (event loop)  <--one StepReport per step--  (new token ids of every request, stats)

The engine process does nothing per token but read each handle once per step; text,
detokenization and HTTP stay in the server process, which runs while the pipeline steps.
Closing the connection (or the server dying) ends the engine process.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from ovrunner.engines.base import FinishReason, SamplingParams
from ovrunner.engines.openvino.generation import generation_config, import_genai
from ovrunner.engines.openvino.tuning import Assist

log = logging.getLogger(__name__)

# How often the engine process refreshes the pipeline's cache metrics.
_METRICS_INTERVAL_S = 0.5

# -- messages, server to engine process ------------------------------------------------------


@dataclass(frozen=True)
class Submit:
    request_id: int
    prompt_ids: Any  # a numpy array of token ids, shape (1, n)
    sampling: SamplingParams
    context_window: int
    assist: Assist | None = None


@dataclass(frozen=True)
class Cancel:
    request_id: int


@dataclass(frozen=True)
class Close:
    """Leave the loop and exit; in-flight requests are dropped."""


# -- messages, engine process to server ------------------------------------------------------


@dataclass(frozen=True)
class Ready:
    """The pipeline is open; its end-of-sequence ids, which every request's config needs."""

    eos_token_id: int
    stop_token_ids: set[int]


@dataclass(frozen=True)
class LoadFailed:
    message: str


@dataclass(frozen=True)
class SequenceOutput:
    """New tokens for one sequence of a request since the last update."""

    sequence_id: int
    token_ids: list[int]
    finish_reason: str | None  # "stop" / "length" once that sequence has finished
    log_probs: list[float] | None = None  # one per token, when the request asked for them


@dataclass(frozen=True)
class RequestProgress:
    request_id: int
    outputs: list[SequenceOutput]
    finished: bool
    error: str | None = None  # the pipeline refused the request


@dataclass
class EngineStats:
    steps: int = 0
    running: int = 0
    # The most requests that received tokens from one step: > 1 shows real batching.
    max_batch: int = 0
    cache_usage: float = 0.0
    kv_cache_bytes: int = 0
    # Whether the pipeline itself still holds unfinished requests (cancelled ones included).
    pipeline_busy: bool = False
    # Assisted requests past their first token: steps that gave them tokens, those tokens,
    # and the candidates proposed in those steps (accepted = tokens - steps).
    assisted_steps: int = 0
    assisted_tokens: int = 0
    assisted_proposed: int = 0


@dataclass(frozen=True)
class StepReport:
    updates: list[RequestProgress]
    stats: EngineStats


@dataclass(frozen=True)
class StepFailed:
    """The pipeline is unusable after a failed step; the process ends.

    `suspects` are the requests admitted since the last step that succeeded: a request the
    pipeline accepted but cannot run (its grammar fails to compile, say) fails the first step
    it is part of, so when they are fewer than the requests in flight, the others are not to
    blame."""

    message: str
    suspects: tuple[int, ...] = ()


# -- the engine process ------------------------------------------------------------------------

Opener = Callable[[Any], Any]  # spec -> an open ContinuousBatchingPipeline


def serve(
    conn: Connection, opener: Opener, spec: Any, log_level: str, admission_window_s: float = 0.0
) -> None:
    """Entry point of the engine process: open the pipeline, then step until the server
    closes the connection. An idle engine woken by a request waits `admission_window_s` for
    more, so that a burst prefills in one step."""
    # Ctrl-C reaches the whole process group; the server decides when this process ends.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(level=log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    try:
        pipeline = opener(spec)
    except Exception as exc:  # noqa: BLE001 - every load failure goes back to the server
        conn.send(LoadFailed(str(exc)))
        return
    defaults = pipeline.get_config()
    conn.send(Ready(defaults.eos_token_id, set(defaults.stop_token_ids)))
    try:
        _Stepper(pipeline, conn, admission_window_s).run()
    except (EOFError, ConnectionError):  # closed, reset or a broken pipe
        # The server is gone (killed): nobody is left to answer. Exit at once, without the
        # pipeline's destructor, which would report the requests it still held as leaks.
        os._exit(0)


# OpenVINO GenAI 2026.4 with prefix caching: after a request that ends at its first token
# (max_new_tokens 1), the next request with the same prompt reads a KV cache that differs from
# a fresh prefill, and its greedy answer changes (seen on CPU here, in the raw pipeline too;
# one more token makes the cache right). Such requests are generated with a second token that
# nobody sees: their answer is reported after the first, and the handle kept to the end.
PADDED_MAX_NEW_TOKENS = 2


@dataclass(eq=False)
class _Active:
    handle: Any
    wants_log_probs: bool
    # The max_new_tokens the client asked for, when the pipeline was given more.
    cap: int | None = None
    proposals: int = 0  # candidates per step, for an assisted request
    started: bool = False  # has it had its first token (its prefill is behind it)


@dataclass
class _Stepper:
    pipeline: Any
    conn: Connection
    admission_window_s: float = 0.0
    stats: EngineStats = field(default_factory=EngineStats)
    _active: dict[int, _Active] = field(default_factory=dict)
    # Handles of padded requests already answered, kept until their pipeline finishes them
    # (a dropped handle cancels its request, which is what the padding avoids).
    _draining: list[Any] = field(default_factory=list)
    _metrics_at: float = 0.0
    # Requests admitted since the last step that succeeded (see `StepFailed`).
    _unproven: set[int] = field(default_factory=set)

    def __post_init__(self) -> None:
        self._genai = import_genai()
        import openvino

        self._tensor = openvino.Tensor
        self._defaults = self.pipeline.get_config()

    def run(self) -> None:
        while True:
            if not (self._active or self.stats.pipeline_busy):  # as of the last step
                self.conn.poll(None)  # idle: sleep until the server says something
                if not self._gather():
                    return
            if not self._apply_commands():
                return
            if not self._has_work():
                continue
            try:
                self.pipeline.step()
            except Exception as exc:
                log.exception("pipeline step failed")
                message = f"the engine failed while generating: {exc}"
                self.conn.send(StepFailed(message, tuple(sorted(self._unproven))))
                return
            self._unproven.clear()
            self._publish()

    def _gather(self) -> bool:
        """Admit what arrives within the admission window; False when asked to end."""
        deadline = time.monotonic() + self.admission_window_s
        while (left := deadline - time.monotonic()) > 0 and self.conn.poll(left):
            if not self._apply_commands():
                return False
        return True

    def _has_work(self) -> bool:
        # Cancelled requests leave the pipeline on its next step, so step until it is empty.
        self.stats.pipeline_busy = self.pipeline.has_non_finished_requests()
        return bool(self._active) or self.stats.pipeline_busy

    def _apply_commands(self) -> bool:
        """Apply what the server sent; False when it asked this process to end."""
        while self.conn.poll(0):
            command = self.conn.recv()  # EOFError when the server is gone
            if isinstance(command, Close):
                return False
            if isinstance(command, Cancel):
                active = self._active.pop(command.request_id, None)
                if active is not None:
                    active.handle.cancel()
            else:
                self._admit(command)
        return True

    def _admit(self, submit: Submit) -> None:
        prompt = submit.prompt_ids
        try:
            config = generation_config(self._genai, self._defaults, submit.sampling,
                                       prompt.shape[1], submit.context_window, submit.assist)  # fmt: skip
            cap = None
            if config.max_new_tokens == 1:
                cap, config.max_new_tokens = 1, PADDED_MAX_NEW_TOKENS
            handle = self.pipeline.add_request(submit.request_id, self._tensor(prompt), config)
        except Exception as exc:  # noqa: BLE001 - a refused request must not end the engine
            error = f"the engine refused the request: {getattr(exc, 'message', exc)}"
            self.conn.send(
                StepReport([RequestProgress(submit.request_id, [], True, error)], self.stats)
            )
            return
        proposals = submit.assist.num_assistant_tokens if submit.assist is not None else 0
        self._active[submit.request_id] = _Active(handle, submit.sampling.logprobs, cap, proposals)
        self._unproven.add(submit.request_id)

    def _publish(self) -> None:
        updates: list[RequestProgress] = []
        advanced = 0
        for request_id, active in list(self._active.items()):
            handle = active.handle
            finished = handle.get_status().name != "RUNNING"
            outputs = []
            if handle.can_read():
                for sequence_id, output in handle.read().items():
                    outputs.append(
                        SequenceOutput(
                            sequence_id,
                            list(output.generated_ids),
                            _finish_reason_of(output),
                            list(output.generated_log_probs) if active.wants_log_probs else None,
                        )
                    )
            if outputs:
                advanced += 1
                if active.proposals and active.started:
                    self.stats.assisted_steps += 1
                    self.stats.assisted_tokens += sum(len(o.token_ids) for o in outputs)
                    self.stats.assisted_proposed += active.proposals
                active.started = True
            if active.cap is not None and outputs:
                # A padded request: its first token is the whole answer (see PADDED_...).
                outputs = [_capped(output, active.cap) for output in outputs]
                if not finished:
                    self._draining.append(handle)
                finished = True
            if finished:
                del self._active[request_id]
            if outputs or finished:
                updates.append(RequestProgress(request_id, outputs, finished))
        self._draining = [h for h in self._draining if h.get_status().name == "RUNNING"]
        stats = self.stats
        stats.steps += 1
        stats.running = len(self._active)
        stats.max_batch = max(stats.max_batch, advanced)
        stats.pipeline_busy = self.pipeline.has_non_finished_requests()
        self._refresh_metrics()
        self.conn.send(StepReport(updates, stats))

    def _refresh_metrics(self) -> None:
        now = time.monotonic()
        if now - self._metrics_at < _METRICS_INTERVAL_S:
            return
        self._metrics_at = now
        metrics = self.pipeline.get_metrics()
        # OpenVINO GenAI reports a percentage; ovrunner's stats and gauges carry a ratio.
        self.stats.cache_usage = float(metrics.cache_usage) / 100
        self.stats.kv_cache_bytes = int(metrics.kv_cache_size_in_bytes)


def _capped(output: SequenceOutput, cap: int) -> SequenceOutput:
    if output.finish_reason is not None and len(output.token_ids) <= cap:
        return output  # the pipeline ended it first (an end-of-sequence token, a stop string)
    log_probs = None if output.log_probs is None else output.log_probs[:cap]
    return SequenceOutput(output.sequence_id, output.token_ids[:cap],
                          FinishReason.LENGTH.value, log_probs)  # fmt: skip


def _finish_reason_of(output: Any) -> str | None:
    name = output.finish_reason.name
    return {"STOP": FinishReason.STOP.value, "LENGTH": FinishReason.LENGTH.value}.get(name)
