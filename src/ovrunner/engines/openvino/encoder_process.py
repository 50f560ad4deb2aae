"""A one-call-at-a-time pipeline (`TextEmbeddingPipeline`, `TextRerankPipeline`,
`WhisperPipeline`) in a process of its own.

An abort or a segfault inside a native library ends that process, never the server and the
chat streams beside it. The server's side, `EncoderProcess`, makes one call at a time (`call`
blocks; the runner calls it from a worker thread): a call during which the process dies is
made once more on a new process, then fails alone with the cause. `crash_limit` deaths within
`crash_window_s` stop the restarts (a `CrashLoopError`, 503) until the model is unloaded, as
for the generating engine.

A call may stream: the process sends `("event", value)` messages before its answer (a
transcription's text as it is decoded), handed to the caller's `on_event`; `cancel` asks the
call in progress to stop (the pipeline's streamer reads the flag between tokens).
"""

from __future__ import annotations

import logging
import multiprocessing
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ovrunner.engines.base import Mode, ModelRef
from ovrunner.engines.openvino.common import CrashWindow
from ovrunner.errors import CrashLoopError, EngineError, ModelLoadFailedError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EncoderSpec:
    """What the process needs to open the pipeline (it must pickle)."""

    model: ModelRef
    device: str
    properties: dict[str, Any]
    top_n: int


@dataclass(frozen=True)
class CallContext:
    """What a call inside the process may use besides its arguments."""

    emit: Callable[[Any], None]  # sends an event to the caller
    cancelled: Callable[[], bool]  # whether the caller asked the call to stop


class _PipelineCalls:
    """An encoder pipeline's methods as calls: the context ignored, results as plain lists."""

    def __init__(self, pipeline: Any) -> None:
        self._pipeline = pipeline

    def __getattr__(self, method: str) -> Callable[..., Any]:
        def call(_context: CallContext, *args: Any) -> Any:
            result = getattr(self._pipeline, method)(*args)
            # Embeddings: one vector per text; rerank: (index, score) pairs.
            return [tuple(r) if isinstance(r, tuple) else list(r) for r in result]

        return call


def open_encoder(spec: EncoderSpec) -> Any:
    """What answers the calls of `spec` (inside the process)."""
    import openvino_genai as genai

    if spec.model.mode is Mode.TRANSCRIPTION:
        from ovrunner.engines.whisper.worker import WhisperWorker

        return WhisperWorker(spec.model.path, spec.device, spec.properties)

    from ovrunner.engines.encoder_files import embedding_config, encoder_window

    path = str(spec.model.path)
    if spec.model.mode is Mode.EMBEDDING:
        config = embedding_config(spec.model.path)
        pipeline_config = genai.TextEmbeddingPipeline.Config(
            pooling_type=getattr(genai.TextEmbeddingPipeline.PoolingType, config.pooling),
            normalize=config.normalize,
            max_length=config.window,
        )
        return _PipelineCalls(
            genai.TextEmbeddingPipeline(path, spec.device, pipeline_config, **spec.properties)
        )
    pipeline_config = genai.TextRerankPipeline.Config(
        top_n=spec.top_n, max_length=encoder_window(spec.model.path)
    )
    return _PipelineCalls(
        genai.TextRerankPipeline(path, spec.device, pipeline_config, **spec.properties)
    )


def serve(conn: Any, spec: EncoderSpec, cancel: Any) -> None:
    """The process: open the pipeline, then answer `(method, args)` calls until EOF."""
    try:
        worker = open_encoder(spec)
    except Exception as exc:  # noqa: BLE001 - sent to the server as the load's failure
        conn.send(("failed", str(exc)))
        return
    conn.send(("ready", None))
    context = CallContext(emit=lambda value: conn.send(("event", value)),
                          cancelled=cancel.is_set)  # fmt: skip
    while True:
        try:
            method, args = conn.recv()
        except (EOFError, OSError):
            return
        try:
            result = getattr(worker, method)(context, *args)
        except (RuntimeError, ValueError) as exc:  # the pipeline refused these inputs
            conn.send(("error", str(exc)))
            continue
        conn.send(("ok", result))


