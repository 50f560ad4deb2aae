"""An engine failure loses no stream: the runner restarts its engine process and resumes every
request in flight from the tokens it already generated (the tiny model, the real pipeline).

These tests count tokens and read states; whether the resumed text is exactly the text a run
without the failure gives is shown on SmolLM2 in the integration ring, where greedy decoding
does not hang on the near-ties of a random model.
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
from collections.abc import Awaitable, Iterator
from contextlib import aclosing
from pathlib import Path
from typing import TypeVar

import pytest

from ovrunner.engines.base import (
    FinishReason,
    GenerationDelta,
    GenerationRequest,
    LoadConfig,
    ModelRef,
    OutputConstraint,
    SamplingParams,
)
from ovrunner.engines.openvino.batching import OpenVINORunner
from ovrunner.engines.openvino.engine_client import EngineProcess
from ovrunner.engines.openvino.engine_main import Close, Ready
from ovrunner.errors import CrashLoopError, EngineError
from tests.engines.conftest import load_private_runner

T = TypeVar("T")
LONG = SamplingParams(max_tokens=120, temperature=0, ignore_eos=True)


@pytest.fixture
def runner(tiny_model: ModelRef, tmp_path: Path) -> Iterator[OpenVINORunner]:
    """A runner of its own per test: these tests leave crash counts behind."""
    runner = load_private_runner(tiny_model, tmp_path)
    yield runner
    runner.close()


def kill_engine(runner: OpenVINORunner) -> int:
    pid = runner.stats().engine_pid
    os.kill(pid, signal.SIGKILL)
    return pid


async def stream(runner: OpenVINORunner, request: GenerationRequest,
                 on_delta: object = None) -> list[GenerationDelta]:  # fmt: skip
    deltas: list[GenerationDelta] = []
    async with aclosing(runner.generate(request)) as iterator:
        async for delta in iterator:
            deltas.append(delta)
            if callable(on_delta):
                on_delta(delta)
    return deltas


def assert_whole(deltas: list[GenerationDelta], tokens: int) -> None:
    """Every token counted once: running counts rise without a gap back or a repeat, and the
    last one is the request's `max_tokens`."""
    counts = [d.completion_tokens for d in deltas]
    assert counts == sorted(counts) and len(set(counts)) == len(counts)
    assert counts[-1] == tokens
    assert deltas[-1].finish_reason is FinishReason.LENGTH
    assert all(d.finish_reason is None for d in deltas[:-1])


def test_a_kill_mid_stream_resumes_every_stream(runner: OpenVINORunner) -> None:
    async def scenario() -> list[list[GenerationDelta]]:
        killed: list[int] = []

        def maybe_kill(delta: GenerationDelta) -> None:
            if not killed and delta.completion_tokens >= 30:
                killed.append(kill_engine(runner))

        requests = [GenerationRequest(prompt=f"stream {i} the quick", sampling=LONG)
                    for i in range(4)]  # fmt: skip
        results = await asyncio.gather(
            stream(runner, requests[0], maybe_kill), *(stream(runner, r) for r in requests[1:])
        )
        assert killed and runner.stats().engine_pid != killed[0]
        return results

    for deltas in asyncio.run(scenario()):
        assert_whole(deltas, 120)
        assert deltas[0].prompt_tokens == deltas[-1].prompt_tokens  # the original prompt's
    assert runner.stats().restarts == 1 and runner.stats().admitted == 0
    assert runner.failure is None


def test_an_engine_killed_while_idle_is_restarted_for_the_next_request(
    runner: OpenVINORunner,
) -> None:
    kill_engine(runner)

    async def scenario() -> list[GenerationDelta]:
        return await stream(runner, GenerationRequest(prompt="hi", sampling=LONG))

    assert_whole(asyncio.run(scenario()), 120)
    assert runner.stats().restarts == 1


def test_a_request_that_fails_the_step_gets_the_error_and_the_others_go_on(
    runner: OpenVINORunner,
) -> None:
    """A schema the grammar compiler rejects, sent past the server's own check straight to
    the runner: the pipeline accepts it and fails the next step. The step blames the newcomer,
    so only it fails; the stream that was running is resumed and completes."""
    bad = SamplingParams(max_tokens=8, constraint=OutputConstraint.json_schema({"type": "nope"}))

    async def scenario() -> tuple[list[GenerationDelta], BaseException]:
        started = asyncio.Event()
        long = asyncio.ensure_future(
            stream(
                runner,
                GenerationRequest(prompt="the quick", sampling=LONG),
                lambda d: started.set(),
            )  # fmt: skip
        )
        await started.wait()
        with pytest.raises(EngineError) as caught:
            await stream(runner, GenerationRequest(prompt="x", sampling=bad))
        return await long, caught.value

    deltas, error = asyncio.run(scenario())
    assert "this request failed the engine" in str(error)
    assert_whole(deltas, 120)
    assert runner.stats().restarts == 1


@pytest.mark.parametrize(
    "sampling",
    [
        SamplingParams(max_tokens=200, temperature=0.7, n=2, ignore_eos=True),
        SamplingParams(
            max_tokens=200,
            temperature=0,
            constraint=OutputConstraint.json_schema({"type": "string"}),
        ),
    ],
    ids=["n=2", "structured"],
)
def test_a_request_that_cannot_be_resumed_ends_with_the_error(
    runner: OpenVINORunner, sampling: SamplingParams
) -> None:
    async def scenario() -> None:
        request = GenerationRequest(prompt="a", sampling=sampling)
        with pytest.raises(EngineError, match="cannot be resumed"):
            await kill_while_in_flight(runner, stream(runner, request))

    asyncio.run(asyncio.wait_for(scenario(), 60))
    assert runner.stats().admitted == 0


