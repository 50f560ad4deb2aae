"""The path every generating route shares: check, resolve, lease, start, and own to the end.

`start_generation` refuses what the engine would fail on before any lease is taken, then
leases the runner and waits for the first delta, so validation, admission and load failures
are raised before a response begins, with their real status. From then on one object owns
the lease: `Generation.aclose()` (idempotent) cancels what is left of the generation,
releases the lease and records usage. Each route reaches it on every path (a `finally` for a
whole answer, `streaming.sse_response(..., on_close=...)` for a stream), so a request that is
refused, cancelled, disconnected before its first chunk or failed leaves `in_use` as it was.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator, Awaitable
from typing import TypeVar

from starlette.requests import Request

from ovrunner.engines.base import GenerationDelta, GenerationRequest, Mode, ModelRef
from ovrunner.errors import ClientDisconnectedError, WrongModeError
from ovrunner.lifecycle import Lease, Lifecycle
from ovrunner.metrics import Metrics
from ovrunner.protocol.openai import Usage
from ovrunner.tools.output import OutputParser

log = logging.getLogger(__name__)


T = TypeVar("T")


async def unless_disconnected(request: Request, work: Awaitable[T]) -> T:
    """Await `work`, cancelling it as soon as the client hangs up.

    Nothing is sent before the first delta, and a non-streamed answer nothing until it is
    complete, so without this a client that gave up would keep its prefill or its whole
    generation running (and its batch slot taken) to the end.
    """
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
    if not task.done():
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        raise ClientDisconnectedError("the client closed the connection")
    return task.result()


async def _disconnected(request: Request) -> None:
    # The body has been read, so the next ASGI message can only be the disconnect.
    while (await request.receive())["type"] != "http.disconnect":
        pass


class UsageTally:
    """Token usage of a request, from the running counts its deltas carry."""

    def __init__(self) -> None:
        self._prompt_tokens = 0
        self._completion_tokens: dict[int, int] = {}

    def add(self, delta: GenerationDelta) -> GenerationDelta:
        self._prompt_tokens = delta.prompt_tokens
        self._completion_tokens[delta.index] = delta.completion_tokens
        return delta

    def completion_tokens(self) -> int:
        return sum(self._completion_tokens.values())

    def usage(self) -> Usage:
        completion = self.completion_tokens()
        return Usage(prompt_tokens=self._prompt_tokens, completion_tokens=completion,
                     total_tokens=self._prompt_tokens + completion)  # fmt: skip


class Generation:
    """A started generation and the lease on its runner; `deltas` yields every delta once."""

    def __init__(self, source: AsyncGenerator[GenerationDelta, None], first: GenerationDelta | None,
                 lease: Lease, metrics: Metrics, parser: OutputParser | None = None) -> None:  # fmt: skip
        self.tally = UsageTally()
        self._parser = parser
        self._source = source
        self._first = first
        self._lease = lease
        self._metrics = metrics
        self._closed = False
        self._counted = 0  # generated tokens already counted in /metrics
        self._counted_at = time.perf_counter()
        self._meter = metrics.token_meter(lease.runner.model_id)
        self.deltas = self._iterate()

    @property
    def prompt_tokens(self) -> int:
        """The prompt's token count, known from the first delta (before any is read)."""
        return self._first.prompt_tokens if self._first is not None else 0

    async def _iterate(self) -> AsyncGenerator[GenerationDelta, None]:
        parse = self._parser.parse if self._parser is not None else None
        if self._first is not None:
            yield self._count(self.tally.add(parse(self._first) if parse else self._first))
        async for delta in self._source:
            yield self._count(self.tally.add(parse(delta) if parse else delta))

    def _count(self, delta: GenerationDelta) -> GenerationDelta:
        """Generated tokens reach /metrics as they stream (a long answer is no late burst),
        with their gaps since the previous token (inter-token latency, `Metrics.token_meter`)."""
        generated = self.tally.completion_tokens()
        new = generated - self._counted
        if new > 0:
            now = time.perf_counter()
            self._meter(new, now - self._counted_at if self._counted else None)
            self._counted, self._counted_at = generated, now
        return delta

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            await self.deltas.aclose()
            await self._source.aclose()  # cancels the generation in the engine if it runs
        except RuntimeError:  # still iterated elsewhere: a bug, but the lease must go
            log.exception("a generation was closed while it was being read")
        finally:
            self._lease.release()
            usage = self.tally.usage()
            model_id = self._lease.runner.model_id
            self._metrics.observe_usage(
                model_id, usage.prompt_tokens, usage.completion_tokens - self._counted
            )


async def start_generation(
    request: Request,
    model_id: str,
    generation: GenerationRequest,
    *,
    keep_alive: float | None = None,
) -> Generation:
    """Check `generation` against the engine, lease the model's runner (on the engine the
    route is pinned to, if any) and start generating; raise before any response begins."""
    lifecycle: Lifecycle = request.app.state.lifecycle
    metrics: Metrics = request.app.state.metrics
    pinned = request.path_params.get("engine")
    model, engine_name = lifecycle.resolve(model_id, engine=pinned)
    require_mode(model, Mode.COMPLETION)
    await request.app.state.registry.get(engine_name).validate(generation)
    arrived = time.perf_counter()
    lease = await lifecycle.acquire(model_id, engine=pinned, keep_alive=keep_alive)
    runner = lease.runner
    started = time.perf_counter()
    metrics.queue_wait_seconds.labels(runner.model_id).observe(started - arrived)
    deltas = None
    try:
        deltas = runner.generate(generation)
        try:
            # A long prompt's prefill takes seconds to minutes before the first delta, with
            # no response begun: a client that hangs up meanwhile cancels it there and then.
            first = await unless_disconnected(request, anext(deltas))
        except StopAsyncIteration:
            first = None
    except BaseException:
        if deltas is not None:
            with contextlib.suppress(Exception):
                await deltas.aclose()
        lease.release()
        raise
    metrics.time_to_first_token.labels(runner.model_id).observe(time.perf_counter() - started)
    parser = None
    if generation.messages is not None:  # chat answers: reasoning and tool calls parsed out
        separate = request.app.state.settings.reasoning_format == "separate"
        parser = OutputParser.for_request(runner.chat_format, generation.tools, separate)
    return Generation(deltas, first, lease, metrics, parser)


def require_mode(model: ModelRef, mode: Mode) -> None:
    """400 before any lease when the route's mode is not the model's (chat on an embedding
    model): the one place a mode is checked."""
    if model.mode is not mode:
        raise WrongModeError(model.id, model.mode.value, mode.value)


@contextlib.asynccontextmanager
async def encoder_lease(
    request: Request, model_id: str, mode: Mode, *, keep_alive: float | None = None
) -> AsyncGenerator[Lease, None]:
    """A lease on an embedding or reranking model's runner, checked for its mode first and
    released however the block ends."""
    lifecycle: Lifecycle = request.app.state.lifecycle
    pinned = request.path_params.get("engine")
    model, _ = lifecycle.resolve(model_id, engine=pinned)
    require_mode(model, mode)
    lease = await lifecycle.acquire(model_id, engine=pinned, keep_alive=keep_alive)
    try:
        yield lease
    finally:
        lease.release()
