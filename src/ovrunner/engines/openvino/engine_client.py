"""The server's side of an engine process (see `engine_main` for why the pipeline has one).

`EngineProcess` starts the process, and then offers the event loop `submit` and `cancel`.
A writer thread sends commands, so a long prompt never blocks the event loop on a full pipe.
The event loop itself reads the engine's messages (`loop.add_reader` on the connection):
one `StepReport` per pipeline step, whose updates go to `on_updates` in a single call. A reader
thread would cost a thread wake-up and a hand-over to the loop per step, ~2% of single-stream
throughput on two cores, where every wake-up preempts one of the pipeline's threads.

Messages are read on the loop that submitted last (a server has one; tests run a loop per
test); updates for a job of another loop are handed to that loop. If the process dies or its
pipeline fails, the jobs still in it go to `on_failure` (the runner resumes them on a new
process, see `openvino.OpenVINORunner`), and `failure` says why this process serves no more.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import multiprocessing
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ovrunner.engines.decoding.choices import RequestChoices
from ovrunner.engines.openvino import engine_main
from ovrunner.engines.openvino.engine_main import EngineStats, SequenceOutput
from ovrunner.errors import EngineError, ModelLoadFailedError, OvrunnerError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class InFlightUpdate:
    outputs: list[SequenceOutput]
    finished: bool
    error: OvrunnerError | None = None


@dataclass(eq=False)
class InFlight:
    """One request in an engine process, as the event loop sees it: `submit` is what was
    sent (kept to send again on a new process), the `on_updates` hook keeps its per-request
    decoding state in `choices` and its results in `outbox`."""

    submit: engine_main.Submit
    loop: asyncio.AbstractEventLoop
    choices: RequestChoices
    outbox: asyncio.Queue[Any] = field(default_factory=asyncio.Queue)
    cancelled: bool = False
    strikes: int = 0  # engine failures this request was in flight at

    @property
    def request_id(self) -> int:
        return self.submit.request_id


OnUpdates = Callable[[list[tuple[InFlight, InFlightUpdate]]], None]
# The jobs a failed process held, why it failed, and the requests it suspects (see
# `engine_main.StepFailed`; None when the process died without a word).
OnFailure = Callable[[list[InFlight], EngineError, "tuple[int, ...] | None"], None]


class EngineProcess:
    """A `engine_main.serve` process for one pipeline. `opener(spec)` opens the pipeline in
    the new process, so both must pickle (a module-level function and plain data)."""

    def __init__(
        self,
        opener: engine_main.Opener,
        spec: Any,
        *,
        name: str,
        log_level: str = "INFO",
        admission_window_s: float = 0.0,
    ) -> None:
        self.name = name
        self._on_updates: OnUpdates = lambda items: None
        self._on_failure: OnFailure | None = None
        # spawn, not fork: the server already runs threads (uvicorn, OpenVINO's own).
        context = multiprocessing.get_context("spawn")
        self._conn, child_conn = context.Pipe()
        self._process = context.Process(
            target=engine_main.serve,
            args=(child_conn, opener, spec, log_level, admission_window_s),
            name=f"ovrunner-engine-{name}",
            daemon=True,  # never outlives the server
        )
        self._process.start()
        child_conn.close()
        self._jobs: dict[int, InFlight] = {}
        self._commands: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._closing = False
        # The loop that reads the engine's messages, and a guard for the moment a second
        # loop takes over (both may see the connection readable once).
        self._reading_on: asyncio.AbstractEventLoop | None = None
        self._read_lock = threading.Lock()
        self.stats = EngineStats()
        self._failure: EngineError | None = None
        self._fail_lock = threading.Lock()
        self._writer: threading.Thread | None = None
        self.ready: engine_main.Ready | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid

    @property
    def failure(self) -> EngineError | None:
        """Why this process can serve no more requests; it may have died while idle."""
        running = self.ready is not None and not self._closing
        if self._failure is None and running and not self._process.is_alive():
            self._fail(self._ended_message())
        return self._failure

    def wait_ready(self) -> engine_main.Ready:
        """Block until the pipeline is open (call it off the event loop); raise
        `ModelLoadFailedError` when it could not be opened."""
        try:
            message = self._conn.recv()
        except EOFError:
            self._process.join(5)
            message = engine_main.LoadFailed(
                f"the engine process exited ({self._process.exitcode})"
            )
        if not isinstance(message, engine_main.Ready):
            self._process.join(5)
            raise ModelLoadFailedError(f"could not load model {self.name!r}: {message.message}")
        self.ready = message
        return message

    def attach(self, on_updates: OnUpdates, on_failure: OnFailure | None = None) -> None:
        """Start relaying: after each step, `on_updates` runs once on the event loop with
        every request that advanced or finished in that step. If the process fails, the jobs
        it held go to `on_failure` (on the reading loop); without one they fail."""
        self._on_updates = on_updates
        self._on_failure = on_failure
        self._writer = threading.Thread(
            target=self._write, name=f"ovrunner-write-{self.name}", daemon=True
        )
        self._writer.start()

    # -- event-loop side -------------------------------------------------------------------

    def submit(self, job: InFlight) -> None:
        """Send `job` to the engine; on the event loop. Its request id must be new to this
        process."""
        if self.failure is not None:
            raise self.failure
        loop = asyncio.get_running_loop()
        if self._reading_on is not loop:
            self._read_on(loop)
        self._jobs[job.request_id] = job
        self._commands.put(job.submit)

    def cancel(self, job: InFlight) -> None:
        if self._jobs.pop(job.request_id, None) is not None:
            self._commands.put(engine_main.Cancel(job.request_id))
            self._follow_jobs()

    def close(self, timeout: float = 10.0) -> None:
        """End the process: it leaves its loop at the `Close` command and exits. Callable
        from any thread."""
        self._closing = True
        self._commands.put(engine_main.Close())
        if self.ready is None:  # not attached: the process is loading or failed
            self._process.kill()
        self._process.join(timeout)
        if self._process.is_alive():
            log.warning("the engine process of %s did not exit; killing it", self.name)
            self._process.kill()
            self._process.join()
        # The writer must be done with the connection before it is closed: a send that read
        # the descriptor's number before the close and wrote after it would write into
        # whatever took that number next, such as the connection of the engine process a
        # restart opens (its child then read a `Close` and ended: exit code 0).
        if self._writer is not None:
            self._writer.join(timeout)
        loop = self._reading_on
        if loop is None or not _call_on(loop, self._release):
            self._release()

    def _release(self) -> None:
        """Stop reading, close the connection, fail what is left; on the reading loop (a
        loop must not watch a closed descriptor)."""
        self._stop_reading()
        self._conn.close()
        self._fail_all(EngineError("the runner was unloaded"))

    # -- reading and writing -----------------------------------------------------------------

    def _write(self) -> None:
        while True:
            command = self._commands.get()
            try:
                self._conn.send(command)
            except OSError:
                return  # the process is gone; the reading loop reports it
            if isinstance(command, engine_main.Close):
                return

    def _read_on(self, loop: asyncio.AbstractEventLoop) -> None:
        previous, self._reading_on = self._reading_on, loop
        loop.add_reader(self._conn.fileno(), self._read_ready)
        if previous is not None:
            _call_on(previous, functools.partial(self._unwatch, previous))

    def _stop_reading(self) -> None:
        loop, self._reading_on = self._reading_on, None
        if loop is not None:
            self._unwatch(loop)

    def _unwatch(self, loop: asyncio.AbstractEventLoop) -> None:
        """Stop `loop` watching the connection (run on that loop), unless it reads again."""
        if loop is not self._reading_on and not loop.is_closed() and not self._conn.closed:
            loop.remove_reader(self._conn.fileno())

    def _read_ready(self) -> None:
        """Read every whole message waiting. The engine writes a message in one write (two
        back to back above 16 KiB), so `recv` never waits long for the rest of one."""
        if not self._read_lock.acquire(blocking=False):
            return  # another loop is reading; it hands our jobs over
        try:
            while not self._conn.closed and self._conn.poll(0):
                message = self._conn.recv()
                if isinstance(message, engine_main.StepFailed):
                    self._stop_reading()
                    self._fail(message.message, message.suspects)
                    return
                self._deliver(message)
        except (EOFError, OSError):
            self._stop_reading()
            if not self._closing:
                self._fail(self._ended_message())
        finally:
            self._read_lock.release()

    def _ended_message(self) -> str:
        self._process.join(0.5)  # it has closed its end; its exit code follows at once
        return f"the engine process ended unexpectedly (exit code {self._process.exitcode})"

    def _deliver(self, step: engine_main.StepReport) -> None:
        self.stats = step.stats
        batch: list[tuple[InFlight, InFlightUpdate]] = []
        finished = False
        for update in step.updates:
            job = self._jobs.get(update.request_id)
            if job is None:  # cancelled meanwhile
                continue
            if update.finished:
                finished = True
                self._jobs.pop(update.request_id, None)
            error = EngineError(update.error) if update.error else None
            batch.append((job, InFlightUpdate(update.outputs, update.finished, error)))
        self._post(batch)
        if finished:
            self._follow_jobs()

    def _follow_jobs(self) -> None:
        """Read on a loop that has jobs: the loop reading now may end once its own jobs are
        done (a test's `asyncio.run`), and then nobody would read for the others."""
        reading = self._reading_on
        loops = {job.loop for job in list(self._jobs.values())}
        if reading is None or reading in loops or not loops:
            return
        target = next(iter(loops))
        _call_on(target, functools.partial(self._take_over, target))

    def _take_over(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._reading_on is not loop and not self._conn.closed:
            self._read_on(loop)

    def _fail(self, message: str, suspects: tuple[int, ...] | None = None) -> None:
        # Found from the reading loop and from `failure` in any thread: reported once.
        with self._fail_lock:
            if self._failure is not None:
                return
            self._failure = EngineError(message)
        log.error("engine process of %s: %s", self.name, message)
        if self._on_failure is None:
            self._fail_all(self._failure)
            return
        jobs = list(self._jobs.values())
        self._jobs.clear()
        self._on_failure(jobs, self._failure, suspects)

    def _fail_all(self, error: EngineError) -> None:
        jobs = list(self._jobs.values())
        self._jobs.clear()
        self._post([(job, InFlightUpdate([], finished=True, error=error)) for job in jobs])

    def _post(self, batch: list[tuple[InFlight, InFlightUpdate]]) -> None:
        post(batch, self._on_updates)


def post(batch: list[tuple[InFlight, InFlightUpdate]], on_updates: OnUpdates) -> None:
    """Run `on_updates` with `batch`, each job's updates on that job's own loop."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[InFlight, InFlightUpdate]]] = {}
    for job, update in batch:
        by_loop.setdefault(job.loop, []).append((job, update))
    for loop, items in by_loop.items():
        if _on_loop(loop):
            on_updates(items)
        else:
            _call_on(loop, functools.partial(on_updates, items))


def _on_loop(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


def _call_on(loop: asyncio.AbstractEventLoop, callback: Callable[[], None]) -> bool:
    """Run `callback` on `loop`: now if this is that loop's thread, else soon; False when
    the loop no longer runs anything."""
    if _on_loop(loop):
        callback()
        return True
    if loop.is_closed() or not loop.is_running():
        return False
    try:
        loop.call_soon_threadsafe(callback)
    except RuntimeError:  # it closed meanwhile
        return False
    return True