def test_a_kill_before_the_first_token_resumes_from_the_prompt(runner: OpenVINORunner) -> None:
    async def scenario() -> list[GenerationDelta]:
        request = GenerationRequest(prompt="the quick", sampling=LONG)
        return await kill_while_in_flight(runner, stream(runner, request))

    assert_whole(asyncio.run(asyncio.wait_for(scenario(), 60)), 120)
    assert runner.stats().restarts == 1


async def kill_while_in_flight(runner: OpenVINORunner, work: Awaitable[T]) -> T:
    """Run `work` (one request) with the engine frozen, so that it is sent but gets no token,
    then kill the engine: the tiny model is too quick to kill at a chosen point otherwise."""
    pid = runner.stats().engine_pid
    os.kill(pid, signal.SIGSTOP)
    task = asyncio.ensure_future(work)
    while runner.stats().admitted == 0:
        await asyncio.sleep(0.005)
    await asyncio.sleep(0.05)  # past the tokenizer and into the engine's pipe
    os.kill(pid, signal.SIGKILL)
    return await task


def test_a_crash_loop_stops_the_restarts(runner: OpenVINORunner) -> None:
    short = GenerationRequest(prompt="hi", sampling=SamplingParams(max_tokens=4, temperature=0))

    async def scenario() -> None:
        for restarts in range(1, LoadConfig().crash_limit):
            kill_engine(runner)
            assert (await stream(runner, short))[-1].completion_tokens == 4
            assert runner.stats().restarts == restarts
        kill_engine(runner)
        with pytest.raises(CrashLoopError, match=f"failed {LoadConfig().crash_limit} times"):
            await stream(runner, short)

    asyncio.run(scenario())
    assert isinstance(runner.failure, CrashLoopError)
    assert runner.failure.status_code == 503
    headers = runner.failure.headers()
    assert headers["x-should-retry"] == "false" and 1 <= int(headers["Retry-After"]) <= 60


def test_an_unload_during_a_restart_leaves_no_engine_process_behind(
    runner: OpenVINORunner,
) -> None:
    """Restart and unload each own the engine process in turn. The unload comes while the
    restart is opening a new process (held there by an event): the restart must not install
    that process once the runner is closed, but close it, and end the request that waited for
    it; before, the new process was installed in a closed runner and served on, unowned."""
    opening, release = threading.Event(), threading.Event()
    opened: list[EngineProcess] = []
    start_process = runner._start_process

    def gated_start() -> tuple[EngineProcess, Ready]:
        opening.set()
        assert release.wait(60)
        process, ready = start_process()
        opened.append(process)
        return process, ready

    runner._start_process = gated_start

    async def scenario() -> None:
        kill_engine(runner)
        waiting = asyncio.ensure_future(
            stream(runner, GenerationRequest(prompt="a", sampling=LONG))
        )
        assert await asyncio.to_thread(opening.wait, 60)
        await asyncio.to_thread(runner.close)  # the unload, from the lifecycle's thread
        release.set()
        with pytest.raises(EngineError, match="unloaded"):
            await waiting

    asyncio.run(scenario())
    (process,) = opened
    process._process.join(10)
    assert not process._process.is_alive()
    assert runner._process is not process


def test_a_late_failure_report_of_a_replaced_process_restarts_nothing(
    runner: OpenVINORunner,
) -> None:
    """A process's death can be found twice, on the event loop and from a thread reading
    `failure`; a report that arrives once its replacement runs must not restart (and so close)
    the live process under its requests. The late report is sent by hand, after the restart."""

    async def scenario() -> None:
        dead = runner._process
        kill_engine(runner)
        await stream(runner, GenerationRequest(prompt="a", sampling=SamplingParams(max_tokens=3)))
        assert runner.restarts == 1
        live = runner._process
        long = asyncio.ensure_future(stream(runner, GenerationRequest(prompt="a", sampling=LONG)))
        while runner.stats().running == 0:
            await asyncio.sleep(0.01)
        runner._on_failure(dead, [], EngineError("the engine process ended unexpectedly"), None)
        runner._restart_owed = dead  # as a thread that found it dead would have left it
        await stream(runner, GenerationRequest(prompt="b", sampling=SamplingParams(max_tokens=3)))
        assert_whole(await long, LONG.max_tokens or 0)
        assert runner._process is live and runner.restarts == 1

    asyncio.run(scenario())


def test_an_engine_process_is_closed_only_once_its_writer_is_done_with_the_connection(
    runner: OpenVINORunner,
) -> None:
    """The root of the crash-loop flake: `close` closed the connection while the writer thread
    was still sending the `Close` command on it; a send that had read the descriptor's number
    wrote after the close into whatever took the number next, the connection of the engine
    process a restart opened, whose child read that `Close` and ended (exit code 0). The
    writer is held inside that send by an event."""
    process = runner._process
    connection = process._conn
    sending, release = threading.Event(), threading.Event()
    send = connection.send

    def held_send(command: object) -> None:
        if isinstance(command, Close):
            sending.set()
            assert release.wait(30)
        send(command)

    connection.send = held_send  # type: ignore[method-assign]
    kill_engine(runner)  # dead already, as after a crash: close() does not wait for it
    closing = threading.Thread(target=process.close)
    closing.start()
    assert sending.wait(30)
    closing.join(0.5)
    assert not connection.closed, "closed under a send in progress"
    release.set()
    closing.join(30)
    assert connection.closed and not closing.is_alive()
