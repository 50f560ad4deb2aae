"""An encoder pipeline (`TextEmbeddingPipeline`, `TextRerankPipeline`) in a process of its own.

An abort or a segfault inside a native library ends that process, never the server and the
chat streams beside it. The server's side, `EncoderProcess`, makes one call at a time (`call`
blocks; the runner calls it from a worker thread): a call during which the process dies is
made once more on a new process, then fails alone with the cause. `crash_limit` deaths within
`crash_window_s` stop the restarts (a `CrashLoopError`, 503) until the model is unloaded, as
for the generating engine.
"""

from __future__ import annotations

import logging
import multiprocessing
import threading
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


def open_encoder(spec: EncoderSpec) -> Any:
    """The pipeline of `spec` (inside the encoder process)."""
    import openvino_genai as genai

    from ovrunner.engines.encoder_files import embedding_config, encoder_window

    path = str(spec.model.path)
    if spec.model.mode is Mode.EMBEDDING:
        config = embedding_config(spec.model.path)
        pipeline_config = genai.TextEmbeddingPipeline.Config(
            pooling_type=getattr(genai.TextEmbeddingPipeline.PoolingType, config.pooling),
            normalize=config.normalize,
            max_length=config.window,
        )
        return genai.TextEmbeddingPipeline(path, spec.device, pipeline_config, **spec.properties)
    pipeline_config = genai.TextRerankPipeline.Config(
        top_n=spec.top_n, max_length=encoder_window(spec.model.path)
    )
    return genai.TextRerankPipeline(path, spec.device, pipeline_config, **spec.properties)


def serve(conn: Any, spec: EncoderSpec) -> None:
    """The encoder process: open the pipeline, then answer `(method, args)` calls until EOF."""
    try:
        pipeline = open_encoder(spec)
    except Exception as exc:  # noqa: BLE001 - sent to the server as the load's failure
        conn.send(("failed", str(exc)))
        return
    conn.send(("ready", None))
    while True:
        try:
            method, args = conn.recv()
        except (EOFError, OSError):
            return
        try:
            result = getattr(pipeline, method)(*args)
        except RuntimeError as exc:  # the pipeline refused these inputs: that call's error
            conn.send(("error", str(exc)))
            continue
        # Embeddings: one vector per text; rerank: (index, score) pairs. As plain lists.
        conn.send(("ok", [tuple(r) if isinstance(r, tuple) else list(r) for r in result]))


class EncoderProcess:
    """The server's side of an encoder process, restarted when it dies."""

    def __init__(self, spec: EncoderSpec, *, crash_limit: int, crash_window_s: float) -> None:
        self._spec = spec
        self._crashes = CrashWindow(crash_limit, crash_window_s)
        self._lock = threading.Lock()  # one call at a time; also guards start and close
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
        process = context.Process(target=serve, args=(child, self._spec), daemon=True,
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

    def call(self, method: str, *args: Any) -> Any:
        """`pipeline.method(*args)` in the process; blocking, from a worker thread."""
        with self._lock:
            if self._closed:
                raise EngineError(f"the runner of {self._spec.model.id!r} was unloaded")
            for attempt in (1, 2):
                if self._failure is not None:
                    raise self._failure
                try:
                    self._conn.send((method, args))
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
                if status == "error":
                    raise EngineError(f"the {self._spec.model.mode.value} pipeline failed: {value}")
                return value
        raise AssertionError("unreachable")

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
