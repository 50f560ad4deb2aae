"""Lifecycle on the tiny model with the real engine: one load per model, keep-alive, eviction."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from ovrunner.engines.base import LoadConfig
from ovrunner.engines.openvino.batching import OpenVINOEngine
from ovrunner.engines.registry import EngineRegistry
from ovrunner.errors import BackendMismatchError, ModelLoadFailedError
from ovrunner.lifecycle import Lifecycle, parse_keep_alive
from ovrunner.store import MANIFEST, ModelStore


@pytest.fixture
def store(tmp_path: Path, tiny_gguf: Path) -> ModelStore:
    store = ModelStore(tmp_path)
    registry = EngineRegistry([OpenVINOEngine()])
    for name in ("tiny-a", "tiny-b", "tiny-c"):
        store.add(tiny_gguf, name, engine="openvino", source="test",
                  context_window=registry.context_window_of("openvino"))  # fmt: skip
    return store


def lifecycle(store: ModelStore, loads: list[str], **options: object) -> Lifecycle:
    return Lifecycle(store, EngineRegistry([OpenVINOEngine()]), LoadConfig(),
                     on_load=lambda model, seconds: loads.append(model), **options)  # type: ignore[arg-type]  # fmt: skip


def loaded(life: Lifecycle) -> list[str]:
    return sorted(slot.model.id for slot in life.slots())


def test_concurrent_first_requests_cause_one_load(store: ModelStore) -> None:
    loads: list[str] = []

    async def scenario() -> None:
        life = lifecycle(store, loads)
        leases = await asyncio.gather(*(life.acquire("tiny-a") for _ in range(5)))
        assert len({id(lease.runner) for lease in leases}) == 1
        for lease in leases:
            lease.release()
        await life.close()

    asyncio.run(scenario())
    assert loads == ["tiny-a"]


def test_keep_alive_zero_unloads_after_the_request(store: ModelStore) -> None:
    async def scenario() -> None:
        life = lifecycle(store, [])
        lease = await life.acquire("tiny-a", keep_alive=0)
        assert loaded(life) == ["tiny-a"]
        lease.release()
        assert loaded(life) == []
        await life.close()

    asyncio.run(scenario())


def test_a_short_keep_alive_expires(store: ModelStore) -> None:
    """Bounds that hold on a loaded machine: a timer never fires early, so the runner is there
    until its keep-alive has passed; when it fires late, the test waits for it."""

    async def scenario() -> float:
        life = lifecycle(store, [], keep_alive=1.0)
        loop = asyncio.get_running_loop()
        lease = await life.acquire("tiny-a")
        await asyncio.sleep(1.2)
        assert loaded(life) == ["tiny-a"]  # in use: never expires
        lease.release()
        released = loop.time()
        assert life.slots()[0].expires_at is not None
        while loaded(life) == ["tiny-a"]:
            assert loop.time() - released < 30
            await asyncio.sleep(0.01)
        await life.close()
        return loop.time() - released

    assert asyncio.run(scenario()) >= 1.0


def test_forever_keeps_the_runner(store: ModelStore) -> None:
    async def scenario() -> None:
        life = lifecycle(store, [], keep_alive=0.1)
        (await life.acquire("tiny-a", keep_alive=parse_keep_alive("-1"))).release()
        await asyncio.sleep(0.3)
        assert loaded(life) == ["tiny-a"] and life.slots()[0].expires_at is None
        await life.close()

    asyncio.run(scenario())


def test_eviction_unloads_the_least_recently_used_idle_runner(store: ModelStore) -> None:
    size = store.get("tiny-a").path.stat().st_size
    loads: list[str] = []

    async def scenario() -> None:
        life = lifecycle(store, loads, memory_budget_bytes=int(size * 2.5))
        (await life.acquire("tiny-a")).release()
        (await life.acquire("tiny-b")).release()
        (await life.acquire("tiny-a")).release()  # now tiny-b is the least recently used
        (await life.acquire("tiny-c")).release()
        assert loaded(life) == ["tiny-a", "tiny-c"]
        busy_a = await life.acquire("tiny-a")
        busy_c = await life.acquire("tiny-c")
        with pytest.raises(Exception, match="budget"):
            await life.acquire("tiny-b")  # only busy runners left to evict
        busy_a.release()
        busy_c.release()
        await life.close()

    asyncio.run(scenario())
    assert loads == ["tiny-a", "tiny-b", "tiny-c"]


def test_a_failed_load_is_reported_and_retried(store: ModelStore, tiny_gguf: Path) -> None:
    model_file = store.get("tiny-a").path
    model_file.write_bytes(b"GGUF-but-broken")

    async def scenario() -> None:
        life = lifecycle(store, [])
        with pytest.raises(ModelLoadFailedError):
            await life.acquire("tiny-a")
        assert loaded(life) == []
        model_file.write_bytes(tiny_gguf.read_bytes())  # repaired: the next request loads it
        (await life.acquire("tiny-a")).release()
        assert loaded(life) == ["tiny-a"]
        await life.close()

    asyncio.run(scenario())


def test_a_model_typed_for_another_engine_is_refused_before_loading(store: ModelStore) -> None:
    manifest = store.get("tiny-b").path.parent / MANIFEST
    manifest.write_text(manifest.read_text().replace('"openvino"', '"llama.cpp"'))
    loads: list[str] = []

    async def scenario() -> None:
        life = lifecycle(store, loads)
        with pytest.raises(BackendMismatchError) as caught:
            await life.acquire("tiny-b")
        assert caught.value.status_code == 409
        assert loaded(life) == []

    asyncio.run(scenario())
    assert loads == []


def test_keep_alive_spellings() -> None:
    assert parse_keep_alive("5m") == 300 and parse_keep_alive("30s") == 30
    assert parse_keep_alive(0) == 0 and parse_keep_alive("-1") == -1 and parse_keep_alive(-5) == -1
    assert parse_keep_alive("1h") == 3600 and parse_keep_alive(12.5) == 12.5
    with pytest.raises(Exception, match="keep_alive"):
        parse_keep_alive("soon")


def test_a_killed_engine_is_restarted_in_the_same_runner_without_a_reload(
    store: ModelStore,
) -> None:
    """Killing the engine process mid-generation (as a crash in OpenVINO would end it) costs
    the request nothing: the runner restarts its engine and the stream completes. The model is
    not loaded again, and the lease count is back to 0."""
    import os
    import signal
    from contextlib import aclosing

    from ovrunner.engines.base import GenerationRequest, SamplingParams

    loads: list[str] = []

    async def scenario() -> None:
        life = lifecycle(store, loads)
        lease = await life.acquire("tiny-a")
        long = GenerationRequest(prompt="hi", sampling=SamplingParams(max_tokens=64,
                                                                      ignore_eos=True))  # fmt: skip
        pid = lease.runner.stats().engine_pid
        async with aclosing(lease.runner.generate(long)) as deltas:
            async for delta in deltas:
                if delta.completion_tokens and lease.runner.stats().engine_pid == pid:
                    os.kill(pid, signal.SIGKILL)
        assert delta.completion_tokens == 64
        lease.release()
        assert [s.leases for s in life.slots()] == [0]
        assert lease.runner.stats().restarts == 1
        await life.close()

    asyncio.run(scenario())
    assert loads == ["tiny-a"]


def test_a_crash_loop_is_a_503_until_the_model_is_unloaded(store: ModelStore) -> None:
    """A runner that stopped restarting its engine is not reloaded by the next request (that
    would be the same storm one level up): it answers 503 until it is unloaded."""
    import os
    import signal
    from contextlib import aclosing

    from ovrunner.engines.base import GenerationRequest, SamplingParams
    from ovrunner.errors import CrashLoopError
    from ovrunner.lifecycle import RunnerState

    loads: list[str] = []
    request = GenerationRequest(prompt="hi", sampling=SamplingParams(max_tokens=4))

    async def generate(life: Lifecycle) -> int:
        lease = await life.acquire("tiny-a")
        try:
            async with aclosing(lease.runner.generate(request)) as deltas:
                return [d async for d in deltas][-1].completion_tokens
        finally:
            lease.release()

    async def scenario() -> None:
        life = lifecycle(store, loads)
        for _ in range(LoadConfig().crash_limit):
            runner = await life.runner_for("tiny-a")
            os.kill(runner.stats().engine_pid, signal.SIGKILL)
            try:
                await generate(life)
            except CrashLoopError:
                break
        assert [s.state for s in life.slots()] == [RunnerState.ERROR]
        with pytest.raises(CrashLoopError):
            await life.acquire("tiny-a")
        assert [s.leases for s in life.slots()] == [0]
        life.unload_model("tiny-a")
        assert await generate(life) == 4
        await life.close()

    asyncio.run(scenario())
    assert loads == ["tiny-a", "tiny-a"]