class EncoderProcess:
    """The server's side of an encoder process, restarted when it dies."""

    def __init__(self, spec: EncoderSpec, *, crash_limit: int, crash_window_s: float) -> None:
        self._spec = spec
        self._crashes = CrashWindow(crash_limit, crash_window_s)
        self._lock = threading.Lock()  # one call at a time; also guards start and close
        self._cancel: Any = None  # the flag of the call in progress (an Event shared with it)
        self._current: object | None = None  # the call in progress, for `cancel`
        self._cancel_lock = threading.Lock()
        self._failure: CrashLoopError | None = None
        self._closed = False
        self.restarts = 0
        self._process: Any = None
        self._conn: Any = None
        self._start()

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def _start(self) -> None:
        context = multiprocessing.get_context("spawn")
        conn, child = context.Pipe()
        self._cancel = context.Event()
        process = context.Process(target=serve, args=(child, self._spec, self._cancel), daemon=True,
                                  name=f"ovrunner-encoder-{self._spec.model.id}")  # fmt: skip
        process.start()
        child.close()
        try:
            status, detail = conn.recv()
        except EOFError:
            process.join(5)
            status, detail = "failed", f"the encoder process exited ({process.exitcode})"
        if status != "ready":
            conn.close()
            process.join(5)
            raise ModelLoadFailedError(f"could not load model {self._spec.model.id!r}: {detail}")
        self._process, self._conn = process, conn

    def call(self, method: str, *args: Any, on_event: Callable[[Any], None] | None = None,
             token: object | None = None) -> Any:  # fmt: skip
        """`method(*args)` in the process; blocking, from a worker thread. Events the call
        sends go to `on_event`; `cancel(token)` asks this call to stop."""
        with self._lock:
            if self._closed:
                raise EngineError(f"the runner of {self._spec.model.id!r} was unloaded")
            for attempt in (1, 2):
                if self._failure is not None:
                    raise self._failure
                with self._cancel_lock:
                    self._cancel.clear()
                    self._current = token
                try:
                    self._conn.send((method, args))
                    status, value = self._conn.recv()
                    while status == "event":
                        if on_event is not None:
                            on_event(value)
                        status, value = self._conn.recv()
                except (EOFError, OSError, BrokenPipeError):
                    cause = self._died()
                    if attempt == 2 or self._failure is not None:
                        raise EngineError(
                            f"{cause}; this request was tried on a new encoder process and "
                            "failed again"
                            if attempt == 2
                            else cause
                        ) from None
                    continue
                finally:
                    with self._cancel_lock:
                        self._current = None
                if status == "error":
                    raise EngineError(f"the {self._spec.model.mode.value} pipeline failed: {value}")
                return value
        raise AssertionError("unreachable")

    def cancel(self, token: object) -> None:
        """Ask the call made with `token` to stop, if it is still the one in progress."""
        with self._cancel_lock:
            if token is not None and self._current is token:
                self._cancel.set()

    def _died(self) -> str:
        """The process died in a call: count it, and start a new one unless in a crash loop."""
        self._process.join(1)
        cause = f"the encoder process ended unexpectedly (exit code {self._process.exitcode})"
        log.error("%s: %s", self._spec.model.id, cause)
        self._conn.close()
        self._failure = self._crashes.record(f"the encoder of {self._spec.model.id!r}", cause)
        if self._failure is not None:
            return cause
        self._start()
        self.restarts += 1
        log.warning("restarted the encoder process of %s", self._spec.model.id)
        return cause

    @property
    def failure(self) -> CrashLoopError | None:
        return self._failure

    def close(self) -> None:
        self._closed = True
        with self._lock:
            if self._conn is not None:
                self._conn.close()
            if self._process is not None:
                self._process.join(5)
                if self._process.is_alive():
                    self._process.kill()
                    self._process.join()
